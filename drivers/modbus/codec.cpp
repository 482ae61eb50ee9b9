#include "drivers/modbus/codec.h"

#include <bit>
#include <charconv>
#include <cmath>
#include <string>

namespace tagrelay::modbus {
namespace {

// Big-endian bytes A B C D ... of the value, reordered from the wire order.
uint32_t Join32(std::span<const uint16_t> r, WordOrder order) {
  switch (order) {
    case WordOrder::kABCD: return (uint32_t{r[0]} << 16) | r[1];
  }
  return 0;
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

}  // namespace

Result<Value> DecodeRaw(std::span<const uint16_t> regs, DataType type, WordOrder order) {
  if (regs.size() != RegisterCount(type)) {
    return Status::InvalidArgument("decode " + std::string(DataTypeName(type)) + ": got " +
                                   std::to_string(regs.size()) + " registers, need " +
                                   std::to_string(RegisterCount(type)));
  }
  switch (type) {
    case DataType::kInt16: return Value{int64_t{static_cast<int16_t>(regs[0])}};
    case DataType::kUint16: return Value{uint64_t{regs[0]}};
    case DataType::kFloat32: {
      const float f = std::bit_cast<float>(Join32(regs, order));
      if (!std::isfinite(f)) return Status::DeviceError("non-finite");
      return Value{FloatAsShortestDouble(f)};
    }
  }
  return Status::Internal("unknown data type");
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
  Result<Value> raw = DecodeRaw(regs, tag.type, tag.order);
  if (!raw.ok()) return raw;
  return ApplyScale(*raw, tag.scale, tag.offset);
}

}  // namespace tagrelay::modbus
