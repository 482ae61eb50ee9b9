// ModbusPoller: one thread per Modbus endpoint. It owns the endpoint's
// transport, polls every device on it on that device's schedule, decodes the
// tags and hands each device's readings to a sink as one ReadingBatch.
//
// Promise: every configured tag yields one reading per poll of its device:
// good with its value, or bad with the reason (timeout, exception:N, ...),
// never a stale or made-up value. A dead endpoint is retried with capped
// exponential backoff; while it is down, its devices report bad readings on
// their schedule. A batch the sink refuses (its queue stayed full) is counted
// in `dropped_batches`, never lost silently.
//
// Threads: Start() spawns the poller thread, which alone touches the transport
// and the schedule. Stop() and the counters are safe from any thread.
// RunDue() is for tests only: they call it instead of Start().
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "agent/core/clock.h"
#include "agent/core/reading.h"
#include "agent/core/stop_signal.h"
#include "drivers/modbus/poll_schedule.h"
#include "drivers/modbus/request_plan.h"
#include "drivers/modbus/transport.h"
#include "drivers/modbus/types.h"

namespace tagrelay::modbus {

// Receives one device's batch; returns false if it could not take it.
using ReadingSink = std::function<bool(ReadingBatch&&)>;

struct DeviceCounters {
  std::atomic<uint64_t> polls{0};
  std::atomic<uint64_t> failed_requests{0};
  std::atomic<uint64_t> overruns{0};
  std::atomic<uint64_t> dropped_batches{0};
  std::atomic<int64_t> last_good_ms{0};  // wall time of the last good reading; 0 = never
};

class ModbusPoller {
 public:
  ModbusPoller(std::string name, std::unique_ptr<ModbusTransport> transport,
               std::vector<DeviceSpec> devices, const Clock& clock, ReadingSink sink);
  ~ModbusPoller();
  ModbusPoller(const ModbusPoller&) = delete;
  ModbusPoller& operator=(const ModbusPoller&) = delete;

  void Start();
  // Requests a stop and joins the thread. The poll in progress finishes first.
  void Stop();

  // Polls every device due at clock.mono(); returns the next deadline.
  MonoTime RunDue();

  const std::string& name() const { return name_; }
  size_t device_count() const { return devices_.size(); }
  const DeviceSpec& device(size_t i) const { return devices_[i].spec; }
  const DeviceCounters& counters(size_t i) const { return *devices_[i].counters; }

 private:
  struct DeviceState {
    DeviceSpec spec;
    std::vector<ReadRequest> plan;
    std::vector<double> last_sent;  // per tag, for the deadband; NaN = nothing sent yet
    std::unique_ptr<DeviceCounters> counters;
    bool link_ok = true;  // for logging state changes only once
  };

  void Run();
  void PollDevice(DeviceState& d);
  bool EnsureConnected();
  void Emit(DeviceState& d, std::vector<Reading>&& readings);
  bool PassesDeadband(DeviceState& d, size_t tag, const Reading& r);

  const std::string name_;
  std::unique_ptr<ModbusTransport> transport_;
  std::vector<DeviceState> devices_;
  const Clock& clock_;
  ReadingSink sink_;
  PollSchedule schedule_;

  // Connect backoff: no attempt before `retry_at_`; the delay doubles up to a cap.
  MonoTime retry_at_{};
  std::chrono::milliseconds backoff_{0};
  bool connect_logged_ = false;

  StopSignal stop_;
  std::thread thread_;
};

}  // namespace tagrelay::modbus
