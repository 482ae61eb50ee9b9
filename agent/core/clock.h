// Clock: the only source of time for logic (schedules, deadlines, timestamps).
//
// Promise: mono() never goes backwards; wall_ms() is Unix time in milliseconds
// (UTC) and may jump when the system clock is set. Deadlines use mono(),
// acquisition timestamps use wall_ms().
//
// Threads: SystemClock and FakeClock are safe to call from any thread.
// FakeClock only moves when a test calls Advance() or SetWall().
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace tagrelay {

using MonoTime = std::chrono::steady_clock::time_point;
using Millis = std::chrono::milliseconds;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual MonoTime mono() const = 0;
  virtual int64_t wall_ms() const = 0;
};

class SystemClock final : public Clock {
 public:
  MonoTime mono() const override { return std::chrono::steady_clock::now(); }
  int64_t wall_ms() const override;
};

// The process-wide real clock (stateless, so sharing it is safe).
const Clock& RealClock();

class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t wall_start_ms = 1763800000000) : wall_ms_(wall_start_ms) {}

  MonoTime mono() const override { return MonoTime(std::chrono::nanoseconds(mono_ns_.load())); }
  int64_t wall_ms() const override { return wall_ms_.load(); }

  // Moves both clocks forward by `d`.
  void Advance(std::chrono::nanoseconds d) {
    mono_ns_ += d.count();
    wall_ms_ += std::chrono::duration_cast<Millis>(d).count();
  }
  // Sets the wall clock only (as when an operator or NTP sets the time).
  void SetWall(int64_t ms) { wall_ms_ = ms; }

 private:
  std::atomic<int64_t> mono_ns_{1'000'000'000};
  std::atomic<int64_t> wall_ms_;
};

}  // namespace tagrelay
