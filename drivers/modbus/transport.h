// ModbusTransport: one connection to one Modbus endpoint (a TCP device or
// gateway, a serial line, or a serial server reached over TCP), through which
// a poller reads.
//
// Promise: every failure comes back as a Status whose message is a short,
// stable token that a reading may carry as its `err`:
//   kTimeout      "timeout"         no (complete) answer in time
//   kDeviceError  "exception:N"     the device answered with Modbus exception N
//                 "crc"             an RTU frame whose checksum is wrong (noise, wrong baud)
//                 "bad-frame"       an answer that is not a valid reply to the request:
//                                   wrong unit id, function code or byte count, too long
//   kUnavailable  "not-connected"   the link is down (Connect() failed or was lost)
//   kIOError      "io"              any other transport error
// A reply is never taken for the answer to another request (how, depends on
// the framing: see libmodbus_transport.h). Details for operators go to the
// log (last_error()), not into the token.
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

  // Reads `count` bits of `table` (coil or discrete) into `out` (0 or 1 each).
  virtual Status ReadBits(int unit, Table table, uint16_t address, uint16_t count,
                          uint8_t* out) = 0;

  // "tcp 10.0.0.5:502", "rtu /dev/ttyS1 19200 8E1", for logs.
  virtual std::string Describe() const = 0;

  // The detail of the last failure ("Connection refused", "CRC mismatch"), for logs.
  virtual std::string last_error() const { return {}; }
};

// Reads `count` registers or bits of `table` into `regs` or `bits`, whichever
// the table needs.
inline Status ReadTable(ModbusTransport& t, int unit, Table table, uint16_t address, uint16_t count,
                        uint16_t* regs, uint8_t* bits) {
  return IsBitTable(table) ? t.ReadBits(unit, table, address, count, bits)
                           : t.ReadRegisters(unit, table, address, count, regs);
}

}  // namespace tagrelay::modbus
