// Probe: one read of a device's tags, or of a range of registers, for a
// technician at the box (`tagrelay probe`). Shows what is on the wire (raw
// registers in hex, bits) next to the decoded value, so that a wrong address,
// type or byte order is plain to see.
//
// Promise: reads only; a failing request is reported with its error token and
// the transport's detail, and the other requests still run.
//
// Threads: runs on the caller's thread with a transport it owns.
#pragma once

#include <string>

#include "agent/core/reading.h"
#include "drivers/modbus/transport.h"
#include "drivers/modbus/types.h"

namespace tagrelay::modbus {

struct ProbeReport {
  std::string text;  // one line per tag or value, ready to print
  int failures = 0;  // values that could not be read or decoded
};

// Reads every tag of `device` (or only the one named `tag`, if not empty).
ProbeReport ProbeDevice(ModbusTransport& transport, const DeviceSpec& device,
                        const std::string& tag, int retries);

// Reads `count` consecutive values shaped like `shape` (its table, type, order,
// bit, length, scale) starting at shape.address, from `unit`.
ProbeReport ProbeRange(ModbusTransport& transport, int unit, const TagSpec& shape, int count,
                       int retries);

// A value as the probe prints it: 230.5, -12, true, "text".
std::string FormatValue(const Value& v);

}  // namespace tagrelay::modbus
