// The store's schema, as numbered migrations.
//
// Promise: Migrate() brings a database to kSchemaVersion, applying each missing
// migration in its own transaction and recording it in PRAGMA user_version. A
// database whose version is newer than this binary knows is refused (Corruption
// is not claimed; the error says to upgrade) and left untouched.
//
// Threads: called by the store writer on its own connection, before any reader opens.
#pragma once

#include "agent/core/status.h"
#include "store/sqlite.h"

namespace tagrelay::store {

inline constexpr int kSchemaVersion = 3;

Status Migrate(Db& db);

}  // namespace tagrelay::store
