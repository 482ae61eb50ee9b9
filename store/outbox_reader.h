// OutboxReader: a read-only view of the ring for the uplink and for status:
// which devices and event streams have undelivered records, and those records
// in sequence order.
//
// Promise: sees only committed rows (a WAL snapshot per query), never blocks
// the writer, never writes. Readings come in whole chunks (chunk_end marks the
// last reading of each), so that a batch built from them can end on a chunk
// boundary. A chunk that no longer decodes is never turned into readings: it
// is reported (BadChunk) so that the caller can have it discarded as lost.
//
// Threads: owned by one thread (the uplink's, or the status thread's); not thread safe.
#pragma once

#include <cstdint>
#include <optional>
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

struct StreamBacklog {
  std::string stream;
  std::string device;  // "" for the gateway's own stream
  int64_t first_undelivered = 0;
  int64_t last_seq = 0;
};

// A stored chunk that does not decode.
struct BadChunk {
  int64_t seq_first = 0;
  int64_t count = 0;
  std::string why;
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
  std::vector<Device> devices;  // in name order (byte-wise, as std::string compares)
};

class OutboxReader {
 public:
  // Opens the database, which the writer must already have created and migrated.
  static Result<OutboxReader> Open(const std::string& path);

  // Every device the store knows, with its backlog bounds.
  Result<std::vector<DeviceBacklog>> Devices();

  // Appends to `out` the undelivered readings of device `device_id` whose
  // chunks start at from_seq..to_seq, in sequence order: whole chunks, until
  // `limit` readings are reached (at least one chunk). If the first chunk does
  // not decode, returns Corruption and describes it in `*bad`; a later bad
  // chunk ends the fetch early with the good ones.
  Status FetchUndelivered(int64_t device_id, int64_t from_seq, int64_t to_seq, size_t limit,
                          std::vector<StoredReading>& out, BadChunk* bad = nullptr);

  // As FetchUndelivered(), but appends the chunks as they are stored (each one
  // checked: it decodes, and tag_names() knows all of its tag ids), for an
  // encoder that reads them in place. Same order, limits and bad chunks.
  Status FetchChunks(int64_t device_id, int64_t from_seq, int64_t to_seq, size_t limit,
                     std::vector<StoredChunk>& out, BadChunk* bad = nullptr);
  // The names of every tag id in the chunks fetched so far.
  const TagNames& tag_names() const { return tag_names_; }

  // Every event stream the store knows, with its backlog bounds.
  Result<std::vector<StreamBacklog>> Streams();

  // Appends up to `limit` undelivered records of (stream, device) with
  // from_seq <= seq <= to_seq, in sequence order.
  Status FetchEvents(const std::string& stream, const std::string& device, int64_t from_seq,
                     int64_t to_seq, size_t limit, std::vector<StoredEvent>& out);

  // Counts undelivered readings (all devices).
  Result<int64_t> CountUndelivered();

  // The backlog at a glance (two aggregate queries, prepared at the first call; for status,
  // not the hot path).
  Result<BacklogSummary> Summary();

 private:
  explicit OutboxReader(Db db) : db_(std::move(db)) {}
  Result<const std::string*> TagName(int64_t tag_id);
  // Checks a stored chunk: it decodes and all of its tags have names.
  Status CheckChunk(std::string_view data, int64_t count);

  Db db_;
  Stmt devices_, fetch_, tag_, streams_, events_;
  std::optional<Stmt> summary_devices_, summary_totals_;  // for Summary() only
  TagNames tag_names_;
};

}  // namespace tagrelay::store
