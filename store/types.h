// Store vocabulary shared by the writer and its readers.
//
// Threads: plain values.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "agent/core/reading.h"

namespace tagrelay::store {

enum class SyncMode { kNormal, kFull };

struct StoreOptions {
  std::string path;                                // the database file
  uint64_t max_bytes = 256ull << 20;               // bound on the database plus its WAL
  SyncMode sync = SyncMode::kNormal;               // kFull: every commit survives power loss
  size_t commit_rows = 1000;                       // group commit after this many rows ...
  std::chrono::milliseconds commit_interval{200};  // ... or this long after the first
  size_t queue_capacity = 1024;                    // batches waiting for the writer
  // Readings the writer holds in memory while the disk cannot take them (disk
  // full, I/O errors). Past this, the oldest are dropped and reported as lost.
  size_t max_memory_readings = 50000;
  // A poll's readings are stored in chunks of at most this many. The uplink
  // sends whole chunks, so this should not exceed its batch_max_readings.
  size_t max_chunk_readings = 250;
  std::string vfs;  // SQLite VFS to open the database with; empty: the default
  // Sequence numbers are reserved in blocks of this size in a file next to the
  // database (see SequenceReservations).
  int64_t sequence_block = 100000;
};

// What one commit added, for the store's readers.
struct CommitNews {
  std::vector<std::string> devices;  // devices that got new readings, each once
  bool events = false;               // some event record (alarm, counter, loss, ...) was added

  void AddDevice(const std::string& device) {
    if (std::find(devices.begin(), devices.end(), device) == devices.end()) {
      devices.push_back(device);
    }
  }
  // Adds what `other` reports.
  void Merge(const CommitNews& other) {
    events = events || other.events;
    for (const std::string& d : other.devices) AddDevice(d);
  }
};

// Event streams: records for the cloud that the store keeps until delivered.
// Each (stream, device) has its own sequence 1, 2, 3, ...; device "" is the
// gateway itself.
inline constexpr std::string_view kStreamEvents = "events";      // the gateway's: losses, resets
inline constexpr std::string_view kStreamAlarms = "alarms";      // per device
inline constexpr std::string_view kStreamCounters = "counters";  // per device

// "The broker acknowledged readings seq_first..seq_last of `device`." Marks
// the chunks that lie wholly in the range delivered.
struct DeliveryAck {
  std::string device;
  int64_t seq_first = 0;
  int64_t seq_last = 0;
};

// "These readings cannot be delivered": the chunks whose first reading lies in
// the range are deleted and reported as lost for `reason` (a stored chunk that
// no longer decodes, say).
struct DiscardReadings {
  std::string device;
  int64_t seq_first = 0;
  int64_t seq_last = 0;
  std::string reason;
};

// A record for an event stream; `body` is a JSON object with its fields. The
// store gives it the stream's next sequence number.
struct NewEvent {
  std::string stream;
  std::string device;
  int64_t ts_ms = 0;
  std::string body;
};

// "The broker acknowledged records seq_first..seq_last of (stream, device)."
struct EventAck {
  std::string stream;
  std::string device;
  int64_t seq_first = 0;
  int64_t seq_last = 0;
};

// What producers hand to the store writer, in arrival order.
using StoreItem = std::variant<ReadingBatch, DeliveryAck, NewEvent, EventAck, DiscardReadings>;

// A poll's readings with the sequence numbers the writer gave them: reading i
// has seq_first + i.
struct SequencedBatch {
  std::string device;
  int64_t seq_first = 0;
  std::vector<Reading> readings;
};

// A value of the writer's observers to keep across restarts (alarm states,
// counters), stored in the same transaction as the records it goes with.
struct StateUpdate {
  std::string key;
  std::string value;
};

// What the writer hands to the ring in one transaction.
using WriteItem =
    std::variant<SequencedBatch, DeliveryAck, NewEvent, EventAck, DiscardReadings, StateUpdate>;

// A reading as stored, with its sequence number.
struct StoredReading {
  int64_t seq = 0;
  std::string tag;
  int64_t ts_ms = 0;
  Value value;
  Quality quality = Quality::kGood;
  std::string error;
  bool chunk_end = false;  // the last reading of its chunk: a batch may end here
};

// A stored chunk of readings as it is kept in the store (chunk_codec.h):
// the readings seq_first .. seq_first + count - 1 of one device. The outbox
// reader hands out only chunks that decode and whose tag ids it knows the
// names of (TagNames), so that they can be encoded without further checks.
// About 12 bytes a reading, against about 130 for a StoredReading.
struct StoredChunk {
  int64_t seq_first = 0;
  int64_t count = 0;
  std::string data;

  int64_t seq_last() const { return seq_first + count - 1; }
};

// The names of the store's tag ids as a reader has learned them (a tag is
// never renamed, nor its id reused). Lookups by id are an index into a vector
// as long as the ids are about as many as the names (ids far beyond go to a
// map), so that memory follows the number of tags, not the highest id.
class TagNames {
 public:
  // nullptr if the id was never added.
  const std::string* Find(int64_t id) const {
    if (id > 0 && static_cast<uint64_t>(id) < dense_.size() && known_[static_cast<size_t>(id)]) {
      return &dense_[static_cast<size_t>(id)];
    }
    if (sparse_.empty()) return nullptr;
    auto it = sparse_.find(id);
    return it == sparse_.end() ? nullptr : &it->second;
  }
  // REQUIRES: Find(id) == nullptr.
  void Add(int64_t id, std::string name) {
    if (id > 0 && static_cast<uint64_t>(id) <= 2 * count_ + 4096) {
      const auto i = static_cast<size_t>(id);
      if (i >= dense_.size()) {
        dense_.resize(i + 1);
        known_.resize(i + 1);
      }
      if (!known_[i]) ++count_;
      dense_[i] = std::move(name);
      known_[i] = true;
    } else if (sparse_.insert_or_assign(id, std::move(name)).second) {
      ++count_;
    }
  }

 private:
  std::vector<std::string> dense_;
  std::vector<bool> known_;
  std::unordered_map<int64_t, std::string> sparse_;
  uint64_t count_ = 0;
};

struct StoredEvent {
  int64_t seq = 0;
  int64_t ts_ms = 0;
  std::string body;
};

// Why readings were lost, as reported in readings_lost events.
inline constexpr const char* kLossRingFull = "ring_full";      // evicted to keep max_bytes
inline constexpr const char* kLossMemoryFull = "memory_full";  // dropped while the disk failed
inline constexpr const char* kLossStoreLost = "store_lost";    // the database was lost or corrupt
inline constexpr const char* kLossCorrupt = "corrupt";         // a stored chunk did not decode

}  // namespace tagrelay::store
