// The wire contract v1 (docs/protocol.md): topics and JSON payloads.
//
// Promise: EncodeTelemetry() writes one telemetry batch exactly as documented:
// readings in sequence order, seq_first..seq_last covering exactly them (the
// caller passes a run of consecutive sequence numbers), `v` only on readings
// that have a value, `err` only on readings that are not good.
//
// Threads: pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "store/types.h"

namespace tagrelay::uplink {

inline constexpr std::string_view kTelemetrySchema = "tagrelay.telemetry.v1";
inline constexpr std::string_view kStatusSchema = "tagrelay.status.v1";

// {prefix}/{gateway}/status
std::string StatusTopic(std::string_view prefix, std::string_view gateway);
// {prefix}/{gateway}/{device}/{kind}, kind = telemetry | alarms | counters | birth
std::string DeviceTopic(std::string_view prefix, std::string_view gateway, std::string_view device,
                        std::string_view kind);

struct BatchHeader {
  std::string_view gateway;
  std::string_view device;
  bool historical = false;
};

// REQUIRES: !readings.empty() and readings[i].seq == readings[0].seq + i.
std::string EncodeTelemetry(const BatchHeader& header,
                            std::span<const store::StoredReading> readings);

// The retained gateway status: state is "online" or "offline".
std::string EncodeStatus(std::string_view gateway, std::string_view state, std::string_view version,
                         std::string_view config_digest, int64_t ts_ms);

}  // namespace tagrelay::uplink
