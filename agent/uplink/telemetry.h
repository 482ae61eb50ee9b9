// The wire contract v1 (docs/protocol.md, docs/schema/): topics and JSON payloads.
//
// Promise: every encoder writes exactly what docs/schema/ describes. A batch
// (telemetry, alarms, counters, events) holds a run of records of one stream
// with consecutive sequence numbers, seq_first..seq_last covering exactly them
// (the caller passes such a run). The size-bounded encoders take the leading
// records whose payload fits in max_bytes, and always at least one, so a
// single record larger than the bound still goes out alone rather than
// blocking its stream. Records of the event streams are stored as JSON objects
// (agent/rules/records.h makes them) and are copied into a batch as they are.
//
// Threads: pure functions.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "agent/core/reading.h"
#include "store/types.h"

namespace tagrelay::uplink {

inline constexpr std::string_view kTelemetrySchema = "tagrelay.telemetry.v1";
inline constexpr std::string_view kAlarmsSchema = "tagrelay.alarms.v1";
inline constexpr std::string_view kCountersSchema = "tagrelay.counters.v1";
inline constexpr std::string_view kEventsSchema = "tagrelay.events.v1";
inline constexpr std::string_view kBirthSchema = "tagrelay.birth.v1";
inline constexpr std::string_view kStatusSchema = "tagrelay.status.v1";

inline constexpr size_t kUnbounded = std::numeric_limits<size_t>::max();

// The streams a gateway publishes; each has a sequence per device (events: per
// gateway) and its own topic.
enum class Stream : uint8_t { kTelemetry, kAlarms, kCounters, kEvents };

// "telemetry", "alarms", "counters", "events": the last level of the topic,
// and the stream's name in the store.
std::string_view StreamName(Stream s);
std::optional<Stream> ParseStream(std::string_view name);

// {prefix}/{gateway}/status
std::string StatusTopic(std::string_view prefix, std::string_view gateway);
// {prefix}/{gateway}/events: the gateway's own event stream
std::string EventsTopic(std::string_view prefix, std::string_view gateway);
// {prefix}/{gateway}/{device}/{kind}, kind = telemetry | alarms | counters | birth
std::string DeviceTopic(std::string_view prefix, std::string_view gateway, std::string_view device,
                        std::string_view kind);

struct BatchHeader {
  std::string_view gateway;
  std::string_view device;
  bool historical = false;
};

// REQUIRES: !readings.empty() and readings[i].seq == readings[0].seq + i.
// Replaces *out with the batch of the leading readings that fit; returns their number.
size_t EncodeTelemetry(const BatchHeader& header, std::span<const store::StoredReading> readings,
                       size_t max_bytes, std::string* out);
// All of `readings` in one batch.
std::string EncodeTelemetry(const BatchHeader& header,
                            std::span<const store::StoredReading> readings);

// The same batch straight from stored chunks, without a StoredReading per
// reading: replaces *out with the batch of the leading whole chunks whose
// payload fits in max_bytes (always at least one chunk) and returns how many
// chunks it took. The bytes are those EncodeTelemetry() writes for the same
// readings. REQUIRES: !chunks.empty(), chunks[i + 1].seq_first ==
// chunks[i].seq_last() + 1, and every chunk as store::OutboxReader hands it
// out (it decodes; `names` knows all of its tag ids).
size_t EncodeTelemetryChunks(const BatchHeader& header, std::span<const store::StoredChunk> chunks,
                             const store::TagNames& names, size_t max_bytes, std::string* out);

// A batch of stored records of an event stream (alarms, counters: of
// header.device; events: of the gateway, header.device empty).
// REQUIRES: !records.empty(), consecutive seq, each body a JSON object.
size_t EncodeRecords(Stream stream, const BatchHeader& header,
                     std::span<const store::StoredEvent> records, size_t max_bytes,
                     std::string* out);

// What the cloud learns about a tag from the device's birth message.
struct TagInfo {
  std::string name;
  std::string type;  // the configured data type: "float32", "int16", ...
  std::string unit;  // empty: none
  std::string description;
};

// The retained device birth: the device's tags, so that a consumer can label
// and type the values before the first batch arrives.
std::string EncodeBirth(std::string_view gateway, std::string_view device,
                        std::span<const TagInfo> tags, std::string_view config_digest,
                        int64_t ts_ms);

// The retained gateway status: state is "online" or "offline".
std::string EncodeStatus(std::string_view gateway, std::string_view state, std::string_view version,
                         std::string_view config_digest, int64_t ts_ms);

}  // namespace tagrelay::uplink
