#include "agent/systemd.h"

#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace tagrelay {
namespace {

int Priority(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return 7;    // LOG_DEBUG
    case LogLevel::kInfo: return 6;     // LOG_INFO
    case LogLevel::kWarning: return 4;  // LOG_WARNING
    case LogLevel::kError: return 3;    // LOG_ERR
  }
  return 6;
}

// A journal field value holds no newline in our fields but the message; the
// native protocol (iovec) carries any byte, so nothing needs escaping.
std::string Field(std::string_view name, std::string_view value) {
  std::string f(name);
  f += '=';
  f += value;
  return f;
}

}  // namespace

SystemdNotifier::SystemdNotifier() {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  enabled_ = socket != nullptr && socket[0] != '\0';
  uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
    watchdog_ = std::chrono::microseconds(usec);
  }
}

void SystemdNotifier::Send(const std::string& message) {
  if (enabled_) sd_notify(0, message.c_str());
}

void SystemdNotifier::Ready(std::string_view status) {
  Send("READY=1\nSTATUS=" + std::string(status));
}

void SystemdNotifier::Reloading() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  const uint64_t usec =
      static_cast<uint64_t>(ts.tv_sec) * 1000000u + static_cast<uint64_t>(ts.tv_nsec) / 1000u;
  Send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec) + "\nSTATUS=reloading the config");
}

void SystemdNotifier::Stopping() { Send("STOPPING=1\nSTATUS=stopping"); }

void SystemdNotifier::Status(std::string_view status) { Send("STATUS=" + std::string(status)); }

void SystemdNotifier::Watchdog() { Send("WATCHDOG=1"); }

void SystemdNotifier::ExtendWatchdog(std::chrono::microseconds timeout) {
  if (watchdog_) Send("WATCHDOG=1\nWATCHDOG_USEC=" + std::to_string(timeout.count()));
}

void SystemdNotifier::ResetWatchdog() {
  if (watchdog_) Send("WATCHDOG=1\nWATCHDOG_USEC=" + std::to_string(watchdog_->count()));
}

bool StderrIsJournal() {
  const char* stream = std::getenv("JOURNAL_STREAM");
  if (stream == nullptr) return false;
  unsigned long long dev = 0, ino = 0;
  if (std::sscanf(stream, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st {};
  if (fstat(STDERR_FILENO, &st) != 0) return false;
  return static_cast<unsigned long long>(st.st_dev) == dev &&
         static_cast<unsigned long long>(st.st_ino) == ino;
}

std::vector<std::string> JournalFields(const LogEvent& e) {
  std::string message(e.component);
  if (!e.device.empty()) message += " device=" + std::string(e.device);
  if (!e.tag.empty()) message += " tag=" + std::string(e.tag);
  if (!e.alarm.empty()) message += " alarm=" + std::string(e.alarm);
  message += ": ";
  message += e.message;
  std::vector<std::string> fields;
  fields.push_back(Field("MESSAGE", message));
  fields.push_back(Field("PRIORITY", std::to_string(Priority(e.level))));
  fields.push_back(Field("SYSLOG_IDENTIFIER", "tagrelay"));
  fields.push_back(Field("TAGRELAY_COMPONENT", e.component));
  if (!e.device.empty()) fields.push_back(Field("DEVICE", e.device));
  if (!e.tag.empty()) fields.push_back(Field("TAG", e.tag));
  if (!e.alarm.empty()) fields.push_back(Field("ALARM", e.alarm));
  return fields;
}

LogSink JournalSink() {
  return [](const LogEvent& e) {
    const std::vector<std::string> fields = JournalFields(e);
    std::vector<iovec> iov;
    iov.reserve(fields.size());
    for (const std::string& f : fields) {
      iov.push_back(iovec{const_cast<char*>(f.data()), f.size()});
    }
    if (sd_journal_sendv(iov.data(), static_cast<int>(iov.size())) < 0) {
      // The journal is gone (restarting?): stderr still reaches someone.
      std::string line = FormatLogLine(e) + "\n";
      std::fwrite(line.data(), 1, line.size(), stderr);
    }
  };
}

}  // namespace tagrelay
