#include "agent/cli.h"

#include <signal.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "agent/config.h"
#include "agent/core/log.h"
#include "agent/supervisor.h"
#include "agent/version.h"

namespace tagrelay {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitBadInput = 1;
constexpr int kExitRuntime = 2;
constexpr const char* kDefaultConfig = "/etc/tagrelay/tagrelay.toml";

constexpr const char* kUsage =
    "usage: tagrelay <command> [options]\n"
    "\n"
    "commands:\n"
    "  run [--config PATH]            run the agent (what the service starts)\n"
    "  check-config [--config PATH]   validate the config; errors as file:line:col\n"
    "  version                        print the version\n"
    "\n"
    "The default config is /etc/tagrelay/tagrelay.toml.\n";

struct Args {
  std::string command;
  std::string config = kDefaultConfig;
  bool config_reference = false;
};

bool ParseArgs(int argc, char** argv, Args* args, std::string* error) {
  if (argc < 2) {
    *error = "no command given";
    return false;
  }
  args->command = argv[1];
  for (int i = 2; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--config" || a == "-c") {
      if (i + 1 >= argc) {
        *error = std::string(a) + " needs a path";
        return false;
      }
      args->config = argv[++i];
    } else if (a.starts_with("--config=")) {
      args->config = std::string(a.substr(9));
    } else if (a == "--reference" && args->command == "check-config") {
      args->config_reference = true;
    } else {
      *error = "unknown option '" + std::string(a) + "' for '" + args->command + "'";
      return false;
    }
  }
  return true;
}

std::optional<Config> LoadOrReport(const std::string& path) {
  ConfigResult r = LoadConfig(path);
  for (const ConfigError& e : r.errors) std::fprintf(stderr, "%s\n", e.ToString().c_str());
  if (!r.errors.empty()) {
    std::fprintf(stderr, "%zu error(s) in %s\n", r.errors.size(), path.c_str());
  }
  return std::move(r.config);
}

int CheckConfig(const Args& args) {
  if (args.config_reference) {
    std::fputs(ConfigReferenceMarkdown().c_str(), stdout);
    return kExitOk;
  }
  std::optional<Config> c = LoadOrReport(args.config);
  if (!c) return kExitBadInput;
  size_t tags = 0;
  for (const DeviceConfig& d : c->devices) tags += d.tags.size();
  std::printf("%s: ok (gateway %s, %zu bus(es), %zu device(s), %zu tag(s), digest %s)\n",
              args.config.c_str(), c->gateway.id.c_str(), c->buses.size(), c->devices.size(), tags,
              c->digest.c_str());
  return kExitOk;
}

int Run(const Args& args) {
  // Block the stop signals first: a stop that arrives while starting waits in
  // sigtimedwait below instead of killing the process half-started, and no
  // worker thread (they inherit the mask) ever receives one.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::optional<Config> config = LoadOrReport(args.config);
  if (!config) return kExitBadInput;

  Supervisor supervisor(std::move(*config), RealClock());
  Status s = supervisor.Start();
  if (!s.ok()) {
    Log(LogLevel::kError, "agent", "cannot start: " + s.ToString());
    return kExitRuntime;
  }
  for (;;) {
    const timespec tick{1, 0};
    const int sig = sigtimedwait(&signals, nullptr, &tick);
    if (sig == SIGINT || sig == SIGTERM) {
      Log(LogLevel::kInfo, "agent", std::string("stopping on ") + strsignal(sig));
      break;
    }
    if (sig == SIGHUP) {
      Log(LogLevel::kWarning, "agent",
          "SIGHUP: this version does not reload its config; restart the service to apply changes");
    }
  }
  supervisor.Stop();
  return kExitOk;
}

}  // namespace

int RunCli(int argc, char** argv) {
  Args args;
  std::string error;
  if (!ParseArgs(argc, argv, &args, &error)) {
    std::fprintf(stderr, "tagrelay: %s\n\n%s", error.c_str(), kUsage);
    return kExitBadInput;
  }
  if (args.command == "version" || args.command == "--version") {
    std::printf("tagrelay %s\n", kVersion);
    return kExitOk;
  }
  if (args.command == "help" || args.command == "--help" || args.command == "-h") {
    std::fputs(kUsage, stdout);
    return kExitOk;
  }
  if (args.command == "check-config") return CheckConfig(args);
  if (args.command == "run") return Run(args);
  std::fprintf(stderr, "tagrelay: unknown command '%s'\n\n%s", args.command.c_str(), kUsage);
  return kExitBadInput;
}

}  // namespace tagrelay
