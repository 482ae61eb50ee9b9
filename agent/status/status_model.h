// StatusSnapshot: what the agent shows local operators (`tagrelay status`, the
// local web page, /metrics): one consistent sample of its workers' counters.
//
// Promise: plain values, complete in themselves; rendering a snapshot needs
// nothing else. Ages are computed when the snapshot is taken; rates are the
// latest measured, over about the last second.
//
// Threads: plain values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tagrelay::status {

struct DeviceStatus {
  std::string id;
  std::string bus;
  std::string link;                         // "ok", "degraded", "down"
  std::optional<int64_t> last_good_age_ms;  // none: no good reading yet
  double poll_rate = 0;                     // polls per second, measured
  uint64_t polls = 0;
  uint64_t requests = 0;
  uint64_t failed_requests = 0;
  uint64_t retries = 0;
  uint64_t timeouts = 0;
  uint64_t crc_errors = 0;
  uint64_t bad_frames = 0;
  uint64_t exceptions = 0;
  uint64_t overruns = 0;
  uint64_t dropped_batches = 0;
  int64_t backlog = 0;  // readings in the store not yet acknowledged by the broker
  int64_t lost = 0;     // readings lost to the store's bound
};

struct StoreStatus {
  uint64_t max_bytes = 0;
  uint64_t db_bytes = 0;
  uint64_t wal_bytes = 0;
  int64_t readings = 0;
  uint64_t evicted = 0;  // undelivered readings lost to the bound since the store opened
  uint64_t rows_committed = 0;
  uint64_t commits = 0;
  uint64_t failed_commits = 0;
  uint64_t lost_in_memory = 0;
  bool failing = false;
  bool open = true;        // false: the store could not be opened, readings wait in memory
  uint64_t in_memory = 0;  // readings taken and not yet committed
  // The backlog, sampled less often than the counters (it takes a query).
  bool backlog_known = false;
  int64_t backlog_readings = 0;
  std::optional<int64_t> oldest_unsent_age_ms;  // none: nothing unsent
  int64_t backlog_events = 0;
};

struct UplinkStatus {
  bool connected = false;
  std::vector<std::string> brokers;
  uint64_t connects = 0;
  uint64_t connection_failures = 0;
  uint64_t batches_sent = 0;
  uint64_t batches_refused = 0;
  uint64_t readings_sent = 0;
  uint64_t readings_acked = 0;
  uint64_t payload_bytes_sent = 0;
  uint64_t inflight = 0;
  uint64_t devices_held = 0;
};

// An alarm that is active now (raised and not cleared).
struct ActiveAlarm {
  std::string id;
  std::string device;
  std::string tag;
  std::string severity;
  std::string message;
  int64_t since_ms = 0;  // Unix ms when it was raised
};

struct WorkerStatus {
  std::string name;                // "poller rs485-1", "store writer", "uplink", "status"
  std::optional<int64_t> idle_ms;  // since its last heartbeat; none: not started yet
  bool stalled = false;
};

struct StatusSnapshot {
  std::string gateway;
  std::string version;
  std::string config_digest;
  std::string state;     // "running", "reloading", "stopping"
  int64_t taken_ms = 0;  // Unix ms
  int64_t uptime_ms = 0;
  std::vector<DeviceStatus> devices;
  StoreStatus store;
  UplinkStatus uplink;
  std::vector<ActiveAlarm> alarms;
  std::vector<WorkerStatus> workers;

  size_t DevicesOk() const;
};

}  // namespace tagrelay::status
