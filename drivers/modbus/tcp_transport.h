// TcpTransport: ModbusTransport over Modbus TCP, on libmodbus.
//
// Promise: owns one libmodbus context. After a timeout or a broken connection it
// closes the socket, so that a late answer can never be taken for the reply to
// the next request; the next Connect() opens a fresh one.
//
// Threads: owned by one poller thread (a libmodbus context is not thread safe).
#pragma once

#include <string>

#include "drivers/modbus/transport.h"

struct _modbus;

namespace tagrelay::modbus {

class TcpTransport final : public ModbusTransport {
 public:
  explicit TcpTransport(TcpEndpointSpec spec);
  ~TcpTransport() override;
  TcpTransport(const TcpTransport&) = delete;
  TcpTransport& operator=(const TcpTransport&) = delete;

  Status Connect() override;
  void Close() override;
  bool connected() const override { return connected_; }
  Status ReadRegisters(int unit, Table table, uint16_t address, uint16_t count,
                       uint16_t* out) override;
  std::string Describe() const override;

  // The detail of the last failure ("Connection refused"), for logs.
  const std::string& last_error() const { return last_error_; }

 private:
  TcpEndpointSpec spec_;
  _modbus* ctx_ = nullptr;
  bool connected_ = false;
  std::string last_error_;
};

}  // namespace tagrelay::modbus
