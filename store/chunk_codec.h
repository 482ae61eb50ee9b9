// The chunk codec: how the readings of one device poll are kept in the store,
// as one compact blob per chunk instead of one SQLite row per reading (about 12
// bytes a reading instead of 45, and one B-tree insert per poll).
//
// Format 1 (all integers little-endian varints, signed ones zigzag-encoded):
//   u8 format (1) | count | base ts
//   count times:  tag id | ts - previous ts | u8 kind | value | [error]
//   kind: low 3 bits the value type (0 none, 1 false, 2 true, 3 int64,
//         4 uint64, 5 double as 8 bytes, 6 text: length + bytes),
//         bits 3-4 the quality (0 good, 1 bad, 2 uncertain),
//         bit 7: an error text (length + bytes) follows the value.
//
// Promise: Decode(Encode(x)) == x. Decode() accepts only a well-formed blob
// of exactly the expected count and length; anything else (a truncated blob,
// a bad type, lengths past the end, trailing bytes) is Corruption, never a
// crash and never a made-up reading.
//
// Threads: pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "agent/core/reading.h"
#include "agent/core/status.h"

namespace tagrelay::store {

// A reading whose tag is a store tag id.
struct ChunkReading {
  int64_t tag_id = 0;
  int64_t ts_ms = 0;
  Value value;
  Quality quality = Quality::kGood;
  std::string error;
};

// Appends the encoding of `readings` (tags given by `tag_ids`, same length) to `out`.
void EncodeChunk(std::span<const Reading> readings, std::span<const int64_t> tag_ids,
                 std::string* out);

// Decodes a blob that must hold exactly `count` readings; appends them to `out`.
Status DecodeChunk(std::string_view data, int64_t count, std::vector<ChunkReading>& out);

}  // namespace tagrelay::store
