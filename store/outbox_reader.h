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

 private:
  explicit OutboxReader(Db db) : db_(std::move(db)) {}

  Db db_;
  Stmt devices_, fetch_;
};

}  // namespace tagrelay::store
