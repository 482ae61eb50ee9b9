#include "agent/core/log.h"

#include <algorithm>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>

namespace tagrelay {
namespace {

std::mutex g_mu;
LogSink g_sink;
LogLevel g_min = LogLevel::kInfo;
std::unique_ptr<LogRateLimiter> g_limiter;

void Emit(const LogEvent& e) {
  if (g_sink) {
    g_sink(e);
    return;
  }
  std::string line = FormatLogLine(e);
  line += '\n';
  std::fwrite(line.data(), 1, line.size(), stderr);
}

void EmitSummaries(const std::vector<SuppressedLogs>& ended) {
  for (const SuppressedLogs& s : ended) {
    if (s.level < g_min) continue;
    std::string text;
    Emit(s.Summary(&text));
  }
}

std::string Seconds(std::chrono::milliseconds d) {
  const auto s = std::chrono::duration_cast<std::chrono::seconds>(d).count();
  return std::to_string(s < 1 ? 1 : s) + " s";
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

std::string FormatLogLine(const LogEvent& e) {
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
  if (!e.alarm.empty()) {
    line += " alarm=";
    line += e.alarm;
  }
  line += ": ";
  line += e.message;
  return line;
}

LogEvent SuppressedLogs::Summary(std::string* text) const {
  *text = message + " (" + std::to_string(count) + " more like this suppressed in the last " +
          Seconds(span) + ")";
  return LogEvent{level, component, device, tag, *text, alarm};
}

bool LogRateLimiter::Admit(const LogEvent& e, std::vector<SuppressedLogs>* ended) {
  const MonoTime now = clock_.mono();
  Key key{static_cast<int>(e.level), std::string(e.component), std::string(e.device),
          std::string(e.tag),        std::string(e.alarm),     std::string(e.message)};
  auto it = runs_.find(key);
  if (it != runs_.end() && now - it->second.start >= limit_.window) {
    Summarise(it->first, it->second, now, ended);
    runs_.erase(it);
    it = runs_.end();
  }
  if (it == runs_.end()) {
    if (runs_.size() >= limit_.max_tracked) {
      // Make room: the run that started first goes, with its summary.
      auto oldest = runs_.begin();
      for (auto r = runs_.begin(); r != runs_.end(); ++r) {
        if (r->second.start < oldest->second.start) oldest = r;
      }
      Summarise(oldest->first, oldest->second, now, ended);
      runs_.erase(oldest);
    }
    it = runs_.emplace(std::move(key), Run{now, 0, 0}).first;
    next_end_ = std::min(next_end_, now + limit_.window);
  }
  Run& run = it->second;
  if (run.passed < limit_.burst) {
    ++run.passed;
    return true;
  }
  ++run.suppressed;
  return false;
}

MonoTime LogRateLimiter::Expire(std::vector<SuppressedLogs>* ended) {
  const MonoTime now = clock_.mono();
  if (now >= next_end_) {
    next_end_ = MonoTime::max();
    for (auto it = runs_.begin(); it != runs_.end();) {
      if (now - it->second.start >= limit_.window) {
        Summarise(it->first, it->second, now, ended);
        it = runs_.erase(it);
      } else {
        next_end_ = std::min(next_end_, it->second.start + limit_.window);
        ++it;
      }
    }
  }
  // A run that starts from now on ends a whole window from now at the earliest.
  return std::min(next_end_, now + limit_.window);
}

void LogRateLimiter::Summarise(const Key& key, const Run& run, MonoTime now,
                               std::vector<SuppressedLogs>* ended) {
  if (run.suppressed == 0) return;
  SuppressedLogs s;
  s.level = static_cast<LogLevel>(std::get<0>(key));
  s.component = std::get<1>(key);
  s.device = std::get<2>(key);
  s.tag = std::get<3>(key);
  s.alarm = std::get<4>(key);
  s.message = std::get<5>(key);
  s.count = run.suppressed;
  s.span = std::chrono::duration_cast<std::chrono::milliseconds>(now - run.start);
  ended->push_back(std::move(s));
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

void SetLogRateLimit(std::optional<LogRateLimit> limit, const Clock& clock) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_limiter) {
    std::vector<SuppressedLogs> ended;
    g_limiter->Expire(&ended);
    EmitSummaries(ended);
  }
  g_limiter = limit ? std::make_unique<LogRateLimiter>(*limit, clock) : nullptr;
}

std::optional<MonoTime> FlushSuppressedLogs() {
  std::lock_guard<std::mutex> lock(g_mu);
  if (!g_limiter) return std::nullopt;
  std::vector<SuppressedLogs> ended;
  const MonoTime next = g_limiter->Expire(&ended);
  EmitSummaries(ended);
  return next;
}

void Log(const LogEvent& event) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (event.level < g_min) return;
  if (g_limiter) {
    std::vector<SuppressedLogs> ended;
    const bool pass = g_limiter->Admit(event, &ended);
    EmitSummaries(ended);
    if (!pass) return;
  }
  Emit(event);
}

}  // namespace tagrelay
