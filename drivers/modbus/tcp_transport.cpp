#include "drivers/modbus/tcp_transport.h"

#include <modbus.h>

#include <cerrno>
#include <string>

namespace tagrelay::modbus {
namespace {

// libmodbus reports exceptions as errno = MODBUS_ENOBASE + exception code.
bool IsException(int err, int* code) {
  if (err > MODBUS_ENOBASE && err <= MODBUS_ENOBASE + 0x0B) {
    *code = err - MODBUS_ENOBASE;
    return true;
  }
  return false;
}

}  // namespace

TcpTransport::TcpTransport(TcpEndpointSpec spec) : spec_(std::move(spec)) {}

TcpTransport::~TcpTransport() {
  Close();
  if (ctx_ != nullptr) modbus_free(ctx_);
}

std::string TcpTransport::Describe() const {
  return "tcp " + spec_.host + ":" + std::to_string(spec_.port);
}

Status TcpTransport::Connect() {
  if (connected_) return Status::Ok();
  if (ctx_ == nullptr) {
    ctx_ = modbus_new_tcp_pi(spec_.host.c_str(), std::to_string(spec_.port).c_str());
    if (ctx_ == nullptr) {
      last_error_ = modbus_strerror(errno);
      return Status::InvalidArgument("modbus_new_tcp_pi: " + last_error_);
    }
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(spec_.timeout).count();
    modbus_set_response_timeout(ctx_, static_cast<uint32_t>(us / 1000000),
                                static_cast<uint32_t>(us % 1000000));
  }
  if (modbus_connect(ctx_) != 0) {
    last_error_ = modbus_strerror(errno);
    return Status::Unavailable("not-connected");
  }
  connected_ = true;
  return Status::Ok();
}

void TcpTransport::Close() {
  if (ctx_ != nullptr && connected_) modbus_close(ctx_);
  connected_ = false;
}

Status TcpTransport::ReadRegisters(int unit, Table table, uint16_t address, uint16_t count,
                                   uint16_t* out) {
  if (!connected_) return Status::Unavailable("not-connected");
  if (table != Table::kHolding && table != Table::kInput) {
    return Status::InvalidArgument("ReadRegisters: table must be holding or input");
  }
  modbus_set_slave(ctx_, unit);
  const int n = table == Table::kHolding ? modbus_read_registers(ctx_, address, count, out)
                                         : modbus_read_input_registers(ctx_, address, count, out);
  if (n == count) return Status::Ok();
  if (n >= 0) {  // libmodbus checks the count itself; be strict all the same
    last_error_ = "short reply";
    return Status::DeviceError("bad-frame");
  }
  const int err = errno;
  last_error_ = modbus_strerror(err);
  int code = 0;
  if (IsException(err, &code)) return Status::DeviceError("exception:" + std::to_string(code));
  if (err == EMBBADDATA || err == EMBBADCRC || err == EMBMDATA || err == EMBBADSLAVE ||
      err == EMBBADEXC) {
    Close();  // the stream may be out of step; start clean
    return Status::DeviceError("bad-frame");
  }
  Close();
  if (err == ETIMEDOUT) return Status::Timeout("timeout");
  return Status::IOError("io");
}

}  // namespace tagrelay::modbus
