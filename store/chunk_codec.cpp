#include "store/chunk_codec.h"

#include <algorithm>
#include <bit>
#include <cstdint>
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
  explicit Reader(std::string_view d) : d_(d) {}
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
  bool Text(std::string* s) {
    uint64_t n;
    std::string_view v;
    if (!Varint(&n) || n > d_.size() || !Bytes(static_cast<size_t>(n), &v)) return false;
    s->assign(v);
    return true;
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

Status DecodeChunk(std::string_view data, int64_t count, std::vector<ChunkReading>& out) {
  Reader in(data);
  auto bad = [&](const char* what) {
    return Status::Corruption("chunk: " + std::string(what) + " at byte " +
                              std::to_string(in.pos()));
  };
  uint8_t format;
  uint64_t n;
  int64_t ts;
  if (!in.Byte(&format) || format != kFormat) return bad("unknown format");
  if (!in.Varint(&n) || n > kMaxCount || static_cast<int64_t>(n) != count)
    return bad("wrong count");
  if (!in.Signed(&ts)) return bad("truncated header");
  std::vector<ChunkReading> decoded;
  decoded.reserve(std::min<uint64_t>(n, data.size() / 4));  // a reading takes 4 bytes at least
  for (uint64_t i = 0; i < n; ++i) {
    ChunkReading r;
    uint64_t tag;
    int64_t delta;
    uint8_t kind;
    if (!in.Varint(&tag) || tag == 0 || tag > static_cast<uint64_t>(INT64_MAX))
      return bad("bad tag id");
    if (!in.Signed(&delta) || !in.Byte(&kind)) return bad("truncated reading");
    if (__builtin_add_overflow(ts, delta, &ts)) return bad("timestamp out of range");
    const uint8_t quality = (kind >> 3) & 0x3;
    if (quality > static_cast<uint8_t>(Quality::kUncertain) || (kind & 0x60) != 0) {
      return bad("bad kind");
    }
    r.tag_id = static_cast<int64_t>(tag);
    r.ts_ms = ts;
    r.quality = static_cast<Quality>(quality);
    switch (kind & 0x7) {
      case kNone: break;
      case kFalse: r.value = false; break;
      case kTrue: r.value = true; break;
      case kInt: {
        int64_t v;
        if (!in.Signed(&v)) return bad("truncated value");
        r.value = v;
        break;
      }
      case kUint: {
        uint64_t v;
        if (!in.Varint(&v)) return bad("truncated value");
        r.value = v;
        break;
      }
      case kDouble: {
        std::string_view b;
        if (!in.Bytes(8, &b)) return bad("truncated value");
        uint64_t bits = 0;
        for (int k = 0; k < 8; ++k) bits |= uint64_t{static_cast<uint8_t>(b[k])} << (8 * k);
        r.value = std::bit_cast<double>(bits);
        break;
      }
      case kText: {
        std::string s;
        if (!in.Text(&s)) return bad("truncated text");
        r.value = std::move(s);
        break;
      }
      default: return bad("bad value type");
    }
    if ((kind & kErrorBit) != 0 && !in.Text(&r.error)) return bad("truncated error");
    decoded.push_back(std::move(r));
  }
  if (!in.done()) return bad("trailing bytes");
  out.insert(out.end(), std::make_move_iterator(decoded.begin()),
             std::make_move_iterator(decoded.end()));
  return Status::Ok();
}

}  // namespace tagrelay::store
