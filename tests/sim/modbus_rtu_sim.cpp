// tagrelay-modbus-rtu-sim: simulated Modbus RTU slaves on one serial line, for
// the integration tests and the RTU benchmark.
//
// The line is a pseudo terminal: with --pty (the default) the simulator makes
// one and prints "listening on /dev/pts/N"; with --device PATH it opens a tty
// that already exists (one end of a socat pty pair) and prints "listening on
// PATH". Several unit ids answer on the line (--units 1,2,3); requests to any
// other unit go unanswered, like a dead device on a real bus.
//
// With --baud B the simulator takes the real wire time of every frame at B
// baud (11 bits a character): a reply is written only when the request would
// have finished arriving, the line stayed silent for 3.5 characters, and the
// reply itself would have finished going out. It also checks the master's
// side of the timing: a request that starts less than 3.5 characters after
// the previous frame ended is counted as a gap violation. --no-wire-time
// answers at once instead.
//
// Register map, for unit u: holding and input register a (a < 1000) hold
// u * 100 + a, except register 0, which counts the reads that covered it (so
// the tests can count polls per unit). Coil and discrete input a is a & 1.
// Addresses from 1000 up answer exception 2 (illegal data address).
//
// On SIGINT/SIGTERM (or when its parent dies) it prints one line of counts to
// stderr, "requests U:N ... violations V", and exits.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "drivers/modbus/frame.h"

namespace {

volatile sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

int64_t NowNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

void SleepUntil(int64_t ns) {
  const timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR && !g_stop) {
  }
}

void MakeRaw(int fd) {
  termios t{};
  if (tcgetattr(fd, &t) != 0) return;
  cfmakeraw(&t);
  tcsetattr(fd, TCSANOW, &t);
}

int Usage() {
  std::fprintf(stderr,
               "usage: tagrelay-modbus-rtu-sim [--pty | --device PATH] [--units 1,2,3]\n"
               "                               [--baud 19200 | --no-wire-time]\n");
  return 1;
}

struct Line {
  int fd = -1;
  int64_t char_ns = 0;  // 0: no wire time
  int64_t gap_ns = 0;   // 3.5 characters
};

std::vector<uint8_t> Reply(const tagrelay::modbus::ReadFrame& r,
                           std::map<int, uint16_t>* counters) {
  using tagrelay::modbus::Crc16;
  std::vector<uint8_t> pdu = {r.unit, r.function};
  if (r.function < 1 || r.function > 4) {
    pdu[1] |= 0x80;
    pdu.push_back(1);
  } else if (r.count == 0 || uint32_t{r.address} + r.count > 1000 ||
             r.count > (r.function <= 2 ? 2000 : 125)) {
    pdu[1] |= 0x80;
    pdu.push_back(2);
  } else if (r.function <= 2) {
    std::vector<uint8_t> packed((r.count + 7) / 8, 0);
    for (uint16_t i = 0; i < r.count; ++i) {
      if ((r.address + i) & 1) packed[i / 8] |= static_cast<uint8_t>(1 << (i % 8));
    }
    pdu.push_back(static_cast<uint8_t>(packed.size()));
    pdu.insert(pdu.end(), packed.begin(), packed.end());
  } else {
    pdu.push_back(static_cast<uint8_t>(r.count * 2));
    if (r.address == 0) ++(*counters)[r.unit];
    for (uint16_t i = 0; i < r.count; ++i) {
      const uint16_t a = r.address + i;
      const uint16_t v = a == 0 ? (*counters)[r.unit] : static_cast<uint16_t>(r.unit * 100 + a);
      pdu.push_back(static_cast<uint8_t>(v >> 8));
      pdu.push_back(static_cast<uint8_t>(v & 0xFF));
    }
  }
  const uint16_t crc = Crc16(pdu);
  pdu.push_back(static_cast<uint8_t>(crc & 0xFF));
  pdu.push_back(static_cast<uint8_t>(crc >> 8));
  return pdu;
}

}  // namespace

int main(int argc, char** argv) {
  std::string device;
  std::set<int> units = {1};
  int baud = 19200;
  bool wire_time = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--pty") {
      device.clear();
    } else if (a == "--device" && i + 1 < argc) {
      device = argv[++i];
    } else if (a == "--units" && i + 1 < argc) {
      units.clear();
      std::string list = argv[++i];
      for (size_t p = 0; p <= list.size();) {
        const size_t comma = std::min(list.find(',', p), list.size());
        units.insert(std::atoi(list.substr(p, comma - p).c_str()));
        p = comma + 1;
      }
    } else if (a == "--baud" && i + 1 < argc) {
      baud = std::atoi(argv[++i]);
    } else if (a == "--no-wire-time") {
      wire_time = false;
    } else {
      return Usage();
    }
  }
  if (baud <= 0) return Usage();
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  Line line;
  int keep_open = -1;  // the pty's slave side, so that reads never see EIO between clients
  if (device.empty()) {
    line.fd = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (line.fd < 0 || grantpt(line.fd) != 0 || unlockpt(line.fd) != 0) {
      std::perror("rtu-sim: posix_openpt");
      return 2;
    }
    device = ptsname(line.fd);
    keep_open = open(device.c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC);
    MakeRaw(keep_open);
  } else {
    line.fd = open(device.c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (line.fd < 0) {
      std::fprintf(stderr, "rtu-sim: open %s: %s\n", device.c_str(), std::strerror(errno));
      return 2;
    }
  }
  MakeRaw(line.fd);
  if (wire_time) {
    line.char_ns = 11'000'000'000LL / baud;
    line.gap_ns = baud > 19200 ? 1'750'000 : 38'500'000'000LL / baud;
  }
  std::printf("listening on %s\n", device.c_str());
  std::fflush(stdout);

  std::map<int, uint64_t> requests;
  std::map<int, uint16_t> counters;
  uint64_t violations = 0, bad_crc = 0;
  std::vector<uint8_t> buf;
  int64_t frame_start = 0;
  int64_t line_free_at = 0;  // end of the last frame on the line, plus 3.5 characters

  while (!g_stop) {
    pollfd p{line.fd, POLLIN, 0};
    const int n = poll(&p, 1, 100);
    if (n < 0 && errno != EINTR) break;
    if (n <= 0) continue;
    uint8_t tmp[256];
    const ssize_t got = read(line.fd, tmp, sizeof tmp);
    if (got <= 0) continue;
    if (buf.empty()) {
      frame_start = NowNs();
      if (line.char_ns > 0 && frame_start < line_free_at) ++violations;
    }
    buf.insert(buf.end(), tmp, tmp + got);
    while (buf.size() >= 8) {
      tagrelay::modbus::ReadFrame r;
      r.unit = buf[0];
      r.function = buf[1];
      r.address = static_cast<uint16_t>(buf[2] << 8 | buf[3]);
      r.count = static_cast<uint16_t>(buf[4] << 8 | buf[5]);
      const uint16_t crc = static_cast<uint16_t>(buf[6] | buf[7] << 8);
      if (tagrelay::modbus::Crc16(std::span<const uint8_t>(buf.data(), 6)) != crc) {
        ++bad_crc;
        buf.clear();  // out of step: wait for the next frame
        break;
      }
      buf.erase(buf.begin(), buf.begin() + 8);
      const int64_t request_end = frame_start + 8 * line.char_ns;
      line_free_at = request_end + line.gap_ns;
      ++requests[r.unit];
      if (units.count(r.unit) == 0) continue;  // a dead unit: silence
      const std::vector<uint8_t> reply = Reply(r, &counters);
      const int64_t reply_end =
          request_end + line.gap_ns + static_cast<int64_t>(reply.size()) * line.char_ns;
      if (line.char_ns > 0) SleepUntil(reply_end);
      if (write(line.fd, reply.data(), reply.size()) < 0) break;
      line_free_at = (line.char_ns > 0 ? reply_end : NowNs()) + line.gap_ns;
      frame_start = NowNs();
    }
  }
  std::fprintf(stderr, "requests");
  for (const auto& [unit, count] : requests)
    std::fprintf(stderr, " %d:%llu", unit, static_cast<unsigned long long>(count));
  std::fprintf(stderr, " violations %llu bad_crc %llu\n",
               static_cast<unsigned long long>(violations),
               static_cast<unsigned long long>(bad_crc));
  if (keep_open >= 0) close(keep_open);
  close(line.fd);
  return 0;
}
