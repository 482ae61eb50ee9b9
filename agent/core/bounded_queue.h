// BoundedQueue<T>: a multi-producer, multi-consumer FIFO with a fixed capacity.
//
// Promise: never holds more than `capacity` items. A producer chooses what
// happens when it is full: TryPush fails at once (the caller counts the drop),
// PushUntil waits up to a deadline. After Close(), pushes fail with kClosed and
// pops drain what is left, then report closed. Items are moved in and out,
// never copied. A consumer that collects items in groups may ask not to be
// woken until `wake_at` items are queued (PopUntil's second form): pushes
// below that number wake nobody, which saves a thread wake-up per item.
//
// Threads: every method is safe from any thread. A wake threshold above one is
// meant for a queue with one consumer: the threshold is the queue's, not the waiter's.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <deque>
#include <optional>
#include <utility>
#include <vector>

#include "agent/core/mutex.h"

namespace tagrelay {

enum class PushResult { kOk, kFull, kClosed };

template <typename T>
class BoundedQueue {
 public:
  using Deadline = std::chrono::steady_clock::time_point;

  explicit BoundedQueue(size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}
  BoundedQueue(const BoundedQueue&) = delete;
  BoundedQueue& operator=(const BoundedQueue&) = delete;

  size_t capacity() const { return capacity_; }

  PushResult TryPush(T&& item) {
    MutexLock lock(&mu_);
    if (closed_) return PushResult::kClosed;
    if (items_.size() >= capacity_) return PushResult::kFull;
    items_.push_back(std::move(item));
    if (items_.size() >= wake_at_) not_empty_.Signal();
    return PushResult::kOk;
  }

  // Waits for space until `deadline`. On kFull or kClosed `item` is left untouched.
  PushResult PushUntil(T&& item, Deadline deadline) {
    MutexLock lock(&mu_);
    while (!closed_ && items_.size() >= capacity_) {
      if (!not_full_.WaitUntil(deadline) && items_.size() >= capacity_ && !closed_) {
        return PushResult::kFull;
      }
    }
    if (closed_) return PushResult::kClosed;
    items_.push_back(std::move(item));
    if (items_.size() >= wake_at_) not_empty_.Signal();
    return PushResult::kOk;
  }

  // Waits for space as long as it takes (or until closed).
  PushResult Push(T&& item) { return PushUntil(std::move(item), Deadline::max()); }

  // Waits until an item is there or `deadline` passes. nullopt on timeout, or
  // when the queue is closed and empty (check closed() to tell them apart).
  std::optional<T> PopUntil(Deadline deadline) { return PopUntil(deadline, 1); }

  // Waits until `wake_at` items are there (at least one), the queue is closed,
  // or `deadline` passes; then takes the first item if there is one. Pushes
  // meanwhile wake this waiter only once `wake_at` items are queued.
  std::optional<T> PopUntil(Deadline deadline, size_t wake_at) {
    MutexLock lock(&mu_);
    wake_at_ = std::clamp<size_t>(wake_at, 1, capacity_);
    while (items_.size() < wake_at_ && !closed_) {
      if (!not_empty_.WaitUntil(deadline) && std::chrono::steady_clock::now() >= deadline) break;
    }
    wake_at_ = 1;
    return TakeFront();
  }

  std::optional<T> Pop() { return PopUntil(Deadline::max()); }

  // Takes the first item if there is one, without waiting.
  std::optional<T> TryPop() {
    MutexLock lock(&mu_);
    return TakeFront();
  }

  // Moves up to `max` items into `out` without waiting; returns how many.
  size_t DrainInto(std::vector<T>& out, size_t max) {
    MutexLock lock(&mu_);
    size_t n = 0;
    while (n < max && !items_.empty()) {
      out.push_back(std::move(items_.front()));
      items_.pop_front();
      ++n;
    }
    if (n > 0) not_full_.SignalAll();
    return n;
  }

  void Close() {
    MutexLock lock(&mu_);
    closed_ = true;
    not_empty_.SignalAll();
    not_full_.SignalAll();
  }

  bool closed() const {
    MutexLock lock(&mu_);
    return closed_;
  }
  size_t size() const {
    MutexLock lock(&mu_);
    return items_.size();
  }

 private:
  std::optional<T> TakeFront() TR_REQUIRES(mu_) {
    if (items_.empty()) return std::nullopt;
    T item = std::move(items_.front());
    items_.pop_front();
    not_full_.Signal();
    return item;
  }

  const size_t capacity_;
  mutable Mutex mu_;
  CondVar not_empty_{&mu_};
  CondVar not_full_{&mu_};
  std::deque<T> items_ TR_GUARDED_BY(mu_);
  bool closed_ TR_GUARDED_BY(mu_) = false;
  size_t wake_at_ TR_GUARDED_BY(mu_) = 1;  // a push signals once this many items are queued
};

}  // namespace tagrelay
