// tagrelay_modbus_bench: throughput of the Modbus engine against ceilings
// measured in the same run (ratios, not absolute numbers).
//
//   TCP      polls/s of a ModbusPoller on one connection, against a raw
//            libmodbus modbus_read_registers() loop on the same server
//            (goal: >= 90 %).
//   RTU      transactions/s of a ModbusPoller on a serial line to a slave
//            simulator that takes the real wire time of every frame (11 bits
//            a character, 3.5 characters of silence), against the line's
//            theoretical rate (goal: >= 90 % at 19200 and 115200 baud).
//   Planner  requests per poll cycle for realistic device maps, against one
//            request per tag.
//
// Usage: tagrelay_modbus_bench [--seconds S] [--registers N] [--rtu-sim PATH]
// The RTU part needs the simulator (tests/sim/modbus_rtu_sim.cpp); its path
// is built in when the tests are built, or given with --rtu-sim.
#include <modbus.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "agent/core/clock.h"
#include "agent/core/log.h"
#include "bench/thread_cpu.h"
#include "drivers/modbus/libmodbus_transport.h"
#include "drivers/modbus/poller.h"
#include "drivers/modbus/request_plan.h"

namespace tagrelay::modbus {
namespace {

using bench::ThreadCpuSeconds;

using Seconds = std::chrono::duration<double>;
using SteadyClock = std::chrono::steady_clock;

// One request of this many holding registers per poll (--registers, 1..125).
uint16_t g_registers = 10;

// A Modbus TCP server on a thread (libmodbus), answering from a fixed map.
class TcpServer {
 public:
  TcpServer() {
    ctx_ = modbus_new_tcp("127.0.0.1", 0);
    map_ = modbus_mapping_new(0, 0, 125, 0);
    for (int i = 0; i < 125; ++i) map_->tab_registers[i] = static_cast<uint16_t>(i * 3);
    listener_ = modbus_tcp_listen(ctx_, 4);
    sockaddr_in addr{};
    socklen_t len = sizeof addr;
    getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Run(); });
  }
  ~TcpServer() {
    stop_ = true;
    thread_.join();
    close(listener_);
    modbus_mapping_free(map_);
    modbus_free(ctx_);
  }
  uint16_t port() const { return port_; }

 private:
  void Run() {
    while (!stop_) {
      timeval tv{0, 100000};
      fd_set set;
      FD_ZERO(&set);
      FD_SET(listener_, &set);
      if (select(listener_ + 1, &set, nullptr, nullptr, &tv) != 1) continue;
      const int fd = accept(listener_, nullptr, nullptr);
      if (fd < 0) continue;
      modbus_set_socket(ctx_, fd);
      modbus_set_indication_timeout(ctx_, 0, 200000);
      uint8_t query[MODBUS_TCP_MAX_ADU_LENGTH];
      while (!stop_) {
        const int rc = modbus_receive(ctx_, query);
        if (rc > 0) {
          modbus_reply(ctx_, query, rc, map_);
        } else if (rc < 0 && errno != ETIMEDOUT) {
          break;
        }
      }
      close(fd);
    }
  }
  modbus_t* ctx_;
  modbus_mapping_t* map_;
  int listener_;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

struct RawRate {
  double requests_per_s = 0;
  double cpu_us_per_request = 0;  // the client thread's CPU time per good request
};

// Requests/s of a bare libmodbus loop: the ceiling; and what each request
// costs the client thread in CPU time.
RawRate RawLibmodbusRate(uint16_t port, Seconds duration) {
  modbus_t* ctx = modbus_new_tcp("127.0.0.1", port);
  if (modbus_connect(ctx) != 0) {
    std::fprintf(stderr, "raw connect: %s\n", modbus_strerror(errno));
    return {};
  }
  modbus_set_slave(ctx, 1);
  std::vector<uint16_t> regs(g_registers);
  uint64_t n = 0;
  const auto start = SteadyClock::now();
  const double cpu_start = ThreadCpuSeconds();
  while (SteadyClock::now() - start < duration) {
    for (int i = 0; i < 100; ++i) {
      if (modbus_read_registers(ctx, 0, g_registers, regs.data()) == g_registers) ++n;
    }
  }
  const double cpu_seconds = ThreadCpuSeconds() - cpu_start;
  RawRate r;
  r.requests_per_s = static_cast<double>(n) / Seconds(SteadyClock::now() - start).count();
  if (n > 0) r.cpu_us_per_request = cpu_seconds * 1e6 / static_cast<double>(n);
  modbus_close(ctx);
  modbus_free(ctx);
  return r;
}

DeviceSpec BenchDevice(int unit) {
  DeviceSpec d;
  d.id = "bench";
  d.unit_id = unit;
  d.poll = std::chrono::milliseconds(10);
  std::vector<TagSpec> tags;
  for (uint16_t a = 0; a < g_registers; ++a) {
    TagSpec t;
    t.name = "r" + std::to_string(a);
    t.address = a;
    t.type = a % 2 == 0 ? DataType::kUint16 : DataType::kInt16;
    tags.push_back(t);
  }
  d.tags = std::move(tags);
  return d;
}

// Polls/s of the poller: every RunDue() is one due poll (the fake clock jumps
// to the next slot), so this is the poller's whole path per poll: plan, read,
// decode, batch, sink. Returns good polls per second of real time.
double PollerRate(const EndpointSpec& endpoint, int unit, Seconds duration, uint64_t* bad) {
  FakeClock clock;
  uint64_t good = 0;
  uint64_t failed = 0;
  ModbusPoller poller("bench", MakeTransport(endpoint), {BenchDevice(unit)}, clock,
                      [&](ReadingBatch&& b) {
                        bool ok = true;
                        for (const Reading& r : b.readings) ok = ok && r.quality == Quality::kGood;
                        ++(ok ? good : failed);
                        return true;
                      });
  poller.RunDue();  // connect
  good = 0;
  failed = 0;
  const auto start = SteadyClock::now();
  while (SteadyClock::now() - start < duration) {
    clock.Advance(std::chrono::milliseconds(10));
    poller.RunDue();
  }
  *bad = failed;
  return static_cast<double>(good) / Seconds(SteadyClock::now() - start).count();
}

// Runs the TCP rows; returns the raw loop's round of the lowest client CPU per
// request.
RawRate TcpBench(Seconds duration) {
  TcpServer server;
  EndpointSpec e;
  e.name = "bench";
  e.host = "127.0.0.1";
  e.port = server.port();
  double best_raw = 0, best_ours = 0;
  RawRate leanest;
  uint64_t bad = 0;
  for (int round = 0; round < 3; ++round) {  // interleaved, best of three each
    const RawRate raw = RawLibmodbusRate(server.port(), duration / 3);
    best_raw = std::max(best_raw, raw.requests_per_s);
    if (raw.cpu_us_per_request > 0 &&
        (leanest.cpu_us_per_request == 0 || raw.cpu_us_per_request < leanest.cpu_us_per_request)) {
      leanest = raw;
    }
    uint64_t b = 0;
    best_ours = std::max(best_ours, PollerRate(e, 1, duration / 3, &b));
    bad += b;
  }
  const double ratio = best_ours / best_raw;
  std::printf(
      "| TCP, one connection, %u registers per poll | %.0f polls/s | raw libmodbus loop "
      "%.0f req/s | %.1f %% | %s |\n",
      g_registers, best_ours, best_raw, 100 * ratio, ratio >= 0.9 ? "met" : "MISSED");
  if (bad > 0)
    std::printf("  (%llu polls had bad readings)\n", static_cast<unsigned long long>(bad));
  return leanest;
}

// The line's best: request (8 bytes) and reply (5 + 2n bytes) of 11-bit
// characters, each followed by 3.5 characters of silence.
double TheoreticalRtuRate(int baud) {
  const double chars = 8 + 5 + 2.0 * g_registers;
  const double gap = baud > 19200 ? 1750e-6 : 3.5 * 11.0 / baud;
  return 1.0 / (chars * 11.0 / baud + 2 * gap);
}

void RtuBench(const std::string& sim, int baud, Seconds duration) {
  int out[2];
  if (pipe(out) != 0) return;
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], 1);
    close(out[0]);
    const std::string b = std::to_string(baud);
    execl(sim.c_str(), sim.c_str(), "--units", "1", "--baud", b.c_str(), nullptr);
    _exit(127);
  }
  close(out[1]);
  char line[256] = {};
  FILE* f = fdopen(out[0], "r");
  if (f == nullptr || std::fgets(line, sizeof line, f) == nullptr ||
      std::string(line).rfind("listening on ", 0) != 0) {
    std::printf("| RTU %d baud | simulator did not start (%s) | | | |\n", baud, sim.c_str());
    kill(pid, SIGTERM);
    waitpid(pid, nullptr, 0);
    return;
  }
  std::string pty(line + 13);
  while (!pty.empty() && (pty.back() == '\n' || pty.back() == '\r')) pty.pop_back();
  EndpointSpec e;
  e.name = "bench";
  e.type = BusType::kRtu;
  e.serial.device = pty;
  e.serial.baud = baud;
  e.serial.parity = Parity::kNone;  // a pseudo terminal has no parity bit
  e.timeout = std::chrono::milliseconds(500);
  uint64_t bad = 0;
  const double rate = PollerRate(e, 1, duration, &bad);
  kill(pid, SIGTERM);
  waitpid(pid, nullptr, 0);
  std::fclose(f);
  const double ceiling = TheoreticalRtuRate(baud);
  const double ratio = rate / ceiling;
  std::printf(
      "| RTU %d baud, %u registers per poll | %.1f tx/s | line rate %.1f tx/s | %.1f %% | "
      "%s |\n",
      baud, g_registers, rate, ceiling, 100 * ratio, ratio >= 0.9 ? "met" : "MISSED");
  if (bad > 0)
    std::printf("  (%llu polls had bad readings)\n", static_cast<unsigned long long>(bad));
}

// --- Planner --------------------------------------------------------------

TagSpec T(Table table, uint16_t address, DataType type) {
  TagSpec t;
  t.name = std::string(TableName(table)) + std::to_string(address);
  t.table = table;
  t.address = address;
  t.type = type;
  return t;
}

// A three-phase energy meter laid out like common DIN-rail meters: float32
// input registers in blocks with holes, a few holding settings.
std::vector<TagSpec> EnergyMeter() {
  std::vector<TagSpec> tags;
  for (uint16_t a = 0; a <= 0x34; a += 2) tags.push_back(T(Table::kInput, a, DataType::kFloat32));
  for (uint16_t a : {0x38, 0x3C, 0x3E, 0x46, 0x48, 0x4A, 0x4C, 0x4E, 0x54, 0x56, 0x58, 0x5A, 0x5C,
                     0x5E, 0x64, 0x66, 0x6A, 0x6C}) {
    tags.push_back(T(Table::kInput, a, DataType::kFloat32));
  }
  for (uint16_t a = 0xC8; a <= 0xEA; a += 2)
    tags.push_back(T(Table::kInput, a, DataType::kFloat32));
  for (uint16_t a = 0x156; a <= 0x180; a += 2)
    tags.push_back(T(Table::kInput, a, DataType::kFloat32));
  for (uint16_t a : {0x0A, 0x0C, 0x0E, 0x12, 0x14, 0x1C}) {
    tags.push_back(T(Table::kHolding, a, DataType::kFloat32));
  }
  return tags;
}

// A variable-speed drive: status and control words, scattered parameters,
// 32-bit counters.
std::vector<TagSpec> Drive() {
  std::vector<TagSpec> tags;
  for (uint16_t a = 0; a < 6; ++a) tags.push_back(T(Table::kHolding, a, DataType::kUint16));
  for (uint16_t a : {100, 101, 102, 104, 105, 107, 110, 111, 115, 120, 121, 122, 130, 131}) {
    tags.push_back(T(Table::kHolding, a, a % 2 ? DataType::kInt16 : DataType::kUint16));
  }
  for (uint16_t a : {200, 202, 204, 210, 216, 300, 302}) {
    tags.push_back(T(Table::kHolding, a, DataType::kUint32));
  }
  for (uint16_t a = 400; a < 416; ++a) {
    TagSpec bit = T(Table::kHolding, 400, DataType::kBit);
    bit.bit = static_cast<uint8_t>(a - 400);
    bit.name = "fault" + std::to_string(a - 400);
    tags.push_back(bit);
  }
  return tags;
}

// A small PLC: coils, discrete inputs, a block of int16 and some floats.
std::vector<TagSpec> Plc() {
  std::vector<TagSpec> tags;
  for (uint16_t a = 0; a < 64; ++a) tags.push_back(T(Table::kCoil, a, DataType::kBool));
  for (uint16_t a = 0; a < 32; a += 1) tags.push_back(T(Table::kDiscrete, a * 2, DataType::kBool));
  for (uint16_t a = 0; a < 40; ++a) tags.push_back(T(Table::kHolding, a, DataType::kInt16));
  for (uint16_t a = 100; a < 140; a += 4) tags.push_back(T(Table::kHolding, a, DataType::kFloat32));
  for (uint16_t a = 1000; a < 1003; ++a) tags.push_back(T(Table::kInput, a, DataType::kUint16));
  return tags;
}

void PlannerBench() {
  struct Profile {
    const char* name;
    std::vector<TagSpec> tags;
  };
  const Profile profiles[] = {{"energy meter", EnergyMeter()}, {"drive", Drive()}, {"PLC", Plc()}};
  std::printf(
      "\n| device map | tags | one request per tag | max_gap 0 | max_gap 8 (bits 32) |\n"
      "| --- | --- | --- | --- | --- |\n");
  for (const Profile& p : profiles) {
    PlanLimits tight;
    PlanLimits loose;
    loose.max_gap = 8;
    loose.max_bit_gap = 32;
    std::printf("| %s | %zu | %zu | %zu | %zu |\n", p.name, p.tags.size(), p.tags.size(),
                PlanRequests(p.tags, tight).size(), PlanRequests(p.tags, loose).size());
  }
}

}  // namespace
}  // namespace tagrelay::modbus

int main(int argc, char** argv) {
  double seconds = 6;
  std::string sim;
#ifdef TAGRELAY_RTU_SIM
  sim = TAGRELAY_RTU_SIM;
#endif
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--seconds" && i + 1 < argc) {
      seconds = std::atof(argv[++i]);
    } else if (a == "--registers" && i + 1 < argc) {
      const int n = std::atoi(argv[++i]);
      if (n < 1 || n > 125) {
        std::fprintf(stderr, "--registers: 1..125\n");
        return 1;
      }
      tagrelay::modbus::g_registers = static_cast<uint16_t>(n);
    } else if (a == "--rtu-sim" && i + 1 < argc) {
      sim = argv[++i];
    } else {
      std::fprintf(stderr,
                   "usage: tagrelay_modbus_bench [--seconds S] [--registers N] [--rtu-sim PATH]\n");
      return 1;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  tagrelay::SetLogSink([](const tagrelay::LogEvent&) {}, tagrelay::LogLevel::kError);
  const tagrelay::modbus::Seconds d(seconds);
  std::printf(
      "| benchmark | tagrelay | ceiling | ratio | goal 90 %% |\n| --- | --- | --- | --- | --- |\n");
  const tagrelay::modbus::RawRate raw = tagrelay::modbus::TcpBench(d);
  if (sim.empty()) {
    std::printf("| RTU | skipped: no simulator (--rtu-sim PATH) | | | |\n");
  } else {
    tagrelay::modbus::RtuBench(sim, 19200, d);
    tagrelay::modbus::RtuBench(sim, 115200, d);
  }
  // After the table, so that its rows stay together.
  const unsigned registers = tagrelay::modbus::g_registers;
  std::printf(
      "\nraw libmodbus loop, %u registers per request: %.3f us CPU per request (client thread, "
      "lowest of 3 rounds), %.4f us per register, at %.0f req/s\n",
      registers, raw.cpu_us_per_request, raw.cpu_us_per_request / registers, raw.requests_per_s);
  tagrelay::modbus::PlannerBench();
  return 0;
}
