#include "store/chunk_codec.h"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <type_traits>

namespace tagrelay::store {
namespace {

constexpr uint8_t kFormat = 1;
constexpr uint8_t kErrorBit = 0x80;
constexpr int64_t kMaxCount = 1 << 20;
enum Type : uint8_t {
  kNone = 0,
  kFalse = 1,
  kTrue = 2,
  kInt = 3,
  kUint = 4,
  kDouble = 5,
  kText = 6
};

void PutVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}
uint64_t Zigzag(int64_t v) {
  return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
}
int64_t Unzigzag(uint64_t v) { return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1); }

void PutText(std::string* out, std::string_view s) {
  PutVarint(out, s.size());
  out->append(s);
}

class Reader {
 public:
  explicit Reader(std::string_view d, size_t pos = 0) : d_(d), pos_(pos) {}
  bool Varint(uint64_t* v) {
    uint64_t result = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= d_.size()) return false;
      const auto b = static_cast<uint8_t>(d_[pos_++]);
      result |= uint64_t{b & 0x7Fu} << shift;
      if ((b & 0x80) == 0) {
        *v = result;
        return true;
      }
    }
    return false;  // more than 10 bytes: not a varint
  }
  bool Signed(int64_t* v) {
    uint64_t u;
    if (!Varint(&u)) return false;
    *v = Unzigzag(u);
    return true;
  }
  bool Byte(uint8_t* b) {
    if (pos_ >= d_.size()) return false;
    *b = static_cast<uint8_t>(d_[pos_++]);
    return true;
  }
  bool Bytes(size_t n, std::string_view* s) {
    if (n > d_.size() - pos_) return false;
    *s = d_.substr(pos_, n);
    pos_ += n;
    return true;
  }
  bool Text(std::string_view* s) {
    uint64_t n;
    return Varint(&n) && n <= d_.size() && Bytes(static_cast<size_t>(n), s);
  }
  bool done() const { return pos_ == d_.size(); }
  size_t pos() const { return pos_; }

 private:
  std::string_view d_;
  size_t pos_ = 0;
};

void PutValue(std::string* out, uint8_t kind_bits, const Value& v) {
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::monostate>) {
          out->push_back(static_cast<char>(kind_bits | kNone));
        } else if constexpr (std::is_same_v<T, bool>) {
          out->push_back(static_cast<char>(kind_bits | (x ? kTrue : kFalse)));
        } else if constexpr (std::is_same_v<T, int64_t>) {
          out->push_back(static_cast<char>(kind_bits | kInt));
          PutVarint(out, Zigzag(x));
        } else if constexpr (std::is_same_v<T, uint64_t>) {
          out->push_back(static_cast<char>(kind_bits | kUint));
          PutVarint(out, x);
        } else if constexpr (std::is_same_v<T, double>) {
          out->push_back(static_cast<char>(kind_bits | kDouble));
          const auto bits = std::bit_cast<uint64_t>(x);
          for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>(bits >> (8 * i)));
        } else {
          out->push_back(static_cast<char>(kind_bits | kText));
          PutText(out, x);
        }
      },
      v);
}

}  // namespace

void EncodeChunk(std::span<const Reading> readings, std::span<const int64_t> tag_ids,
                 std::string* out) {
  out->push_back(static_cast<char>(kFormat));
  PutVarint(out, readings.size());
  const int64_t base = readings.empty() ? 0 : readings.front().ts_ms;
  PutVarint(out, Zigzag(base));
  int64_t prev = base;
  for (size_t i = 0; i < readings.size(); ++i) {
    const Reading& r = readings[i];
    PutVarint(out, static_cast<uint64_t>(tag_ids[i]));
    PutVarint(out, Zigzag(r.ts_ms - prev));
    prev = r.ts_ms;
    uint8_t bits = static_cast<uint8_t>(static_cast<uint8_t>(r.quality) << 3);
    if (!r.error.empty()) bits |= kErrorBit;
    PutValue(out, bits, r.value);
    if (!r.error.empty()) PutText(out, r.error);
  }
}

ChunkCursor::ChunkCursor(std::string_view data, int64_t count) : d_(data) {
  Reader in(d_);
  uint8_t format;
  uint64_t n;
  bool ok = in.Byte(&format) && format == kFormat;
  const char* what = "unknown format";
  if (ok) {
    ok = in.Varint(&n) && n <= kMaxCount && static_cast<int64_t>(n) == count;
    what = "wrong count";
  }
  if (ok) {
    ok = in.Signed(&ts_);
    what = "truncated header";
  }
  pos_ = in.pos();
  if (!ok) {
    Fail(what);
    return;
  }
  left_ = n;
}

bool ChunkCursor::Fail(const char* what) {
  status_ = Status::Corruption("chunk: " + std::string(what) + " at byte " + std::to_string(pos_));
  left_ = 0;
  d_ = {};
  pos_ = 0;
  return false;
}

bool ChunkCursor::NextSlow(ChunkItem* r) {
  if (left_ == 0) {
    if (status_.ok() && pos_ != d_.size()) return Fail("trailing bytes");
    return false;
  }
  // The common readings (one-byte tag id and time delta, a double) take the
  // short paths; anything else goes through Reader. A failure is reported at
  // the byte the reader reached, as DecodeChunk always has.
  const auto* const data = reinterpret_cast<const uint8_t*>(d_.data());
  const size_t size = d_.size();
  size_t pos = pos_;
  auto bad = [&](const Reader& in, const char* what) {
    pos_ = in.pos();
    return Fail(what);
  };
  auto varint = [&](uint64_t* v, const char* what) {
    if (pos < size && data[pos] < 0x80) {
      *v = data[pos++];
      return true;
    }
    if (size - pos >= 2 && data[pos + 1] < 0x80) {  // two bytes (data[pos] >= 0x80)
      *v = (data[pos] & 0x7Fu) | (uint64_t{data[pos + 1]} << 7);
      pos += 2;
      return true;
    }
    Reader in(d_, pos);
    if (!in.Varint(v)) return bad(in, what);
    pos = in.pos();
    return true;
  };
  uint64_t tag, delta;
  if (!varint(&tag, "bad tag id")) return false;
  if (tag == 0 || tag > static_cast<uint64_t>(INT64_MAX)) return bad(Reader(d_, pos), "bad tag id");
  if (!varint(&delta, "truncated reading")) return false;
  if (pos >= size) return bad(Reader(d_, pos), "truncated reading");
  const uint8_t kind = data[pos++];
  if (__builtin_add_overflow(ts_, Unzigzag(delta), &ts_)) {
    return bad(Reader(d_, pos), "timestamp out of range");
  }
  const uint8_t quality = (kind >> 3) & 0x3;
  if (quality > static_cast<uint8_t>(Quality::kUncertain) || (kind & 0x60) != 0) {
    return bad(Reader(d_, pos), "bad kind");
  }
  r->tag_id = static_cast<int64_t>(tag);
  r->ts_ms = ts_;
  r->quality = static_cast<Quality>(quality);
  switch (kind & 0x7) {
    case kNone: r->kind = ChunkItem::Kind::kNone; break;
    case kFalse: r->kind = ChunkItem::Kind::kFalse; break;
    case kTrue: r->kind = ChunkItem::Kind::kTrue; break;
    case kInt: {
      uint64_t u;
      if (!varint(&u, "truncated value")) return false;
      r->i = Unzigzag(u);
      r->kind = ChunkItem::Kind::kInt;
      break;
    }
    case kUint:
      if (!varint(&r->u, "truncated value")) return false;
      r->kind = ChunkItem::Kind::kUint;
      break;
    case kDouble: {
      if (size - pos < 8) return bad(Reader(d_, pos), "truncated value");
      uint64_t bits = 0;
      if constexpr (std::endian::native == std::endian::little) {
        std::memcpy(&bits, data + pos, 8);
      } else {
        for (int k = 0; k < 8; ++k) bits |= uint64_t{data[pos + k]} << (8 * k);
      }
      pos += 8;
      r->d = std::bit_cast<double>(bits);
      r->kind = ChunkItem::Kind::kDouble;
      break;
    }
    case kText: {
      Reader in(d_, pos);
      if (!in.Text(&r->text)) return bad(in, "truncated text");
      pos = in.pos();
      r->kind = ChunkItem::Kind::kText;
      break;
    }
    default: return bad(Reader(d_, pos), "bad value type");
  }
  r->error = {};
  if ((kind & kErrorBit) != 0) {
    Reader in(d_, pos);
    if (!in.Text(&r->error)) return bad(in, "truncated error");
    pos = in.pos();
  }
  pos_ = pos;
  --left_;
  return true;
}

Status DecodeChunk(std::string_view data, int64_t count, std::vector<ChunkReading>& out) {
  ChunkCursor in(data, count);
  std::vector<ChunkReading> decoded;
  decoded.reserve(static_cast<size_t>(
      std::min<uint64_t>(count > 0 ? static_cast<uint64_t>(count) : 0,
                         data.size() / 4)));  // a reading takes 4 bytes at least
  ChunkItem item;
  while (in.Next(&item)) {
    ChunkReading r;
    r.tag_id = item.tag_id;
    r.ts_ms = item.ts_ms;
    r.quality = item.quality;
    switch (item.kind) {
      case ChunkItem::Kind::kNone: break;
      case ChunkItem::Kind::kFalse: r.value = false; break;
      case ChunkItem::Kind::kTrue: r.value = true; break;
      case ChunkItem::Kind::kInt: r.value = item.i; break;
      case ChunkItem::Kind::kUint: r.value = item.u; break;
      case ChunkItem::Kind::kDouble: r.value = item.d; break;
      case ChunkItem::Kind::kText: r.value = std::string(item.text); break;
    }
    r.error.assign(item.error);
    decoded.push_back(std::move(r));
  }
  if (!in.status().ok()) return in.status();
  out.insert(out.end(), std::make_move_iterator(decoded.begin()),
             std::make_move_iterator(decoded.end()));
  return Status::Ok();
}

}  // namespace tagrelay::store
