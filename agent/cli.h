// The tagrelay command line (DESIGN §4): run, check-config, probe, status, version.
//
// Promise: exit code 0 on success, 1 on bad input (usage, config), 2 on a
// runtime failure (the store cannot open, ...). Errors go to stderr, one per
// line, config errors as file:line:col.
//
// Threads: runs on the main thread; `run` blocks until SIGINT or SIGTERM (agent/service.h).
#pragma once

namespace tagrelay {

int RunCli(int argc, char** argv);

}  // namespace tagrelay
