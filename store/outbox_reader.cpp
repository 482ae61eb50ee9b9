#include "store/outbox_reader.h"

#include <sqlite3.h>

#include "store/chunk_codec.h"

namespace tagrelay::store {

Result<OutboxReader> OutboxReader::Open(const std::string& path) {
  // Opened read-write but query-only: a WAL reader needs write access to the
  // shared-memory index, and query_only keeps it from ever changing the data.
  Result<Db> db = Db::Open(path, /*create=*/false);
  if (!db.ok()) return db.status();
  TR_RETURN_IF_ERROR(db->Exec("PRAGMA busy_timeout = 5000; PRAGMA query_only = 1"));
  OutboxReader r(std::move(db).value());
  struct {
    Stmt* stmt;
    const char* sql;
  } const all[] = {
      {&r.devices_,
       "SELECT d.id, d.name, d.next_seq - 1, (SELECT min(seq_first) FROM outbox o "
       "WHERE o.device_id = d.id) FROM devices d ORDER BY d.id"},
      {&r.fetch_,
       "SELECT o.seq_first, o.count, c.data FROM outbox o JOIN chunks c ON c.id = o.chunk_id "
       "WHERE o.device_id = ?1 AND o.seq_first BETWEEN ?2 AND ?3 ORDER BY o.seq_first"},
      {&r.tag_, "SELECT name FROM tags WHERE id = ?1"},
      {&r.streams_,
       "SELECT s.stream, s.device, s.next_seq - 1, (SELECT min(seq) FROM events e WHERE "
       "e.stream = s.stream AND e.device = s.device AND e.delivered = 0) FROM streams s "
       "ORDER BY s.stream, s.device"},
      {&r.events_,
       "SELECT seq, ts, body FROM events WHERE stream = ?1 AND device = ?2 AND delivered = 0 "
       "AND seq BETWEEN ?3 AND ?4 ORDER BY seq LIMIT ?5"},
  };
  for (const auto& s : all) {
    Result<Stmt> st = Stmt::Prepare(r.db_, s.sql);
    if (!st.ok()) return st.status();
    *s.stmt = std::move(st).value();
  }
  return r;
}

Result<std::vector<DeviceBacklog>> OutboxReader::Devices() {
  std::vector<DeviceBacklog> out;
  for (;;) {
    Result<bool> row = devices_.Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    DeviceBacklog d;
    d.id = devices_.ColumnInt(0);
    d.name = std::string(devices_.ColumnText(1));
    d.last_seq = devices_.ColumnInt(2);
    d.first_undelivered = devices_.ColumnType(3) == SQLITE_NULL ? 0 : devices_.ColumnInt(3);
    out.push_back(std::move(d));
  }
  devices_.Reset();
  return out;
}

Result<const std::string*> OutboxReader::TagName(int64_t tag_id) {
  if (const std::string* known = tag_names_.Find(tag_id)) return known;
  tag_.BindInt(1, tag_id);
  Result<bool> row = tag_.Step();
  std::string name = row.ok() && *row ? std::string(tag_.ColumnText(0)) : std::string();
  tag_.Reset();
  if (!row.ok()) return row.status();
  if (!*row) return Status::Corruption("tag id " + std::to_string(tag_id) + " is not in the store");
  tag_names_.Add(tag_id, std::move(name));
  return tag_names_.Find(tag_id);
}

Status OutboxReader::CheckChunk(std::string_view data, int64_t count) {
  ChunkCursor in(data, count);
  ChunkItem item;
  while (in.Next(&item)) {
    if (tag_names_.Find(item.tag_id) != nullptr) continue;  // known: no query
    Result<const std::string*> tag = TagName(item.tag_id);
    if (!tag.ok()) return tag.status();
  }
  return in.status();
}

Status OutboxReader::FetchChunks(int64_t device_id, int64_t from_seq, int64_t to_seq, size_t limit,
                                 std::vector<StoredChunk>& out, BadChunk* bad) {
  fetch_.BindInt(1, device_id);
  fetch_.BindInt(2, from_seq);
  fetch_.BindInt(3, to_seq);
  size_t taken = 0;
  Status result;
  while (taken < limit || taken == 0) {
    Result<bool> row = fetch_.Step();
    if (!row.ok()) {
      result = row.status();
      break;
    }
    if (!*row) break;
    const int64_t first = fetch_.ColumnInt(0), count = fetch_.ColumnInt(1);
    const std::string_view data = fetch_.ColumnBlob(2);
    Status s = CheckChunk(data, count);
    if (!s.ok()) {
      if (taken == 0) {
        if (bad != nullptr) *bad = BadChunk{first, count, s.message()};
        result = s.WithContext("chunk seq " + std::to_string(first) + ".." +
                               std::to_string(first + count - 1));
      }
      break;  // the good chunks before it go out first
    }
    if (count == 0) continue;  // holds no reading
    taken += static_cast<size_t>(count);
    out.push_back(StoredChunk{first, count, std::string(data)});
  }
  fetch_.Reset();
  return result;
}

Status OutboxReader::FetchUndelivered(int64_t device_id, int64_t from_seq, int64_t to_seq,
                                      size_t limit, std::vector<StoredReading>& out,
                                      BadChunk* bad) {
  std::vector<StoredChunk> chunks;
  const Status fetched = FetchChunks(device_id, from_seq, to_seq, limit, chunks, bad);
  // Every chunk was checked: it decodes and its tag ids are known.
  std::vector<ChunkReading> decoded;
  for (const StoredChunk& c : chunks) {
    decoded.clear();
    TR_RETURN_IF_ERROR(DecodeChunk(c.data, c.count, decoded));
    for (size_t i = 0; i < decoded.size(); ++i) {
      ChunkReading& r = decoded[i];
      Result<const std::string*> tag = TagName(r.tag_id);
      if (!tag.ok()) return tag.status();
      out.push_back(StoredReading{c.seq_first + static_cast<int64_t>(i), **tag, r.ts_ms,
                                  std::move(r.value), r.quality, std::move(r.error),
                                  i + 1 == decoded.size()});
    }
  }
  return fetched;
}

Result<std::vector<StreamBacklog>> OutboxReader::Streams() {
  std::vector<StreamBacklog> out;
  for (;;) {
    Result<bool> row = streams_.Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    StreamBacklog b;
    b.stream = std::string(streams_.ColumnText(0));
    b.device = std::string(streams_.ColumnText(1));
    b.last_seq = streams_.ColumnInt(2);
    b.first_undelivered = streams_.ColumnType(3) == SQLITE_NULL ? 0 : streams_.ColumnInt(3);
    out.push_back(std::move(b));
  }
  streams_.Reset();
  return out;
}

Status OutboxReader::FetchEvents(const std::string& stream, const std::string& device,
                                 int64_t from_seq, int64_t to_seq, size_t limit,
                                 std::vector<StoredEvent>& out) {
  events_.BindText(1, stream);
  events_.BindText(2, device);
  events_.BindInt(3, from_seq);
  events_.BindInt(4, to_seq);
  events_.BindInt(5, static_cast<int64_t>(limit));
  for (;;) {
    Result<bool> row = events_.Step();
    if (!row.ok()) {
      events_.Reset();
      return row.status();
    }
    if (!*row) break;
    out.push_back(StoredEvent{events_.ColumnInt(0), events_.ColumnInt(1),
                              std::string(events_.ColumnText(2))});
  }
  events_.Reset();
  return Status::Ok();
}

Result<BacklogSummary> OutboxReader::Summary() {
  if (!summary_totals_) {
    Result<Stmt> devices =
        Stmt::Prepare(db_,
                      "SELECT d.name, d.lost, (SELECT coalesce(sum(count), 0) FROM outbox o WHERE "
                      "o.device_id = d.id) FROM devices d ORDER BY d.name");
    if (!devices.ok()) return devices.status();
    Result<Stmt> totals =
        Stmt::Prepare(db_,
                      "SELECT (SELECT coalesce(min(ts), 0) FROM outbox), (SELECT count(*) FROM "
                      "events WHERE delivered = 0)");
    if (!totals.ok()) return totals.status();
    summary_devices_ = std::move(devices).value();
    summary_totals_ = std::move(totals).value();
  }
  BacklogSummary out;
  Stmt& st = *summary_devices_;
  for (;;) {
    Result<bool> row = st.Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    BacklogSummary::Device d;
    d.name = std::string(st.ColumnText(0));
    d.lost = st.ColumnInt(1);
    d.undelivered = st.ColumnInt(2);
    out.undelivered_readings += d.undelivered;
    out.devices.push_back(std::move(d));
  }
  st.Reset();
  Stmt& totals = *summary_totals_;
  Result<bool> row = totals.Step();
  if (!row.ok()) return row.status();
  if (*row) {
    out.oldest_undelivered_ts_ms = totals.ColumnInt(0);
    out.undelivered_events = totals.ColumnInt(1);
  }
  totals.Reset();  // ends the read transaction
  return out;
}

Result<int64_t> OutboxReader::CountUndelivered() {
  return db_.QueryInt("SELECT coalesce(sum(count), 0) FROM outbox");
}

}  // namespace tagrelay::store
