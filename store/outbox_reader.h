// OutboxReader: a read-only view of the ring for the uplink: which devices
// have undelivered readings, and those readings in sequence order.
//
// Promise: sees only committed rows (WAL snapshot per query), never blocks the
// writer, never writes.
//
// Threads: owned by the uplink thread; not thread safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "agent/core/status.h"
#include "store/sqlite.h"
#include "store/types.h"

namespace tagrelay::store {

struct DeviceBacklog {
  int64_t id = 0;
  std::string name;
  int64_t first_undelivered = 0;  // lowest undelivered seq; 0 if everything is delivered
  int64_t last_seq = 0;           // highest seq handed out; 0 if none yet
};

// What the store holds that the cloud has not acknowledged yet, for status.
struct BacklogSummary {
  int64_t undelivered_readings = 0;
  int64_t oldest_undelivered_ts_ms = 0;  // acquisition time; 0 if nothing is undelivered
  int64_t undelivered_events = 0;
  struct Device {
    std::string name;
    int64_t undelivered = 0;
    int64_t lost = 0;  // readings lost to the store's bound, since the device was first seen
  };
  std::vector<Device> devices;
};

class OutboxReader {
 public:
  // Opens the database, which the writer must already have created and migrated.
  static Result<OutboxReader> Open(const std::string& path);

  // Every device the store knows, with its backlog bounds.
  Result<std::vector<DeviceBacklog>> Devices();

  // Appends to `out` up to `limit` undelivered readings of device `device_id`
  // with from_seq <= seq <= to_seq, in sequence order.
  Status FetchUndelivered(int64_t device_id, int64_t from_seq, int64_t to_seq, size_t limit,
                          std::vector<StoredReading>& out);

  // Counts undelivered readings (all devices).
  Result<int64_t> CountUndelivered();

  // The backlog at a glance (a few aggregate queries; for status, not the hot path).
  Result<BacklogSummary> Summary();

 private:
  explicit OutboxReader(Db db) : db_(std::move(db)) {}

  Db db_;
  Stmt devices_, fetch_;
};

}  // namespace tagrelay::store
