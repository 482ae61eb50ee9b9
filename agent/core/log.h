// Logging: one structured event per line, for operators.
//
// Promise: a log event has a level, a component ("modbus", "store", "uplink",
// ...), optional device and tag, and a message that never contains a secret
// (callers pass key ids, never keys). The sink is process-wide: plain stderr by
// default; the agent may install another (e.g. the systemd journal).
//
// Threads: Log() is safe from any thread; SetLogSink() is called once at start
// before any worker thread exists.
#pragma once

#include <functional>
#include <string>
#include <string_view>

namespace tagrelay {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

std::string_view LogLevelName(LogLevel level);

struct LogEvent {
  LogLevel level = LogLevel::kInfo;
  std::string_view component;
  std::string_view device;  // empty if not about one device
  std::string_view tag;     // empty if not about one tag
  std::string_view message;
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

}  // namespace tagrelay
