#include "store/outbox_reader.h"

#include <sqlite3.h>

namespace tagrelay::store {

Result<OutboxReader> OutboxReader::Open(const std::string& path) {
  // Opened read-write but query-only: a WAL reader needs write access to the
  // shared-memory index, and query_only keeps it from ever changing the data.
  Result<Db> db = Db::Open(path, /*create=*/false);
  if (!db.ok()) return db.status();
  TR_RETURN_IF_ERROR(db->Exec("PRAGMA busy_timeout = 5000; PRAGMA query_only = 1"));
  OutboxReader r(std::move(db).value());
  Result<Stmt> devices = Stmt::Prepare(
      r.db_,
      "SELECT d.id, d.name, d.next_seq - 1, "
      "  (SELECT min(seq) FROM readings r WHERE r.device_id = d.id AND r.delivered = 0) "
      "FROM devices d ORDER BY d.id");
  if (!devices.ok()) return devices.status();
  Result<Stmt> fetch =
      Stmt::Prepare(r.db_,
                    "SELECT r.seq, t.name, r.ts, r.quality, r.vtype, r.value, r.err "
                    "FROM readings r JOIN tags t ON t.id = r.tag_id "
                    "WHERE r.device_id = ?1 AND r.delivered = 0 AND r.seq BETWEEN ?2 AND ?3 "
                    "ORDER BY r.seq LIMIT ?4");
  if (!fetch.ok()) return fetch.status();
  r.devices_ = std::move(devices).value();
  r.fetch_ = std::move(fetch).value();
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

Status OutboxReader::FetchUndelivered(int64_t device_id, int64_t from_seq, int64_t to_seq,
                                      size_t limit, std::vector<StoredReading>& out) {
  fetch_.BindInt(1, device_id);
  fetch_.BindInt(2, from_seq);
  fetch_.BindInt(3, to_seq);
  fetch_.BindInt(4, static_cast<int64_t>(limit));
  for (;;) {
    Result<bool> row = fetch_.Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    StoredReading r;
    r.seq = fetch_.ColumnInt(0);
    r.tag = std::string(fetch_.ColumnText(1));
    r.ts_ms = fetch_.ColumnInt(2);
    r.quality = static_cast<Quality>(fetch_.ColumnInt(3));
    switch (fetch_.ColumnInt(4)) {
      case 1: r.value = fetch_.ColumnInt(5) != 0; break;
      case 2: r.value = fetch_.ColumnInt(5); break;
      case 3: r.value = static_cast<uint64_t>(fetch_.ColumnInt(5)); break;
      case 4: r.value = fetch_.ColumnDouble(5); break;
      case 5: r.value = std::string(fetch_.ColumnText(5)); break;
      default: break;  // no value
    }
    if (fetch_.ColumnType(6) != SQLITE_NULL) r.error = std::string(fetch_.ColumnText(6));
    out.push_back(std::move(r));
  }
  fetch_.Reset();
  return Status::Ok();
}

Result<BacklogSummary> OutboxReader::Summary() {
  BacklogSummary out;
  Result<Stmt> st = Stmt::Prepare(
      db_,
      "SELECT d.name, d.lost, (SELECT count(*) FROM readings r WHERE r.device_id = d.id AND "
      "r.delivered = 0) FROM devices d ORDER BY d.name");
  if (!st.ok()) return st.status();
  for (;;) {
    Result<bool> row = st->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    BacklogSummary::Device d;
    d.name = std::string(st->ColumnText(0));
    d.lost = st->ColumnInt(1);
    d.undelivered = st->ColumnInt(2);
    out.undelivered_readings += d.undelivered;
    out.devices.push_back(std::move(d));
  }
  Result<int64_t> oldest =
      db_.QueryInt("SELECT coalesce(min(ts), 0) FROM readings WHERE delivered = 0");
  if (!oldest.ok()) return oldest.status();
  out.oldest_undelivered_ts_ms = *oldest;
  Result<int64_t> events = db_.QueryInt("SELECT count(*) FROM events WHERE delivered = 0");
  if (!events.ok()) return events.status();
  out.undelivered_events = *events;
  return out;
}

Result<int64_t> OutboxReader::CountUndelivered() {
  return db_.QueryInt("SELECT count(*) FROM readings WHERE delivered = 0");
}

}  // namespace tagrelay::store
