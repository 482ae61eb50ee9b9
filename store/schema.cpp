#include "store/schema.h"

#include <string>

namespace tagrelay::store {
namespace {

// migrations[i] takes the schema from version i to i + 1. Never edit one that
// has shipped; add the next instead.
constexpr const char* kMigrations[] = {
    // 0 -> 1: devices with their sequence counters, tags, the readings ring.
    R"sql(
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
)sql",
    // 1 -> 2: events for the cloud (alarms, counters, losses), per-device loss
    // counters, bookkeeping; the full (device, seq) index goes: the partial
    // index of undelivered rows serves every query, and one index less makes
    // inserts cheaper.
    R"sql(
DROP INDEX readings_by_device_seq;
ALTER TABLE devices ADD COLUMN lost INTEGER NOT NULL DEFAULT 0;  -- undelivered readings lost to the bound
CREATE TABLE events (
  seq       INTEGER PRIMARY KEY,        -- gateway-wide, never reused; also the insertion order
  kind      TEXT NOT NULL,
  device    TEXT,                       -- NULL for events of the gateway itself
  ts        INTEGER NOT NULL,           -- Unix ms UTC
  body      TEXT NOT NULL,              -- JSON object with the kind's fields
  delivered INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX events_undelivered ON events (seq) WHERE delivered = 0;
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value
) WITHOUT ROWID;
INSERT INTO meta (key, value) VALUES ('next_event_seq', 1);
)sql",
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
    Status s = db.Exec(kMigrations[v]);
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
