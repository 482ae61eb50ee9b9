// The records the alarm and counter engine produces, in their stored form: a
// JSON object each, which the uplink copies as it is into alarms and counters
// batches (docs/protocol.md, docs/schema/tagrelay.alarms.v1.json and
// tagrelay.counters.v1.json).
//
// Threads: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "agent/core/reading.h"

namespace tagrelay::rules {

enum class AlarmState : uint8_t { kRaised, kCleared };
std::string_view AlarmStateName(AlarmState s);

// One transition of one alarm rule.
struct AlarmEvent {
  std::string alarm;  // the [[alarm]] id
  std::string tag;    // the tag it watches; empty for a device-wide rule (comm_loss)
  int64_t ts_ms = 0;  // when the transition happened (Unix ms, UTC)
  AlarmState state = AlarmState::kRaised;
  std::string kind;      // high | low | high_high | low_low | equals | rate | stale | comm_loss
  std::string severity;  // as configured, e.g. "major"
  Value value;           // the value that caused the transition; none for stale/comm_loss
  std::optional<double> limit;
  std::string message;  // the configured message with its placeholders filled in
};

// The state of one run-hours / starts counter at one moment.
struct CounterSnapshot {
  std::string counter;  // the [[counter]] id
  int64_t ts_ms = 0;
  double run_s = 0;    // total running time, seconds
  int64_t starts = 0;  // total number of starts
  std::optional<bool> running;
};

// A stopped interval that has just ended: the machine ran again.
struct Downtime {
  std::string counter;
  int64_t ts_ms = 0;    // when it ended
  int64_t from_ms = 0;  // when it began
};

std::string AlarmRecord(const AlarmEvent& e);
std::string CounterRecord(const CounterSnapshot& c);
std::string DowntimeRecord(const Downtime& d);

}  // namespace tagrelay::rules
