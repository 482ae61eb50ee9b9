// Frame: the bytes of Modbus read requests and the checks of their replies,
// for the TCP (MBAP) and RTU framings, kept apart from any I/O.
//
// Promise: CheckReply() accepts a reply only if it answers exactly the request
// it is given: same transaction id (TCP), same unit id, same function code, the
// byte count the request asked for, and (TCP) a length field that matches the
// frame. Everything else is an error token as transport.h lists them, or
// kStale for a TCP reply to an earlier request that had timed out.
//
// Threads: pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "agent/core/status.h"
#include "drivers/modbus/types.h"

namespace tagrelay::modbus {

enum class Framing { kTcp, kRtu };

struct ReadFrame {
  uint16_t transaction = 0;  // TCP only
  uint8_t unit = 1;
  uint8_t function = 3;  // 1 coils, 2 discrete inputs, 3 holding, 4 input registers
  uint16_t address = 0;
  uint16_t count = 0;
};

// The read function code of a table.
uint8_t ReadFunction(Table table);

// Modbus CRC-16 (polynomial 0xA001, initial 0xFFFF), as sent low byte first.
uint16_t Crc16(std::span<const uint8_t> bytes);

// The request ADU: MBAP header + PDU (TCP) or unit + PDU + CRC (RTU).
std::vector<uint8_t> BuildReadRequest(Framing framing, const ReadFrame& req);

// Bytes of the data part that a good reply carries.
inline uint16_t ReplyDataBytes(const ReadFrame& req) {
  return req.function <= 2 ? static_cast<uint16_t>((req.count + 7) / 8)
                           : static_cast<uint16_t>(req.count * 2);
}

struct ReplyCheck {
  enum Kind { kOk, kStale, kError };
  Kind kind = kError;
  Status error;                   // kError: the token
  std::span<const uint8_t> data;  // kOk: the data bytes (after the byte count)
};

// Checks a whole reply ADU as received (RTU: CRC already checked by the
// receiver, still included). `stale` lists TCP transaction ids of earlier
// requests whose replies never came in time.
ReplyCheck CheckReply(Framing framing, std::span<const uint8_t> adu, const ReadFrame& req,
                      std::span<const uint16_t> stale = {});

// Unpacks the data of a good reply into `count` registers or bits.
void UnpackRegisters(std::span<const uint8_t> data, uint16_t count, uint16_t* out);
void UnpackBits(std::span<const uint8_t> data, uint16_t count, uint8_t* out);

}  // namespace tagrelay::modbus
