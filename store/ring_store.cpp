#include "store/ring_store.h"

#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <map>
#include <optional>
#include <type_traits>

#include "agent/core/json_writer.h"
#include "agent/core/log.h"
#include "store/chunk_codec.h"
#include "store/schema.h"

namespace tagrelay::store {
namespace {

constexpr size_t kCorruptCopiesKept = 3;
constexpr double kHighWater = 0.90;  // start evicting above this share of the cap ...
constexpr double kLowWater = 0.75;   // ... down to this share
constexpr uint64_t kMinChunkBytes = 32;

// The key of a stream's sequence in the marks file; device names cannot
// contain '/', so these never meet a device's own key (its name).
std::string StreamKey(const std::string& stream, const std::string& device) {
  return stream + "/" + device;
}

std::string DirOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash == 0 ? 1 : slash);
}

std::string MarksPath(const std::string& db_path) { return DirOf(db_path) + "/sequence.marks"; }

bool Exists(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0;
}

// Moves a corrupt database (and its WAL) aside as corrupt-<UTC time>.db and
// keeps only the newest kCorruptCopiesKept of those, so that repeated
// corruption cannot fill the disk.
Status Quarantine(const std::string& path, std::string* moved_to) {
  char stamp[32];
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
  const std::string dir = DirOf(path);
  std::string target = dir + "/corrupt-" + stamp + ".db";
  for (int i = 1; Exists(target); ++i)
    target = dir + "/corrupt-" + stamp + "-" + std::to_string(i) + ".db";
  if (rename(path.c_str(), target.c_str()) != 0) {
    return Status::IOError("move corrupt database " + path + " aside: " + std::strerror(errno));
  }
  if (Exists(path + "-wal")) rename((path + "-wal").c_str(), (target + "-wal").c_str());
  unlink((path + "-shm").c_str());
  *moved_to = target;

  std::vector<std::string> copies;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.starts_with("corrupt-") && name.ends_with(".db")) copies.push_back(e.path().string());
  }
  std::sort(copies.begin(), copies.end());
  while (copies.size() > kCorruptCopiesKept) {
    unlink(copies.front().c_str());
    unlink((copies.front() + "-wal").c_str());
    copies.erase(copies.begin());
  }
  return Status::Ok();
}

Result<Db> OpenChecked(const StoreOptions& o, bool* created) {
  struct stat st {};
  *created = stat(o.path.c_str(), &st) != 0 || st.st_size == 0;
  Result<Db> db = Db::Open(o.path, /*create=*/true, /*read_only=*/false, o.vfs);
  if (!db.ok()) return db.status();
  Db& d = *db;
  TR_RETURN_IF_ERROR(d.Exec("PRAGMA busy_timeout = 5000"));
  if (*created) {
    // Must be set before the first table exists; lets the file shrink after eviction.
    TR_RETURN_IF_ERROR(d.Exec("PRAGMA auto_vacuum = INCREMENTAL"));
  } else {
    Result<std::string> check = d.QueryText("PRAGMA quick_check(1)");
    if (!check.ok()) return check.status().WithContext("quick_check");
    if (*check != "ok") return Status::Corruption("quick_check: " + *check);
  }
  Result<std::string> mode = d.QueryText("PRAGMA journal_mode = WAL");
  if (!mode.ok()) return mode.status().WithContext("enable WAL");
  if (*mode != "wal") return Status::IOError("enable WAL: journal_mode stayed " + *mode);
  TR_RETURN_IF_ERROR(d.Exec(o.sync == SyncMode::kFull ? "PRAGMA synchronous = FULL"
                                                      : "PRAGMA synchronous = NORMAL"));
  TR_RETURN_IF_ERROR(Migrate(d));
  return db;
}

}  // namespace

std::string LossRecord(int64_t ts_ms, std::string_view device, int64_t first, int64_t last,
                       int64_t count, std::string_view reason) {
  std::string body;
  JsonWriter w(&body);
  w.BeginObject();
  w.Key("kind").String("readings_lost");
  w.Key("ts").Int(ts_ms);
  w.Key("device").String(device);
  w.Key("seq_first").Int(first);
  w.Key("seq_last").Int(last);
  if (count > 0) w.Key("count").Int(count);
  w.Key("reason").String(reason);
  w.EndObject();
  return body;
}

Result<std::unique_ptr<RingStore>> RingStore::Open(const StoreOptions& options, OpenReport* report,
                                                   const Clock& clock) {
  OpenReport local;
  OpenReport& rep = report != nullptr ? *report : local;
  Result<Db> db = OpenChecked(options, &rep.created);
  if (!db.ok() && db.status().code() == StatusCode::kCorruption) {
    rep.corruption = db.status().message();
    TR_RETURN_IF_ERROR(Quarantine(options.path, &rep.quarantined));
    Log(LogLevel::kError, "store",
        "the database was corrupt (" + rep.corruption + "); moved it to " + rep.quarantined +
            " and started an empty store");
    db = OpenChecked(options, &rep.created);
  }
  if (!db.ok()) return db.status().WithContext("open store " + options.path);

  Result<SequenceReservations> marks =
      SequenceReservations::Load(MarksPath(options.path), options.sequence_block);
  if (!marks.ok()) {
    // The database's own counters are authoritative while it exists; the
    // marks are rebuilt from them below.
    Log(LogLevel::kWarning, "store",
        marks.status().message() + "; rebuilding it from the database");
    marks = SequenceReservations::Empty(MarksPath(options.path), options.sequence_block);
  }
  std::unique_ptr<RingStore> store(
      new RingStore(std::move(db).value(), options, std::move(marks).value(), clock));
  store->created_ = rep.created;
  TR_RETURN_IF_ERROR(store->Prepare());
  TR_RETURN_IF_ERROR(store->LoadCounts());
  TR_RETURN_IF_ERROR(store->CheckDeliveryLists());
  store->CountPages();

  // The marks must cover whatever the database already holds.
  std::map<std::string, int64_t> last;
  for (const char* sql : {"SELECT name, next_seq FROM devices",
                          "SELECT stream || '/' || device, next_seq FROM streams"}) {
    Result<Stmt> all = Stmt::Prepare(store->db_, sql);
    if (!all.ok()) return all.status();
    for (;;) {
      Result<bool> row = all->Step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      last[std::string(all->ColumnText(0))] = all->ColumnInt(1) - 1;
    }
  }
  TR_RETURN_IF_ERROR(store->reservations_.Cover(last));
  return store;
}

RingStore::RingStore(Db db, const StoreOptions& options, SequenceReservations reservations,
                     const Clock& clock)
    : db_(std::move(db)),
      options_(options),
      path_(options.path),
      reservations_(std::move(reservations)),
      clock_(clock) {}

Status RingStore::Prepare() {
  // The uplink's held ranges, copied in for each eviction (connection-private).
  TR_RETURN_IF_ERROR(
      db_.Exec("CREATE TEMP TABLE IF NOT EXISTS held (device_id INTEGER NOT NULL, "
               "first INTEGER NOT NULL, last INTEGER NOT NULL)"));
  struct {
    Stmt* stmt;
    const char* sql;
  } const all[] = {
      {&find_device_, "SELECT id, next_seq FROM devices WHERE name = ?1"},
      {&insert_device_, "INSERT INTO devices (name, next_seq) VALUES (?1, ?2)"},
      {&update_seq_, "UPDATE devices SET next_seq = ?2 WHERE id = ?1"},
      {&find_tag_, "SELECT id FROM tags WHERE device_id = ?1 AND name = ?2"},
      {&insert_tag_, "INSERT INTO tags (device_id, name) VALUES (?1, ?2)"},
      {&insert_chunk_,
       "INSERT INTO chunks (device_id, seq_first, count, ts, data) VALUES (?1, ?2, ?3, ?4, ?5)"},
      {&insert_outbox_,
       "INSERT INTO outbox (device_id, seq_first, count, ts, chunk_id) "
       "VALUES (?1, ?2, ?3, ?4, last_insert_rowid())"},
      // An ack moves the entries of the chunks it covers whole from outbox to acked.
      {&ack_chunks_,
       "INSERT INTO acked (chunk_id) SELECT chunk_id FROM outbox WHERE device_id = ?1 AND "
       "seq_first BETWEEN ?2 AND ?3 AND seq_first + count - 1 <= ?3"},
      {&mark_delivered_,
       "DELETE FROM outbox WHERE device_id = ?1 AND seq_first BETWEEN ?2 AND ?3 AND "
       "seq_first + count - 1 <= ?3"},
      {&find_stream_, "SELECT next_seq FROM streams WHERE stream = ?1 AND device = ?2"},
      {&insert_stream_,
       "INSERT INTO streams (stream, device, next_seq) VALUES (?1, ?2, ?3) "
       "ON CONFLICT (stream, device) DO UPDATE SET next_seq = excluded.next_seq"},
      {&insert_event_,
       "INSERT INTO events (stream, device, seq, ts, body) VALUES (?1, ?2, ?3, ?4, ?5)"},
      {&mark_events_,
       "UPDATE events SET delivered = 1 WHERE stream = ?1 AND device = ?2 AND delivered = 0 "
       "AND seq BETWEEN ?3 AND ?4"},
      {&add_lost_, "UPDATE devices SET lost = lost + ?2 WHERE id = ?1"},
      {&begin_, "BEGIN IMMEDIATE"},
      {&commit_, "COMMIT"},
      {&rollback_, "ROLLBACK"},
      {&page_count_, "PRAGMA page_count"},
      {&freelist_count_, "PRAGMA freelist_count"},
      {&delete_delivered_,
       "DELETE FROM chunks WHERE id IN "
       "(SELECT chunk_id FROM acked ORDER BY chunk_id LIMIT ?1) RETURNING count"},
      {&forget_acked_,
       "DELETE FROM acked WHERE chunk_id IN "
       "(SELECT chunk_id FROM acked ORDER BY chunk_id LIMIT ?1)"},
      {&delete_delivered_events_,
       "DELETE FROM events WHERE id IN "
       "(SELECT id FROM events WHERE delivered = 1 ORDER BY id LIMIT ?1)"},
      {&undelivered_oldest_,
       // ?2 = 1: skip chunks that overlap a held range (see DeliveryHolds).
       "SELECT c.id, c.device_id, d.name, c.seq_first, c.count FROM chunks c "
       "JOIN devices d ON d.id = c.device_id WHERE EXISTS (SELECT 1 FROM outbox o WHERE "
       "o.device_id = c.device_id AND o.seq_first = c.seq_first AND o.chunk_id = c.id) "
       "AND (?2 = 0 OR NOT EXISTS "
       "(SELECT 1 FROM temp.held h WHERE h.device_id = c.device_id "
       "AND h.first <= c.seq_first + c.count - 1 AND h.last >= c.seq_first)) "
       "ORDER BY c.id LIMIT ?1"},
      {&undelivered_range_,
       "SELECT o.chunk_id, o.device_id, d.name, o.seq_first, o.count FROM outbox o "
       "JOIN devices d ON d.id = o.device_id WHERE o.device_id = ?1 "
       "AND o.seq_first BETWEEN ?2 AND ?3"},
      {&delete_chunk_, "DELETE FROM chunks WHERE id = ?1"},
      {&delete_outbox_, "DELETE FROM outbox WHERE device_id = ?1 AND seq_first = ?2"},
      {&clear_held_, "DELETE FROM temp.held"},
      {&insert_held_,
       "INSERT INTO temp.held (device_id, first, last) SELECT id, ?2, ?3 FROM devices "
       "WHERE name = ?1"},
      {&put_state_,
       "INSERT INTO state (key, value) VALUES (?1, ?2) "
       "ON CONFLICT (key) DO UPDATE SET value = excluded.value"},
  };
  for (const auto& s : all) {
    Result<Stmt> st = Stmt::Prepare(db_, s.sql);
    if (!st.ok()) return st.status();
    *s.stmt = std::move(st).value();
  }
  Result<int64_t> page_size = db_.QueryInt("PRAGMA page_size");
  if (!page_size.ok()) return page_size.status();
  page_size_ = static_cast<uint64_t>(*page_size);
  const Limits limits = LimitsFor(options_.max_bytes, page_size_);
  wal_limit_ = limits.wal_bytes;
  cap_pages_ = limits.cap_pages;
  return db_.Exec(LimitPragmas(limits));
}

RingStore::Limits RingStore::LimitsFor(uint64_t max_bytes, uint64_t page_size) {
  Limits l;
  l.wal_bytes = std::clamp<uint64_t>(max_bytes / 8, 256 << 10, 64 << 20);
  l.cap_pages = (max_bytes - std::min(max_bytes, l.wal_bytes)) / page_size;
  l.checkpoint_pages = std::max<uint64_t>(16, l.wal_bytes / page_size / 2);
  return l;
}

std::string RingStore::LimitPragmas(const Limits& l) {
  return "PRAGMA max_page_count = " + std::to_string(l.cap_pages) +
         "; PRAGMA journal_size_limit = " + std::to_string(l.wal_bytes) +
         "; PRAGMA wal_autocheckpoint = " + std::to_string(l.checkpoint_pages);
}

Status RingStore::CheckDeliveryLists() {
  Result<int64_t> listed =
      db_.QueryInt("SELECT (SELECT count(*) FROM outbox) + (SELECT count(*) FROM acked)");
  if (!listed.ok()) return listed.status();
  if (*listed == chunks_) return Status::Ok();
  // Towards sending again: the cloud drops a duplicate by its seq, but cannot
  // get back a reading that was never sent.
  const Status s = db_.Exec(
      "BEGIN IMMEDIATE;"
      "DELETE FROM outbox WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.id = outbox.chunk_id "
      "AND c.device_id = outbox.device_id AND c.seq_first = outbox.seq_first);"
      "DELETE FROM acked WHERE chunk_id IN (SELECT chunk_id FROM outbox) OR NOT EXISTS "
      "(SELECT 1 FROM chunks c WHERE c.id = acked.chunk_id);"
      "INSERT OR IGNORE INTO outbox (device_id, seq_first, count, ts, chunk_id) "
      "SELECT c.device_id, c.seq_first, c.count, c.ts, c.id FROM chunks c WHERE NOT EXISTS "
      "(SELECT 1 FROM outbox o WHERE o.chunk_id = c.id AND o.device_id = c.device_id AND "
      "o.seq_first = c.seq_first) AND NOT EXISTS (SELECT 1 FROM acked a WHERE a.chunk_id = c.id);"
      "COMMIT");
  if (!s.ok()) {
    (void)db_.Exec("ROLLBACK");
    return s.WithContext("repair the delivery lists");
  }
  Result<int64_t> undelivered = db_.QueryInt("SELECT count(*) FROM outbox");
  Log(LogLevel::kWarning, "store",
      "the store held " + std::to_string(chunks_) + " chunks but listed " +
          std::to_string(*listed) +
          " as delivered or undelivered (was the database changed by another program?); "
          "repaired: a chunk listed nowhere is sent again, an entry without its chunk is "
          "dropped; " +
          (undelivered.ok() ? std::to_string(*undelivered) : std::string("?")) +
          " chunks are now undelivered");
  return Status::Ok();
}

Status RingStore::LoadCounts() {
  Result<int64_t> readings = db_.QueryInt("SELECT coalesce(sum(count), 0) FROM chunks");
  if (!readings.ok()) return readings.status();
  Result<int64_t> chunks = db_.QueryInt("SELECT count(*) FROM chunks");
  if (!chunks.ok()) return chunks.status();
  Result<int64_t> events = db_.QueryInt("SELECT count(*) FROM events");
  if (!events.ok()) return events.status();
  readings_ = *readings;
  chunks_ = *chunks;
  events_ = *events;
  return Status::Ok();
}

RingStore::DeviceStart RingStore::StartDevice(const std::string& device) {
  auto it = devices_.find(device);
  if (it != devices_.end()) return DeviceStart{it->second.next_seq, 0};
  find_device_.BindText(1, device);
  Result<bool> row = find_device_.Step();
  const int64_t next = row.ok() && *row ? find_device_.ColumnInt(1) : 0;
  find_device_.Reset();
  const int64_t mark = reservations_.Mark(device);
  if (!row.ok()) {
    // The mark lies above every number the database holds: safe, at the cost of a gap.
    LogDevice(LogLevel::kError, "store", device,
              "read its sequence counter: " + row.status().ToString() + "; continuing at " +
                  std::to_string(mark));
    return DeviceStart{mark, 0};
  }
  if (*row) return DeviceStart{next, 0};
  return DeviceStart{mark, mark > 1 ? mark : 0};
}

Result<RingStore::DeviceEntry*> RingStore::Device(const std::string& name, int64_t first_seq) {
  auto it = devices_.find(name);
  if (it != devices_.end()) return &it->second;
  DeviceEntry e;
  find_device_.BindText(1, name);
  Result<bool> row = find_device_.Step();
  if (row.ok() && *row) {
    e.id = find_device_.ColumnInt(0);
    e.next_seq = find_device_.ColumnInt(1);
  }
  find_device_.Reset();
  if (!row.ok()) return row.status();
  if (!*row) {
    insert_device_.BindText(1, name);
    insert_device_.BindInt(2, first_seq);
    TR_RETURN_IF_ERROR(insert_device_.Run());
    e.id = db_.LastInsertId();
    e.next_seq = first_seq;
  }
  return &devices_.emplace(name, std::move(e)).first->second;
}

Result<const RingStore::TagEntry*> RingStore::TagId(DeviceEntry& d, const std::string& tag) {
  auto it = d.tag_ids.find(tag);
  if (it != d.tag_ids.end()) return &*it;
  find_tag_.BindInt(1, d.id);
  find_tag_.BindText(2, tag);
  Result<bool> row = find_tag_.Step();
  int64_t id = row.ok() && *row ? find_tag_.ColumnInt(0) : 0;
  find_tag_.Reset();
  if (!row.ok()) return row.status();
  if (!*row) {
    insert_tag_.BindInt(1, d.id);
    insert_tag_.BindText(2, tag);
    TR_RETURN_IF_ERROR(insert_tag_.Run());
    id = db_.LastInsertId();
  }
  return &*d.tag_ids.emplace(tag, id).first;
}

Status RingStore::Insert(const SequencedBatch& batch) {
  Result<DeviceEntry*> dev = Device(batch.device, batch.seq_first);
  if (!dev.ok()) return dev.status();
  DeviceEntry& d = **dev;
  const size_t n = batch.readings.size();
  if (d.poll_order.size() < n) d.poll_order.resize(n);
  std::vector<int64_t> tag_ids(n);
  for (size_t i = 0; i < n; ++i) {
    const TagEntry*& cached = d.poll_order[i];
    if (cached == nullptr || cached->first != batch.readings[i].tag) {
      Result<const TagEntry*> entry = TagId(d, batch.readings[i].tag);
      if (!entry.ok()) return entry.status();
      cached = *entry;
    }
    tag_ids[i] = cached->second;
  }
  const size_t max = std::max<size_t>(1, options_.max_chunk_readings);
  const std::span<const Reading> all(batch.readings);
  for (size_t i = 0; i < n; i += max) {
    const size_t len = std::min(max, n - i);
    TR_RETURN_IF_ERROR(InsertChunk(d, batch.seq_first + static_cast<int64_t>(i),
                                   all.subspan(i, len),
                                   std::span<const int64_t>(tag_ids).subspan(i, len)));
  }
  const int64_t next = batch.seq_first + static_cast<int64_t>(n);
  if (next > d.next_seq) {
    d.next_seq = next;
    update_seq_.BindInt(1, d.id);
    update_seq_.BindInt(2, d.next_seq);
    TR_RETURN_IF_ERROR(update_seq_.Run());
  }
  return Status::Ok();
}

Status RingStore::InsertChunk(DeviceEntry& d, int64_t seq_first, std::span<const Reading> readings,
                              std::span<const int64_t> tag_ids) {
  std::string data;
  data.reserve(16 + readings.size() * 14);
  EncodeChunk(readings, tag_ids, &data);
  insert_chunk_.BindInt(1, d.id);
  insert_chunk_.BindInt(2, seq_first);
  insert_chunk_.BindInt(3, static_cast<int64_t>(readings.size()));
  insert_chunk_.BindInt(4, readings.front().ts_ms);
  insert_chunk_.BindBlob(5, data);
  TR_RETURN_IF_ERROR(insert_chunk_.Run());
  insert_outbox_.BindInt(1, d.id);
  insert_outbox_.BindInt(2, seq_first);
  insert_outbox_.BindInt(3, static_cast<int64_t>(readings.size()));
  insert_outbox_.BindInt(4, readings.front().ts_ms);
  TR_RETURN_IF_ERROR(insert_outbox_.Run());
  readings_ += static_cast<int64_t>(readings.size());
  ++chunks_;
  return Status::Ok();
}

Result<int64_t*> RingStore::StreamNext(const std::string& stream, const std::string& device) {
  const auto key = std::make_pair(stream, device);
  auto it = streams_.find(key);
  if (it != streams_.end()) return &it->second;
  find_stream_.BindText(1, stream);
  find_stream_.BindText(2, device);
  Result<bool> row = find_stream_.Step();
  const int64_t next = row.ok() && *row ? find_stream_.ColumnInt(0) : 0;
  find_stream_.Reset();
  if (!row.ok()) return row.status();
  // A stream the database does not know continues above what a lost database used.
  return &streams_.emplace(key, *row ? next : reservations_.Mark(StreamKey(stream, device)))
              .first->second;
}

Status RingStore::InsertEvent(const NewEvent& e) {
  Result<int64_t*> next = StreamNext(e.stream, e.device);
  if (!next.ok()) return next.status();
  int64_t& seq = **next;
  insert_event_.BindText(1, e.stream);
  insert_event_.BindText(2, e.device);
  insert_event_.BindInt(3, seq);
  insert_event_.BindInt(4, e.ts_ms);
  insert_event_.BindText(5, e.body);
  TR_RETURN_IF_ERROR(insert_event_.Run());
  ++seq;
  ++events_;
  events_added_ = true;
  insert_stream_.BindText(1, e.stream);
  insert_stream_.BindText(2, e.device);
  insert_stream_.BindInt(3, seq);
  return insert_stream_.Run();
}

Status RingStore::MarkDelivered(const DeliveryAck& ack) {
  Result<DeviceEntry*> dev = Device(ack.device, 1);
  if (!dev.ok()) return dev.status();
  for (Stmt* st : {&ack_chunks_, &mark_delivered_}) {
    st->BindInt(1, (*dev)->id);
    st->BindInt(2, ack.seq_first);
    st->BindInt(3, ack.seq_last);
    TR_RETURN_IF_ERROR(st->Run());
  }
  return Status::Ok();
}

Status RingStore::MarkEventsDelivered(const EventAck& ack) {
  mark_events_.BindText(1, ack.stream);
  mark_events_.BindText(2, ack.device);
  mark_events_.BindInt(3, ack.seq_first);
  mark_events_.BindInt(4, ack.seq_last);
  return mark_events_.Run();
}

Status RingStore::Discard(const DiscardReadings& d) {
  Result<DeviceEntry*> dev = Device(d.device, 1);
  if (!dev.ok()) return dev.status();
  undelivered_range_.BindInt(1, (*dev)->id);
  undelivered_range_.BindInt(2, d.seq_first);
  undelivered_range_.BindInt(3, d.seq_last);
  return DropUndelivered(undelivered_range_, d.reason.c_str()).status();
}

Result<int64_t> RingStore::DropUndelivered(Stmt& select, const char* reason) {
  struct Chunk {
    int64_t id, device_id;
    std::string device;
    int64_t first, count;
  };
  std::vector<Chunk> chunks;
  for (;;) {
    Result<bool> row = select.Step();
    if (!row.ok()) {
      select.Reset();
      return row.status();
    }
    if (!*row) break;
    chunks.push_back(Chunk{select.ColumnInt(0), select.ColumnInt(1),
                           std::string(select.ColumnText(2)), select.ColumnInt(3),
                           select.ColumnInt(4)});
  }
  select.Reset();
  for (const Chunk& c : chunks) {
    delete_chunk_.BindInt(1, c.id);
    TR_RETURN_IF_ERROR(delete_chunk_.Run());
    delete_outbox_.BindInt(1, c.device_id);
    delete_outbox_.BindInt(2, c.first);
    TR_RETURN_IF_ERROR(delete_outbox_.Run());
  }
  chunks_ -= static_cast<int64_t>(chunks.size());
  // One loss per run of consecutive seqs, so that a range never claims a
  // reading that is still stored (or was delivered) between two lost ones.
  std::sort(chunks.begin(), chunks.end(), [](const Chunk& x, const Chunk& y) {
    return x.device_id != y.device_id ? x.device_id < y.device_id : x.first < y.first;
  });
  for (size_t i = 0; i < chunks.size();) {
    const Chunk& head = chunks[i];
    int64_t last = head.first + head.count - 1, count = head.count;
    size_t j = i + 1;
    for (;
         j < chunks.size() && chunks[j].device_id == head.device_id && chunks[j].first == last + 1;
         ++j) {
      last += chunks[j].count;
      count += chunks[j].count;
    }
    readings_ -= count;
    add_lost_.BindInt(1, head.device_id);
    add_lost_.BindInt(2, count);
    TR_RETURN_IF_ERROR(add_lost_.Run());
    TR_RETURN_IF_ERROR(InsertEvent(
        NewEvent{std::string(kStreamEvents), "", clock_.wall_ms(),
                 LossRecord(clock_.wall_ms(), head.device, head.first, last, count, reason)}));
    evicted_undelivered_ += static_cast<uint64_t>(count);
    LogDevice(LogLevel::kWarning, "store", head.device,
              std::to_string(count) + " undelivered readings, seq " + std::to_string(head.first) +
                  ".." + std::to_string(last) + ", are lost (" + reason + ")");
    i = j;
  }
  return static_cast<int64_t>(chunks.size());
}

Status RingStore::Apply(const std::vector<WriteItem>& group) {
  for (const WriteItem& item : group) {
    Status s;
    if (const auto* b = std::get_if<SequencedBatch>(&item)) {
      if (!b->readings.empty()) s = Insert(*b);
    } else if (const auto* a = std::get_if<DeliveryAck>(&item)) {
      s = MarkDelivered(*a);
    } else if (const auto* e = std::get_if<NewEvent>(&item)) {
      s = InsertEvent(*e);
    } else if (const auto* ea = std::get_if<EventAck>(&item)) {
      s = MarkEventsDelivered(*ea);
    } else if (const auto* st = std::get_if<StateUpdate>(&item)) {
      put_state_.BindText(1, st->key);
      put_state_.BindText(2, st->value);
      s = put_state_.Run();
    } else {
      s = Discard(std::get<DiscardReadings>(item));
    }
    TR_RETURN_IF_ERROR(s);
  }
  return Status::Ok();
}

Status RingStore::Begin() { return begin_.Run(); }

Status RingStore::Commit() {
  // Every number this transaction hands out is covered by the marks on disk
  // before the transaction commits.
  std::map<std::string, int64_t> last;
  for (const auto& [name, d] : devices_) last[name] = d.next_seq - 1;
  for (const auto& [key, next] : streams_) last[StreamKey(key.first, key.second)] = next - 1;
  TR_RETURN_IF_ERROR(reservations_.Cover(last));
  CountPages();  // inside the transaction: what the database holds once it commits
  return commit_.Run();
}

void RingStore::Rollback() {
  (void)rollback_.Run();
  devices_.clear();  // the caches may hold ids and counters that were rolled back
  streams_.clear();
  Status s = LoadCounts();
  if (!s.ok()) Log(LogLevel::kError, "store", "reload counters after rollback: " + s.ToString());
  CountPages();
}

Status RingStore::ApplyInTransaction(const std::vector<WriteItem>& group) {
  Status s = Begin();
  if (s.ok()) s = Apply(group);
  if (s.ok()) s = Commit();
  if (!s.ok()) Rollback();
  return s;
}

Status RingStore::WriteGroup(const std::vector<WriteItem>& group) {
  uint64_t chunks = 0;
  const size_t max = std::max<size_t>(1, options_.max_chunk_readings);
  for (const WriteItem& item : group) {
    if (const auto* b = std::get_if<SequencedBatch>(&item))
      chunks += (b->readings.size() + max - 1) / max;
  }
  const uint64_t need = chunks * ChunkBytes();
  TR_RETURN_IF_ERROR(MakeRoom(need, /*force=*/false).WithContext("store eviction"));
  Status s = ApplyInTransaction(group);
  if (s.code() == StatusCode::kResourceExhausted && chunks_ > 0 && AtCap()) {
    // SQLITE_FULL at the cap: the group outgrew the headroom under it. Make more
    // room once. Below the cap SQLITE_FULL means the disk itself is full, and
    // evicting would throw away readings for nothing: the caller retries later.
    TR_RETURN_IF_ERROR(MakeRoom(2 * need + cap_pages_ * page_size_ / 20, /*force=*/true)
                           .WithContext("store eviction"));
    s = ApplyInTransaction(group);
  }
  if (!s.ok()) return s.WithContext("store write");
  if (holds_ != nullptr) {  // delivered now for the ring too: no longer the uplink's to hold
    for (const WriteItem& item : group) {
      if (const auto* a = std::get_if<DeliveryAck>(&item)) {
        holds_->Release(a->device, a->seq_first, a->seq_last);
      }
    }
  }
  AfterCommit();
  return Status::Ok();
}

uint64_t RingStore::ChunkBytes() const {
  const int64_t rows = chunks_ + events_;
  if (rows <= 0) return 4096;
  return std::max(kMinChunkBytes, UsedPages() * page_size_ / static_cast<uint64_t>(rows));
}

bool RingStore::AtCap() const {
  auto& st = const_cast<Stmt&>(page_count_);
  Result<bool> row = st.Step();
  const int64_t pages = row.ok() && *row ? st.ColumnInt(0) : 0;
  st.Reset();
  return static_cast<uint64_t>(pages) >= cap_pages_;
}

void RingStore::CountPages() {
  auto count = [](Stmt& st) {
    Result<bool> row = st.Step();
    const int64_t n = row.ok() && *row ? st.ColumnInt(0) : 0;
    st.Reset();
    return static_cast<uint64_t>(n);
  };
  const uint64_t pages = count(page_count_);
  const uint64_t free_pages = count(freelist_count_);
  used_pages_ = pages > free_pages ? pages - free_pages : 0;
}

uint64_t RingStore::FileBytes(const std::string& path) const {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

Status RingStore::MakeRoom(uint64_t need_bytes, bool force) {
  const uint64_t cap = cap_pages_ * page_size_;
  const uint64_t used = UsedPages() * page_size_;
  if (!force && used + need_bytes <= static_cast<uint64_t>(cap * kHighWater)) return Status::Ok();
  const uint64_t low = static_cast<uint64_t>(cap * kLowWater);
  const uint64_t target = used + need_bytes > low ? used + need_bytes - low : need_bytes;
  const int64_t n = static_cast<int64_t>(target / ChunkBytes()) + 1;

  // No fetch of the uplink runs while the ring evicts: it either sees the
  // ranges a fetch holds or has committed before the fetch reads.
  std::optional<DeliveryHolds::Exclusion> exclusion;
  if (holds_ != nullptr) exclusion.emplace(*holds_);
  TR_RETURN_IF_ERROR(Begin());
  Status s = [&]() -> Status {
    delete_delivered_events_.BindInt(1, n);
    TR_RETURN_IF_ERROR(delete_delivered_events_.Run());
    events_ -= db_.Changes();
    delete_delivered_.BindInt(1, n);
    int64_t gone = 0;
    for (;;) {  // RETURNING count: one row per deleted chunk
      Result<bool> row = delete_delivered_.Step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      readings_ -= delete_delivered_.ColumnInt(0);
      ++gone;
    }
    delete_delivered_.Reset();
    forget_acked_.BindInt(1, n);
    TR_RETURN_IF_ERROR(forget_acked_.Run());
    chunks_ -= gone;
    if (gone >= n) return Status::Ok();
    // The oldest undelivered chunks go next, except those on their way to the
    // cloud; those too only if nothing else is left.
    TR_RETURN_IF_ERROR(clear_held_.Run());
    const std::vector<HeldRange> held =
        holds_ != nullptr ? holds_->Held() : std::vector<HeldRange>{};
    for (const HeldRange& h : held) {
      insert_held_.BindText(1, h.device);
      insert_held_.BindInt(2, h.first);
      insert_held_.BindInt(3, h.last);
      TR_RETURN_IF_ERROR(insert_held_.Run());
    }
    for (const bool skip_held : {true, false}) {
      if (!skip_held && held.empty()) break;
      undelivered_oldest_.BindInt(1, n - gone);
      undelivered_oldest_.BindInt(2, skip_held ? 1 : 0);
      Result<int64_t> dropped = DropUndelivered(undelivered_oldest_, kLossRingFull);
      if (!dropped.ok()) return dropped.status();
      if (!skip_held && *dropped > 0) {
        Log(LogLevel::kWarning, "store",
            "the ring is full of readings on their way to the cloud; some of them were evicted "
            "and are reported lost, though they may still arrive");
      }
      gone += *dropped;
      if (gone >= n) break;
    }
    return Status::Ok();
  }();
  if (s.ok()) s = Commit();
  if (!s.ok()) {
    Rollback();
    return s;
  }
  ShrinkFile();
  return Status::Ok();
}

void RingStore::ShrinkFile() {
  // Only a file larger than the cap (max_bytes was lowered) is given back to
  // the file system; otherwise free pages are simply reused.
  if (FileBytes(path_) <= cap_pages_ * page_size_) return;
  Status s = db_.Exec("PRAGMA incremental_vacuum");
  if (s.ok()) s = db_.Exec("PRAGMA max_page_count = " + std::to_string(cap_pages_));
  if (!s.ok()) Log(LogLevel::kWarning, "store", "shrink the database file: " + s.ToString());
  CountPages();
}

void RingStore::AfterCommit() {
  // The WAL is checkpointed automatically at half its budget; if readers held it
  // back and it grew past the budget, wait for them and truncate it.
  if (FileBytes(path_ + "-wal") <= wal_limit_) return;
  Status s = db_.Exec("PRAGMA wal_checkpoint(TRUNCATE)");
  if (!s.ok()) Log(LogLevel::kWarning, "store", "checkpoint: " + s.ToString());
}

namespace {

Result<std::map<std::string, std::string>> StateOf(const Db& db) {
  Result<Stmt> st = Stmt::Prepare(db, "SELECT key, value FROM state");
  if (!st.ok()) return st.status();
  std::map<std::string, std::string> out;
  for (;;) {
    Result<bool> row = st->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    out.emplace(std::string(st->ColumnText(0)), std::string(st->ColumnText(1)));
  }
  return out;
}

}  // namespace

Result<std::map<std::string, std::string>> RingStore::LoadState() { return StateOf(db_); }

Result<std::map<std::string, std::string>> RingStore::ReadState(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return Status::NotFound("no database at " + path);
  Result<Db> db = Db::OpenImmutable(path);
  if (!db.ok()) return db.status();
  Result<std::map<std::string, std::string>> state = StateOf(*db);
  if (!state.ok()) return state.status().WithContext("read " + path);
  return state;
}

RingUsage RingStore::Usage() const {
  RingUsage u;
  u.max_bytes = options_.max_bytes;
  u.db_bytes = FileBytes(path_);
  u.wal_bytes = FileBytes(path_ + "-wal");
  u.used_bytes = UsedPages() * page_size_;
  u.readings = readings_;
  u.chunks = chunks_;
  u.events = events_;
  u.evicted_undelivered = evicted_undelivered_;
  return u;
}

}  // namespace tagrelay::store
