// The `tagrelay run` loop: the main thread of the daemon.
//
// Promise:
// - Logs go to the systemd journal as structured entries when stderr is the
//   journal, to stderr otherwise; identical events are rate-limited.
// - READY=1 is sent once the config is valid and the store is open (the
//   workers are running), with a STATUS= summary that is kept up to date.
// - WATCHDOG=1 is sent every half WatchdogSec while every worker shows
//   progress; as soon as one is stalled it is no longer sent, and systemd
//   restarts the service.
// - SIGHUP reloads the config file: a valid one is applied without losing
//   buffered data (RELOADING=1, then READY=1); an invalid one is logged, error
//   by error, and the running config stays in force. SIGINT and SIGTERM stop
//   the agent (STOPPING=1) in the order that loses nothing.
//
// Threads: the main thread; returns the process's exit code.
#pragma once

#include <string>

namespace tagrelay {

int RunService(const std::string& config_path);

}  // namespace tagrelay
