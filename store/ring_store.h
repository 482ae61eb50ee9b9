// RingStore: the writer's connection to the SQLite ring: readings in chunks
// (one row per poll, at most max_chunk_readings each, see chunk_codec.h) with
// their per-device sequence numbers, records of the event streams, and their
// delivery state.
//
// Promise:
// - WriteGroup() applies a whole group in one transaction, or none of it.
// - Sequence numbers (of readings per device, of records per stream and
//   device) are never handed out twice: counters are persisted with the rows,
//   and high-water marks in a file next to the database (SequenceReservations)
//   keep numbers unique when the database itself is lost.
// - The database plus its WAL stay within max_bytes: the database is capped
//   (PRAGMA max_page_count) below max_bytes minus a WAL budget, the WAL is
//   checkpointed and truncated to its budget. When the ring nears its cap,
//   delivered chunks and records go first, then the oldest undelivered chunks;
//   every undelivered reading that goes is counted per device and reported in
//   a readings_lost record (device, seq range, count, reason) on the gateway's
//   events stream. Chunks the uplink holds (DeliveryHolds: fetched, or sent
//   and not yet acked) go last, so that what is being delivered is not
//   reported lost.
// - A chunk is marked delivered only when one ack covers all of its readings.
//   Its row is never rewritten: the outbox table lists the undelivered chunks,
//   the acked table the delivered ones still kept (schema.cpp); an ack moves
//   the chunk's entry from one to the other.
// - Open() refuses a database newer than this binary without touching it, and
//   moves a corrupt one (it fails to open or PRAGMA quick_check) aside as
//   corrupt-<time>.db, keeping the newest three, then starts afresh.
//
// Threads: owned by the store writer thread; not thread safe.
#pragma once

#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "agent/core/clock.h"
#include "agent/core/status.h"
#include "store/delivery_holds.h"
#include "store/seq_reservations.h"
#include "store/sqlite.h"
#include "store/types.h"

namespace tagrelay::store {

// The body of a readings_lost record on the gateway's events stream.
std::string LossRecord(int64_t ts_ms, std::string_view device, int64_t first, int64_t last,
                       int64_t count, std::string_view reason);

struct OpenReport {
  bool created = false;     // the database is new (first start, or after a quarantine)
  std::string quarantined;  // where a corrupt database was moved; empty if none
  std::string corruption;   // what was wrong with it
};

struct RingUsage {
  uint64_t max_bytes = 0;
  uint64_t db_bytes = 0;    // the database file
  uint64_t wal_bytes = 0;   // its WAL file
  uint64_t used_bytes = 0;  // pages in use (the rest of the file is free pages)
  int64_t readings = 0;
  int64_t chunks = 0;
  int64_t events = 0;
  uint64_t evicted_undelivered = 0;  // readings lost to the bound since the store opened
};

class RingStore {
 public:
  // `clock` stamps the records the store itself raises (readings_lost).
  static Result<std::unique_ptr<RingStore>> Open(const StoreOptions& options,
                                                 OpenReport* report = nullptr,
                                                 const Clock& clock = RealClock());

  // Where a device's numbering continues. `lost_below` > 0 says the store knew
  // the device once and lost its database: readings below it may be lost. If
  // the database cannot be read, numbering continues above the device's mark.
  struct DeviceStart {
    int64_t next_seq = 1;
    int64_t lost_below = 0;
  };
  DeviceStart StartDevice(const std::string& device);

  // Writes every item of `group` in one transaction, making room first if the
  // ring is near its cap. On error nothing of the group was written.
  Status WriteGroup(const std::vector<WriteItem>& group);

  RingUsage Usage() const;
  // Whether event records were added since the last call, by the groups
  // written or by the store itself (the loss records of an eviction or a
  // discard); clears the mark.
  bool TakeEventsAdded() { return std::exchange(events_added_, false); }

  // The ranges the uplink holds (not owned; may be null): eviction passes over
  // them while it can, and an ack committed here releases its range. Set
  // before the first WriteGroup.
  void SetHolds(DeliveryHolds* holds) { holds_ = holds; }
  const std::string& path() const { return path_; }

  // The state the writer's observers kept (StateUpdate), key -> value.
  Result<std::map<std::string, std::string>> LoadState();
  // The same, read from the database at `path` without opening it for writing
  // (Db::OpenImmutable): for a writer whose store cannot be opened. NotFound
  // if there is no database.
  static Result<std::map<std::string, std::string>> ReadState(const std::string& path);

  // How max_bytes is shared: the WAL's budget (checkpointed at half of it and
  // truncated to it) and the database's page cap. The writer's connection runs
  // with LimitPragmas(); the store benchmark's raw-SQLite ceiling uses the same.
  struct Limits {
    uint64_t wal_bytes = 0;
    uint64_t cap_pages = 0;
    uint64_t checkpoint_pages = 0;
  };
  static Limits LimitsFor(uint64_t max_bytes, uint64_t page_size);
  static std::string LimitPragmas(const Limits& limits);

 private:
  struct DeviceEntry {
    int64_t id = 0;
    int64_t next_seq = 1;
    std::unordered_map<std::string, int64_t> tag_ids;
    // The tags of the last poll in their order, as entries of tag_ids (whose
    // elements never move, and are never erased): a device's polls list their
    // tags in the same order, so the i-th reading's tag is usually found here
    // by one string compare instead of a hash lookup.
    std::vector<const std::pair<const std::string, int64_t>*> poll_order;  // null: none yet
  };

  RingStore(Db db, const StoreOptions& options, SequenceReservations reservations,
            const Clock& clock);
  Status Prepare();
  Status LoadCounts();
  Result<DeviceEntry*> Device(const std::string& name, int64_t first_seq);
  using TagEntry = std::pair<const std::string, int64_t>;  // an element of DeviceEntry::tag_ids
  // The tag's entry (name, id), looked up, else added to the store.
  Result<const TagEntry*> TagId(DeviceEntry& d, const std::string& tag);
  Result<int64_t*> StreamNext(const std::string& stream, const std::string& device);

  // Transactions: Commit() first makes the sequence marks cover every number
  // handed out; Rollback() also drops the caches.
  Status Begin();
  Status Commit();
  void Rollback();
  Status ApplyInTransaction(const std::vector<WriteItem>& group);
  // Between them, outbox and acked list every chunk once. A database changed
  // by another program may not: a chunk listed nowhere would be neither sent
  // nor evicted, an entry without its chunk would stay undelivered forever.
  // Checked at open (two counts); when they disagree, repaired and logged.
  Status CheckDeliveryLists();
  Status Apply(const std::vector<WriteItem>& group);
  Status Insert(const SequencedBatch& batch);
  Status InsertChunk(DeviceEntry& d, int64_t seq_first, std::span<const Reading> readings,
                     std::span<const int64_t> tag_ids);
  Status InsertEvent(const NewEvent& event);
  Status MarkDelivered(const DeliveryAck& ack);
  Status MarkEventsDelivered(const EventAck& ack);
  Status Discard(const DiscardReadings& d);

  // Eviction: when `need_bytes` more would pass the high-water mark (or when
  // forced), deletes delivered chunks and records, then the oldest undelivered
  // chunks, in one transaction, down to the low-water mark.
  Status MakeRoom(uint64_t need_bytes, bool force);
  // Deletes the undelivered chunks that `select` (bound; id, device_id,
  // device, seq_first, count) lists, and counts and reports their readings as
  // lost for `reason`, one record per run of consecutive seqs. Returns how
  // many chunks went.
  Result<int64_t> DropUndelivered(Stmt& select, const char* reason);
  void ShrinkFile();
  void AfterCommit();
  uint64_t ChunkBytes() const;
  bool AtCap() const;  // the database has grown to its page cap
  // Pages in use as of the last CountPages(): counted at open, inside every
  // transaction just before it commits, and after a rollback or a shrink, so
  // that a commit costs no read transaction of its own to learn it.
  uint64_t UsedPages() const { return used_pages_; }
  void CountPages();
  uint64_t FileBytes(const std::string& path) const;

  Db db_;
  const StoreOptions options_;
  const std::string path_;
  SequenceReservations reservations_;
  const Clock& clock_;
  bool created_ = false;
  uint64_t page_size_ = 4096;
  uint64_t cap_pages_ = 0;  // the database's page cap
  uint64_t wal_limit_ = 0;  // the WAL's share of max_bytes
  int64_t readings_ = 0;    // kept in step with inserts and deletes
  int64_t chunks_ = 0;
  int64_t events_ = 0;
  uint64_t evicted_undelivered_ = 0;
  uint64_t used_pages_ = 0;
  bool events_added_ = false;
  DeliveryHolds* holds_ = nullptr;

  Stmt find_device_, insert_device_, update_seq_, find_tag_, insert_tag_, insert_chunk_,
      insert_outbox_, ack_chunks_, mark_delivered_, find_stream_, insert_stream_, update_stream_,
      insert_event_, mark_events_, add_lost_, page_count_, freelist_count_, delete_delivered_,
      forget_acked_, delete_delivered_events_, undelivered_oldest_, undelivered_range_,
      delete_chunk_, delete_outbox_, clear_held_, insert_held_, put_state_, begin_, commit_,
      rollback_;
  // Caches of committed state; dropped after a failed transaction.
  std::unordered_map<std::string, DeviceEntry> devices_;
  std::map<std::pair<std::string, std::string>, int64_t> streams_;  // next seq per stream
};

}  // namespace tagrelay::store
