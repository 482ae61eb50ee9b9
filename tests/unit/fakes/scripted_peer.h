// ScriptedPeer: a Modbus device on a loopback TCP port whose every reply is
// scripted byte for byte, to drive the real transport through the faults of
// real wires: bad CRCs, wrong unit ids and function codes, short, long and
// truncated frames, late replies, a slow trickle, a closed connection.
//
// It speaks TCP (MBAP) or RTU framing over the socket (as a serial device
// server would). For each request it receives, it calls the next scripted
// responder, which returns the steps to take: bytes to send after a delay.
// Requests beyond the script get a good reply from `registers`.
//
// Threads: the peer runs its own thread; Script() and the accessors lock.
#pragma once

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "drivers/modbus/frame.h"

namespace tagrelay::modbus {

class ScriptedPeer {
 public:
  struct Step {
    std::chrono::milliseconds delay{0};
    std::vector<uint8_t> bytes;
  };
  using Responder = std::function<std::vector<Step>(const ReadFrame& request)>;

  explicit ScriptedPeer(Framing framing) : framing_(framing) {
    listener_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    listen(listener_, 4);
    socklen_t len = sizeof addr;
    getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    for (uint16_t i = 0; i < 200; ++i) registers_[i] = static_cast<uint16_t>(1000 + i);
    thread_ = std::thread([this] { Run(); });
  }
  ~ScriptedPeer() {
    stop_ = true;
    thread_.join();
    close(listener_);
  }

  uint16_t port() const { return port_; }
  void Script(Responder r) {
    std::lock_guard<std::mutex> lock(mu_);
    script_.push_back(std::move(r));
  }
  int requests() const { return requests_.load(); }
  int connections() const { return connections_.load(); }
  // Closes the current connection after the next scripted reply.
  void HangUpAfterNext() { hang_up_ = true; }

  void SetRegister(uint16_t address, uint16_t value) {
    std::lock_guard<std::mutex> lock(mu_);
    registers_[address % 200] = value;
  }
  uint16_t Register(uint16_t address) const {
    std::lock_guard<std::mutex> lock(mu_);
    return registers_[address % 200];
  }

  // Reply builders ----------------------------------------------------------

  // The good reply's PDU (unit id first), without framing.
  std::vector<uint8_t> GoodPdu(const ReadFrame& r) const {
    std::vector<uint8_t> pdu = {r.unit, r.function, static_cast<uint8_t>(ReplyDataBytes(r))};
    if (r.function <= 2) {
      std::vector<uint8_t> packed(ReplyDataBytes(r), 0);
      for (uint16_t i = 0; i < r.count; ++i) {
        if (Register(static_cast<uint16_t>(r.address + i)) & 1)
          packed[i / 8] |= static_cast<uint8_t>(1 << (i % 8));
      }
      pdu.insert(pdu.end(), packed.begin(), packed.end());
    } else {
      for (uint16_t i = 0; i < r.count; ++i) {
        const uint16_t v = Register(static_cast<uint16_t>(r.address + i));
        pdu.push_back(static_cast<uint8_t>(v >> 8));
        pdu.push_back(static_cast<uint8_t>(v & 0xFF));
      }
    }
    return pdu;
  }
  static std::vector<uint8_t> ExceptionPdu(const ReadFrame& r, uint8_t code) {
    return {r.unit, static_cast<uint8_t>(r.function | 0x80), code};
  }
  // Frames a PDU: MBAP with the request's transaction id (or `transaction`),
  // or a CRC for RTU.
  std::vector<uint8_t> Frame(const ReadFrame& r, std::vector<uint8_t> pdu,
                             int transaction = -1) const {
    std::vector<uint8_t> adu;
    if (framing_ == Framing::kTcp) {
      const uint16_t t = transaction < 0 ? r.transaction : static_cast<uint16_t>(transaction);
      adu = {static_cast<uint8_t>(t >> 8),          static_cast<uint8_t>(t & 0xFF),         0, 0,
             static_cast<uint8_t>(pdu.size() >> 8), static_cast<uint8_t>(pdu.size() & 0xFF)};
      adu.insert(adu.end(), pdu.begin(), pdu.end());
    } else {
      adu = pdu;
      const uint16_t crc = Crc16(adu);
      adu.push_back(static_cast<uint8_t>(crc & 0xFF));
      adu.push_back(static_cast<uint8_t>(crc >> 8));
    }
    return adu;
  }
  std::vector<uint8_t> Good(const ReadFrame& r) const { return Frame(r, GoodPdu(r)); }

 private:
  void Run() {
    while (!stop_) {
      pollfd p{listener_, POLLIN, 0};
      if (poll(&p, 1, 20) != 1) continue;
      const int fd = accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      ++connections_;
      Serve(fd);
      close(fd);
    }
  }

  // Reads one request; false when the connection is gone or a stop is asked.
  bool ReadRequest(int fd, ReadFrame* r) {
    const size_t want = framing_ == Framing::kTcp ? 12 : 8;
    std::vector<uint8_t> buf;
    while (buf.size() < want) {
      if (stop_) return false;
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 20) != 1) continue;
      uint8_t tmp[64];
      const ssize_t n = read(fd, tmp, want - buf.size());
      if (n <= 0) return false;
      buf.insert(buf.end(), tmp, tmp + n);
    }
    const size_t o = framing_ == Framing::kTcp ? 6 : 0;
    r->transaction = static_cast<uint16_t>(framing_ == Framing::kTcp ? (buf[0] << 8 | buf[1]) : 0);
    r->unit = buf[o];
    r->function = buf[o + 1];
    r->address = static_cast<uint16_t>(buf[o + 2] << 8 | buf[o + 3]);
    r->count = static_cast<uint16_t>(buf[o + 4] << 8 | buf[o + 5]);
    return true;
  }

  void Serve(int fd) {
    ReadFrame r;
    while (ReadRequest(fd, &r)) {
      ++requests_;
      Responder responder;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (!script_.empty()) {
          responder = std::move(script_.front());
          script_.pop_front();
        }
      }
      const std::vector<Step> steps =
          responder ? responder(r) : std::vector<Step>{Step{{}, Good(r)}};
      for (const Step& s : steps) {
        const auto until = std::chrono::steady_clock::now() + s.delay;
        while (!stop_ && std::chrono::steady_clock::now() < until) {
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        if (!s.bytes.empty() && send(fd, s.bytes.data(), s.bytes.size(), MSG_NOSIGNAL) < 0) return;
      }
      if (hang_up_.exchange(false)) return;
    }
  }

  const Framing framing_;
  int listener_ = -1;
  uint16_t port_ = 0;
  mutable std::mutex mu_;
  uint16_t registers_[200];
  std::deque<Responder> script_;
  std::atomic<int> requests_{0};
  std::atomic<int> connections_{0};
  std::atomic<bool> hang_up_{false};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace tagrelay::modbus
