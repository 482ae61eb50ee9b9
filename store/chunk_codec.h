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

#include <bit>
#include <cstdint>
#include <cstring>
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

// One reading of a chunk, seen in place: nothing is copied, `text` and
// `error` point into the blob.
struct ChunkItem {
  enum class Kind : uint8_t { kNone, kFalse, kTrue, kInt, kUint, kDouble, kText };
  int64_t tag_id = 0;
  int64_t ts_ms = 0;
  Kind kind = Kind::kNone;
  Quality quality = Quality::kGood;
  int64_t i = 0;          // kInt
  uint64_t u = 0;         // kUint
  double d = 0;           // kDouble
  std::string_view text;  // kText
  std::string_view error;
};

// Walks a blob that must hold exactly `count` readings, one at a time and
// without allocating. The checks are DecodeChunk's: Next() returns false at
// the end, and also at the first malformation, after which status() is
// Corruption; a blob is good only if every reading came out and status() is
// ok after the last Next().
class ChunkCursor {
 public:
  ChunkCursor(std::string_view data, int64_t count);
  bool Next(ChunkItem* item) {
    // The most common reading (a one-byte tag id, a time delta of one or two
    // bytes, a double, no error) here; anything else, and every failure, in
    // NextSlow(), which starts over from the same byte.
    if constexpr (std::endian::native == std::endian::little) {
      const size_t pos = pos_;
      if (left_ != 0 && d_.size() - pos >= 12) {
        const auto* b = reinterpret_cast<const uint8_t*>(d_.data()) + pos;
        const uint64_t two = b[1] >= 0x80 ? 1 : 0;  // the delta's second byte
        const uint64_t delta = (b[1] & 0x7Fu) | (uint64_t{b[2]} << 7 & (0 - two));
        const uint8_t kind = b[2 + two];
        int64_t ts;
        // kind: a double (5), quality good, bad or uncertain (bits 3-4 not 3), no other bit.
        if (b[0] - 1u < 0x7Fu && (two == 0 || b[2] < 0x80) && (kind & 0xE7) == 5 && kind != 29 &&
            !__builtin_add_overflow(
                ts_, static_cast<int64_t>(delta >> 1) ^ -static_cast<int64_t>(delta & 1), &ts)) {
          item->tag_id = b[0];
          item->ts_ms = ts_ = ts;
          item->kind = ChunkItem::Kind::kDouble;
          item->quality = static_cast<Quality>(kind >> 3);
          std::memcpy(&item->d, b + 3 + two, 8);
          item->error = {};
          pos_ = pos + 11 + two;
          --left_;
          return true;
        }
      }
    }
    return NextSlow(item);
  }
  const Status& status() const { return status_; }

 private:
  bool NextSlow(ChunkItem* item);
  bool Fail(const char* what);

  std::string_view d_;
  size_t pos_ = 0;
  uint64_t left_ = 0;
  int64_t ts_ = 0;
  Status status_;
};

}  // namespace tagrelay::store
