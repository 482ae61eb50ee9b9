#include "agent/uplink/uplink.h"

#include <algorithm>
#include <cstdio>
#include <limits>
#include <string>

#include "agent/core/log.h"
#include "agent/uplink/key_file.h"
#include "agent/uplink/telemetry.h"

namespace tagrelay::uplink {
namespace {

constexpr std::chrono::milliseconds kIdleWait{1000};  // keepalive housekeeping while connected
constexpr std::chrono::milliseconds kRefusedRetry{2000};
constexpr int kMqttReasonFailure = 0x80;

std::chrono::milliseconds Until(MonoTime t, MonoTime now) {
  if (t <= now) return std::chrono::milliseconds(0);
  return std::chrono::ceil<std::chrono::milliseconds>(t - now);
}

std::string ReasonHex(int code) {
  char h[8];
  std::snprintf(h, sizeof h, "0x%02x", code & 0xff);
  return h;
}

}  // namespace

Uplink::Uplink(UplinkOptions options, std::unique_ptr<MqttClient> client,
               store::OutboxReader reader, AckSink ack_sink, const Clock& clock)
    : options_(std::move(options)),
      client_(std::move(client)),
      reader_(std::move(reader)),
      ack_sink_(std::move(ack_sink)),
      clock_(clock) {
  MqttCallbacks cb;
  cb.on_connect = [this](int reason, std::string_view text) {
    events_.push_back(Event{Event::kConnected, reason, 0, std::string(text)});
  };
  cb.on_disconnect = [this](std::string_view why) {
    events_.push_back(Event{Event::kLost, 0, 0, std::string(why)});
  };
  cb.on_publish = [this](int mid, int reason) {
    events_.push_back(Event{Event::kAck, reason, mid, {}});
  };
  client_->SetCallbacks(std::move(cb));
}

Uplink::~Uplink() { Stop(); }

void Uplink::Start() {
  thread_ = std::thread([this] { Run(); });
}

void Uplink::Stop() {
  stop_ = true;
  client_->Wake();
  if (thread_.joinable()) thread_.join();
}

void Uplink::NotifyNewData() {
  new_data_ = true;
  client_->Wake();
}

void Uplink::Run() {
  while (!stop_) RunOnce(kIdleWait);
  // Drain: no new batches, but give outstanding ones a chance to be acked.
  const MonoTime deadline = clock_.mono() + options_.stop_grace;
  while (state_ == State::kConnected && !inflight_.empty() && clock_.mono() < deadline) {
    client_->Service(std::min(kIdleWait, Until(deadline, clock_.mono())));
    HandleEvents();
  }
  if (state_ == State::kConnected) {
    PublishStatus("offline");
    const MonoTime status_deadline = clock_.mono() + std::chrono::milliseconds(500);
    while (state_ == State::kConnected && status_mid_ >= 0 && clock_.mono() < status_deadline) {
      client_->Service(Until(status_deadline, clock_.mono()));
      HandleEvents();
    }
  }
  if (!inflight_.empty()) {
    Log(LogLevel::kInfo, "uplink",
        std::to_string(inflight_.size()) +
            " batch(es) unacknowledged at stop; they stay in the "
            "store and are sent again at the next start");
  }
  client_->Disconnect();
  state_ = State::kDisconnected;
  counters_.connected = false;
}

void Uplink::RunOnce(std::chrono::milliseconds max_wait) {
  Step();
  client_->Service(NextWait(max_wait));
  HandleEvents();
  Step();
}

void Uplink::Step() {
  const MonoTime now = clock_.mono();
  switch (state_) {
    case State::kDisconnected:
      if (now >= retry_at_ && !stop_) StartConnect();
      break;
    case State::kConnecting:
      if (now >= connect_deadline_) {
        client_->Disconnect();
        OnSessionLost("no CONNACK within " + std::to_string(options_.connect_timeout.count()) +
                      " ms");
      }
      break;
    case State::kConnected:
      if (!stop_) Pump();
      break;
  }
}

std::chrono::milliseconds Uplink::NextWait(std::chrono::milliseconds max_wait) const {
  const MonoTime now = clock_.mono();
  std::chrono::milliseconds wait = max_wait;
  switch (state_) {
    case State::kDisconnected: wait = std::min(wait, Until(retry_at_, now)); break;
    case State::kConnecting: wait = std::min(wait, Until(connect_deadline_, now)); break;
    case State::kConnected:
      if (new_data_) return std::chrono::milliseconds(0);
      for (const DeviceOutbox& d : devices_) {
        if (!d.pending.empty() && WindowOpen()) {
          wait = std::min(wait, Until(d.pending_since + options_.batch_linger, now));
        }
      }
      for (const RetryRange& r : retries_) wait = std::min(wait, Until(r.not_before, now));
      break;
  }
  return wait;
}

void Uplink::StartConnect() {
  const BrokerUrl& url = options_.brokers[broker_index_ % options_.brokers.size()];
  MqttSessionOptions o;
  o.host = url.host;
  o.port = url.port;
  o.tls = url.tls;
  o.ca_file = options_.ca_file;
  o.cert_file = options_.cert_file;
  o.key_file = options_.key_file;
  o.client_id = options_.client_id;
  o.username = options_.gateway;
  o.keepalive_s = options_.keepalive_s;
  o.max_inflight = options_.max_inflight;
  o.will_topic = StatusTopic(options_.topic_prefix, options_.gateway);
  o.will_payload = EncodeStatus(options_.gateway, "offline", "", "", 0);
  if (!options_.api_key_file.empty()) {
    // Read at every connect, so that a rotated key needs no restart.
    Result<std::string> key = ReadKeyFile(options_.api_key_file);
    if (!key.ok()) {
      Log(LogLevel::kError, "uplink", key.status().message());
      OnSessionLost("");
      return;
    }
    o.password = std::move(key).value();
  }
  if (!url.tls) {
    Log(LogLevel::kWarning, "uplink",
        "connecting to " + url.ToString() +
            " WITHOUT TLS (insecure = true): the API key and "
            "all data travel in clear text");
  }
  Status s = client_->Connect(o);
  std::fill(o.password.begin(), o.password.end(), '\0');
  if (!s.ok()) {
    OnSessionLost("connect " + url.ToString() + ": " + s.message());
    return;
  }
  state_ = State::kConnecting;
  connect_deadline_ = clock_.mono() + options_.connect_timeout;
}

void Uplink::HandleEvents() {
  // Handlers may Disconnect(), which can add events; take the list first.
  std::vector<Event> events;
  events.swap(events_);
  for (Event& e : events) {
    switch (e.kind) {
      case Event::kConnected:
        if (state_ != State::kConnecting) break;
        if (e.code == 0) {
          OnSessionStart();
        } else {
          client_->Disconnect();
          OnSessionLost("broker refused the connection: " + e.text);
        }
        break;
      case Event::kLost:
        if (state_ != State::kDisconnected) OnSessionLost("connection lost: " + e.text);
        break;
      case Event::kAck: {
        if (e.mid == status_mid_) {
          status_mid_ = -1;
          break;
        }
        auto it = inflight_.find(e.mid);
        if (it == inflight_.end()) break;  // from a session that is gone
        InflightBatch b = std::move(it->second);
        inflight_.erase(it);
        counters_.inflight = inflight_.size();
        if (e.code < kMqttReasonFailure) {
          counters_.readings_acked += static_cast<uint64_t>(b.last - b.first + 1);
          ack_sink_(store::DeliveryAck{b.device, b.first, b.last});
        } else {
          ++counters_.batches_refused;
          LogDevice(LogLevel::kWarning, "uplink", b.device,
                    "broker refused batch seq " + std::to_string(b.first) + ".." +
                        std::to_string(b.last) + " with reason " + ReasonHex(e.code) +
                        "; it stays in the store and is retried");
          retries_.push_back(RetryRange{b.device, b.first, b.last, clock_.mono() + kRefusedRetry});
        }
        break;
      }
    }
  }
}

void Uplink::OnSessionStart() {
  state_ = State::kConnected;
  counters_.connected = true;
  ++counters_.connects;
  backoff_ = std::chrono::milliseconds(0);
  const BrokerUrl& url = options_.brokers[broker_index_ % options_.brokers.size()];
  Log(LogLevel::kInfo, "uplink", "connected to " + url.ToString());
  devices_.clear();
  inflight_.clear();
  retries_.clear();
  new_data_ = true;
  if (!RefreshDevices(/*session_start=*/true)) return;
  for (DeviceOutbox& d : devices_) {
    if (d.hist_next < d.live_from) {
      LogDevice(LogLevel::kInfo, "uplink", d.name,
                "backlog of seq " + std::to_string(d.hist_next) + ".." +
                    std::to_string(d.live_from - 1) + " will be replayed as historical");
    }
  }
  PublishStatus("online");
}

void Uplink::OnSessionLost(const std::string& why) {
  const bool was_connected = state_ == State::kConnected;
  state_ = State::kDisconnected;
  counters_.connected = false;
  ++counters_.connection_failures;
  inflight_.clear();
  counters_.inflight = 0;
  retries_.clear();
  devices_.clear();
  status_mid_ = -1;
  backoff_ = backoff_.count() == 0 ? options_.backoff_initial
                                   : std::min(backoff_ * 2, options_.backoff_max);
  // Full jitter above a floor: a fleet that lost the same broker does not come
  // back in step, and no retry comes sooner than backoff_initial.
  std::uniform_int_distribution<int64_t> jitter(options_.backoff_initial.count(), backoff_.count());
  retry_at_ = clock_.mono() + std::chrono::milliseconds(jitter(rng_));
  ++broker_index_;
  if (!why.empty()) {
    Log(was_connected ? LogLevel::kWarning : LogLevel::kError, "uplink",
        why + "; retrying within " + std::to_string(backoff_.count()) + " ms");
  }
}

bool Uplink::RefreshDevices(bool session_start) {
  Result<std::vector<store::DeviceBacklog>> all = reader_.Devices();
  if (!all.ok()) {
    Log(LogLevel::kError, "uplink", "read store: " + all.status().ToString());
    return false;
  }
  for (store::DeviceBacklog& b : *all) {
    if (FindDevice(b.name) != nullptr) continue;
    DeviceOutbox d;
    d.id = b.id;
    d.name = std::move(b.name);
    if (session_start) {
      // What is in the store now is backlog; what comes after is live.
      d.live_from = b.last_seq + 1;
      d.hist_next = b.first_undelivered == 0 ? d.live_from : b.first_undelivered;
      d.live_next = d.live_from;
    } else {
      // A device first seen during this session: all of its rows are live.
      d.live_from = d.hist_next = d.live_next = 1;
    }
    devices_.push_back(std::move(d));
  }
  return true;
}

Uplink::DeviceOutbox* Uplink::FindDevice(const std::string& name) {
  for (DeviceOutbox& d : devices_) {
    if (d.name == name) return &d;
  }
  return nullptr;
}

void Uplink::Pump() {
  if (new_data_.exchange(false)) {
    if (!RefreshDevices(/*session_start=*/false)) return;
    for (DeviceOutbox& d : devices_) d.maybe_more = true;
  }
  const MonoTime now = clock_.mono();
  SendRetries(now);
  const size_t n = devices_.size();
  for (size_t k = 0; k < n && WindowOpen(); ++k) SendLive(devices_[(rr_ + k) % n], now);
  for (size_t k = 0; k < n && WindowOpen(); ++k) SendHistorical(devices_[(rr_ + k) % n]);
  if (n > 0) rr_ = (rr_ + 1) % n;
}

void Uplink::SendRetries(MonoTime now) {
  std::vector<store::StoredReading> rows;
  for (size_t i = 0; i < retries_.size() && WindowOpen();) {
    RetryRange& r = retries_[i];
    DeviceOutbox* d = FindDevice(r.device);
    if (r.not_before > now || d == nullptr) {
      ++i;
      continue;
    }
    rows.clear();
    Status s = reader_.FetchUndelivered(d->id, r.first, r.last, options_.batch_max_readings, rows);
    if (!s.ok()) {
      Log(LogLevel::kError, "uplink", "read store: " + s.ToString());
      return;
    }
    if (rows.empty()) {  // delivered meanwhile, or evicted: nothing left to send
      retries_.erase(retries_.begin() + static_cast<std::ptrdiff_t>(i));
      continue;
    }
    const size_t taken = PublishRun(*d, rows, r.first < d->live_from);
    if (taken == 0) return;
    r.first = rows[taken - 1].seq + 1;
    if (r.first > r.last) retries_.erase(retries_.begin() + static_cast<std::ptrdiff_t>(i));
  }
}

void Uplink::SendLive(DeviceOutbox& d, MonoTime now) {
  const size_t max = options_.batch_max_readings;
  if (d.maybe_more && d.pending.size() < max) {
    const size_t want = max - d.pending.size();
    const size_t before = d.pending.size();
    Status s = reader_.FetchUndelivered(d.id, d.live_next, std::numeric_limits<int64_t>::max(),
                                        want, d.pending);
    if (!s.ok()) {
      Log(LogLevel::kError, "uplink", "read store: " + s.ToString());
      return;
    }
    const size_t got = d.pending.size() - before;
    if (got > 0) {
      if (before == 0) d.pending_since = now;
      d.live_next = d.pending.back().seq + 1;
    }
    d.maybe_more = got == want;
  }
  while (!d.pending.empty() && WindowOpen() &&
         (d.pending.size() >= max || now >= d.pending_since + options_.batch_linger)) {
    const size_t taken = PublishRun(d, d.pending, false);
    if (taken == 0) return;
    d.pending.erase(d.pending.begin(), d.pending.begin() + static_cast<std::ptrdiff_t>(taken));
  }
}

void Uplink::SendHistorical(DeviceOutbox& d) {
  std::vector<store::StoredReading> rows;
  while (d.hist_next < d.live_from && WindowOpen()) {
    rows.clear();
    Status s = reader_.FetchUndelivered(d.id, d.hist_next, d.live_from - 1,
                                        options_.batch_max_readings, rows);
    if (!s.ok()) {
      Log(LogLevel::kError, "uplink", "read store: " + s.ToString());
      return;
    }
    if (rows.empty()) {
      d.hist_next = d.live_from;
      return;
    }
    const size_t taken = PublishRun(d, rows, true);
    if (taken == 0) return;
    d.hist_next = rows[taken - 1].seq + 1;
  }
}

size_t Uplink::PublishRun(DeviceOutbox& d, std::span<const store::StoredReading> rows,
                          bool historical) {
  size_t n = 1;
  while (n < rows.size() && rows[n].seq == rows[n - 1].seq + 1) ++n;
  const auto run = rows.first(n);
  const std::string payload =
      EncodeTelemetry(BatchHeader{options_.gateway, d.name, historical}, run);
  const std::string topic =
      DeviceTopic(options_.topic_prefix, options_.gateway, d.name, "telemetry");
  Result<int> mid = client_->Publish(topic, payload, 1, false, {});
  if (!mid.ok()) {
    // The session is going down; the lost-session handling resends from the store.
    LogDevice(LogLevel::kWarning, "uplink", d.name, mid.status().message());
    return 0;
  }
  inflight_[*mid] = InflightBatch{d.name, run.front().seq, run.back().seq, historical};
  counters_.inflight = inflight_.size();
  ++counters_.batches_sent;
  return n;
}

void Uplink::PublishStatus(std::string_view state) {
  const std::string payload = EncodeStatus(options_.gateway, state, options_.version,
                                           options_.config_digest, clock_.wall_ms());
  Result<int> mid =
      client_->Publish(StatusTopic(options_.topic_prefix, options_.gateway), payload, 1, true, {});
  status_mid_ = mid.ok() ? *mid : -1;
}

}  // namespace tagrelay::uplink
