// Value codecs: registers and bits as read off the wire -> typed, scaled values.
//
// Promise: pure functions, no state, no allocation except for strings. A value
// that cannot be represented as good data (a float NaN or infinity, a span of
// the wrong length) is an error, never a made-up number. Byte orders follow
// types.h: the value's bytes A (most significant) .. are found on the wire in
// the order the WordOrder names.
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
// returns them) of a fixed-size type into a raw value: bool for bool, int64_t
// for signed, uint64_t for unsigned integers, double for floats. kBit reads
// bit 0; use DecodeRaw(regs, tag) for another bit, and for strings.
Result<Value> DecodeRaw(std::span<const uint16_t> regs, DataType type, WordOrder order);

// The same for a tag of a register table: also bit tags and strings (their
// bytes up to the first NUL, trailing spaces removed).
Result<Value> DecodeRaw(std::span<const uint16_t> regs, const TagSpec& tag);

// raw * scale + offset. An integer stays an integer when scale is 1 and offset 0;
// otherwise the result is a double.
Value ApplyScale(const Value& raw, double scale, double offset);

// DecodeRaw then ApplyScale, with the tag's settings (register tables).
Result<Value> DecodeTag(const TagSpec& tag, std::span<const uint16_t> regs);

// A coil or discrete input: the bit as libmodbus returns it (0 or 1).
Value DecodeBitValue(uint8_t bit);

}  // namespace tagrelay::modbus
