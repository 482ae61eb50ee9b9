// Value codecs: registers as read off the wire -> typed, scaled values.
//
// Promise: pure functions, no state, no allocation except for strings. A value
// that cannot be represented as good data (a float NaN or infinity, a span of
// the wrong length) is an error, never a made-up number.
//
// Threads: any.
#pragma once

#include <cstdint>
#include <span>

#include "agent/core/reading.h"
#include "agent/core/status.h"
#include "drivers/modbus/types.h"

namespace tagrelay::modbus {

// Decodes exactly RegisterCount(type) registers (host-order uint16 as libmodbus
// returns them) into a raw value: int64_t for signed, uint64_t for unsigned
// integers, double for floats.
Result<Value> DecodeRaw(std::span<const uint16_t> regs, DataType type, WordOrder order);

// raw * scale + offset. An integer stays an integer when scale is 1 and offset 0;
// otherwise the result is a double.
Value ApplyScale(const Value& raw, double scale, double offset);

// DecodeRaw then ApplyScale, with the tag's settings.
Result<Value> DecodeTag(const TagSpec& tag, std::span<const uint16_t> regs);

}  // namespace tagrelay::modbus
