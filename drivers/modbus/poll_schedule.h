// PollSchedule: when each device of a poller is due next.
//
// Promise: deadlines stay on the grid start + k * interval, so the schedule
// never drifts however long a poll takes. A poll that ends after its next slot
// has overrun: the slots it covered are skipped (counted, never polled late in a
// burst) and the next deadline is the first slot at or after its end.
//
// Threads: owned by one poller thread. Driven by times passed in, so tests run
// it on a FakeClock without waiting.
#pragma once

#include <cstdint>
#include <vector>

#include "agent/core/clock.h"

namespace tagrelay::modbus {

class PollSchedule {
 public:
  // Adds an entry first due at `start`, then every `interval` (> 0); returns its index.
  size_t Add(MonoTime start, std::chrono::nanoseconds interval);

  size_t size() const { return entries_.size(); }
  MonoTime next_due(size_t i) const { return entries_[i].due; }

  // Index of the entry due first (ties: the lowest index). REQUIRES: size() > 0.
  size_t Earliest() const;

  // Records that entry `i` was polled and the poll ended at `now`. Returns the
  // number of slots it missed (0 unless the poll overran its interval).
  uint64_t Complete(size_t i, MonoTime now);

 private:
  struct Entry {
    MonoTime due;
    std::chrono::nanoseconds interval;
  };
  std::vector<Entry> entries_;
};

}  // namespace tagrelay::modbus
