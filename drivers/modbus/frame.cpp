#include "drivers/modbus/frame.h"

#include <algorithm>
#include <string>

namespace tagrelay::modbus {
namespace {

ReplyCheck Error(std::string token) {
  ReplyCheck r;
  r.kind = ReplyCheck::kError;
  r.error = Status::DeviceError(std::move(token));
  return r;
}

}  // namespace

uint8_t ReadFunction(Table table) {
  switch (table) {
    case Table::kCoil: return 1;
    case Table::kDiscrete: return 2;
    case Table::kHolding: return 3;
    case Table::kInput: return 4;
  }
  return 3;
}

uint16_t Crc16(std::span<const uint8_t> bytes) {
  uint16_t crc = 0xFFFF;
  for (uint8_t b : bytes) {
    crc ^= b;
    for (int i = 0; i < 8; ++i)
      crc = (crc & 1) ? static_cast<uint16_t>((crc >> 1) ^ 0xA001) : crc >> 1;
  }
  return crc;
}

std::vector<uint8_t> BuildReadRequest(Framing framing, const ReadFrame& req) {
  std::vector<uint8_t> adu;
  adu.reserve(12);
  const auto push16 = [&adu](uint16_t v) {
    adu.push_back(static_cast<uint8_t>(v >> 8));
    adu.push_back(static_cast<uint8_t>(v & 0xFF));
  };
  if (framing == Framing::kTcp) {
    push16(req.transaction);
    push16(0);  // protocol id
    push16(6);  // length of what follows
  }
  adu.push_back(req.unit);
  adu.push_back(req.function);
  push16(req.address);
  push16(req.count);
  if (framing == Framing::kRtu) {
    const uint16_t crc = Crc16(adu);
    adu.push_back(static_cast<uint8_t>(crc & 0xFF));
    adu.push_back(static_cast<uint8_t>(crc >> 8));
  }
  return adu;
}

ReplyCheck CheckReply(Framing framing, std::span<const uint8_t> adu, const ReadFrame& req,
                      std::span<const uint16_t> stale) {
  std::span<const uint8_t> pdu;  // unit id + function + ...
  if (framing == Framing::kTcp) {
    if (adu.size() < 9) return Error("bad-frame");
    const uint16_t transaction = static_cast<uint16_t>((adu[0] << 8) | adu[1]);
    if (transaction != req.transaction) {
      if (std::find(stale.begin(), stale.end(), transaction) != stale.end()) {
        return ReplyCheck{ReplyCheck::kStale, {}, {}};
      }
      return Error("bad-frame");
    }
    const size_t length = static_cast<size_t>((adu[4] << 8) | adu[5]);
    if (adu[2] != 0 || adu[3] != 0 || length != adu.size() - 6) return Error("bad-frame");
    pdu = adu.subspan(6);
  } else {
    if (adu.size() < 5) return Error("bad-frame");
    pdu = adu.first(adu.size() - 2);  // the CRC was checked when the frame was received
  }
  if (pdu[0] != req.unit) return Error("bad-frame");
  if (pdu[1] == (req.function | 0x80)) {
    if (pdu.size() != 3) return Error("bad-frame");
    return Error("exception:" + std::to_string(pdu[2]));
  }
  if (pdu[1] != req.function || pdu.size() < 3) return Error("bad-frame");
  const size_t bytes = pdu[2];
  if (bytes != ReplyDataBytes(req) || pdu.size() != 3 + bytes) return Error("bad-frame");
  ReplyCheck ok;
  ok.kind = ReplyCheck::kOk;
  ok.data = pdu.subspan(3);
  return ok;
}

void UnpackRegisters(std::span<const uint8_t> data, uint16_t count, uint16_t* out) {
  for (uint16_t i = 0; i < count; ++i) {
    out[i] = static_cast<uint16_t>((data[2 * i] << 8) | data[2 * i + 1]);
  }
}

void UnpackBits(std::span<const uint8_t> data, uint16_t count, uint8_t* out) {
  for (uint16_t i = 0; i < count; ++i) out[i] = (data[i / 8] >> (i % 8)) & 1;
}

}  // namespace tagrelay::modbus
