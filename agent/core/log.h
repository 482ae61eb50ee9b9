// Logging: one structured event per line, for operators.
//
// Promise: a log event has a level, a component ("modbus", "store", "uplink",
// ...), optional device, tag and alarm, and a message that never contains a
// secret (callers pass key ids, never keys). The sink is process-wide: plain
// stderr by default; the agent may install another (the systemd journal).
//
// Repeated identical events can be rate-limited (SetLogRateLimit): of the events
// with the same level, component, device, tag, alarm and message, the first
// `burst` in each `window` pass; the rest are counted, and once the window is
// over one summary event says how many were suppressed. A device that fails at
// every poll thus writes a few lines a minute, not one per poll.
//
// Threads: Log() and FlushSuppressedLogs() are safe from any thread;
// SetLogSink() and SetLogRateLimit() are called at start before any worker
// thread exists.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "agent/core/clock.h"

namespace tagrelay {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

std::string_view LogLevelName(LogLevel level);

struct LogEvent {
  LogLevel level = LogLevel::kInfo;
  std::string_view component;
  std::string_view device;  // empty if not about one device
  std::string_view tag;     // empty if not about one tag
  std::string_view message;
  std::string_view alarm = {};  // the alarm's id; empty if not about one alarm
};

using LogSink = std::function<void(const LogEvent&)>;

// Installs `sink` (nullptr restores stderr) and the lowest level that is emitted.
void SetLogSink(LogSink sink, LogLevel min_level = LogLevel::kInfo);
LogLevel MinLogLevel();

void Log(const LogEvent& event);

inline void Log(LogLevel level, std::string_view component, std::string_view message) {
  Log(LogEvent{level, component, {}, {}, message});
}
inline void LogDevice(LogLevel level, std::string_view component, std::string_view device,
                      std::string_view message) {
  Log(LogEvent{level, component, device, {}, message});
}

// "level component [device=ID] [tag=NAME] [alarm=ID]: message", the stderr format.
std::string FormatLogLine(const LogEvent& event);

struct LogRateLimit {
  int burst = 5;  // identical events let through per window
  std::chrono::milliseconds window{60000};
  size_t max_tracked = 512;  // distinct events remembered; the oldest are summarised first
};

// What a LogRateLimiter held back: `count` events like `event` over `span`.
struct SuppressedLogs {
  LogLevel level = LogLevel::kInfo;
  std::string component, device, tag, alarm, message;
  uint64_t count = 0;
  std::chrono::milliseconds span{0};

  // The summary event (its string_views point into this object).
  LogEvent Summary(std::string* text) const;
};

// The rate limiter behind SetLogRateLimit(), usable on its own with any clock.
// Not thread safe: the process-wide one is guarded by the log's mutex.
class LogRateLimiter {
 public:
  LogRateLimiter(LogRateLimit limit, const Clock& clock) : limit_(limit), clock_(clock) {}

  // Whether `event` may be emitted now. Appends to `ended` the summaries of
  // suppressed runs whose window is over (this event's own, or those pushed
  // out of the table).
  bool Admit(const LogEvent& event, std::vector<SuppressedLogs>* ended);
  // Ends every window that is over; appends the summaries of those that
  // suppressed something. Returns when it next has something to end: the end
  // of the earliest window still open, or a whole window from now if none is
  // (a run that starts later ends no sooner). Before that it returns at once,
  // without looking at the runs.
  MonoTime Expire(std::vector<SuppressedLogs>* ended);
  size_t tracked() const { return runs_.size(); }

 private:
  using Key = std::tuple<int, std::string, std::string, std::string, std::string, std::string>;
  struct Run {
    MonoTime start;
    int passed = 0;
    uint64_t suppressed = 0;
  };
  static void Summarise(const Key& key, const Run& run, MonoTime now,
                        std::vector<SuppressedLogs>* ended);

  const LogRateLimit limit_;
  const Clock& clock_;
  std::map<Key, Run> runs_;
  // No tracked run's window ends before this (it may be earlier than the
  // first end, never later): Expire() looks at the runs only from then on.
  MonoTime next_end_ = MonoTime::max();
};

// Turns rate limiting of the process-wide log on (or off, with nullopt).
void SetLogRateLimit(std::optional<LogRateLimit> limit, const Clock& clock = RealClock());
// Emits the summaries of rate-limited events whose window is over. Returns when
// it must be called next for no summary to come late (on the clock given to
// SetLogRateLimit()), or nullopt if the log is not rate-limited.
std::optional<MonoTime> FlushSuppressedLogs();

}  // namespace tagrelay
