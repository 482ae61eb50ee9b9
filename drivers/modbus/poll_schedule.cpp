#include "drivers/modbus/poll_schedule.h"

namespace tagrelay::modbus {

size_t PollSchedule::Add(MonoTime start, std::chrono::nanoseconds interval) {
  entries_.push_back(Entry{start, interval});
  return entries_.size() - 1;
}

size_t PollSchedule::Earliest() const {
  size_t best = 0;
  for (size_t i = 1; i < entries_.size(); ++i) {
    if (entries_[i].due < entries_[best].due) best = i;
  }
  return best;
}

uint64_t PollSchedule::Complete(size_t i, MonoTime now) {
  Entry& e = entries_[i];
  const auto interval = e.interval.count();
  const auto elapsed = (now - e.due).count();
  // Slots strictly between the deadline just served and `now` were missed.
  const int64_t missed = elapsed > 0 ? (elapsed + interval - 1) / interval - 1 : 0;
  e.due += std::chrono::nanoseconds(interval * (missed + 1));
  return static_cast<uint64_t>(missed);
}

}  // namespace tagrelay::modbus
