// SequenceReservations: high-water marks of sequence numbers, kept in a small
// file next to the database, so that numbers stay unique even when the
// database itself is lost (deleted, or moved aside as corrupt).
//
// Promise: once Cover(key, last) returns ok, the file on disk records a mark
// greater than `last` for `key`. A store that starts without its database
// begins each key at its mark, above every number the lost database could have
// handed out. The file is written to "<path>.new", fsynced, renamed over
// <path>, and the directory fsynced: a crash leaves the old or the new version,
// never a torn one. Marks advance in blocks, so the file is written rarely.
//
// Threads: owned by the store writer.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "agent/core/status.h"

namespace tagrelay::store {

class SequenceReservations {
 public:
  // Reads `path`. A missing file is an empty set of marks; an unreadable or
  // malformed one is an error (Corruption), and the caller decides.
  static Result<SequenceReservations> Load(const std::string& path, int64_t block);
  // An empty set that will be written to `path`.
  static SequenceReservations Empty(const std::string& path, int64_t block);

  // The first number a key may use when nothing else is known: its mark, or 1.
  int64_t Mark(const std::string& key) const;

  // Makes sure the marks on disk are above each key's `last` used number.
  Status Cover(const std::map<std::string, int64_t>& last_by_key);

  const std::string& path() const { return path_; }

 private:
  SequenceReservations(std::string path, int64_t block) : path_(std::move(path)), block_(block) {}
  Status Write(const std::map<std::string, int64_t>& marks) const;

  std::string path_;
  int64_t block_;
  std::map<std::string, int64_t> marks_;
};

}  // namespace tagrelay::store
