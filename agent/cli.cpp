#include "agent/cli.h"

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "agent/config.h"
#include "agent/core/log.h"
#include "agent/service.h"
#include "agent/status/status_server.h"
#include "agent/version.h"
#include "drivers/modbus/libmodbus_transport.h"
#include "drivers/modbus/low_fd.h"
#include "drivers/modbus/probe.h"

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
    "  probe --device ID [--tag NAME] [--config PATH]\n"
    "                                 read a configured device once; raw and decoded values\n"
    "  probe (--tcp HOST[:PORT] | --rtu DEVICE | --rtu-over-tcp HOST:PORT) --unit N\n"
    "        (--holding A | --input A | --coil A | --discrete A | --register 40001)\n"
    "        [--count N] [--type T] [--order O] [--bit N] [--length N]\n"
    "        [--baud 19200] [--parity even] [--data-bits 8] [--stop-bits 1]\n"
    "        [--timeout 1s] [--retries 1]\n"
    "                                 read registers without a config\n"
    "  status [--json] [--socket PATH]\n"
    "                                 the running agent's status (devices, backlog, uplink)\n"
    "  version                        print the version\n"
    "\n"
    "The default config is /etc/tagrelay/tagrelay.toml.\n";

constexpr const char* kDefaultSocket = "/run/tagrelay/status.sock";

struct Args {
  std::string command;
  std::string config = kDefaultConfig;
  bool config_reference = false;
  bool json = false;
  std::string socket = kDefaultSocket;
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
    } else if (a == "--json" && args->command == "status") {
      args->json = true;
    } else if (a == "--socket" && args->command == "status" && i + 1 < argc) {
      args->socket = argv[++i];
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

int ShowStatus(const Args& args) {
  Result<std::string> body = status::FetchStatus(
      args.socket, args.json ? "/status.json" : "/status.txt", std::chrono::seconds(5));
  if (!body.ok()) {
    std::fprintf(stderr,
                 "tagrelay status: %s\n(is the agent running? `systemctl status tagrelay`; its "
                 "socket is [status] socket in the config, default %s)\n",
                 body.status().message().c_str(), kDefaultSocket);
    return kExitRuntime;
  }
  std::fputs(body->c_str(), stdout);
  return kExitOk;
}

// `tagrelay probe`: its own options, since it has many.
struct ProbeArgs {
  std::string config = kDefaultConfig;
  std::string device;
  std::string tag;
  modbus::EndpointSpec endpoint;
  bool adhoc = false;
  int unit = 1;
  std::optional<modbus::Table> table;
  std::optional<uint16_t> address;
  int count = 1;
  modbus::TagSpec shape;
  bool type_set = false;
  std::optional<int> retries;
};

bool ParseInt(std::string_view s, int64_t min, int64_t max, int64_t* out) {
  if (s.empty()) return false;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9' || v > max) return false;
    v = v * 10 + (c - '0');
  }
  if (v < min || v > max) return false;
  *out = v;
  return true;
}

// "host:port" or "host" (then `default_port`); [v6]:port too.
bool ParseHostPort(std::string_view s, uint16_t default_port, std::string* host, uint16_t* port) {
  *port = default_port;
  std::string_view h = s;
  const size_t colon = s.rfind(':');
  if (colon != std::string_view::npos && s.find(':') == colon) {
    h = s.substr(0, colon);
    int64_t p = 0;
    if (!ParseInt(s.substr(colon + 1), 1, 65535, &p)) return false;
    *port = static_cast<uint16_t>(p);
  } else if (!s.empty() && s.front() == '[' && colon != std::string_view::npos &&
             s[colon - 1] == ']') {
    h = s.substr(1, colon - 2);
    int64_t p = 0;
    if (!ParseInt(s.substr(colon + 1), 1, 65535, &p)) return false;
    *port = static_cast<uint16_t>(p);
  }
  *host = std::string(h);
  return !host->empty();
}

bool ParseProbeArgs(int argc, char** argv, ProbeArgs* a, std::string* error) {
  a->endpoint.name = "probe";
  a->endpoint.timeout = std::chrono::milliseconds(1000);
  for (int i = 2; i < argc; ++i) {
    const std::string_view opt = argv[i];
    if (i + 1 >= argc) {
      *error = "option '" + std::string(opt) + "' needs a value (or is unknown)";
      return false;
    }
    const std::string_view v = argv[++i];
    int64_t n = 0;
    const auto bad = [&](std::string what) {
      *error = std::string(opt) + " " + std::string(v) + ": " + what;
      return false;
    };
    if (opt == "--config" || opt == "-c") {
      a->config = v;
    } else if (opt == "--device") {
      a->device = v;
    } else if (opt == "--tag") {
      a->tag = v;
    } else if (opt == "--tcp" || opt == "--rtu-over-tcp") {
      a->adhoc = true;
      a->endpoint.type = opt == "--tcp" ? modbus::BusType::kTcp : modbus::BusType::kRtuOverTcp;
      if (!ParseHostPort(v, 502, &a->endpoint.host, &a->endpoint.port))
        return bad("expected HOST or HOST:PORT");
    } else if (opt == "--rtu") {
      a->adhoc = true;
      a->endpoint.type = modbus::BusType::kRtu;
      a->endpoint.serial.device = v;
    } else if (opt == "--baud") {
      if (!ParseInt(v, 1200, 921600, &n) || !modbus::IsSupportedBaud(static_cast<int>(n)))
        return bad("not a standard baud rate");
      a->endpoint.serial.baud = static_cast<int>(n);
    } else if (opt == "--parity") {
      if (v == "none" || v == "N") {
        a->endpoint.serial.parity = modbus::Parity::kNone;
      } else if (v == "even" || v == "E") {
        a->endpoint.serial.parity = modbus::Parity::kEven;
      } else if (v == "odd" || v == "O") {
        a->endpoint.serial.parity = modbus::Parity::kOdd;
      } else {
        return bad("expected none, even or odd");
      }
    } else if (opt == "--data-bits") {
      if (!ParseInt(v, 7, 8, &n)) return bad("expected 7 or 8");
      a->endpoint.serial.data_bits = static_cast<int>(n);
    } else if (opt == "--stop-bits") {
      if (!ParseInt(v, 1, 2, &n)) return bad("expected 1 or 2");
      a->endpoint.serial.stop_bits = static_cast<int>(n);
    } else if (opt == "--unit") {
      if (!ParseInt(v, 0, 255, &n)) return bad("expected 0..255");
      a->unit = static_cast<int>(n);
    } else if (opt == "--table") {
      a->table = modbus::ParseTable(v);
      if (!a->table) return bad("expected coil, discrete, input or holding");
    } else if (opt == "--address" || opt == "--holding" || opt == "--input" || opt == "--coil" ||
               opt == "--discrete") {
      if (!ParseInt(v, 0, 65535, &n)) return bad("expected a protocol address 0..65535");
      a->address = static_cast<uint16_t>(n);
      if (opt != "--address") a->table = modbus::ParseTable(opt.substr(2));
    } else if (opt == "--register") {
      const std::optional<modbus::RegisterNumber> r = modbus::ParseRegisterNumber(v);
      if (!r) return bad("expected a register number of 5 or 6 digits, e.g. 40001");
      a->table = r->table;
      a->address = r->address;
    } else if (opt == "--count") {
      if (!ParseInt(v, 1, 2000, &n)) return bad("expected 1..2000");
      a->count = static_cast<int>(n);
    } else if (opt == "--type") {
      const std::optional<modbus::DataType> t = modbus::ParseDataType(v);
      if (!t) return bad("not a data type");
      a->shape.type = *t;
      a->type_set = true;
    } else if (opt == "--order") {
      const std::optional<modbus::WordOrder> o = modbus::ParseWordOrder(v);
      if (!o) return bad("expected ABCD, CDAB, BADC or DCBA");
      a->shape.order = *o;
    } else if (opt == "--bit") {
      if (!ParseInt(v, 0, 15, &n)) return bad("expected 0..15");
      a->shape.bit = static_cast<uint8_t>(n);
    } else if (opt == "--length") {
      if (!ParseInt(v, 1, 250, &n)) return bad("expected 1..250");
      a->shape.length = static_cast<uint16_t>(n);
    } else if (opt == "--timeout") {
      const std::optional<std::chrono::milliseconds> d = ParseDuration(v);
      if (!d || d->count() < 10 || d->count() > 60000) return bad("expected 10ms..60s");
      a->endpoint.timeout = *d;
    } else if (opt == "--retries") {
      if (!ParseInt(v, 0, 5, &n)) return bad("expected 0..5");
      a->retries = static_cast<int>(n);
    } else {
      --i;
      *error = "unknown option '" + std::string(opt) + "' for 'probe'";
      return false;
    }
  }
  if (a->adhoc == !a->device.empty()) {
    *error = a->adhoc ? "give either --device or an endpoint (--tcp, --rtu, --rtu-over-tcp)"
                      : "probe needs --device ID, or an endpoint (--tcp, --rtu, --rtu-over-tcp)";
    return false;
  }
  if (a->adhoc) {
    if (!a->address) {
      *error =
          "probe needs an address: --holding A, --input A, --coil A, --discrete A, "
          "--register 40001, or --table T --address A";
      return false;
    }
    a->shape.table = a->table.value_or(modbus::Table::kHolding);
    a->shape.address = *a->address;
    if (!a->type_set && modbus::IsBitTable(a->shape.table)) a->shape.type = modbus::DataType::kBool;
    const std::string problem = modbus::ValidateTag(a->shape, modbus::PlanLimits{});
    if (!problem.empty()) {
      *error = problem;
      return false;
    }
    if (a->endpoint.type == modbus::BusType::kRtu && (a->unit < 1 || a->unit > 247)) {
      *error = "a serial line's unit ids are 1..247";
      return false;
    }
  }
  return true;
}

int Probe(int argc, char** argv) {
  ProbeArgs a;
  std::string error;
  if (!ParseProbeArgs(argc, argv, &a, &error)) {
    std::fprintf(stderr, "tagrelay probe: %s\n\n%s", error.c_str(), kUsage);
    return kExitBadInput;
  }
  signal(SIGPIPE, SIG_IGN);
  (void)modbus::LowDescriptors::Instance().Reserve(1);
  modbus::ProbeReport report;
  if (a.adhoc) {
    auto transport = modbus::MakeTransport(a.endpoint);
    report = modbus::ProbeRange(*transport, a.unit, a.shape, a.count, a.retries.value_or(1));
  } else {
    std::optional<Config> c = LoadOrReport(a.config);
    if (!c) return kExitBadInput;
    const DeviceConfig* device = nullptr;
    for (const DeviceConfig& d : c->devices) {
      if (d.id == a.device) device = &d;
    }
    if (device == nullptr) {
      std::fprintf(stderr, "tagrelay probe: no device '%s' in %s\n", a.device.c_str(),
                   a.config.c_str());
      return kExitBadInput;
    }
    if (!a.tag.empty() && std::none_of(device->tags.begin(), device->tags.end(),
                                       [&](const modbus::TagSpec& t) { return t.name == a.tag; })) {
      std::fprintf(stderr, "tagrelay probe: device '%s' has no tag '%s'\n", a.device.c_str(),
                   a.tag.c_str());
      return kExitBadInput;
    }
    const BusConfig* bus = c->FindBus(device->bus);
    auto transport = modbus::MakeTransport(bus->Endpoint());
    report =
        modbus::ProbeDevice(*transport, device->Spec(), a.tag, a.retries.value_or(bus->retries));
  }
  std::fputs(report.text.c_str(), stdout);
  if (report.failures > 0) {
    std::fprintf(stderr, "%d value(s) could not be read\n", report.failures);
    return kExitRuntime;
  }
  return kExitOk;
}

}  // namespace

int RunCli(int argc, char** argv) {
  if (argc >= 2 && std::string_view(argv[1]) == "probe") return Probe(argc, argv);
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
  if (args.command == "run") return RunService(args.config);
  if (args.command == "status") return ShowStatus(args);
  std::fprintf(stderr, "tagrelay: unknown command '%s'\n\n%s", args.command.c_str(), kUsage);
  return kExitBadInput;
}

}  // namespace tagrelay
