// LibmodbusTransport: ModbusTransport over Modbus TCP, Modbus RTU on a serial
// line, or Modbus RTU carried over a TCP connection (a serial device server),
// on one libmodbus context.
//
// libmodbus opens and configures the serial port (termios, RS-485 mode, RTS)
// and receives each reply frame (its length from the function code, the RTU
// CRC). This class builds the requests and checks every reply against the
// request (frame.h), so that nothing but the answer to the question asked is
// ever returned as data:
//   - TCP: a late reply to an earlier, timed-out request is recognised by its
//     transaction id and skipped; after 3 timeouts in a row the connection is
//     closed and opened again, in case the peer dropped it silently;
//   - RTU: input left over from an earlier exchange is discarded before each
//     request (TCP: after an exchange that failed);
//   - RTU: a reply does not name its address, so after a timeout the unit is
//     asked nothing else until one more timeout has passed (its late reply,
//     if any, is discarded); a retry of the same request does not wait;
//   - serial RTU: the line is kept silent for 3.5 characters between frames,
//     and bytes that follow a reply within that silence make it a bad frame;
//   - a reply must be complete within the response timeout: nothing waits
//     longer than `timeout` (plus, on a serial line, the request's wire time).
// Descriptors are kept below FD_SETSIZE (low_fd.h), so libmodbus's select()
// never sees one it cannot hold.
//
// Threads: owned by one poller thread (a libmodbus context is not thread safe).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "drivers/modbus/frame.h"
#include "drivers/modbus/transport.h"

struct _modbus;

namespace tagrelay::modbus {

class LibmodbusTransport final : public ModbusTransport {
 public:
  explicit LibmodbusTransport(EndpointSpec spec);
  ~LibmodbusTransport() override;
  LibmodbusTransport(const LibmodbusTransport&) = delete;
  LibmodbusTransport& operator=(const LibmodbusTransport&) = delete;

  Status Connect() override;
  void Close() override;
  bool connected() const override { return fd_ >= 0; }
  Status ReadRegisters(int unit, Table table, uint16_t address, uint16_t count,
                       uint16_t* out) override;
  Status ReadBits(int unit, Table table, uint16_t address, uint16_t count, uint8_t* out) override;
  std::string Describe() const override;
  std::string last_error() const override { return last_error_; }

 private:
  using Clock = std::chrono::steady_clock;

  Status Read(int unit, Table table, uint16_t address, uint16_t count, uint16_t* regs,
              uint8_t* bits);
  Status Send(const ReadFrame& req);
  Status Receive(const ReadFrame& req, Clock::time_point deadline, ReplyCheck* reply);
  Status OpenSocket();
  Status OpenSerial();
  Status Failed(Status s, std::string detail);
  void WaitForQuietLine(Clock::time_point limit);
  bool InputWithin(std::chrono::nanoseconds wait);
  void Drain();

  const EndpointSpec spec_;
  const Framing framing_;
  const bool serial_;
  _modbus* ctx_ = nullptr;
  int fd_ = -1;
  uint16_t next_transaction_ = 1;
  std::vector<uint16_t> stale_;  // TCP: transaction ids of requests that timed out
  int timeouts_in_a_row_ = 0;
  Clock::time_point quiet_until_{};  // serial: earliest start of the next frame
  ReadFrame late_{0, 0, 0, 0, 0};    // RTU: the last request that timed out ...
  Clock::time_point late_until_{};   // ... and until when its reply may still come
  std::string last_error_;
  std::vector<uint8_t> reply_;
};

// The transport for an endpoint of any bus type.
std::unique_ptr<ModbusTransport> MakeTransport(const EndpointSpec& spec);

}  // namespace tagrelay::modbus
