// PriorityOutbox: the seam through which alarm events and counter snapshots
// reach the uplink. They go out ahead of every telemetry batch.
//
// The records live in the store next to the readings; an implementation reads
// them there (see the report of what the store provides in docs/protocol.md,
// "Alarm events" and "Counter snapshots"). Each device has one sequence per
// stream (alarms, counters), numbered 1, 2, 3, ... like its readings, so that
// a receiver drops duplicates and sees gaps per (gateway, device, stream).
//
// Promise (what the uplink relies on):
// - Streams() lists every (device, stream) that has records, with the lowest
//   undelivered sequence number (0 if all are delivered) and the highest one
//   handed out.
// - Fetch*() append undelivered records with from_seq <= seq <= to_seq in
//   sequence order, at most `limit`.
// - Delivered() is called once the broker accepted a batch; afterwards the
//   records are no longer returned as undelivered (once the store committed
//   it: until then the uplink does not ask for them again in the same session).
//
// Threads: owned and called by the uplink thread only.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/core/reading.h"
#include "agent/core/status.h"

namespace tagrelay::uplink {

enum class Stream : uint8_t { kTelemetry, kAlarms, kCounters };

// "telemetry", "alarms", "counters": the last level of the stream's topic.
std::string_view StreamName(Stream s);

enum class AlarmState : uint8_t { kRaised, kCleared };
std::string_view AlarmStateName(AlarmState s);

// One transition of one alarm rule.
struct AlarmEvent {
  int64_t seq = 0;
  std::string alarm;  // the [[alarm]] id
  std::string tag;    // the tag it watches; empty for a device-wide rule (comm_loss)
  int64_t ts_ms = 0;  // when the transition happened (Unix ms, UTC)
  AlarmState state = AlarmState::kRaised;
  std::string kind;      // high | low | high_high | low_low | equals | rate | stale | comm_loss
  std::string severity;  // as configured, e.g. "major"
  Value value;           // the value that caused the transition; none for stale/comm_loss
  std::optional<double> limit;
  std::string message;  // the configured message with {value} and {unit} filled in
};

// The state of one run-hours / starts counter at one moment.
struct CounterSnapshot {
  int64_t seq = 0;
  std::string counter;  // the [[counter]] id
  int64_t ts_ms = 0;
  double run_s = 0;    // total running time, seconds
  int64_t starts = 0;  // total number of starts
};

struct StreamBacklog {
  std::string device;
  Stream stream = Stream::kAlarms;
  int64_t first_undelivered = 0;  // 0 if everything is delivered
  int64_t last_seq = 0;           // 0 if none yet
};

class PriorityOutbox {
 public:
  virtual ~PriorityOutbox() = default;

  virtual Result<std::vector<StreamBacklog>> Streams() = 0;
  virtual Status FetchAlarms(const std::string& device, int64_t from_seq, int64_t to_seq,
                             size_t limit, std::vector<AlarmEvent>& out) = 0;
  virtual Status FetchCounters(const std::string& device, int64_t from_seq, int64_t to_seq,
                               size_t limit, std::vector<CounterSnapshot>& out) = 0;
  virtual void Delivered(Stream stream, const std::string& device, int64_t seq_first,
                         int64_t seq_last) = 0;
};

}  // namespace tagrelay::uplink
