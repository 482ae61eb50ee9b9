// ModbusTransport: one connection to one Modbus endpoint (a TCP device or
// gateway; later an RTU line), through which a poller reads.
//
// Promise: every failure comes back as a Status whose message is a short,
// stable token that a reading may carry as its `err`:
//   kTimeout      "timeout"         no (complete) answer in time
//   kDeviceError  "exception:N"     the device answered with Modbus exception N
//                 "bad-frame"       an answer that is not a valid reply to the request
//   kUnavailable  "not-connected"   the link is down (Connect() failed or was lost)
//   kIOError      "io"              any other transport error
// Details for operators go to the log, not into the token.
//
// Threads: a transport is owned by exactly one poller thread and is not thread safe.
#pragma once

#include <cstdint>
#include <string>

#include "agent/core/status.h"
#include "drivers/modbus/types.h"

namespace tagrelay::modbus {

class ModbusTransport {
 public:
  virtual ~ModbusTransport() = default;

  virtual Status Connect() = 0;
  virtual void Close() = 0;
  virtual bool connected() const = 0;

  // Reads `count` registers of `table` (input or holding) at `address` from unit
  // `unit` into `out`, which has room for `count` values.
  virtual Status ReadRegisters(int unit, Table table, uint16_t address, uint16_t count,
                               uint16_t* out) = 0;

  // "tcp 10.0.0.5:502", for logs.
  virtual std::string Describe() const = 0;
};

}  // namespace tagrelay::modbus
