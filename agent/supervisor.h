// Supervisor: builds the agent's workers from a validated Config, starts them,
// reloads them with a new Config, and stops them in an order that loses nothing.
//
// Promise:
// - Start() opens the store (creating data_dir if needed) before any poller
//   runs. If it cannot (a data directory the service may not write), polling
//   and alarms go on all the same: the store writer keeps readings in memory
//   and opens the store when it can, and the uplink reads it from then on.
// - Stop() stops the pollers first, then the uplink (which waits briefly for
//   outstanding acks), then the store writer, which commits everything queued.
//   Whatever was polled is then either in the store or delivered.
// - Reload() applies a new Config without losing buffered data: the pollers
//   and the uplink stop as in Stop(); the store writer keeps running when the
//   store's settings and the alarm and counter rules are unchanged, and
//   otherwise commits everything queued and stops before the store is opened
//   with the new settings (the rules keep their state in the store). The workers
//   are then built from the new Config. If that fails, the old Config is put
//   back and the error returned; only if that fails too is the error fatal.
// - Status: Collect() samples every worker's counters when someone asks: the
//   status thread for a client of the Unix socket or the local web page, the
//   main thread for the service's STATUS= line (CurrentStatus()). The status
//   thread measures the poll rates once a second whether anyone asks or not.
//   Workers() tells which workers' heartbeat is older than their stall limit.
//
// Threads: Start(), Stop(), Reload(), ReloadKeys(), CurrentStatus(), Workers(), status_port() and
// config() from the main thread. Collect() is safe from any thread (the status thread and the main
// thread call it). Each worker runs on its own thread (one per bus, one store writer, one uplink,
// one status thread).
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/config.h"
#include "agent/core/clock.h"
#include "agent/core/mutex.h"
#include "agent/core/status.h"
#include "agent/status/status_model.h"
#include "agent/watchdog.h"
#include "store/delivery_holds.h"
#include "store/outbox_reader.h"

namespace tagrelay {

namespace modbus {
class ModbusPoller;
struct DeviceCounters;
}  // namespace modbus
namespace store {
class StoreWriter;
}
namespace uplink {
class Uplink;
}
namespace rules {
class AlarmEngine;
}
namespace status {
class StatusServer;
}

class Supervisor {
 public:
  Supervisor(Config config, const Clock& clock);
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  Status Start();
  void Stop();

  // Applies `next`, which LoadConfig() validated. An error that is not
  // kInternal means the running config stayed in force; kInternal means the
  // agent could not get back to it and must exit.
  Status Reload(Config next);

  // Has the uplink re-read the gateway's and the devices' key files (a rotated
  // key needs no restart).
  void ReloadKeys();

  // A fresh sample of every worker.
  status::StatusSnapshot Collect();
  // A sample at most a second old (the status server's refresh): the latest
  // one, or one taken now on the caller's thread; nullptr before Start().
  std::shared_ptr<const status::StatusSnapshot> CurrentStatus();
  // Every worker's heartbeat state now, the status thread's included.
  std::vector<status::WorkerStatus> Workers() const;
  // The port of the local web page (0 if none).
  uint16_t status_port() const;
  const Config& config() const { return config_; }

 private:
  // `store_must_open`: a store that cannot be opened is an error (a reload);
  // otherwise the writer starts without it and opens it when it can.
  Status StartWorkers(const Config& c, bool reuse_writer, bool store_must_open) TR_REQUIRES(mu_);
  // Takes the workers out (under the lock) and stops them outside it; the
  // writer (and its rules) too unless `keep_writer`.
  void StopWorkers(bool keep_writer);
  void NotifyUplink(const store::CommitNews& news);
  std::vector<WorkerBeat> BeatsLocked() const TR_REQUIRES(mu_);
  std::vector<status::WorkerStatus> WorkersLocked(MonoTime now) const TR_REQUIRES(mu_);
  // Brings the poll rates up to date; the status thread's tick, about once a second.
  void SamplePollRates();
  void StartStatus();
  void StopStatus();
  // Whether a device's poller sees its link down (for comm_loss alarms); safe
  // from any thread (the writer thread calls it).
  bool LinkDown(const std::string& device) const;

  const Clock& clock_;
  Config config_;        // written by the main thread under mu_
  const MonoTime born_;  // for the uptime

  // Shared by the writer and the uplink: outlives both.
  store::DeliveryHolds holds_;
  mutable Mutex mu_;
  std::unique_ptr<store::StoreWriter> writer_ TR_GUARDED_BY(mu_);
  // The alarm and counter rules, the writer's observer; its views are thread safe.
  std::shared_ptr<rules::AlarmEngine> engine_ TR_GUARDED_BY(mu_);
  std::unique_ptr<uplink::Uplink> uplink_ TR_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<modbus::ModbusPoller>> pollers_ TR_GUARDED_BY(mu_);
  std::vector<std::chrono::milliseconds> poller_limits_ TR_GUARDED_BY(mu_);
  std::string state_ TR_GUARDED_BY(mu_) = "starting";
  MonoTime workers_since_ TR_GUARDED_BY(mu_);
  // Every device of the running config in its order, with its poller's
  // counters (nullptr while the workers are stopped). Built once per start of
  // the workers, so that a sample finds a device's counters without a search.
  struct DeviceSlot {
    std::string id;
    std::string bus;
    const modbus::DeviceCounters* counters = nullptr;
  };
  std::vector<DeviceSlot> devices_ TR_GUARDED_BY(mu_);
  // The poll rate of each of devices_, over at least a second (SamplePollRates()).
  struct Rate {
    uint64_t polls = 0;
    MonoTime at{};
    double rate = 0;
  };
  std::vector<Rate> rates_ TR_GUARDED_BY(mu_);
  mutable Mutex links_mu_;
  // device id -> its poller and index there, for LinkDown().
  std::map<std::string, std::pair<const modbus::ModbusPoller*, size_t>> links_
      TR_GUARDED_BY(links_mu_);
  bool started_ = false;

  // The writer's commit listener reaches the current uplink through this.
  Mutex notify_mu_;
  uplink::Uplink* notify_target_ TR_GUARDED_BY(notify_mu_) = nullptr;

  // The backlog, for Collect(): a query on a store connection of its own, made
  // at most every few seconds.
  Mutex status_mu_;
  std::optional<store::OutboxReader> status_reader_ TR_GUARDED_BY(status_mu_);
  std::string status_reader_path_ TR_GUARDED_BY(status_mu_);
  std::optional<store::BacklogSummary> backlog_ TR_GUARDED_BY(status_mu_);
  MonoTime next_backlog_ TR_GUARDED_BY(status_mu_){};

  std::unique_ptr<status::StatusServer> status_server_;  // main thread
};

// "3/4 devices ok, uplink connected, 120 readings unsent (oldest 4.0s)": the
// service's STATUS= line.
std::string NotifyStatusLine(const status::StatusSnapshot& s);

}  // namespace tagrelay
