// Supervisor: builds the agent's workers from a validated Config, starts them
// and stops them in an order that loses nothing.
//
// Promise: Start() opens the store (creating data_dir if needed) before any
// poller runs, so a store that cannot open stops the agent before it polls.
// Stop() stops the pollers first, then the uplink (which waits briefly for
// outstanding acks), then the store writer, which commits everything queued.
// Whatever was polled is then either in the store or delivered.
//
// Threads: created, started and stopped by the main thread. Each worker runs
// on its own thread (one per bus, one store writer, one uplink).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "agent/config.h"
#include "agent/core/clock.h"
#include "agent/core/mutex.h"
#include "agent/core/status.h"
#include "store/delivery_holds.h"

namespace tagrelay {

namespace modbus {
class ModbusPoller;
}
namespace store {
class StoreWriter;
}
namespace uplink {
class Uplink;
}
namespace rules {
class AlarmEngine;
}

class Supervisor {
 public:
  Supervisor(Config config, const Clock& clock);
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  Status Start();
  void Stop();

  // Has the uplink re-read the gateway's and the devices' key files (for a
  // reload: a rotated key needs no restart). Safe from any thread after Start().
  void ReloadKeys();

  // The alarm and counter engine (its views are safe from any thread); null
  // before Start().
  const rules::AlarmEngine* alarms() const { return engine_.get(); }

 private:
  // Whether a device's poller sees its link down (for comm_loss alarms); safe
  // from any thread.
  bool LinkDown(const std::string& device) const;

  Config config_;
  const Clock& clock_;
  store::DeliveryHolds holds_;  // shared by the writer and the uplink: outlives both
  std::unique_ptr<store::StoreWriter> writer_;
  std::unique_ptr<uplink::Uplink> uplink_;
  std::unique_ptr<rules::AlarmEngine> engine_;
  std::vector<std::unique_ptr<modbus::ModbusPoller>> pollers_;
  mutable Mutex links_mu_;
  // device id -> its poller and index there, for LinkDown().
  std::map<std::string, std::pair<const modbus::ModbusPoller*, size_t>> links_
      TR_GUARDED_BY(links_mu_);
  bool started_ = false;
};

}  // namespace tagrelay
