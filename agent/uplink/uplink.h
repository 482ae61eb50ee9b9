// Uplink: forwards the store's undelivered readings to the broker as
// telemetry batches and reports the broker's acks back to the store.
//
// Promise:
// - A row is reported delivered (ack sink) only after the broker accepted its
//   QoS 1 PUBLISH with a reason code below 0x80. A refused batch stays in the
//   store and is sent again after a backoff; nothing is dropped here.
// - Each batch is a run of consecutive sequence numbers of one device, at most
//   batch_max_readings long. Live rows are batched until the batch is full or
//   batch_linger has passed since the first of them arrived.
// - Rows that were already in the store when a session began are the backlog:
//   they go out flagged historical, after the live batches that are ready, so a
//   replay never holds back live data.
// - At most max_inflight batches await an ack. After a lost session every
//   unacked batch is sent again from the store (at-least-once; the receiver
//   drops duplicates by sequence number).
// - Reconnects back off exponentially with full jitter (a delay drawn between
//   backoff_initial and the current backoff, which doubles up to backoff_max),
//   moving to the next broker URL after each failure.
//
// Threads: Start() spawns the uplink thread, which owns the MQTT client, the
// store reader and all state below. NotifyNewData(), Stop() and counters() are
// safe from any thread. Tests drive RunOnce() instead of Start().
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "agent/core/clock.h"
#include "agent/uplink/broker_url.h"
#include "agent/uplink/mqtt_client.h"
#include "store/outbox_reader.h"
#include "store/types.h"

namespace tagrelay::uplink {

struct UplinkOptions {
  std::vector<BrokerUrl> brokers;
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  std::string api_key_file;  // the gateway's key, used as MQTT password; empty: none
  std::string gateway;
  std::string client_id;
  std::string topic_prefix = "tagrelay/v1";
  size_t batch_max_readings = 500;
  std::chrono::milliseconds batch_linger{1000};
  int max_inflight = 20;
  int keepalive_s = 30;
  std::chrono::milliseconds connect_timeout{10000};
  std::chrono::milliseconds backoff_initial{500};
  std::chrono::milliseconds backoff_max{30000};
  std::chrono::milliseconds stop_grace{3000};
  std::string version;
  std::string config_digest;
};

struct UplinkCounters {
  std::atomic<bool> connected{false};
  std::atomic<uint64_t> connects{0};
  std::atomic<uint64_t> connection_failures{0};
  std::atomic<uint64_t> batches_sent{0};
  std::atomic<uint64_t> readings_acked{0};
  std::atomic<uint64_t> batches_refused{0};  // PUBACK reason >= 0x80
  std::atomic<uint64_t> inflight{0};
};

using AckSink = std::function<void(store::DeliveryAck&&)>;

class Uplink {
 public:
  Uplink(UplinkOptions options, std::unique_ptr<MqttClient> client, store::OutboxReader reader,
         AckSink ack_sink, const Clock& clock);
  ~Uplink();
  Uplink(const Uplink&) = delete;
  Uplink& operator=(const Uplink&) = delete;

  void Start();
  // Stops sending, waits up to stop_grace for outstanding acks, marks the
  // gateway offline, disconnects and joins the thread.
  void Stop();

  // The store committed new rows.
  void NotifyNewData();

  // One turn of the loop: act on the state, then wait up to `max_wait` for the
  // network, a notification or the next deadline, and handle what arrived.
  void RunOnce(std::chrono::milliseconds max_wait);

  const UplinkCounters& counters() const { return counters_; }
  size_t inflight() const { return inflight_.size(); }
  bool connected() const { return state_ == State::kConnected; }

 private:
  enum class State { kDisconnected, kConnecting, kConnected };

  struct DeviceOutbox {
    int64_t id = 0;
    std::string name;
    int64_t live_from = 1;                      // rows below this seq are backlog (historical)
    int64_t hist_next = 1;                      // next backlog seq to send
    int64_t live_next = 1;                      // next live seq to fetch
    std::vector<store::StoredReading> pending;  // live rows waiting for their batch to close
    MonoTime pending_since{};
    bool maybe_more = true;  // the store may hold live rows at or past live_next
  };
  struct InflightBatch {
    std::string device;
    int64_t first = 0;
    int64_t last = 0;
    bool historical = false;
  };
  struct RetryRange {
    std::string device;
    int64_t first = 0;
    int64_t last = 0;
    MonoTime not_before{};
  };
  struct Event {
    enum Kind { kConnected, kLost, kAck } kind;
    int code = 0;  // CONNACK reason / PUBACK reason
    int mid = 0;
    std::string text;
  };

  void Run();
  void Step();
  void StartConnect();
  void HandleEvents();
  void OnSessionStart();
  void OnSessionLost(const std::string& why);
  void Pump();
  // Adds devices the store knows and this session does not. At session start
  // their stored rows become the backlog; later, a new device's rows are all live.
  bool RefreshDevices(bool session_start);
  DeviceOutbox* FindDevice(const std::string& name);
  bool WindowOpen() const { return inflight_.size() < static_cast<size_t>(options_.max_inflight); }
  void SendRetries(MonoTime now);
  void SendLive(DeviceOutbox& d, MonoTime now);
  void SendHistorical(DeviceOutbox& d);
  // Publishes the leading run of consecutive seqs of `rows`; returns how many rows it took.
  size_t PublishRun(DeviceOutbox& d, std::span<const store::StoredReading> rows, bool historical);
  void PublishStatus(std::string_view state);
  std::chrono::milliseconds NextWait(std::chrono::milliseconds max_wait) const;

  const UplinkOptions options_;
  std::unique_ptr<MqttClient> client_;
  store::OutboxReader reader_;
  AckSink ack_sink_;
  const Clock& clock_;
  UplinkCounters counters_;

  State state_ = State::kDisconnected;
  size_t broker_index_ = 0;
  MonoTime retry_at_{};
  MonoTime connect_deadline_{};
  std::chrono::milliseconds backoff_{0};
  std::mt19937_64 rng_{std::random_device{}()};

  std::vector<DeviceOutbox> devices_;
  size_t rr_ = 0;  // round-robin start, so that no device always goes first
  std::unordered_map<int, InflightBatch> inflight_;
  std::vector<RetryRange> retries_;
  std::vector<Event> events_;
  int status_mid_ = -1;

  std::atomic<bool> new_data_{true};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace tagrelay::uplink
