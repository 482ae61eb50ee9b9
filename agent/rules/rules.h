// Alarm rules and maintenance counters as configured ([[alarm]], [[counter]]),
// checked by the config validation before the engine sees them.
//
// Threads: plain values.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "agent/core/reading.h"

namespace tagrelay::rules {

enum class AlarmKind { kHigh, kLow, kHighHigh, kLowLow, kEquals, kRate, kStale, kCommLoss };
std::string_view AlarmKindName(AlarmKind k);
std::optional<AlarmKind> ParseAlarmKind(std::string_view s);
// high, high_high, low, low_low: a limit with a deadband.
bool IsLevel(AlarmKind k);
bool IsUpper(AlarmKind k);  // high, high_high

struct AlarmRule {
  std::string id;
  std::string device;
  std::string tag;   // empty for comm_loss
  std::string unit;  // the tag's unit, for the message
  AlarmKind kind = AlarmKind::kHigh;
  double limit = 0;     // level kinds: the limit; rate: units per second
  Value equals;         // equals: the value that raises the alarm
  double deadband = 0;  // level and rate kinds: the way back past the limit before it clears
  std::chrono::milliseconds on_delay{0};   // the condition must hold this long to raise ...
  std::chrono::milliseconds off_delay{0};  // ... and the clear condition this long to clear
  std::chrono::milliseconds window{0};     // rate: the span the rate is measured over
  std::chrono::milliseconds after{0};      // stale: no good value for this long raises it
  std::string severity = "major";
  std::string message;  // template: {value} {unit} {limit} {tag} {device} {alarm}

  bool operator==(const AlarmRule&) const = default;
};

enum class Comparison { kGreater, kGreaterEqual, kLess, kLessEqual, kEqual, kNotEqual };
std::string_view ComparisonName(Comparison c);
bool Compare(double v, Comparison c, double threshold);

struct CounterRule {
  std::string id;
  std::string device;
  std::string tag;  // the running condition: tag <op> threshold
  Comparison op = Comparison::kGreater;
  double threshold = 0;
  std::chrono::milliseconds snapshot{15 * 60 * 1000};  // a snapshot this often

  bool operator==(const CounterRule&) const = default;
};

// "frequency > 1.0" -> tag, op, threshold; nullopt with `error` set if malformed.
struct RunningCondition {
  std::string tag;
  Comparison op;
  double threshold;
};
std::optional<RunningCondition> ParseRunningCondition(std::string_view text, std::string* error);

// The placeholders a message template may use; the first unknown one, or "".
std::string UnknownPlaceholder(std::string_view message);

}  // namespace tagrelay::rules
