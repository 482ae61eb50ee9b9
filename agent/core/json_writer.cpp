#include "agent/core/json_writer.h"

#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>
#include <type_traits>

namespace tagrelay {
namespace {

// Length of the valid UTF-8 sequence at s[i], or 0 if it is not valid.
size_t Utf8SequenceLength(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  size_t len = 0;
  uint32_t cp = 0;
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) {
    len = 2;
    cp = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3;
    cp = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4;
    cp = c & 0x07;
  } else
    return 0;
  if (i + len > s.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b(i + k) & 0x3F);
  }
  // Reject overlong forms, surrogates and code points past U+10FFFF.
  static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[len] || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return 0;
  return len;
}

constexpr double kPow10[] = {1e0, 1e1, 1e2,  1e3,  1e4,  1e5,  1e6, 1e7,
                             1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14};
constexpr uint64_t kPow10u[] = {1,
                                10,
                                100,
                                1000,
                                10000,
                                100000,
                                1000000,
                                10000000,
                                100000000,
                                1000000000,
                                10000000000,
                                100000000000,
                                1000000000000,
                                10000000000000,
                                100000000000000,
                                1000000000000000};
constexpr char kDigitPairs[] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

// Writes the last n decimal digits of x so that they end at `end`, two at a
// time; returns x without them.
uint64_t WriteLastDigits(uint64_t x, char* end, int n) {
  for (; n >= 2; n -= 2) {
    end -= 2;
    std::memcpy(end, kDigitPairs + 2 * (x % 100), 2);
    x /= 100;
  }
  if (n == 1) {
    end[-1] = static_cast<char>('0' + x % 10);
    x /= 10;
  }
  return x;
}

// The common case of a value that has at most 15 significant digits and
// whose magnitude is in [1, 1e15): without the general shortest-digits
// search. Any decimal of at most 15 significant digits is the only one of
// that length that reads back to its double (DBL_DIG), so the first k (digits
// after the point) for which round(a * 10^k) / 10^k reads back to a gives
// the digits std::to_chars finds; the layout (fixed unless scientific is
// shorter) is its too. nullptr when the value is not such a case.
char* FormatDecimal15(double v, char* p) {
  const double a = v < 0 ? -v : v;
  if (!(a >= 1.0 && a < 1e15)) return nullptr;
  // Conversions through int64_t (exact below 2^53) are single instructions.
  const auto whole = static_cast<uint64_t>(static_cast<int64_t>(a));
  // Digits of the integer part: log10 from the bit width (1233 / 4096 ~ log10(2)).
  const int t = (std::bit_width(whole) * 1233) >> 12;
  const int int_digits = t + (whole >= kPow10u[t] ? 1 : 0);
  int k = 0;
  uint64_t m = whole;  // the digits: the value is m / 10^k
  if (static_cast<double>(static_cast<int64_t>(whole)) != a) {
    for (k = 1;; ++k) {
      if (k > 15 - int_digits) return nullptr;  // more than 15 digits
      m = static_cast<uint64_t>(static_cast<int64_t>(a * kPow10[k] + 0.5));
      // Exact: m < 10^15 < 2^53 and 10^k are exact, and the division rounds correctly.
      if (static_cast<double>(static_cast<int64_t>(m)) / kPow10[k] == a) break;
    }
  } else if (int_digits > 5) {
    // An integer: scientific (d digits, a point if d > 1, "e+NN") may be shorter.
    int d = int_digits;
    for (uint64_t x = m; d > 1 && x % 10 == 0; x /= 10) --d;
    if (int_digits > d + (d > 1 ? 1 : 0) + 4) return nullptr;
  }
  if (v < 0) *p++ = '-';
  char* const point = p + int_digits;
  if (k == 0) {
    WriteLastDigits(m, point, int_digits);
    return point;
  }
  char* const end = point + 1 + k;
  *point = '.';
  WriteLastDigits(WriteLastDigits(m, end, k), point, int_digits);
  return end;
}

}  // namespace

char* FormatDouble(double v, char* first) {
  if (char* end = FormatDecimal15(v, first)) return end;
  return std::to_chars(first, first + 32, v).ptr;  // shortest form that round-trips
}

void AppendJsonString(std::string* out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  for (size_t i = 0; i < s.size();) {
    // Printable ASCII other than '"' and '\\' goes as it is: one append per run.
    size_t plain = i;
    while (plain < s.size()) {
      const auto p = static_cast<unsigned char>(s[plain]);
      if (p < 0x20 || p >= 0x7F || p == '"' || p == '\\') break;
      ++plain;
    }
    if (plain > i) {
      out->append(s.data() + i, plain - i);
      i = plain;
      continue;
    }
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      const size_t n = Utf8SequenceLength(s, i);
      if (n == 0) {
        out->append("\xEF\xBF\xBD");  // U+FFFD
        ++i;
      } else {
        out->append(s.substr(i, n));
        i += n;
      }
      continue;
    }
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      case '\b': out->append("\\b"); break;
      case '\f': out->append("\\f"); break;
      default:
        if (c < 0x20 || c == 0x7F) {
          out->append("\\u00");
          out->push_back(kHex[c >> 4]);
          out->push_back(kHex[c & 0xF]);
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
    ++i;
  }
  out->push_back('"');
}

void JsonWriter::BeforeValue() {
  if (after_key_) {
    after_key_ = false;
    return;
  }
  if (!first_.empty()) {
    if (!first_.back()) out_->push_back(',');
    first_.back() = false;
  }
}

JsonWriter& JsonWriter::BeginObject() {
  BeforeValue();
  out_->push_back('{');
  first_.push_back(true);
  return *this;
}

JsonWriter& JsonWriter::EndObject() {
  out_->push_back('}');
  first_.pop_back();
  return *this;
}

JsonWriter& JsonWriter::BeginArray() {
  BeforeValue();
  out_->push_back('[');
  first_.push_back(true);
  return *this;
}

JsonWriter& JsonWriter::EndArray() {
  out_->push_back(']');
  first_.pop_back();
  return *this;
}

JsonWriter& JsonWriter::Key(std::string_view key) {
  BeforeValue();
  AppendJsonString(out_, key);
  out_->push_back(':');
  after_key_ = true;
  return *this;
}

JsonWriter& JsonWriter::String(std::string_view s) {
  BeforeValue();
  AppendJsonString(out_, s);
  return *this;
}

JsonWriter& JsonWriter::Int(int64_t v) {
  BeforeValue();
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out_->append(buf, r.ptr);
  return *this;
}

JsonWriter& JsonWriter::Uint(uint64_t v) {
  BeforeValue();
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out_->append(buf, r.ptr);
  return *this;
}

JsonWriter& JsonWriter::Double(double v) {
  if (!std::isfinite(v)) return Null();
  BeforeValue();
  char buf[32];
  out_->append(buf, FormatDouble(v, buf));
  return *this;
}

JsonWriter& JsonWriter::Bool(bool v) {
  BeforeValue();
  out_->append(v ? "true" : "false");
  return *this;
}

void WriteValue(JsonWriter& w, const Value& v) {
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::monostate>) {
          w.Null();
        } else if constexpr (std::is_same_v<T, bool>) {
          w.Bool(x);
        } else if constexpr (std::is_same_v<T, int64_t>) {
          w.Int(x);
        } else if constexpr (std::is_same_v<T, uint64_t>) {
          w.Uint(x);
        } else if constexpr (std::is_same_v<T, double>) {
          w.Double(x);
        } else {
          w.String(x);
        }
      },
      v);
}

JsonWriter& JsonWriter::Null() {
  BeforeValue();
  out_->append("null");
  return *this;
}

}  // namespace tagrelay
