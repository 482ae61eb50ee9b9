// The agent's dealings with systemd: service notifications (sd_notify) and the
// journal as a log sink.
//
// Promise:
// - SystemdNotifier sends READY=1, RELOADING=1, STOPPING=1, STATUS=...,
//   WATCHDOG=1 and WATCHDOG_USEC=... to $NOTIFY_SOCKET when the service
//   manager set it, and does nothing otherwise. WatchdogInterval() is the service's WatchdogSec
//   (from $WATCHDOG_USEC), if the watchdog is on for this process.
// - JournalSink() writes each log event to the journal as a structured entry:
//   MESSAGE (as on stderr, without the level), PRIORITY, SYSLOG_IDENTIFIER,
//   TAGRELAY_COMPONENT, and DEVICE, TAG, ALARM where the event has them.
//   StderrIsJournal() tells whether stderr is connected to the journal
//   ($JOURNAL_STREAM names its device and inode), which is how the agent
//   knows it runs under systemd.
//
// Threads: only the supervisor (main thread) notifies; the sink is called
// under the log's lock from any thread.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/core/log.h"

namespace tagrelay {

class SystemdNotifier {
 public:
  // Reads $NOTIFY_SOCKET and $WATCHDOG_USEC once.
  SystemdNotifier();

  bool enabled() const { return enabled_; }
  std::optional<std::chrono::microseconds> WatchdogInterval() const { return watchdog_; }

  void Ready(std::string_view status);
  void Reloading();
  void Stopping();
  void Status(std::string_view status);
  void Watchdog();
  // Confirms now and has systemd wait up to `timeout` for the next
  // confirmation (a reload that reopens a large store); ResetWatchdog() goes
  // back to the service's WatchdogSec.
  void ExtendWatchdog(std::chrono::microseconds timeout);
  void ResetWatchdog();

 private:
  void Send(const std::string& message);

  bool enabled_ = false;
  std::optional<std::chrono::microseconds> watchdog_;
};

bool StderrIsJournal();
LogSink JournalSink();

// The journal fields of `event`, "NAME=value" each (for JournalSink and its tests).
std::vector<std::string> JournalFields(const LogEvent& event);

}  // namespace tagrelay
