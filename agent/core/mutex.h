// Mutex, MutexLock and CondVar: std::mutex and std::condition_variable with
// clang thread-safety annotations, so that a clang build with -Wthread-safety
// checks GUARDED_BY / REQUIRES at compile time. Under GCC the annotations vanish.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

#if defined(__clang__)
#define TR_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define TR_THREAD_ANNOTATION(x)
#endif

#define TR_CAPABILITY(x) TR_THREAD_ANNOTATION(capability(x))
#define TR_SCOPED_CAPABILITY TR_THREAD_ANNOTATION(scoped_lockable)
#define TR_GUARDED_BY(x) TR_THREAD_ANNOTATION(guarded_by(x))
#define TR_REQUIRES(...) TR_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define TR_EXCLUDES(...) TR_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define TR_ACQUIRE(...) TR_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define TR_RELEASE(...) TR_THREAD_ANNOTATION(release_capability(__VA_ARGS__))

namespace tagrelay {

class TR_CAPABILITY("mutex") Mutex {
 public:
  void Lock() TR_ACQUIRE() { mu_.lock(); }
  void Unlock() TR_RELEASE() { mu_.unlock(); }

 private:
  friend class CondVar;
  std::mutex mu_;
};

class TR_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex* mu) TR_ACQUIRE(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() TR_RELEASE() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* mu_;
};

// A condition variable bound to one Mutex, which the caller holds while waiting
// (REQUIRED; not annotated, since the analysis cannot see that the mutex the
// caller locked is the one bound here).
class CondVar {
 public:
  explicit CondVar(Mutex* mu) : mu_(mu) {}

  void Wait() {
    std::unique_lock<std::mutex> lock(mu_->mu_, std::adopt_lock);
    cv_.wait(lock);
    lock.release();
  }
  // Returns false if the deadline passed.
  bool WaitUntil(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock<std::mutex> lock(mu_->mu_, std::adopt_lock);
    bool signalled = cv_.wait_until(lock, deadline) == std::cv_status::no_timeout;
    lock.release();
    return signalled;
  }
  void Signal() { cv_.notify_one(); }
  void SignalAll() { cv_.notify_all(); }

 private:
  Mutex* const mu_;
  std::condition_variable cv_;
};

}  // namespace tagrelay
