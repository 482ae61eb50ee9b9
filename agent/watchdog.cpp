#include "agent/watchdog.h"

namespace tagrelay {

std::vector<status::WorkerStatus> CheckWorkers(const std::vector<WorkerBeat>& workers, MonoTime now,
                                               MonoTime started) {
  std::vector<status::WorkerStatus> out;
  out.reserve(workers.size());
  for (const WorkerBeat& w : workers) {
    status::WorkerStatus s;
    s.name = w.name;
    const std::optional<MonoTime> last = w.heartbeat->last();
    const MonoTime since = last.value_or(started);
    const auto idle = std::chrono::duration_cast<std::chrono::milliseconds>(now - since);
    if (last) s.idle_ms = std::max<int64_t>(idle.count(), 0);
    s.stalled = idle > w.stall_after;
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace tagrelay
