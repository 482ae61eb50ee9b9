#include "agent/core/log.h"

#include <cstdio>
#include <mutex>
#include <string>

namespace tagrelay {
namespace {

std::mutex g_mu;
LogSink g_sink;
LogLevel g_min = LogLevel::kInfo;

void WriteStderr(const LogEvent& e) {
  std::string line;
  line.reserve(64 + e.message.size());
  line += LogLevelName(e.level);
  line += ' ';
  line += e.component;
  if (!e.device.empty()) {
    line += " device=";
    line += e.device;
  }
  if (!e.tag.empty()) {
    line += " tag=";
    line += e.tag;
  }
  line += ": ";
  line += e.message;
  line += '\n';
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace

std::string_view LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarning: return "warning";
    case LogLevel::kError: return "error";
  }
  return "info";
}

void SetLogSink(LogSink sink, LogLevel min_level) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_sink = std::move(sink);
  g_min = min_level;
}

LogLevel MinLogLevel() {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_min;
}

void Log(const LogEvent& event) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (event.level < g_min) return;
  if (g_sink) {
    g_sink(event);
  } else {
    WriteStderr(event);
  }
}

}  // namespace tagrelay
