// Uplink: forwards the store's undelivered records to the broker and reports
// the broker's acks back to the store.
//
// Promise:
// - A record is reported delivered (through the ack sink, to the store) only
//   after the broker accepted its QoS 1 PUBLISH with a reason code below 0x80
//   (acks handled together whose ranges continue each other go as one range).
//   A refused batch stays in the store, is logged and counted, and is sent
//   again after a backoff that doubles per refusal; nothing is dropped here.
// - Each batch is a run of consecutive sequence numbers of one device and one
//   stream, at most batch_max_readings records and batch_max_bytes of payload
//   (a single larger record still goes alone). Telemetry batches end on a
//   store chunk boundary, so that every ack covers whole chunks; a chunk
//   larger than the bounds goes alone. Live readings are batched until the
//   batch is full or batch_linger has passed since the first of them arrived.
//   A stored chunk that no longer decodes is discarded (the store reports its
//   readings lost), never sent and never left to block its device. Batches
//   are encoded straight from the stored chunks; live rows waiting for their
//   batch are kept as such chunks (about 12 bytes a reading). The backlog is
//   read from the store in one query for as many batches as the window takes.
// - Order of sending: the event streams (the gateway's events, alarm events,
//   counter snapshots) first, then live telemetry, then the backlog. Rows that were already in the
//   store when a session began are the backlog: they go out flagged historical,
//   at most backlog_rate bytes/s if that is set, so a replay never holds back
//   live data nor floods a metered link.
// - At most max_inflight batches await an ack. After a lost session every
//   unacked batch is sent again from the store (at-least-once; the receiver
//   drops duplicates by sequence number).
// - Reconnects back off exponentially with full jitter (a delay drawn between
//   backoff_initial and the current backoff, which doubles up to backoff_max),
//   moving to the next broker URL after each failure.
// - Keys: the gateway's API key (the MQTT password) and the devices' signing
//   keys are read from their files at every connect and when RequestKeyReload()
//   is called, so a rotation needs no restart; a changed gateway key starts a
//   new session at once. A key is never logged (key ids are). A device whose
//   key file cannot be used is held: its records stay in the store, an error
//   says why, and the file is tried again every minute and at every reload.
// - Each session announces the gateway online (retained status, with a Will
//   that says offline) and publishes every configured device's birth (retained).
//
// Threads: Start() spawns the uplink thread, which owns the MQTT client, the
// store reader and all state below. NotifyNewData(),
// RequestKeyReload(), Stop() and counters() are safe from any thread. Tests
// drive RunOnce() instead of Start().
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "agent/core/clock.h"
#include "agent/core/heartbeat.h"
#include "agent/core/mutex.h"
#include "agent/uplink/broker_url.h"
#include "agent/uplink/mqtt_client.h"
#include "agent/uplink/telemetry.h"
#include "store/delivery_holds.h"
#include "store/outbox_reader.h"
#include "store/types.h"

namespace tagrelay::uplink {

// A configured device as the uplink sees it: its birth metadata and its key.
struct UplinkDevice {
  std::string id;
  std::string api_key_file;  // empty: its messages go unsigned
  // Its tags, for its birth: made each time a birth is published, from what the caller shares
  // with the rest of the agent, so that the uplink holds no copy of every tag's metadata.
  // Called on the uplink thread; none: a birth without tags.
  std::function<std::vector<TagInfo>()> tags;
};

struct UplinkOptions {
  std::vector<BrokerUrl> brokers;
  MqttVersion mqtt_version = MqttVersion::kV5;
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  std::string api_key_file;  // the gateway's key, used as MQTT password; empty: none
  std::string gateway;
  std::string client_id;
  std::string topic_prefix = "tagrelay/v1";
  std::vector<UplinkDevice> devices;
  size_t batch_max_readings = 500;
  size_t batch_max_bytes = 256 * 1024;
  std::chrono::milliseconds batch_linger{1000};
  uint64_t backlog_rate = 0;  // bytes/s of historical payload; 0 = no cap
  int max_inflight = 20;
  int keepalive_s = 30;
  std::chrono::milliseconds connect_timeout{10000};
  std::chrono::milliseconds backoff_initial{500};
  std::chrono::milliseconds backoff_max{30000};
  std::chrono::milliseconds refused_retry{2000};  // first retry of a refused batch
  std::chrono::milliseconds stop_grace{3000};
  std::string version;
  std::string config_digest;
};

struct UplinkCounters {
  std::atomic<bool> connected{false};
  std::atomic<uint64_t> connects{0};
  std::atomic<uint64_t> connection_failures{0};
  std::atomic<uint64_t> batches_sent{0};
  std::atomic<uint64_t> payload_bytes_sent{0};  // JSON payloads of every batch sent
  std::atomic<uint64_t> readings_sent{0};       // readings in those batches, resends included
  std::atomic<uint64_t> readings_acked{0};
  std::atomic<uint64_t> records_acked{0};     // of the event streams
  std::atomic<uint64_t> chunks_discarded{0};  // stored chunks that did not decode
  std::atomic<uint64_t> batches_refused{0};   // PUBACK reason >= 0x80
  std::atomic<uint64_t> inflight{0};
  std::atomic<uint64_t> devices_held{0};  // devices whose key file cannot be used now
  std::atomic<uint64_t> key_reloads{0};
};

// Takes what the uplink reports to the store: DeliveryAck, EventAck, DiscardReadings.
using AckSink = std::function<void(store::StoreItem&&)>;

class Uplink {
 public:
  Uplink(UplinkOptions options, std::unique_ptr<MqttClient> client, store::OutboxReader reader,
         AckSink ack_sink, const Clock& clock);
  // Opens its reader of the store at `store_path` once the database exists
  // (the store writer may open it only later: its directory could not be
  // written); until then it sends nothing but the gateway's status and births.
  Uplink(UplinkOptions options, std::unique_ptr<MqttClient> client, std::string store_path,
         AckSink ack_sink, const Clock& clock);
  ~Uplink();
  Uplink(const Uplink&) = delete;
  Uplink& operator=(const Uplink&) = delete;

  // The ranges this uplink takes out of the store are held there (see
  // store::DeliveryHolds) until they are acked or dropped, so that the ring
  // does not report a reading lost while it is being delivered. Not owned;
  // set before Start().
  void SetHolds(store::DeliveryHolds* holds) { holds_ = holds; }

  void Start();
  // Stops sending, waits up to stop_grace for outstanding acks, marks the
  // gateway offline, disconnects and joins the thread.
  void Stop();

  // The store committed new rows: readings of `news.devices`, and event
  // records if `news.events`. Only those devices' outboxes are read again.
  void NotifyNewData(const store::CommitNews& news);
  // The store may have new rows of any device or stream.
  void NotifyNewData();
  // Re-read the key files (a config reload, or an operator rotated a key).
  void RequestKeyReload();

  // One turn of the loop: act on the state, then wait up to `max_wait` for the
  // network, a notification or the next deadline, and handle what arrived.
  void RunOnce(std::chrono::milliseconds max_wait);

  const UplinkCounters& counters() const { return counters_; }
  // Beats every RunOnce(), at least every kHeartbeatEvery. Safe from any thread.
  const Heartbeat& heartbeat() const { return heartbeat_; }
  size_t inflight() const { return inflight_.size(); }
  bool connected() const { return state_ == State::kConnected; }

 private:
  enum class State { kDisconnected, kConnecting, kConnected };

  struct DeviceOutbox {
    int64_t id = 0;
    std::string name;
    int64_t live_from = 1;                    // rows below this seq are backlog (historical)
    int64_t hist_next = 1;                    // next backlog seq to send
    int64_t live_next = 1;                    // next live seq to fetch
    std::vector<store::StoredChunk> pending;  // live rows waiting for their batch to close
    size_t pending_readings = 0;              // in `pending`
    MonoTime pending_since{};
    bool maybe_more = true;  // the store may hold live rows at or past live_next
  };
  // Where one event stream (of a device, or the gateway's) stands in this session.
  struct StreamCursor {
    std::string device;
    Stream stream = Stream::kAlarms;
    int64_t live_from = 1;
    int64_t next = 1;
    bool maybe_more = true;
  };
  struct InflightBatch {
    std::string device;
    Stream stream = Stream::kTelemetry;
    int64_t first = 0;
    int64_t last = 0;
    bool historical = false;
    int refusals = 0;  // how often this range was refused before
  };
  struct RetryRange {
    std::string device;
    Stream stream = Stream::kTelemetry;
    int64_t first = 0;
    int64_t last = 0;
    int refusals = 0;
    MonoTime not_before{};
  };
  struct DeviceKey {
    std::string file;
    std::string key;  // empty while the file cannot be used: the device is held
    std::string kid;
    std::string problem;  // the last error, logged once per change
  };
  struct Event {
    enum Kind { kConnected, kLost, kAck } kind;
    int code = 0;  // CONNACK reason / PUBACK reason
    int mid = 0;
    std::string text;
  };

  void Init();
  // Opens the store reader if it is not open yet; false if it cannot be now.
  bool ReaderOpen();
  void Run();
  void Step();
  void StartConnect();
  void HandleEvents();
  void HandleAck(const Event& e);
  void OnSessionStart();
  // Ends the session's state. `penalize`: a failure, which backs off and moves
  // to the next broker; otherwise the next connect is due at once.
  void EndSession(const std::string& why, bool penalize);
  void OnSessionLost(const std::string& why) { EndSession(why, true); }
  void ReloadKeys(bool at_connect);
  void ReloadDeviceKeys();
  const DeviceKey* KeyOf(const std::string& device) const;
  bool Held(const std::string& device) const;
  void Pump();
  // Adds devices the store knows and this session does not. At session start
  // their stored rows become the backlog; later, a new device's rows are all live.
  bool RefreshDevices(bool session_start);
  bool RefreshStreams(bool session_start);
  DeviceOutbox* FindDevice(const std::string& name);
  bool WindowOpen() const { return inflight_.size() < static_cast<size_t>(options_.max_inflight); }
  void SendStreams();
  void SendRetries(MonoTime now);
  void SendLive(DeviceOutbox& d, MonoTime now);
  void SendHistorical(DeviceOutbox& d, MonoTime now);
  // Publishes the leading run of consecutive chunks of `chunks` that fits a
  // batch; returns how many chunks it took (0: nothing was sent).
  size_t PublishRun(DeviceOutbox& d, std::span<const store::StoredChunk> chunks, bool historical,
                    int refusals);
  size_t PublishRecords(const std::string& device, Stream stream, int64_t from, int64_t to,
                        bool historical, int refusals);
  // Fetches a device's undelivered readings (and holds them in the store); a
  // chunk that does not decode is discarded and the fetch goes on after it.
  Status Fetch(const DeviceOutbox& d, int64_t from, int64_t to, size_t limit,
               std::vector<store::StoredChunk>& out);
  // Lets go of readings taken out of the store that are neither pending nor in flight.
  void Release(const std::string& device, std::span<const store::StoredChunk> chunks);
  // Lets go of everything the session holds but has not had acked.
  void ReleaseSession();
  // Signs (if the device has a key) and publishes one batch; false if it was not sent.
  bool PublishBatch(const InflightBatch& batch, const std::string& payload);
  void PublishStatus(std::string_view state);
  void PublishBirths();
  void PublishBirth(const UplinkDevice& device);
  // Backlog rate cap (a token bucket in bytes): may a historical batch go now?
  bool BacklogAllowed(MonoTime now);
  std::chrono::milliseconds NextWait(std::chrono::milliseconds max_wait) const;

  const UplinkOptions options_;
  std::unique_ptr<MqttClient> client_;
  std::optional<store::OutboxReader> reader_;  // empty until the store's database exists
  const std::string store_path_;
  store::DeliveryHolds* holds_ = nullptr;
  AckSink ack_sink_;
  const Clock& clock_;
  UplinkCounters counters_;
  Heartbeat heartbeat_;

  State state_ = State::kDisconnected;
  size_t broker_index_ = 0;
  MonoTime retry_at_{};
  MonoTime connect_deadline_{};
  std::chrono::milliseconds backoff_{0};
  std::mt19937_64 rng_{std::random_device{}()};

  std::unordered_map<std::string, DeviceKey> device_keys_;  // devices with a key file
  std::string gateway_kid_;                                 // of the key the session presented
  MonoTime key_retry_at_{};

  std::vector<DeviceOutbox> devices_;
  std::vector<StreamCursor> stream_cursors_;
  size_t rr_ = 0;  // round-robin start, so that no device always goes first
  std::unordered_map<int, InflightBatch> inflight_;
  std::vector<RetryRange> retries_;
  std::vector<Event> events_;
  std::unordered_set<int> control_mids_;  // status and births: acks that mark no rows
  int status_mid_ = -1;
  double backlog_tokens_ = 0;  // bytes the backlog may still send; negative: in debt
  MonoTime backlog_tokens_at_{};

  std::vector<store::DeliveryAck> acks_;  // of the events being handled, for the ack sink
  std::vector<store::StoredChunk> rows_;  // the backlog's and retries' fetches, reused
  std::string payload_;                   // the batch being published, reused

  // What the store reported new since the last Pump(), guarded by news_mu_.
  struct News {
    bool all = true;  // anything may be new: read every outbox
    store::CommitNews what;
  };
  Mutex news_mu_;
  News news_ TR_GUARDED_BY(news_mu_);
  std::atomic<bool> new_data_{true};
  std::atomic<bool> reload_keys_{false};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace tagrelay::uplink
