// ModbusPoller: one thread per Modbus endpoint (a TCP device or gateway, or a
// serial line). It owns the endpoint's transport, polls every device on it on
// that device's schedule, decodes the tags and hands each device's readings to
// a sink as one ReadingBatch.
//
// Promise:
//   - Every poll of a device yields one batch with one reading per tag polled:
//     good with its value, or bad with the reason (timeout, exception:N, crc,
//     ...), never a stale or made-up value. Tags with their own `poll` form
//     poll groups; groups of one device due at the same time share a batch.
//   - Deadlines stay on each group's grid (poll_schedule.h); a poll that runs
//     past its next slot is counted in `overruns` and logged, never caught up
//     in a burst.
//   - Faults stay with their device: a request that gets no answer (timeout)
//     is retried `retries` times, then the device's remaining requests of this
//     poll are skipped with the same error. Exceptions 10 and 11 (a gateway
//     saying the device behind it is unreachable or did not answer) count as
//     no answer too, without a retry: the gateway has waited already. After `down_after` polls in a
//     row without a valid answer the device is down and is only tried again after a backoff (1 s,
//     doubling up to `backoff_max`), with a single request and no retries, so that the other
//     devices of the endpoint keep their rate. While it waits, its slots yield bad readings with
//     the last error, at no cost on the wire. A dead endpoint is reconnected with the same backoff.
//   - A request that a device refuses with exception 2 (illegal data address)
//     is split, and split again, until the refused tags are isolated; they
//     are reported bad with exception:2, the others are read, and the split
//     plan is kept for later polls.
//   - A batch the sink refuses (its queue stayed full) is counted in
//     `dropped_batches`, never lost silently.
//
// Threads: Start() spawns the poller thread, which alone touches the transport,
// the plans and the schedule. Stop(), counters(), link_state() and heartbeat() are safe from
// any thread (atomics). RunDue() is for tests only: they call it instead of Start().
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "agent/core/clock.h"
#include "agent/core/heartbeat.h"
#include "agent/core/reading.h"
#include "agent/core/stop_signal.h"
#include "drivers/modbus/poll_schedule.h"
#include "drivers/modbus/request_plan.h"
#include "drivers/modbus/transport.h"
#include "drivers/modbus/types.h"

namespace tagrelay::modbus {

// Receives one device's batch; returns false if it could not take it.
using ReadingSink = std::function<bool(ReadingBatch&&)>;

// ok: the last poll got a valid answer (data, or a Modbus exception other
// than 10 and 11) to every request; degraded: to some, or none yet fewer than
// `down_after` times in a row; down: no valid answer `down_after` polls in a
// row, or the endpoint is not connected.
enum class LinkState : uint8_t { kOk, kDegraded, kDown };
std::string_view LinkStateName(LinkState s);

struct DeviceCounters {
  std::atomic<uint64_t> polls{0};
  std::atomic<uint64_t> requests{0};         // sent, retries included
  std::atomic<uint64_t> failed_requests{0};  // requests whose tags came out bad
  std::atomic<uint64_t> retries{0};
  std::atomic<uint64_t> timeouts{0};
  std::atomic<uint64_t> crc_errors{0};
  std::atomic<uint64_t> bad_frames{0};
  std::atomic<uint64_t> exceptions{0};
  std::atomic<uint64_t> splits{0};    // requests split after exception 2
  std::atomic<uint64_t> overruns{0};  // poll slots missed because a poll ran long
  std::atomic<uint64_t> dropped_batches{0};
  std::atomic<uint64_t> backed_off_polls{0};    // slots served from the backoff, no I/O
  std::atomic<uint32_t> requests_per_cycle{0};  // of the current plan, all groups
  std::atomic<int64_t> last_good_ms{0};         // wall time of the last good reading; 0 = never
  std::atomic<LinkState> link{LinkState::kOk};
};

struct PollerOptions {
  int retries = 1;  // further attempts after a timeout, CRC error or bad frame
  int down_after = 3;
  std::chrono::milliseconds backoff_first{1000};
  std::chrono::milliseconds backoff_max{30000};
};

class ModbusPoller {
 public:
  // REQUIRES: every device's tags pass ValidateTag() with its limits.
  ModbusPoller(std::string name, std::unique_ptr<ModbusTransport> transport,
               std::vector<DeviceSpec> devices, const Clock& clock, ReadingSink sink,
               PollerOptions options = {});
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
  LinkState link_state(size_t i) const { return devices_[i].counters->link.load(); }
  // Beats before each device poll and at least every kHeartbeatEvery while idle.
  const Heartbeat& heartbeat() const { return heartbeat_; }

 private:
  struct Group {
    std::chrono::milliseconds interval;
    std::vector<ReadRequest> plan;
    size_t entry;  // in schedule_
  };
  struct DeviceState {
    DeviceSpec spec;
    std::vector<Group> groups;
    std::vector<double> last_sent;  // per tag, for the deadband; NaN = nothing sent yet
    std::vector<bool> refused;      // per tag: exception 2 logged
    std::unique_ptr<DeviceCounters> counters;
    int failed_polls = 0;  // in a row, without any valid answer
    MonoTime retry_at{};   // while down: no attempt before this
    std::chrono::milliseconds backoff{0};
    std::string last_failure;  // token of the last poll without an answer
  };
  struct PollOutcome {
    bool answered = false;  // some request got a valid answer
    bool failed = false;    // some request got none
    std::string failure;    // the first failure's token
    std::string detail;     // and the transport's detail of it, for the log
    Status abort;           // set: the remaining requests of this poll are skipped
    bool endpoint_down = false;
  };

  void Run();
  void PollDevice(DeviceState& d, const std::vector<size_t>& groups);
  void PollGroup(DeviceState& d, Group& g, std::vector<Reading>* out, PollOutcome* outcome,
                 bool probing);
  Status ReadWithRetries(DeviceState& d, const ReadRequest& req, bool probing);
  void Decode(DeviceState& d, const ReadRequest& req, std::vector<Reading>* out);
  void UpdateLink(DeviceState& d, const PollOutcome& outcome);
  bool EnsureConnected();
  // Cold paths, kept out of the frames of the poll loop: every stack page a poller thread touches
  // once stays resident for its life (docs/footprint.md).
  [[gnu::noinline]] void LogOverrun(const DeviceState& d, const Group& g, uint64_t total);
  [[gnu::noinline]] void LogConnected();
  [[gnu::noinline]] void LogConnectFailed();
  // After exception 2 to g.plan[k]: splits it (true: the halves replace it) or, once it cannot be
  // split, marks and logs its tags as refused (false).
  [[gnu::noinline]] bool SplitRefused(DeviceState& d, Group& g, size_t k);
  void Emit(DeviceState& d, std::vector<Reading>&& readings);
  bool PassesDeadband(DeviceState& d, size_t tag, const Reading& r);
  void CountPlan(DeviceState& d);

  const std::string name_;
  std::unique_ptr<ModbusTransport> transport_;
  std::vector<DeviceState> devices_;
  std::vector<std::pair<size_t, size_t>> entries_;  // schedule entry -> (device, group)
  const Clock& clock_;
  ReadingSink sink_;
  const PollerOptions options_;
  PollSchedule schedule_;
  std::vector<uint16_t> regs_;  // as many as the largest register request reads
  std::vector<uint8_t> bits_;   // as many as the largest bit request reads

  // Connect backoff: no attempt before `retry_at_`; the delay doubles up to a cap.
  MonoTime retry_at_{};
  std::chrono::milliseconds backoff_{0};
  bool connect_logged_ = false;

  Heartbeat heartbeat_;
  StopSignal stop_;
  std::thread thread_;
};

}  // namespace tagrelay::modbus
