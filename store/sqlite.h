// Thin RAII wrappers over the SQLite C API: a connection (Db) and a prepared
// statement (Stmt). SQLite result codes become Status here, once, with context.
//
// Threads: a Db and its statements belong to one thread (the connection is
// opened in SQLITE_OPEN_NOMUTEX mode, so sharing would be a bug).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "agent/core/status.h"

struct sqlite3;
struct sqlite3_stmt;

namespace tagrelay::store {

// Converts an SQLite result code into a Status: SQLITE_FULL -> ResourceExhausted,
// SQLITE_CORRUPT/NOTADB -> Corruption, SQLITE_IOERR/CANTOPEN/READONLY/PERM -> IOError,
// SQLITE_BUSY/LOCKED -> Unavailable, anything else -> Internal.
Status SqliteStatus(int rc, sqlite3* db, std::string_view context);

class Db {
 public:
  Db() = default;
  ~Db();
  Db(Db&& o) noexcept : db_(o.db_) { o.db_ = nullptr; }
  Db& operator=(Db&& o) noexcept;
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  // Opens (and with `create`, creates) the database at `path`, through the VFS
  // named `vfs` (empty: SQLite's default).
  static Result<Db> Open(const std::string& path, bool create, bool read_only = false,
                         const std::string& vfs = {});
  // Opens the database at `path` to read it as it is on disk, without its WAL
  // and without creating or locking anything (SQLite's immutable=1): for a
  // look at a database in a directory the agent may not write.
  static Result<Db> OpenImmutable(const std::string& path);

  sqlite3* get() const { return db_; }
  bool is_open() const { return db_ != nullptr; }

  // Runs one or more statements that return no rows.
  Status Exec(std::string_view sql);
  // Runs a query whose first column of the first row is an integer / text.
  Result<int64_t> QueryInt(std::string_view sql);
  Result<std::string> QueryText(std::string_view sql);

  int64_t LastInsertId() const;
  // Rows changed by the last INSERT, UPDATE or DELETE.
  int64_t Changes() const;

 private:
  explicit Db(sqlite3* db) : db_(db) {}
  sqlite3* db_ = nullptr;
};

class Stmt {
 public:
  Stmt() = default;
  ~Stmt();
  Stmt(Stmt&& o) noexcept : stmt_(o.stmt_), db_(o.db_) { o.stmt_ = nullptr; }
  Stmt& operator=(Stmt&& o) noexcept;
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  static Result<Stmt> Prepare(const Db& db, std::string_view sql);

  // Bind indexes are 1-based, as in SQLite.
  void BindInt(int i, int64_t v);
  void BindDouble(int i, double v);
  void BindText(int i, std::string_view v);
  void BindBlob(int i, std::string_view v);
  void BindNull(int i);

  // Steps once: true if a row is ready, false when done; an error otherwise.
  Result<bool> Step();
  // Steps to completion of a statement that returns no rows.
  Status Run();
  // Makes the statement ready to run again. Bindings stay: callers bind every
  // parameter before each run.
  void Reset();

  int ColumnType(int i) const;
  int64_t ColumnInt(int i) const;
  double ColumnDouble(int i) const;
  std::string_view ColumnText(int i) const;
  std::string_view ColumnBlob(int i) const;

  const char* sql() const;

 private:
  Stmt(sqlite3_stmt* s, sqlite3* db) : stmt_(s), db_(db) {}
  sqlite3_stmt* stmt_ = nullptr;
  sqlite3* db_ = nullptr;
};

}  // namespace tagrelay::store
