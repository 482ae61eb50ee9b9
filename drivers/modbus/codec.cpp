#include "drivers/modbus/codec.h"

#include <bit>
#include <charconv>
#include <cmath>
#include <string>

namespace tagrelay::modbus {
namespace {

// The value's bytes, most significant first, as one big-endian integer:
// registers taken in value order (reversed if the order swaps words), each
// register's two bytes swapped if the order swaps bytes.
uint64_t Join(std::span<const uint16_t> r, WordOrder order) {
  uint64_t v = 0;
  const size_t n = r.size();
  for (size_t i = 0; i < n; ++i) {
    uint16_t word = r[SwapsWords(order) ? n - 1 - i : i];
    if (SwapsBytes(order)) word = static_cast<uint16_t>((word << 8) | (word >> 8));
    v = (v << 16) | word;
  }
  return v;
}

// The double whose shortest decimal form is the float's shortest decimal form:
// 230.6221f becomes 230.6221, not 230.62210083007812. It reads back as the same
// float, so nothing the device sent is lost, and the cloud sees what the device
// meant.
double FloatAsShortestDouble(float f) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, f);
  double d = 0;
  std::from_chars(buf, r.ptr, d);
  return d;
}

// x * scale, computed as x / n when scale is 1/n for a whole n (0.1, 0.01, ...):
// 217 * 0.1 is 21.700000000000003 in binary floating point, 217 / 10 is 21.7.
double Scale(double x, double scale) {
  if (scale != 0.0 && std::fabs(scale) < 1.0) {
    const double inverse = 1.0 / scale;
    const double n = std::round(inverse);
    if (std::fabs(inverse - n) < 1e-9 * std::fabs(n)) return x / n;
  }
  return x * scale;
}

Result<Value> DecodeString(std::span<const uint16_t> regs, const TagSpec& tag) {
  std::string s;
  s.reserve(tag.length);
  for (size_t i = 0; i < tag.length; ++i) {
    uint16_t word = regs[i / 2];
    if (SwapsBytes(tag.order)) word = static_cast<uint16_t>((word << 8) | (word >> 8));
    const char c = static_cast<char>(i % 2 == 0 ? word >> 8 : word & 0xFF);
    if (c == '\0') break;
    s.push_back(c);
  }
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return Value{std::move(s)};
}

Status WrongLength(std::string_view type, size_t got, size_t need) {
  return Status::InvalidArgument("decode " + std::string(type) + ": got " + std::to_string(got) +
                                 " registers, need " + std::to_string(need));
}

}  // namespace

Result<Value> DecodeRaw(std::span<const uint16_t> regs, DataType type, WordOrder order) {
  if (type == DataType::kString) return Status::InvalidArgument("decode string: needs its tag");
  if (regs.size() != RegisterCount(type)) {
    return WrongLength(DataTypeName(type), regs.size(), RegisterCount(type));
  }
  const uint64_t v = Join(regs, order);
  switch (type) {
    case DataType::kBool: return Value{v != 0};
    case DataType::kBit: return Value{(v & 1) != 0};
    case DataType::kInt16: return Value{int64_t{static_cast<int16_t>(v)}};
    case DataType::kUint16: return Value{uint64_t{static_cast<uint16_t>(v)}};
    case DataType::kInt32: return Value{int64_t{static_cast<int32_t>(v)}};
    case DataType::kUint32: return Value{uint64_t{static_cast<uint32_t>(v)}};
    case DataType::kInt64: return Value{static_cast<int64_t>(v)};
    case DataType::kUint64: return Value{v};
    case DataType::kFloat32: {
      const float f = std::bit_cast<float>(static_cast<uint32_t>(v));
      if (!std::isfinite(f)) return Status::DeviceError("non-finite");
      return Value{FloatAsShortestDouble(f)};
    }
    case DataType::kFloat64: {
      const double d = std::bit_cast<double>(v);
      if (!std::isfinite(d)) return Status::DeviceError("non-finite");
      return Value{d};
    }
    case DataType::kString: break;
  }
  return Status::Internal("unknown data type");
}

Result<Value> DecodeRaw(std::span<const uint16_t> regs, const TagSpec& tag) {
  const size_t need = ElementCount(tag);
  if (regs.size() != need) return WrongLength(DataTypeName(tag.type), regs.size(), need);
  if (tag.type == DataType::kString) return DecodeString(regs, tag);
  if (tag.type == DataType::kBit) {
    uint16_t word = regs[0];
    if (SwapsBytes(tag.order)) word = static_cast<uint16_t>((word << 8) | (word >> 8));
    return Value{((word >> tag.bit) & 1) != 0};
  }
  return DecodeRaw(regs, tag.type, tag.order);
}

Value ApplyScale(const Value& raw, double scale, double offset) {
  const bool identity = scale == 1.0 && offset == 0.0;
  if (const auto* i = std::get_if<int64_t>(&raw)) {
    if (identity) return *i;
    return Scale(static_cast<double>(*i), scale) + offset;
  }
  if (const auto* u = std::get_if<uint64_t>(&raw)) {
    if (identity) return *u;
    return Scale(static_cast<double>(*u), scale) + offset;
  }
  if (const auto* d = std::get_if<double>(&raw)) return identity ? *d : Scale(*d, scale) + offset;
  return raw;  // bool, string, none: scaling does not apply
}

Result<Value> DecodeTag(const TagSpec& tag, std::span<const uint16_t> regs) {
  Result<Value> raw = DecodeRaw(regs, tag);
  if (!raw.ok()) return raw;
  return ApplyScale(*raw, tag.scale, tag.offset);
}

Value DecodeBitValue(uint8_t bit) { return Value{bit != 0}; }

}  // namespace tagrelay::modbus
