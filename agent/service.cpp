#include "agent/service.h"

#include <malloc.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>

#include "agent/config.h"
#include "agent/core/log.h"
#include "agent/supervisor.h"
#include "agent/systemd.h"

namespace tagrelay {
namespace {

using std::chrono::milliseconds;

constexpr int kExitOk = 0;
constexpr int kExitBadInput = 1;
constexpr int kExitRuntime = 2;
constexpr milliseconds kStatusEvery{5000};
constexpr std::chrono::minutes kReloadWatchdog{5};
// The loop wakes when it has something to do (a watchdog confirmation, a
// STATUS= update, the end of a log window), and at least this often.
constexpr std::chrono::minutes kLongestWait{1};

// Gives the pages of freed memory back to the system. Reading a config frees its TOML tree
// (some 4.5 MB for 10,000 tags) and building the workers frees temporaries; without this their
// pages would stay resident until the heap happens to reuse them. Called once the config is read,
// before the workers start: their threads, stacks and first polls (all buses at once) would
// otherwise add to the tree's pages, and with 100 buses that sum was the peak RSS of the run.
void ReleaseFreedMemory() {
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

// Loads the new config and applies it; false if the agent must exit.
bool Reload(Supervisor& supervisor, const std::string& path) {
  ConfigResult r = LoadConfig(path);
  ReleaseFreedMemory();
  if (!r.config) {
    for (const ConfigError& e : r.errors) Log(LogLevel::kError, "config", e.ToString());
    Log(LogLevel::kError, "agent",
        "reload: " + std::to_string(r.errors.size()) + " error(s) in " + path +
            "; the running config (digest " + supervisor.config().digest +
            ") stays in force. Fix the file, check it with `tagrelay check-config`, and reload "
            "again");
    return true;
  }
  Status s = supervisor.Reload(std::move(*r.config));
  ReleaseFreedMemory();
  if (s.code() == StatusCode::kInternal) {
    Log(LogLevel::kError, "agent", s.ToString() + "; exiting");
    return false;
  }
  if (!s.ok()) {
    Log(LogLevel::kError, "agent",
        "reload: " + s.ToString() + "; the running config (digest " + supervisor.config().digest +
            ") stays in force");
  }
  return true;
}

// Waits until a signal in `signals` arrives (returned) or `deadline` (0).
int WaitForSignal(const sigset_t& signals, const Clock& clock, MonoTime deadline) {
  const auto wait = std::max(std::chrono::nanoseconds(0), deadline - clock.mono());
  const auto s = std::chrono::duration_cast<std::chrono::seconds>(wait);
  const timespec ts{static_cast<time_t>(s.count()), static_cast<long>((wait - s).count())};
  const int sig = sigtimedwait(&signals, nullptr, &ts);
  return sig > 0 ? sig : 0;
}

}  // namespace

int RunService(const std::string& config_path) {
  // Block the signals first: one that arrives while starting waits in
  // sigtimedwait below instead of killing the process half-started, and no
  // worker thread (they inherit the mask) ever receives one.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  if (StderrIsJournal()) SetLogSink(JournalSink());
  SetLogRateLimit(LogRateLimit{});

  ConfigResult loaded = LoadConfig(config_path);
  for (const ConfigError& e : loaded.errors) Log(LogLevel::kError, "config", e.ToString());
  if (!loaded.config) {
    Log(LogLevel::kError, "agent",
        std::to_string(loaded.errors.size()) + " error(s) in " + config_path + "; not starting");
    return kExitBadInput;
  }
  ReleaseFreedMemory();

  SystemdNotifier notifier;
  Supervisor supervisor(std::move(*loaded.config), RealClock());
  Status s = supervisor.Start();
  if (!s.ok()) {
    Log(LogLevel::kError, "agent", "cannot start: " + s.ToString());
    return kExitRuntime;
  }
  ReleaseFreedMemory();
  // The STATUS= line, from a sample taken for it if the status thread has no
  // recent one; only for a service manager that listens.
  const bool status_on = notifier.enabled();
  const auto status_line = [&supervisor, status_on] {
    auto snapshot = status_on ? supervisor.CurrentStatus() : nullptr;
    return snapshot ? NotifyStatusLine(*snapshot) : std::string("running");
  };
  std::string last_status = status_line();
  notifier.Ready(last_status);

  // The watchdog: confirm every half interval while every worker is well.
  milliseconds ping_every{0};
  if (auto w = notifier.WatchdogInterval()) {
    ping_every = std::max(milliseconds(1), std::chrono::duration_cast<milliseconds>(*w / 2));
    Log(LogLevel::kInfo, "agent",
        "systemd watchdog on: confirming every " + std::to_string(ping_every.count()) +
            " ms while every worker shows progress");
  }
  const Clock& clock = RealClock();
  MonoTime next_ping = clock.mono();
  MonoTime next_status = clock.mono() + kStatusEvery;
  std::string stalled_logged;
  int exit_code = kExitOk;

  for (;;) {
    MonoTime wake = clock.mono() + kLongestWait;
    if (const std::optional<MonoTime> logs = FlushSuppressedLogs()) wake = std::min(wake, *logs);
    if (ping_every.count() > 0) wake = std::min(wake, next_ping);
    if (status_on) wake = std::min(wake, next_status);
    const int sig = WaitForSignal(signals, clock, wake);
    if (sig == SIGINT || sig == SIGTERM) {
      Log(LogLevel::kInfo, "agent", std::string("stopping on ") + strsignal(sig));
      break;
    }
    if (sig == SIGHUP) {
      Log(LogLevel::kInfo, "agent", "SIGHUP: reloading " + config_path);
      notifier.Reloading();
      // Stopping the workers and reopening a large store take a while; the
      // main thread confirms nothing meanwhile.
      notifier.ExtendWatchdog(kReloadWatchdog);
      const bool went_on = Reload(supervisor, config_path);
      notifier.ResetWatchdog();
      if (!went_on) {
        exit_code = kExitRuntime;
        break;
      }
      last_status = status_line();
      notifier.Ready(last_status);
      next_ping = clock.mono();
    }
    const MonoTime now = clock.mono();
    if (ping_every.count() > 0 && now >= next_ping) {
      std::string names, detail;
      for (const status::WorkerStatus& w : supervisor.Workers()) {
        if (!w.stalled) continue;
        names += (names.empty() ? "" : ", ") + w.name;
        detail += (detail.empty() ? "" : ", ") + w.name + " (no progress for " +
                  std::to_string(w.idle_ms.value_or(0) / 1000) + " s)";
      }
      if (names.empty()) {
        notifier.Watchdog();
        if (!stalled_logged.empty()) {
          Log(LogLevel::kInfo, "agent", "watchdog: every worker shows progress again");
        }
      } else if (names != stalled_logged) {
        Log(LogLevel::kError, "agent",
            "watchdog: stalled: " + detail +
                "; no longer confirming the watchdog, so systemd restarts the service");
      }
      stalled_logged = names;
      next_ping = now + ping_every;
    }
    if (status_on && now >= next_status) {
      next_status = now + kStatusEvery;
      std::string line = status_line();
      if (line != last_status) {
        notifier.Status(line);
        last_status = std::move(line);
      }
    }
  }
  notifier.Stopping();
  supervisor.Stop();
  SetLogRateLimit(std::nullopt);
  return exit_code;
}

}  // namespace tagrelay
