// FakeTransport: a scripted Modbus transport for poller tests. It serves
// registers from a map, and the test can make connects fail, or make the next
// reads fail with any transport error (timeout, exception:N, bad-frame, ...).
//
// Threads: single-threaded, like the poller thread it serves.
#pragma once

#include <deque>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "drivers/modbus/transport.h"

namespace tagrelay::modbus {

class FakeTransport final : public ModbusTransport {
 public:
  struct Request {
    int unit;
    Table table;
    uint16_t address;
    uint16_t count;
  };

  std::map<std::pair<Table, uint16_t>, uint16_t> registers;
  int connect_failures = 0;        // the next N Connect() calls fail
  std::deque<Status> read_errors;  // returned by the next reads, in order
  std::vector<Request> requests;
  int connect_calls = 0;

  Status Connect() override {
    ++connect_calls;
    if (connect_failures > 0) {
      --connect_failures;
      return Status::Unavailable("not-connected");
    }
    connected_ = true;
    return Status::Ok();
  }
  void Close() override { connected_ = false; }
  bool connected() const override { return connected_; }

  Status ReadRegisters(int unit, Table table, uint16_t address, uint16_t count,
                       uint16_t* out) override {
    requests.push_back(Request{unit, table, address, count});
    if (!connected_) return Status::Unavailable("not-connected");
    if (!read_errors.empty()) {
      Status s = read_errors.front();
      read_errors.pop_front();
      if (s.code() == StatusCode::kTimeout || s.code() == StatusCode::kIOError) connected_ = false;
      return s;
    }
    for (uint16_t i = 0; i < count; ++i) {
      auto it = registers.find({table, static_cast<uint16_t>(address + i)});
      out[i] = it == registers.end() ? 0 : it->second;
    }
    return Status::Ok();
  }

  std::string Describe() const override { return "fake"; }

 private:
  bool connected_ = false;
};

}  // namespace tagrelay::modbus
