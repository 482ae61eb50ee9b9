// Worker watch: which of the agent's worker threads show no progress.
//
// Every worker beats a Heartbeat at least every kHeartbeatEvery while it is
// well, and at least once per unit of work (a device poll, a store commit, an
// uplink turn). A worker whose last beat is older than its stall limit is
// stalled: it is stuck in a call that does not return. The supervisor then
// stops confirming the systemd watchdog, which restarts the service.
//
// Threads: pure functions over heartbeats, which are atomics; any thread.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "agent/core/clock.h"
#include "agent/core/heartbeat.h"
#include "agent/status/status_model.h"

namespace tagrelay {

// The shortest stall limit: longer than any wait a well worker makes, and
// than a slow disk's commit or a slow DNS lookup at connect.
inline constexpr std::chrono::milliseconds kStallFloor{120'000};

struct WorkerBeat {
  std::string name;
  const Heartbeat* heartbeat = nullptr;
  std::chrono::milliseconds stall_after{kStallFloor};
};

// The state of each worker at `now`; one that never beat is measured from `started`.
std::vector<status::WorkerStatus> CheckWorkers(const std::vector<WorkerBeat>& workers, MonoTime now,
                                               MonoTime started);

}  // namespace tagrelay
