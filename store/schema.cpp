#include "store/schema.h"

#include <string>
#include <vector>

#include "store/chunk_codec.h"

namespace tagrelay::store {
namespace {

// 0 -> 1: devices with their sequence counters, tags, one row per reading.
constexpr const char* kV1 = R"sql(
CREATE TABLE devices (
  id       INTEGER PRIMARY KEY,
  name     TEXT NOT NULL UNIQUE,
  next_seq INTEGER NOT NULL            -- the next sequence number to hand out; never goes back
);
CREATE TABLE tags (
  id        INTEGER PRIMARY KEY,
  device_id INTEGER NOT NULL REFERENCES devices(id),
  name      TEXT NOT NULL,
  UNIQUE (device_id, name)
);
-- The ring: id is the global insertion order, so the oldest rows are the lowest ids.
CREATE TABLE readings (
  id        INTEGER PRIMARY KEY,
  device_id INTEGER NOT NULL,
  seq       INTEGER NOT NULL,           -- per device, unbroken, assigned at insert
  tag_id    INTEGER NOT NULL,
  ts        INTEGER NOT NULL,           -- acquisition time, Unix ms UTC
  quality   INTEGER NOT NULL,           -- 0 good, 1 bad, 2 uncertain
  vtype     INTEGER NOT NULL,           -- 0 none, 1 bool, 2 int64, 3 uint64, 4 double, 5 text
  value,
  err       TEXT,
  delivered INTEGER NOT NULL DEFAULT 0  -- 1 once the broker acknowledged it
);
CREATE UNIQUE INDEX readings_by_device_seq ON readings (device_id, seq);
CREATE INDEX readings_undelivered ON readings (device_id, seq) WHERE delivered = 0;
)sql";

// 1 -> 2: readings move into chunks (one row per poll, store/chunk_codec.h),
// events for the cloud get their own streams, devices count their losses.
constexpr const char* kV2Tables = R"sql(
ALTER TABLE devices ADD COLUMN lost INTEGER NOT NULL DEFAULT 0;  -- undelivered readings lost to the bound
-- The ring: id is the global insertion order, so the oldest chunks are the lowest ids.
CREATE TABLE chunks (
  id        INTEGER PRIMARY KEY,
  device_id INTEGER NOT NULL,
  seq_first INTEGER NOT NULL,           -- the readings seq_first .. seq_first + count - 1
  count     INTEGER NOT NULL,
  ts        INTEGER NOT NULL,           -- acquisition time of the first, Unix ms UTC
  data      BLOB NOT NULL,              -- the readings (store/chunk_codec.h)
  delivered INTEGER NOT NULL DEFAULT 0  -- 1 once the broker acknowledged every reading of it;
                                        -- since version 3 unused (0): see outbox and acked
);
CREATE INDEX chunks_undelivered ON chunks (device_id, seq_first) WHERE delivered = 0;
-- Records for the cloud, one sequence per (stream, device); device '' is the gateway.
CREATE TABLE events (
  id        INTEGER PRIMARY KEY,
  stream    TEXT NOT NULL,
  device    TEXT NOT NULL,
  seq       INTEGER NOT NULL,
  ts        INTEGER NOT NULL,
  body      TEXT NOT NULL,              -- a JSON object
  delivered INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX events_undelivered ON events (stream, device, seq) WHERE delivered = 0;
CREATE TABLE streams (
  stream   TEXT NOT NULL,
  device   TEXT NOT NULL,
  next_seq INTEGER NOT NULL,
  PRIMARY KEY (stream, device)
) WITHOUT ROWID;
-- What the alarm and counter engine keeps across restarts.
CREATE TABLE state (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;
)sql";

// Packs the version 1 readings rows into chunks: runs of consecutive sequence
// numbers of one device with the same delivery state, at most 250 readings.
Status ReadingsToChunks(Db& db) {
  Result<Stmt> rows = Stmt::Prepare(
      db,
      "SELECT device_id, seq, tag_id, ts, quality, vtype, value, err, delivered FROM readings "
      "ORDER BY device_id, seq");
  if (!rows.ok()) return rows.status();
  Result<Stmt> insert = Stmt::Prepare(db,
                                      "INSERT INTO chunks (device_id, seq_first, count, ts, data, "
                                      "delivered) VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
  if (!insert.ok()) return insert.status();
  int64_t device = 0, first = 0, delivered = 0;
  std::vector<Reading> run;
  std::vector<int64_t> tag_ids;
  auto flush = [&]() -> Status {
    if (run.empty()) return Status::Ok();
    std::string data;
    EncodeChunk(run, tag_ids, &data);
    insert->BindInt(1, device);
    insert->BindInt(2, first);
    insert->BindInt(3, static_cast<int64_t>(run.size()));
    insert->BindInt(4, run.front().ts_ms);
    insert->BindBlob(5, data);
    insert->BindInt(6, delivered);
    run.clear();
    tag_ids.clear();
    return insert->Run();
  };
  for (;;) {
    Result<bool> row = rows->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    const int64_t d = rows->ColumnInt(0), seq = rows->ColumnInt(1), del = rows->ColumnInt(8);
    if (!run.empty() && (d != device || seq != first + static_cast<int64_t>(run.size()) ||
                         del != delivered || run.size() >= 250)) {
      TR_RETURN_IF_ERROR(flush());
    }
    if (run.empty()) {
      device = d;
      first = seq;
      delivered = del;
    }
    Reading r;
    r.ts_ms = rows->ColumnInt(3);
    r.quality = static_cast<Quality>(rows->ColumnInt(4));
    switch (rows->ColumnInt(5)) {  // version 1 value types
      case 1: r.value = rows->ColumnInt(6) != 0; break;
      case 2: r.value = rows->ColumnInt(6); break;
      case 3: r.value = static_cast<uint64_t>(rows->ColumnInt(6)); break;
      case 4: r.value = rows->ColumnDouble(6); break;
      case 5: r.value = std::string(rows->ColumnText(6)); break;
      default: break;
    }
    r.error = std::string(rows->ColumnText(7));
    run.push_back(std::move(r));
    tag_ids.push_back(rows->ColumnInt(2));
  }
  return flush();
}

// 2 -> 3: the delivery state moves out of the chunks into two small tables,
// so that an acknowledgement moves a few short entries instead of rewriting
// each chunk's row (and its page) with all its readings.
constexpr const char* kV3Outbox = R"sql(
-- One entry per chunk the broker has not acknowledged yet; the chunk's row
-- never changes after its insert.
CREATE TABLE outbox (
  device_id INTEGER NOT NULL,
  seq_first INTEGER NOT NULL,
  count     INTEGER NOT NULL,
  ts        INTEGER NOT NULL,           -- the chunk's acquisition time
  chunk_id  INTEGER NOT NULL,           -- chunks.id
  PRIMARY KEY (device_id, seq_first)
) WITHOUT ROWID;
-- One entry per acknowledged chunk the ring still keeps: the first to go when
-- it needs room, oldest first.
CREATE TABLE acked (
  chunk_id INTEGER PRIMARY KEY          -- chunks.id
);
INSERT INTO outbox (device_id, seq_first, count, ts, chunk_id)
  SELECT device_id, seq_first, count, ts, id FROM chunks WHERE delivered = 0;
INSERT INTO acked (chunk_id) SELECT id FROM chunks WHERE delivered = 1;
DROP INDEX chunks_undelivered;
)sql";

struct Migration {
  const char* sql;         // run first
  Status (*convert)(Db&);  // then, if set
  const char* cleanup;     // then, if set
};

// kMigrations[i] takes the schema from version i to i + 1. Never edit one that
// has shipped; add the next instead.
constexpr Migration kMigrations[] = {
    {kV1, nullptr, nullptr},
    {kV2Tables, ReadingsToChunks, "DROP TABLE readings;"},
    {kV3Outbox, nullptr, nullptr},
};

static_assert(std::size(kMigrations) == kSchemaVersion, "one migration per schema version");

}  // namespace

Status Migrate(Db& db) {
  Result<int64_t> version = db.QueryInt("PRAGMA user_version");
  if (!version.ok()) return version.status().WithContext("read schema version");
  if (*version > kSchemaVersion) {
    return Status::InvalidArgument(
        "the database has schema version " + std::to_string(*version) +
        ", newer than this tagrelay understands (" + std::to_string(kSchemaVersion) +
        "); it was written by a newer release. Install that release again, or move the "
        "database aside to start an empty one");
  }
  for (int64_t v = *version; v < kSchemaVersion; ++v) {
    TR_RETURN_IF_ERROR(db.Exec("BEGIN IMMEDIATE"));
    const Migration& m = kMigrations[v];
    Status s = db.Exec(m.sql);
    if (s.ok() && m.convert != nullptr) s = m.convert(db);
    if (s.ok() && m.cleanup != nullptr) s = db.Exec(m.cleanup);
    if (s.ok()) s = db.Exec("PRAGMA user_version = " + std::to_string(v + 1));
    if (s.ok()) s = db.Exec("COMMIT");
    if (!s.ok()) {
      (void)db.Exec("ROLLBACK");
      return s.WithContext("migrate schema " + std::to_string(v) + " -> " + std::to_string(v + 1));
    }
  }
  return Status::Ok();
}

}  // namespace tagrelay::store
