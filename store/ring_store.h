// RingStore: the writer's connection to the SQLite ring. It turns batches of
// readings into rows with per-device sequence numbers and records acks.
//
// Promise: WriteGroup() applies a whole group of items in one transaction, or
// none of it. Sequence numbers of a device are unbroken (1, 2, 3, ...) and are
// never handed out twice: the counter is persisted in the same transaction as
// the rows. The database runs in WAL mode so that readers on other
// connections never block the writer.
//
// Threads: owned by the store writer thread; not thread safe.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "agent/core/status.h"
#include "store/sqlite.h"
#include "store/types.h"

namespace tagrelay::store {

class RingStore {
 public:
  // Opens or creates the database at options.path and migrates it.
  static Result<std::unique_ptr<RingStore>> Open(const StoreOptions& options);

  // Writes every item of `group` in one transaction (readings get their
  // sequence numbers; acks mark rows delivered). On error nothing was written.
  Status WriteGroup(const std::vector<StoreItem>& group);

  // The next sequence number `device` will get (1 for a device never seen).
  Result<int64_t> NextSeq(const std::string& device);

 private:
  struct DeviceEntry {
    int64_t id = 0;
    int64_t next_seq = 1;
    std::unordered_map<std::string, int64_t> tag_ids;
  };

  explicit RingStore(Db db) : db_(std::move(db)) {}
  Status Prepare();
  Result<DeviceEntry*> Device(const std::string& name);
  Result<int64_t> TagId(DeviceEntry& d, const std::string& tag);
  Status Append(const ReadingBatch& batch);
  Status MarkDelivered(const DeliveryAck& ack);

  Db db_;
  Stmt find_device_, insert_device_, update_seq_, find_tag_, insert_tag_, insert_reading_,
      mark_delivered_;
  // A cache of the committed state; dropped after a failed transaction.
  std::unordered_map<std::string, DeviceEntry> devices_;
};

}  // namespace tagrelay::store
