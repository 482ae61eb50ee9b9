// tagrelay-modbus-sim: a simulated Modbus TCP device for the demo and the
// integration tests, on libmodbus. It answers every unit id from one register
// map whose values are known in advance:
//
//   holding 0        uint16   counter: +1 each time a read covers it (one per poll)
//   holding 1        int16    -1234, constant (checks signed decoding)
//   holding 2        int16    temperature in 0.1 degC, a slow sine around 21.5 degC
//   holding 3        uint16   1, constant (a status word)
//   input 0..1       float32  230.5, constant, ABCD (checks float decoding)
//   input 2..3       float32  line voltage, a sine around 230 V, ABCD
//
// It prints "listening on PORT" once it accepts connections (with --port 0 the
// kernel picks a free port), and it exits on SIGINT/SIGTERM or when its parent
// dies, so a test run never leaves it behind.
//
// --dead-unit N (repeatable) makes unit N a dead device behind a gateway: its
// requests get no answer at all.
//
// --registers N (16..10000, default 16) gives each table N registers; those
// past the ones above read 0. For large workloads (scripts/footprint).
#include <errno.h>
#include <modbus.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>

namespace {

volatile sig_atomic_t g_stop = 0;

void OnSignal(int) { g_stop = 1; }

void SetFloat(uint16_t* regs, float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  regs[0] = static_cast<uint16_t>(bits >> 16);  // ABCD: high word first
  regs[1] = static_cast<uint16_t>(bits & 0xFFFF);
}

void UpdateWaves(modbus_mapping_t* map, double t) {
  const double temp = 215.0 + 30.0 * std::sin(t / 20.0);
  map->tab_registers[2] = static_cast<uint16_t>(static_cast<int16_t>(std::lround(temp)));
  SetFloat(&map->tab_input_registers[2], static_cast<float>(230.0 + 4.0 * std::sin(t / 7.0)));
}

// A read of holding registers that includes register 0 advances the counter.
void CountPoll(modbus_t* ctx, const uint8_t* query, modbus_mapping_t* map) {
  const int h = modbus_get_header_length(ctx);
  if (query[h] != MODBUS_FC_READ_HOLDING_REGISTERS) return;
  const int addr = (query[h + 1] << 8) | query[h + 2];
  if (addr == 0) ++map->tab_registers[0];
}

int Usage() {
  std::fprintf(stderr,
               "usage: tagrelay-modbus-sim [--host 127.0.0.1] [--port 0] [--registers N] "
               "[--dead-unit N]...\n");
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  int port = 0;
  std::set<int> dead_units;
  int registers = 16;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--host" && i + 1 < argc) {
      host = argv[++i];
    } else if (a == "--port" && i + 1 < argc) {
      port = std::atoi(argv[++i]);
    } else if (a == "--registers" && i + 1 < argc) {
      registers = std::atoi(argv[++i]);
      if (registers < 16 || registers > 10000) return Usage();
    } else if (a == "--dead-unit" && i + 1 < argc) {
      dead_units.insert(std::atoi(argv[++i]));
    } else {
      return Usage();
    }
  }
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  modbus_t* ctx = modbus_new_tcp(host.c_str(), port);
  modbus_mapping_t* map = modbus_mapping_new(0, 0, registers, registers);
  if (ctx == nullptr || map == nullptr) {
    std::fprintf(stderr, "sim: cannot allocate: %s\n", modbus_strerror(errno));
    return 2;
  }
  map->tab_registers[1] = static_cast<uint16_t>(static_cast<int16_t>(-1234));
  map->tab_registers[3] = 1;
  SetFloat(&map->tab_input_registers[0], 230.5f);

  const int server = modbus_tcp_listen(ctx, 16);
  if (server < 0) {
    std::fprintf(stderr, "sim: listen on %s:%d: %s\n", host.c_str(), port, modbus_strerror(errno));
    return 2;
  }
  sockaddr_in addr{};
  socklen_t len = sizeof addr;
  getsockname(server, reinterpret_cast<sockaddr*>(&addr), &len);
  std::printf("listening on %d\n", ntohs(addr.sin_port));
  std::fflush(stdout);

  const auto start = std::chrono::steady_clock::now();
  fd_set clients;
  FD_ZERO(&clients);
  FD_SET(server, &clients);
  int max_fd = server;
  uint8_t query[MODBUS_TCP_MAX_ADU_LENGTH];

  while (!g_stop) {
    fd_set ready = clients;
    timeval tick{0, 200000};
    const int n = select(max_fd + 1, &ready, nullptr, nullptr, &tick);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::perror("sim: select");
      break;
    }
    for (int fd = 0; fd <= max_fd && n > 0; ++fd) {
      if (!FD_ISSET(fd, &ready)) continue;
      if (fd == server) {
        const int client = accept(server, nullptr, nullptr);
        if (client >= 0) {
          if (client >= FD_SETSIZE) {
            close(client);
            continue;
          }
          FD_SET(client, &clients);
          if (client > max_fd) max_fd = client;
        }
        continue;
      }
      modbus_set_socket(ctx, fd);
      const int rc = modbus_receive(ctx, query);
      if (rc > 0 && dead_units.count(query[modbus_get_header_length(ctx) - 1]) != 0) {
        continue;  // a dead unit behind the gateway: no answer
      }
      if (rc > 0) {
        const double t =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        UpdateWaves(map, t);
        CountPoll(ctx, query, map);
        modbus_reply(ctx, query, rc, map);
      } else if (rc < 0) {
        close(fd);
        FD_CLR(fd, &clients);
      }
    }
  }
  close(server);
  modbus_mapping_free(map);
  modbus_free(ctx);
  return 0;
}
