// FakeTransport: a scripted Modbus transport for poller tests. It serves
// registers and bits from maps, and the test scripts faults: failed connects,
// units that never answer, addresses a unit refuses with exception 2, and the
// next reads failing with any transport error (timeout, crc, bad-frame,
// exception:N, ...). With a FakeClock attached, each read takes simulated
// time (a timeout costs `timeout_cost`), so schedules and backoff can be
// checked against the time a real bus would spend.
//
// Threads: single-threaded, like the poller thread it serves.
#pragma once

#include <chrono>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "agent/core/clock.h"
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

  std::map<std::pair<Table, uint16_t>, uint16_t> registers;  // coils too (non-zero = on)
  int connect_failures = 0;                                  // the next N Connect() calls fail
  std::deque<Status> read_errors;                            // returned by the next reads, in order
  std::set<int> dead_units;                                  // never answer: every read times out
  // Every read to the unit fails with this status after this long (e.g. a
  // gateway answering exception 11 for a dead device behind it).
  std::map<int, std::pair<Status, std::chrono::milliseconds>> unit_errors;
  std::set<std::pair<Table, uint16_t>> refused;  // a read covering one gets exception 2
  std::vector<Request> requests;
  int connect_calls = 0;

  FakeClock* clock = nullptr;
  std::chrono::milliseconds read_cost{0};
  std::chrono::milliseconds timeout_cost{0};

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
    Status s = Begin(unit, table, address, count);
    if (!s.ok()) return s;
    for (uint16_t i = 0; i < count; ++i) out[i] = Value(table, address + i);
    return s;
  }

  Status ReadBits(int unit, Table table, uint16_t address, uint16_t count, uint8_t* out) override {
    Status s = Begin(unit, table, address, count);
    if (!s.ok()) return s;
    for (uint16_t i = 0; i < count; ++i) out[i] = Value(table, address + i) != 0 ? 1 : 0;
    return s;
  }

  std::string Describe() const override { return "fake"; }

  // Requests sent to `unit` so far.
  size_t RequestsTo(int unit) const {
    size_t n = 0;
    for (const Request& r : requests) n += r.unit == unit ? 1 : 0;
    return n;
  }

 private:
  uint16_t Value(Table table, int address) const {
    auto it = registers.find({table, static_cast<uint16_t>(address)});
    return it == registers.end() ? 0 : it->second;
  }

  void Spend(std::chrono::milliseconds d) {
    if (clock != nullptr) clock->Advance(d);
  }

  Status Begin(int unit, Table table, uint16_t address, uint16_t count) {
    requests.push_back(Request{unit, table, address, count});
    if (!connected_) return Status::Unavailable("not-connected");
    if (!read_errors.empty()) {
      Status s = read_errors.front();
      read_errors.pop_front();
      Spend(s.code() == StatusCode::kTimeout ? timeout_cost : read_cost);
      if (s.code() == StatusCode::kIOError) connected_ = false;
      return s;
    }
    if (auto e = unit_errors.find(unit); e != unit_errors.end()) {
      Spend(e->second.second);
      return e->second.first;
    }
    if (dead_units.count(unit) != 0) {
      Spend(timeout_cost);
      return Status::Timeout("timeout");
    }
    Spend(read_cost);
    for (uint32_t a = address; a < uint32_t{address} + count; ++a) {
      if (refused.count({table, static_cast<uint16_t>(a)}) != 0) {
        return Status::DeviceError("exception:2");
      }
    }
    return Status::Ok();
  }

  bool connected_ = false;
};

}  // namespace tagrelay::modbus
