#include "drivers/modbus/libmodbus_transport.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <modbus.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "agent/core/log.h"
#include "drivers/modbus/low_fd.h"

namespace tagrelay::modbus {
namespace {

using std::chrono::duration_cast;
using std::chrono::microseconds;
using std::chrono::nanoseconds;

constexpr int kTimeoutsBeforeReconnect = 3;
constexpr size_t kStaleKept = 8;
constexpr size_t kMaxAdu = 260;

timespec ToTimespec(nanoseconds d) {
  if (d.count() < 0) d = nanoseconds(0);
  return timespec{static_cast<time_t>(d.count() / 1'000'000'000),
                  static_cast<long>(d.count() % 1'000'000'000)};
}

// Connects a non-blocking TCP socket to host:port within `timeout`.
Result<int> ConnectTcp(const std::string& host, uint16_t port, std::chrono::milliseconds timeout,
                       std::string* detail) {
  // A dotted IPv4 address is taken as is, as getaddrinfo would: its frames are the deepest a
  // poller thread goes, and every stack page a thread touches stays resident (docs/footprint.md).
  sockaddr_in v4{};
  addrinfo numeric{};
  addrinfo* list = nullptr;
  if (inet_pton(AF_INET, host.c_str(), &v4.sin_addr) == 1) {
    v4.sin_family = AF_INET;
    v4.sin_port = htons(port);
    numeric.ai_family = AF_INET;
    numeric.ai_socktype = SOCK_STREAM;
    numeric.ai_addr = reinterpret_cast<sockaddr*>(&v4);
    numeric.ai_addrlen = sizeof v4;
  } else {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    const int gai = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &list);
    if (gai != 0) {
      *detail = std::string("resolve ") + host + ": " + gai_strerror(gai);
      return Status::Unavailable("not-connected");
    }
  }
  const auto release = [&list] {
    if (list != nullptr) freeaddrinfo(list);
  };
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  *detail = "no address";
  for (addrinfo* a = list != nullptr ? list : &numeric; a != nullptr; a = a->ai_next) {
    const int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      *detail = std::string("socket: ") + std::strerror(errno);
      continue;
    }
    int err = 0;
    if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      err = errno;
      if (err == EINPROGRESS) {
        pollfd p{fd, POLLOUT, 0};
        const timespec ts = ToTimespec(deadline - std::chrono::steady_clock::now());
        const int n = ppoll(&p, 1, &ts, nullptr);
        socklen_t len = sizeof err;
        if (n == 1) {
          getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        } else {
          err = n == 0 ? ETIMEDOUT : errno;
        }
      }
    }
    if (err == 0) {
      const int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      release();
      return fd;
    }
    *detail = std::strerror(err);
    close(fd);
  }
  release();
  return Status::Unavailable("not-connected");
}

std::string ExceptionName(int code) {
  switch (code) {
    case 1: return "illegal function";
    case 2: return "illegal data address";
    case 3: return "illegal data value";
    case 4: return "server device failure";
    case 5: return "acknowledge";
    case 6: return "server device busy";
    case 8: return "memory parity error";
    case 10: return "gateway path unavailable";
    case 11: return "gateway target device failed to respond";
    default: return "exception " + std::to_string(code);
  }
}

char ParityChar(Parity p) {
  switch (p) {
    case Parity::kNone: return 'N';
    case Parity::kEven: return 'E';
    case Parity::kOdd: return 'O';
  }
  return 'N';
}

}  // namespace

LibmodbusTransport::LibmodbusTransport(EndpointSpec spec)
    : spec_(std::move(spec)),
      framing_(spec_.type == BusType::kTcp ? Framing::kTcp : Framing::kRtu),
      serial_(spec_.type == BusType::kRtu),
      reply_(kMaxAdu) {}

LibmodbusTransport::~LibmodbusTransport() {
  Close();
  if (ctx_ != nullptr) modbus_free(ctx_);
}

std::string LibmodbusTransport::Describe() const {
  if (serial_) {
    const SerialSpec& s = spec_.serial;
    return "rtu " + s.device + " " + std::to_string(s.baud) + " " + std::to_string(s.data_bits) +
           ParityChar(s.parity) + std::to_string(s.stop_bits);
  }
  return std::string(BusTypeName(spec_.type)) + " " + spec_.host + ":" + std::to_string(spec_.port);
}

Status LibmodbusTransport::Connect() {
  if (fd_ >= 0) return Status::Ok();
  Status s = serial_ ? OpenSerial() : OpenSocket();
  if (!s.ok()) return s;
  // No byte timeout: the whole reply must arrive within the response timeout,
  // which each receive sets to what is left of the request's deadline.
  modbus_set_byte_timeout(ctx_, 0, 0);
  timeouts_in_a_row_ = 0;
  stale_.clear();
  quiet_until_ = Clock::now() + InterFrameDelay(spec_.serial.baud);
  return Status::Ok();
}

Status LibmodbusTransport::OpenSocket() {
  if (ctx_ == nullptr) {
    // The context only frames and receives; the socket is opened here, so
    // that its descriptor can be kept low before libmodbus ever selects on it.
    ctx_ = spec_.type == BusType::kTcp ? modbus_new_tcp("127.0.0.1", spec_.port)
                                       : modbus_new_rtu(spec_.host.c_str(), 9600, 'N', 8, 1);
    if (ctx_ == nullptr) return Failed(Status::IOError("io"), modbus_strerror(errno));
  }
  std::string detail;
  Result<int> fd = ConnectTcp(spec_.host, spec_.port,
                              std::max(spec_.timeout, std::chrono::milliseconds(1000)), &detail);
  if (!fd.ok()) {
    last_error_ = detail;
    return fd.status();
  }
  Result<int> low = LowDescriptors::Instance().Adopt(*fd);
  if (!low.ok()) {
    last_error_ = low.status().message();
    return Status::Unavailable("not-connected");
  }
  fd_ = *low;
  modbus_set_socket(ctx_, fd_);
  return Status::Ok();
}

Status LibmodbusTransport::OpenSerial() {
  const SerialSpec& s = spec_.serial;
  if (ctx_ == nullptr) {
    ctx_ = modbus_new_rtu(s.device.c_str(), s.baud, ParityChar(s.parity), s.data_bits, s.stop_bits);
    if (ctx_ == nullptr) return Failed(Status::IOError("io"), modbus_strerror(errno));
  }
  if (modbus_connect(ctx_) != 0) {
    last_error_ = std::string("open ") + s.device + ": " + modbus_strerror(errno);
    return Status::Unavailable("not-connected");
  }
  Result<int> low = LowDescriptors::Instance().Adopt(modbus_get_socket(ctx_));
  if (!low.ok()) {
    modbus_set_socket(ctx_, -1);
    last_error_ = low.status().message();
    return Status::Unavailable("not-connected");
  }
  fd_ = *low;
  modbus_set_socket(ctx_, fd_);
  if (s.rs485 && modbus_rtu_set_serial_mode(ctx_, MODBUS_RTU_RS485) != 0) {
    Log(LogLevel::kWarning, "modbus",
        spec_.name + ": " + s.device + " does not support RS-485 mode (" + modbus_strerror(errno) +
            "); the adapter must switch direction by itself");
  }
  if (s.rts != RtsMode::kNone &&
      modbus_rtu_set_rts(ctx_, s.rts == RtsMode::kUp ? MODBUS_RTU_RTS_UP : MODBUS_RTU_RTS_DOWN) !=
          0) {
    Log(LogLevel::kWarning, "modbus",
        spec_.name + ": cannot drive RTS on " + s.device + ": " + modbus_strerror(errno));
  }
  return Status::Ok();
}

void LibmodbusTransport::Close() {
  if (fd_ < 0) return;
  modbus_set_socket(ctx_, -1);
  LowDescriptors::Instance().Release(fd_);
  fd_ = -1;
}

Status LibmodbusTransport::Failed(Status s, std::string detail) {
  last_error_ = std::move(detail);
  if (s.code() == StatusCode::kIOError) Close();
  return s;
}

Status LibmodbusTransport::ReadRegisters(int unit, Table table, uint16_t address, uint16_t count,
                                         uint16_t* out) {
  if (IsBitTable(table)) return Status::InvalidArgument("ReadRegisters: not a register table");
  return Read(unit, table, address, count, out, nullptr);
}

Status LibmodbusTransport::ReadBits(int unit, Table table, uint16_t address, uint16_t count,
                                    uint8_t* out) {
  if (!IsBitTable(table)) return Status::InvalidArgument("ReadBits: not a bit table");
  return Read(unit, table, address, count, nullptr, out);
}

Status LibmodbusTransport::Read(int unit, Table table, uint16_t address, uint16_t count,
                                uint16_t* regs, uint8_t* bits) {
  if (fd_ < 0) return Status::Unavailable("not-connected");
  const ReadFrame req{next_transaction_++, static_cast<uint8_t>(unit), ReadFunction(table), address,
                      count};
  if (framing_ == Framing::kRtu && req.unit == late_.unit && Clock::now() < late_until_ &&
      (req.function != late_.function || req.address != late_.address ||
       req.count != late_.count)) {
    // The unit's answer to a request that timed out may still come, and an RTU
    // reply does not name its address: let it come and go before asking the
    // unit something else. (A late answer to the same request is an answer.)
    quiet_until_ = std::max(quiet_until_, late_until_);
    WaitForQuietLine(late_until_ + spec_.timeout);
  }
  auto deadline = Clock::now() + spec_.timeout;
  if (serial_) {
    WaitForQuietLine(deadline);
    deadline = Clock::now() + spec_.timeout + 8 * CharacterTime(spec_.serial.baud);
  }
  // TCP needs no sweep: a late reply names its transaction, and any other
  // leftover was swept when the exchange it broke failed.
  if (framing_ == Framing::kRtu) Drain();
  TR_RETURN_IF_ERROR(Send(req));
  ReplyCheck reply;
  TR_RETURN_IF_ERROR(Receive(req, deadline, &reply));
  if (bits != nullptr) {
    UnpackBits(reply.data, count, bits);
  } else {
    UnpackRegisters(reply.data, count, regs);
  }
  return Status::Ok();
}

Status LibmodbusTransport::Send(const ReadFrame& req) {
  if (serial_) {
    // libmodbus adds the CRC and drives RTS if so configured.
    const uint8_t raw[6] = {req.unit,
                            req.function,
                            static_cast<uint8_t>(req.address >> 8),
                            static_cast<uint8_t>(req.address),
                            static_cast<uint8_t>(req.count >> 8),
                            static_cast<uint8_t>(req.count)};
    if (modbus_send_raw_request(ctx_, raw, sizeof raw) < 0) {
      return Failed(Status::IOError("io"), std::string("write: ") + modbus_strerror(errno));
    }
    return Status::Ok();
  }
  const std::vector<uint8_t> adu = BuildReadRequest(framing_, req);
  const ssize_t n = send(fd_, adu.data(), adu.size(), MSG_NOSIGNAL);
  if (n != static_cast<ssize_t>(adu.size())) {
    return Failed(Status::IOError("io"),
                  std::string("send: ") + (n < 0 ? std::strerror(errno) : "short write"));
  }
  return Status::Ok();
}

Status LibmodbusTransport::Receive(const ReadFrame& req, Clock::time_point deadline,
                                   ReplyCheck* reply) {
  modbus_set_slave(ctx_, req.unit);  // RTU: libmodbus checks the CRC of this unit's frames only
  for (;;) {
    const auto left = duration_cast<microseconds>(deadline - Clock::now());
    int n = -1;
    int err = ETIMEDOUT;
    if (left.count() > 0) {
      modbus_set_response_timeout(ctx_, static_cast<uint32_t>(left.count() / 1'000'000),
                                  static_cast<uint32_t>(left.count() % 1'000'000));
      n = modbus_receive_confirmation(ctx_, reply_.data());
      err = errno;
    }
    if (n < 0) {
      if (err == ETIMEDOUT) {
        if (framing_ == Framing::kTcp) {
          stale_.push_back(req.transaction);
          if (stale_.size() > kStaleKept) stale_.erase(stale_.begin());
        } else {
          late_ = req;
          late_until_ = Clock::now() + spec_.timeout;
        }
        Drain();
        quiet_until_ = Clock::now() + InterFrameDelay(spec_.serial.baud);
        if (!serial_ && ++timeouts_in_a_row_ >= kTimeoutsBeforeReconnect) {
          Close();
          return Failed(Status::Timeout("timeout"), "no reply in time, " +
                                                        std::to_string(kTimeoutsBeforeReconnect) +
                                                        " times in a row: connection closed");
        }
        return Failed(Status::Timeout("timeout"), "no complete reply in time");
      }
      timeouts_in_a_row_ = 0;
      if (err == EMBBADCRC) {
        Drain();
        return Failed(Status::DeviceError("crc"), "reply with a wrong CRC");
      }
      if (err > MODBUS_ENOBASE && err < MODBUS_ENOBASE + 64) {
        Drain();
        return Failed(Status::DeviceError("bad-frame"), modbus_strerror(err));
      }
      return Failed(Status::IOError("io"), std::string("receive: ") + modbus_strerror(err));
    }
    timeouts_in_a_row_ = 0;
    if (n == 0) {  // libmodbus skips the CRC of another unit's frame
      Drain();
      return Failed(Status::DeviceError("bad-frame"),
                    "reply from unit " + std::to_string(reply_[0]) + " instead of " +
                        std::to_string(req.unit));
    }
    *reply = CheckReply(framing_, std::span<const uint8_t>(reply_.data(), static_cast<size_t>(n)),
                        req, stale_);
    if (reply->kind == ReplyCheck::kStale) continue;  // a late reply to a timed-out request
    if (reply->kind == ReplyCheck::kError) {
      Drain();
      const std::string& token = reply->error.message();
      return Failed(reply->error, token.starts_with("exception:")
                                      ? ExceptionName(std::stoi(token.substr(10)))
                                      : "reply does not answer the request");
    }
    if (serial_) {
      // The frame must be followed by 3.5 characters of silence; anything
      // else means it was longer than its function and byte count say.
      if (InputWithin(InterFrameDelay(spec_.serial.baud))) {
        WaitForQuietLine(deadline);
        return Failed(Status::DeviceError("bad-frame"), "reply longer than its frame");
      }
      quiet_until_ = Clock::now();
    } else if (framing_ == Framing::kRtu && InputWithin(nanoseconds(0))) {
      Drain();  // a serial server passes the line's bytes on as they come
      return Failed(Status::DeviceError("bad-frame"), "reply longer than its frame");
    }
    return Status::Ok();
  }
}

bool LibmodbusTransport::InputWithin(std::chrono::nanoseconds wait) {
  pollfd p{fd_, POLLIN, 0};
  const timespec ts = ToTimespec(wait);
  return ppoll(&p, 1, &ts, nullptr) == 1 && (p.revents & POLLIN) != 0;
}

void LibmodbusTransport::Drain() {
  uint8_t buf[256];
  for (int i = 0; i < 64 && fd_ >= 0 && InputWithin(nanoseconds(0)); ++i) {
    if (read(fd_, buf, sizeof buf) <= 0) break;
  }
}

void LibmodbusTransport::WaitForQuietLine(Clock::time_point limit) {
  const auto gap = InterFrameDelay(spec_.serial.baud);
  for (;;) {
    const auto now = Clock::now();
    if (now >= quiet_until_ || now >= limit) return;
    if (InputWithin(quiet_until_ - now)) {
      Drain();
      quiet_until_ = Clock::now() + gap;  // someone is still talking: wait for silence again
    }
  }
}

std::unique_ptr<ModbusTransport> MakeTransport(const EndpointSpec& spec) {
  return std::make_unique<LibmodbusTransport>(spec);
}

}  // namespace tagrelay::modbus
