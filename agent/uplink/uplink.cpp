#include "agent/uplink/uplink.h"

#include <algorithm>
#include <cstdio>
#include <limits>
#include <string>
#include <utility>

#include "agent/core/log.h"
#include "agent/core/thread_name.h"
#include "agent/uplink/key_file.h"
#include "agent/uplink/signing.h"

namespace tagrelay::uplink {
namespace {

constexpr std::chrono::milliseconds kIdleWait{1000};   // keepalive housekeeping while connected
constexpr std::chrono::milliseconds kKeyRetry{60000};  // a held device's key file is tried again
constexpr int kMqttReasonFailure = 0x80;
constexpr int64_t kNoLimit = std::numeric_limits<int64_t>::max();

std::chrono::milliseconds Until(MonoTime t, MonoTime now) {
  if (t <= now) return std::chrono::milliseconds(0);
  return std::chrono::ceil<std::chrono::milliseconds>(t - now);
}

std::string ReasonHex(int code) {
  char h[8];
  std::snprintf(h, sizeof h, "0x%02x", code & 0xff);
  return h;
}

// Calls f(first, last) for each run of consecutive seqs in `chunks`.
template <typename F>
void ForEachRun(std::span<const store::StoredChunk> chunks, F&& f) {
  for (size_t i = 0; i < chunks.size();) {
    size_t j = i + 1;
    while (j < chunks.size() && chunks[j].seq_first == chunks[j - 1].seq_last() + 1) ++j;
    f(chunks[i].seq_first, chunks[j - 1].seq_last());
    i = j;
  }
}

std::string Range(int64_t first, int64_t last) {
  return std::to_string(first) + ".." + std::to_string(last);
}

// What to do about a refused CONNECT, in the operator's terms.
std::string ConnackHint(MqttVersion version, int code) {
  const bool v311 = version == MqttVersion::kV311;
  if ((v311 && code == 4) || (!v311 && code == 0x86)) {
    return " (the broker does not accept this user name and API key: check api_key_file and "
           "the gateway's entry on the broker)";
  }
  if ((v311 && code == 5) || (!v311 && (code == 0x87 || code == 0x8C))) {
    return " (the broker does not let this gateway in: check api_key_file, and the gateway's "
           "user and ACL on the broker)";
  }
  if ((v311 && code == 2) || (!v311 && code == 0x85)) {
    return " (the broker refuses the client id: check uplink.client_id)";
  }
  if (!v311 && code == 0x84) return " (the broker does not speak MQTT 5: try mqtt_version)";
  return {};
}

}  // namespace

Uplink::Uplink(UplinkOptions options, std::unique_ptr<MqttClient> client,
               store::OutboxReader reader, AckSink ack_sink, const Clock& clock)
    : options_(std::move(options)),
      client_(std::move(client)),
      reader_(std::move(reader)),
      ack_sink_(std::move(ack_sink)),
      clock_(clock) {
  Init();
}

Uplink::Uplink(UplinkOptions options, std::unique_ptr<MqttClient> client, std::string store_path,
               AckSink ack_sink, const Clock& clock)
    : options_(std::move(options)),
      client_(std::move(client)),
      store_path_(std::move(store_path)),
      ack_sink_(std::move(ack_sink)),
      clock_(clock) {
  Init();
}

void Uplink::Init() {
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
  for (const UplinkDevice& d : options_.devices) {
    if (!d.api_key_file.empty()) device_keys_[d.id].file = d.api_key_file;
  }
}

Uplink::~Uplink() {
  Stop();
  for (auto& [name, k] : device_keys_) Wipe(k.key);
}

void Uplink::Start() {
  thread_ = std::thread([this] {
    NameThisThread("uplink");
    Run();
  });
}

void Uplink::Stop() {
  stop_ = true;
  client_->Wake();
  if (thread_.joinable()) thread_.join();
}

void Uplink::NotifyNewData(const store::CommitNews& news) {
  {
    MutexLock lock(&news_mu_);
    if (!news_.all) news_.what.Merge(news);  // else every outbox is read anyway
  }
  new_data_ = true;
  client_->Wake();
}

void Uplink::NotifyNewData() {
  {
    MutexLock lock(&news_mu_);
    news_.all = true;
  }
  new_data_ = true;
  client_->Wake();
}

void Uplink::RequestKeyReload() {
  reload_keys_ = true;
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
  ReleaseSession();  // a reload's next uplink takes them again
  inflight_.clear();
  devices_.clear();
  state_ = State::kDisconnected;
  counters_.connected = false;
}

void Uplink::RunOnce(std::chrono::milliseconds max_wait) {
  heartbeat_.Beat(clock_.mono());
  Step();
  client_->Service(NextWait(max_wait));
  HandleEvents();
  Step();
}

void Uplink::Step() {
  if (reload_keys_.exchange(false)) ReloadKeys(/*at_connect=*/false);
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
      if (counters_.devices_held > 0 && now >= key_retry_at_) {
        key_retry_at_ = now + kKeyRetry;
        ReloadDeviceKeys();
      }
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
      if (new_data_ || reload_keys_) return std::chrono::milliseconds(0);
      if (counters_.devices_held > 0) wait = std::min(wait, Until(key_retry_at_, now));
      if (!WindowOpen()) break;  // an ack comes through the network
      for (const DeviceOutbox& d : devices_) {
        if (!d.pending.empty()) {
          wait = std::min(wait, Until(d.pending_since + options_.batch_linger, now));
        }
        if (d.hist_next < d.live_from && backlog_tokens_ < 0 && options_.backlog_rate > 0) {
          const auto debt = std::chrono::duration<double>(
              -backlog_tokens_ / static_cast<double>(options_.backlog_rate));
          wait = std::min(wait, std::chrono::ceil<std::chrono::milliseconds>(debt));
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
  o.version = options_.mqtt_version;
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
      OnSessionLost("gateway API key: " + key.status().message());
      return;
    }
    o.password = std::move(key).value();
    gateway_kid_ = KeyId(o.password);
  }
  ReloadKeys(/*at_connect=*/true);
  if (!url.tls) {
    Log(LogLevel::kWarning, "uplink",
        "connecting to " + url.ToString() +
            " WITHOUT TLS (insecure = true): the API key and "
            "all data travel in clear text");
  }
  Status s = client_->Connect(o);
  Wipe(o.password);
  if (!s.ok()) {
    OnSessionLost("connect " + url.ToString() + ": " + s.message());
    return;
  }
  state_ = State::kConnecting;
  connect_deadline_ = clock_.mono() + options_.connect_timeout;
}

void Uplink::ReloadKeys(bool at_connect) {
  if (!at_connect) {
    ++counters_.key_reloads;
    // A new gateway key takes effect with a new session: start one now, so that
    // the old key can be revoked on the broker right after the rotation.
    if (!options_.api_key_file.empty() && state_ != State::kDisconnected) {
      Result<std::string> key = ReadKeyFile(options_.api_key_file);
      if (!key.ok()) {
        Log(LogLevel::kError, "uplink",
            "gateway API key: " + key.status().message() +
                "; the current session goes on, the next connect needs a usable key");
      } else {
        std::string k = std::move(key).value();
        const std::string kid = KeyId(k);
        Wipe(k);
        if (kid != gateway_kid_) {
          Log(LogLevel::kInfo, "uplink",
              "gateway API key changed (key id " + kid + "); reconnecting to present it");
          client_->Disconnect();
          EndSession("", /*penalize=*/false);
        }
      }
    }
  }
  ReloadDeviceKeys();
}

void Uplink::ReloadDeviceKeys() {
  uint64_t held = 0;
  for (auto& [device, k] : device_keys_) {
    Result<std::string> key = ReadKeyFile(k.file);
    if (!key.ok()) {
      const bool had_key = !k.key.empty();
      Wipe(k.key);
      k.kid.clear();
      if (k.problem != key.status().message()) {
        k.problem = key.status().message();
        LogDevice(LogLevel::kError, "uplink", device,
                  "signing key: " + k.problem + (had_key ? "; the old key is no longer used" : "") +
                      "; the device's data stays in the store until the key file is usable");
      }
      ++held;
      continue;
    }
    std::string fresh = std::move(key).value();
    const std::string kid = KeyId(fresh);
    const bool was_held = k.key.empty();
    if (kid != k.kid) {
      LogDevice(LogLevel::kInfo, "uplink", device, "signing with key id " + kid);
    }
    Wipe(k.key);
    k.key = std::move(fresh);
    k.kid = kid;
    k.problem.clear();
    if (was_held && state_ == State::kConnected) {
      for (const UplinkDevice& d : options_.devices) {
        if (d.id == device) PublishBirth(d);
      }
    }
  }
  counters_.devices_held = held;
}

const Uplink::DeviceKey* Uplink::KeyOf(const std::string& device) const {
  auto it = device_keys_.find(device);
  return it == device_keys_.end() ? nullptr : &it->second;
}

bool Uplink::Held(const std::string& device) const {
  const DeviceKey* k = KeyOf(device);
  return k != nullptr && k->key.empty();
}

void Uplink::HandleEvents() {
  // Handlers may Disconnect(), which can add events; take the list first.
  std::vector<Event> events;
  events.swap(events_);
  struct FlushAcks {
    Uplink* self;
    ~FlushAcks() {
      for (store::DeliveryAck& a : self->acks_) self->ack_sink_(std::move(a));
      self->acks_.clear();
    }
  } flush{this};
  for (Event& e : events) {
    switch (e.kind) {
      case Event::kConnected:
        if (state_ != State::kConnecting) break;
        if (e.code == 0) {
          OnSessionStart();
        } else {
          client_->Disconnect();
          OnSessionLost("broker refused the connection: " + e.text + " (" + ReasonHex(e.code) +
                        ")" + ConnackHint(options_.mqtt_version, e.code));
        }
        break;
      case Event::kLost:
        if (state_ != State::kDisconnected) OnSessionLost("connection lost: " + e.text);
        break;
      case Event::kAck: HandleAck(e); break;
    }
  }
}

void Uplink::HandleAck(const Event& e) {
  if (e.mid == status_mid_) status_mid_ = -1;
  if (control_mids_.erase(e.mid) > 0) {
    if (e.code >= kMqttReasonFailure) {
      ++counters_.batches_refused;
      Log(LogLevel::kWarning, "uplink",
          "broker refused a status or birth message with reason " + ReasonHex(e.code) +
              "; it is sent again with the next session");
    }
    return;
  }
  auto it = inflight_.find(e.mid);
  if (it == inflight_.end()) return;  // from a session that is gone
  InflightBatch b = std::move(it->second);
  inflight_.erase(it);
  counters_.inflight = inflight_.size();
  const uint64_t n = static_cast<uint64_t>(b.last - b.first + 1);
  if (e.code < kMqttReasonFailure) {
    if (b.stream == Stream::kTelemetry) {
      counters_.readings_acked += n;
      // Acks of one read that continue each other go to the store as one.
      if (!acks_.empty() && acks_.back().device == b.device &&
          acks_.back().seq_last + 1 == b.first) {
        acks_.back().seq_last = b.last;
      } else {
        acks_.push_back(store::DeliveryAck{b.device, b.first, b.last});
      }
    } else {
      counters_.records_acked += n;
      ack_sink_(store::EventAck{std::string(StreamName(b.stream)), b.device, b.first, b.last});
    }
    return;
  }
  ++counters_.batches_refused;
  // Out of memory until its retry fetches it again.
  if (holds_ != nullptr && b.stream == Stream::kTelemetry)
    holds_->Release(b.device, b.first, b.last);
  const int refusals = b.refusals + 1;
  // Exponential per range, with jitter in the upper half, capped like reconnects.
  const int shift = std::min(refusals - 1, 16);
  const auto base = std::min(options_.refused_retry * (int64_t{1} << shift), options_.backoff_max);
  std::uniform_int_distribution<int64_t> jitter(base.count() / 2, base.count());
  const std::chrono::milliseconds delay(jitter(rng_));
  LogDevice(LogLevel::kWarning, "uplink", b.device,
            "broker refused " + std::string(StreamName(b.stream)) + " seq " +
                Range(b.first, b.last) + " with reason " + ReasonHex(e.code) + " (refusal " +
                std::to_string(refusals) +
                "); it stays in the store and is "
                "sent again in " +
                std::to_string(delay.count()) + " ms");
  retries_.push_back(
      RetryRange{b.device, b.stream, b.first, b.last, refusals, clock_.mono() + delay});
}

void Uplink::OnSessionStart() {
  state_ = State::kConnected;
  counters_.connected = true;
  ++counters_.connects;
  backoff_ = std::chrono::milliseconds(0);
  const BrokerUrl& url = options_.brokers[broker_index_ % options_.brokers.size()];
  Log(LogLevel::kInfo, "uplink", "connected to " + url.ToString());
  ReleaseSession();
  devices_.clear();
  stream_cursors_.clear();
  inflight_.clear();
  retries_.clear();
  control_mids_.clear();
  backlog_tokens_ = 0;
  backlog_tokens_at_ = clock_.mono();
  key_retry_at_ = clock_.mono() + kKeyRetry;
  NotifyNewData();  // every outbox is read at the start of a session
  PublishStatus("online");
  PublishBirths();
  if (!RefreshDevices(/*session_start=*/true)) return;
  (void)RefreshStreams(/*session_start=*/true);
  for (DeviceOutbox& d : devices_) {
    if (d.hist_next < d.live_from) {
      LogDevice(LogLevel::kInfo, "uplink", d.name,
                "backlog of seq " + Range(d.hist_next, d.live_from - 1) +
                    " will be replayed as historical");
    }
  }
}

void Uplink::EndSession(const std::string& why, bool penalize) {
  const bool was_connected = state_ == State::kConnected;
  state_ = State::kDisconnected;
  counters_.connected = false;
  ReleaseSession();
  inflight_.clear();
  counters_.inflight = 0;
  retries_.clear();
  devices_.clear();
  stream_cursors_.clear();
  control_mids_.clear();
  status_mid_ = -1;
  if (!penalize) {
    retry_at_ = clock_.mono();
    return;
  }
  ++counters_.connection_failures;
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

bool Uplink::ReaderOpen() {
  if (reader_) return true;
  // The writer has not opened the store yet; its first commit notifies us.
  Result<store::OutboxReader> r = store::OutboxReader::Open(store_path_);
  if (!r.ok()) return false;
  reader_.emplace(std::move(r).value());
  Log(LogLevel::kInfo, "uplink", "reading the store " + store_path_);
  return true;
}

bool Uplink::RefreshDevices(bool session_start) {
  if (!ReaderOpen()) return false;
  Result<std::vector<store::DeviceBacklog>> all = reader_->Devices();
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

bool Uplink::RefreshStreams(bool session_start) {
  if (!ReaderOpen()) return false;
  Result<std::vector<store::StreamBacklog>> all = reader_->Streams();
  if (!all.ok()) {
    Log(LogLevel::kError, "uplink", "read store streams: " + all.status().ToString());
    return false;
  }
  for (store::StreamBacklog& b : *all) {
    const std::optional<Stream> stream = ParseStream(b.stream);
    if (!stream || *stream == Stream::kTelemetry) continue;  // not ours to send (a newer release's)
    auto known = std::find_if(
        stream_cursors_.begin(), stream_cursors_.end(),
        [&](const StreamCursor& c) { return c.device == b.device && c.stream == *stream; });
    if (known != stream_cursors_.end()) {
      known->maybe_more = true;
      continue;
    }
    StreamCursor c;
    c.device = std::move(b.device);
    c.stream = *stream;
    c.live_from = session_start ? b.last_seq + 1 : 1;
    c.next = b.first_undelivered == 0 ? b.last_seq + 1 : b.first_undelivered;
    stream_cursors_.push_back(std::move(c));
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
    News news;
    {
      MutexLock lock(&news_mu_);
      news = std::exchange(news_, News{/*all=*/false, {}});
    }
    const std::vector<std::string>& named = news.what.devices;
    // Only the devices the store reported are read again; the store's device
    // list only when one of them is new to this session.
    const bool unknown = news.all || std::any_of(named.begin(), named.end(), [this](const auto& n) {
                           return FindDevice(n) == nullptr;
                         });
    const bool refreshed =
        (!unknown || RefreshDevices(/*session_start=*/false)) &&
        (!(news.all || news.what.events) || RefreshStreams(/*session_start=*/false));
    if (!refreshed) {
      // Kept for the next notification, so that no device's news is lost.
      MutexLock lock(&news_mu_);
      news_.all = news_.all || news.all;
      news_.what.Merge(news.what);
      return;
    }
    if (unknown) {
      for (DeviceOutbox& d : devices_) d.maybe_more = true;
    } else {
      for (const std::string& n : named) FindDevice(n)->maybe_more = true;
    }
  }
  const MonoTime now = clock_.mono();
  SendStreams();
  SendRetries(now);
  const size_t n = devices_.size();
  for (size_t k = 0; k < n && WindowOpen(); ++k) SendLive(devices_[(rr_ + k) % n], now);
  for (size_t k = 0; k < n && WindowOpen(); ++k) SendHistorical(devices_[(rr_ + k) % n], now);
  if (n > 0) rr_ = (rr_ + 1) % n;
}

void Uplink::SendStreams() {
  for (StreamCursor& c : stream_cursors_) {
    while (c.maybe_more && WindowOpen() && !Held(c.device)) {
      const size_t taken = PublishRecords(c.device, c.stream, c.next, kNoLimit,
                                          c.next < c.live_from, /*refusals=*/0);
      if (taken == 0) {
        c.maybe_more = false;
        break;
      }
      c.next += static_cast<int64_t>(taken);
    }
  }
}

size_t Uplink::PublishRecords(const std::string& device, Stream stream, int64_t from, int64_t to,
                              bool historical, int refusals) {
  std::vector<store::StoredEvent> rows;
  Status s = reader_->FetchEvents(std::string(StreamName(stream)), device, from, to,
                                  options_.batch_max_readings, rows);
  if (!s.ok()) {
    Log(LogLevel::kError, "uplink", "read store events: " + s.ToString());
    return 0;
  }
  if (rows.empty()) return 0;
  size_t run = 1;
  while (run < rows.size() && rows[run].seq == rows[run - 1].seq + 1) ++run;
  std::string payload;
  const size_t n = EncodeRecords(stream, BatchHeader{options_.gateway, device, historical},
                                 std::span(rows).first(run), options_.batch_max_bytes, &payload);
  const int64_t first = rows.front().seq;
  const int64_t last = first + static_cast<int64_t>(n) - 1;
  if (!PublishBatch(InflightBatch{device, stream, first, last, historical, refusals}, payload)) {
    return 0;
  }
  // The cursor moves past the records sent and any delivered ones before them.
  return static_cast<size_t>(last - from + 1);
}

Status Uplink::Fetch(const DeviceOutbox& d, int64_t from, int64_t to, size_t limit,
                     std::vector<store::StoredChunk>& out) {
  for (;;) {
    store::BadChunk bad;
    Status s;
    if (holds_ == nullptr) {
      s = reader_->FetchChunks(d.id, from, to, limit, out, &bad);
    } else {
      // No eviction between reading the rows and holding them.
      store::DeliveryHolds::Exclusion exclusion(*holds_);
      const size_t before = out.size();
      s = reader_->FetchChunks(d.id, from, to, limit, out, &bad);
      ForEachRun(std::span(out).subspan(before),
                 [&](int64_t first, int64_t last) { holds_->Hold(d.name, first, last); });
    }
    if (s.code() != StatusCode::kCorruption || bad.count <= 0) return s;
    // A chunk that no longer decodes can never be delivered: the store drops it
    // and reports its readings lost; sending goes on after it.
    const int64_t last = bad.seq_first + bad.count - 1;
    LogDevice(LogLevel::kError, "uplink", d.name,
              "stored readings seq " + Range(bad.seq_first, last) + " do not decode (" + bad.why +
                  "); they are discarded and reported lost");
    ++counters_.chunks_discarded;
    ack_sink_(store::DiscardReadings{d.name, bad.seq_first, last, store::kLossCorrupt});
    from = last + 1;
    if (from > to) return Status::Ok();
  }
}

void Uplink::SendRetries(MonoTime now) {
  std::vector<store::StoredChunk>& rows = rows_;
  for (size_t i = 0; i < retries_.size() && WindowOpen();) {
    RetryRange& r = retries_[i];
    if (r.not_before > now || Held(r.device)) {
      ++i;
      continue;
    }
    size_t taken = 0;
    int64_t next = 0;
    if (r.stream == Stream::kTelemetry) {
      DeviceOutbox* d = FindDevice(r.device);
      if (d == nullptr) {
        ++i;
        continue;
      }
      rows.clear();
      Status s = Fetch(*d, r.first, r.last, options_.batch_max_readings, rows);
      if (!s.ok()) {
        Log(LogLevel::kError, "uplink", "read store: " + s.ToString());
        return;
      }
      if (rows.empty()) {  // delivered meanwhile, or evicted: nothing left to send
        retries_.erase(retries_.begin() + static_cast<std::ptrdiff_t>(i));
        continue;
      }
      taken = PublishRun(*d, rows, r.first < d->live_from, r.refusals);
      Release(d->name, std::span(rows).subspan(taken));
      if (taken > 0) next = rows[taken - 1].seq_last() + 1;
    } else {
      taken = PublishRecords(r.device, r.stream, r.first, r.last, false, r.refusals);
      if (taken == 0) {  // delivered meanwhile, or the outbox failed (logged)
        retries_.erase(retries_.begin() + static_cast<std::ptrdiff_t>(i));
        continue;
      }
      next = r.first + static_cast<int64_t>(taken);
    }
    if (taken == 0) return;
    r.first = next;
    if (r.first > r.last) {
      retries_.erase(retries_.begin() + static_cast<std::ptrdiff_t>(i));
    }
  }
}

void Uplink::SendLive(DeviceOutbox& d, MonoTime now) {
  if (Held(d.name)) return;
  const size_t max = options_.batch_max_readings;
  for (;;) {
    if (d.maybe_more && d.pending_readings < max) {
      const size_t want = max - d.pending_readings;
      const size_t before = d.pending.size();
      Status s = Fetch(d, d.live_next, kNoLimit, want, d.pending);
      if (!s.ok()) {
        Log(LogLevel::kError, "uplink", "read store: " + s.ToString());
        return;
      }
      size_t got = 0;
      for (size_t i = before; i < d.pending.size(); ++i) {
        got += static_cast<size_t>(d.pending[i].count);
      }
      if (got > 0) {
        if (d.pending_readings == 0) d.pending_since = now;
        d.pending_readings += got;
        d.live_next = d.pending.back().seq_last() + 1;
      }
      // Whole chunks: a fetch that took fewer than asked has emptied the store.
      d.maybe_more = got >= want;
    }
    bool sent = false;
    while (!d.pending.empty() && WindowOpen() &&
           (d.pending_readings >= max || now >= d.pending_since + options_.batch_linger)) {
      const size_t taken = PublishRun(d, d.pending, false, 0);
      if (taken == 0) return;
      for (size_t i = 0; i < taken; ++i) {
        d.pending_readings -= static_cast<size_t>(d.pending[i].count);
      }
      d.pending.erase(d.pending.begin(), d.pending.begin() + static_cast<std::ptrdiff_t>(taken));
      sent = true;
    }
    // More full batches may be waiting in the store: fetch again while they can go.
    if (!sent || !d.maybe_more || !WindowOpen()) return;
  }
}

void Uplink::SendHistorical(DeviceOutbox& d, MonoTime now) {
  if (Held(d.name)) return;
  std::vector<store::StoredChunk>& rows = rows_;
  while (d.hist_next < d.live_from && WindowOpen() && BacklogAllowed(now)) {
    rows.clear();
    // One read for as many batches as the window takes now (one under a rate
    // cap); what does not go is let go of and read again later.
    const auto window = static_cast<size_t>(std::max(options_.max_inflight, 1));
    const size_t batches =
        options_.backlog_rate > 0 ? 1 : window - std::min(inflight_.size(), window - 1);
    Status s = Fetch(d, d.hist_next, d.live_from - 1, options_.batch_max_readings * batches, rows);
    if (!s.ok()) {
      Log(LogLevel::kError, "uplink", "read store: " + s.ToString());
      return;
    }
    if (rows.empty()) {
      d.hist_next = d.live_from;
      return;
    }
    size_t sent = 0;
    do {
      const size_t taken = PublishRun(d, std::span(rows).subspan(sent), true, 0);
      if (taken == 0) break;
      sent += taken;
      d.hist_next = rows[sent - 1].seq_last() + 1;
    } while (sent < rows.size() && WindowOpen() && BacklogAllowed(now));
    Release(d.name, std::span(rows).subspan(sent));
    if (sent < rows.size()) return;
  }
}

bool Uplink::BacklogAllowed(MonoTime now) {
  if (options_.backlog_rate == 0) return true;
  const double rate = static_cast<double>(options_.backlog_rate);
  // The bucket holds one second of the rate, or one full batch if that is more.
  const double cap = std::max(rate, static_cast<double>(options_.batch_max_bytes));
  const double elapsed = std::chrono::duration<double>(now - backlog_tokens_at_).count();
  backlog_tokens_ = std::min(cap, backlog_tokens_ + rate * std::max(0.0, elapsed));
  backlog_tokens_at_ = now;
  return backlog_tokens_ >= 0;
}

size_t Uplink::PublishRun(DeviceOutbox& d, std::span<const store::StoredChunk> chunks,
                          bool historical, int refusals) {
  // Whole chunks of consecutive seqs, at most batch_max_readings of them
  // unless the first chunk alone is larger.
  size_t n = 1;
  auto readings = static_cast<size_t>(chunks[0].count);
  while (n < chunks.size() && chunks[n].seq_first == chunks[n - 1].seq_last() + 1 &&
         readings + static_cast<size_t>(chunks[n].count) <= options_.batch_max_readings) {
    readings += static_cast<size_t>(chunks[n].count);
    ++n;
  }
  // The byte bound may end the batch at an earlier chunk boundary.
  n = EncodeTelemetryChunks(BatchHeader{options_.gateway, d.name, historical}, chunks.first(n),
                            reader_->tag_names(), options_.batch_max_bytes, &payload_);
  const InflightBatch batch{
      d.name,  Stream::kTelemetry, chunks.front().seq_first, chunks[n - 1].seq_last(), historical,
      refusals};
  if (!PublishBatch(batch, payload_)) return 0;
  counters_.readings_sent += static_cast<uint64_t>(batch.last - batch.first + 1);
  if (historical && options_.backlog_rate > 0) {
    backlog_tokens_ -= static_cast<double>(payload_.size());
  }
  return n;
}

void Uplink::Release(const std::string& device, std::span<const store::StoredChunk> chunks) {
  if (holds_ == nullptr) return;
  ForEachRun(chunks, [&](int64_t first, int64_t last) { holds_->Release(device, first, last); });
}

void Uplink::ReleaseSession() {
  if (holds_ == nullptr) return;
  // Acked ranges are not among these: the store releases them with the ack.
  for (const auto& [mid, b] : inflight_) {
    if (b.stream == Stream::kTelemetry) holds_->Release(b.device, b.first, b.last);
  }
  for (const DeviceOutbox& d : devices_) Release(d.name, d.pending);
}

bool Uplink::PublishBatch(const InflightBatch& batch, const std::string& payload) {
  const std::string topic = batch.stream == Stream::kEvents
                                ? EventsTopic(options_.topic_prefix, options_.gateway)
                                : DeviceTopic(options_.topic_prefix, options_.gateway, batch.device,
                                              StreamName(batch.stream));
  std::vector<UserProperty> props;
  if (const DeviceKey* k = KeyOf(batch.device)) {
    if (k->key.empty()) return false;  // held: Held() is checked before fetching
    props.push_back(UserProperty{"kid", k->kid});
    props.push_back(UserProperty{"sig", Sign(k->key, topic, payload)});
  }
  Result<int> mid = client_->Publish(topic, payload, 1, false, props);
  if (!mid.ok()) {
    // The session is going down; the lost-session handling resends from the store.
    LogDevice(LogLevel::kWarning, "uplink", batch.device, mid.status().message());
    return false;
  }
  inflight_[*mid] = batch;
  counters_.inflight = inflight_.size();
  ++counters_.batches_sent;
  counters_.payload_bytes_sent += payload.size();
  return true;
}

void Uplink::PublishStatus(std::string_view state) {
  const std::string payload = EncodeStatus(options_.gateway, state, options_.version,
                                           options_.config_digest, clock_.wall_ms());
  Result<int> mid =
      client_->Publish(StatusTopic(options_.topic_prefix, options_.gateway), payload, 1, true, {});
  status_mid_ = mid.ok() ? *mid : -1;
  if (mid.ok()) control_mids_.insert(*mid);
}

void Uplink::PublishBirths() {
  for (const UplinkDevice& d : options_.devices) {
    if (!Held(d.id)) PublishBirth(d);
  }
}

void Uplink::PublishBirth(const UplinkDevice& device) {
  const std::string topic =
      DeviceTopic(options_.topic_prefix, options_.gateway, device.id, "birth");
  const std::vector<TagInfo> tags = device.tags ? device.tags() : std::vector<TagInfo>();
  const std::string payload =
      EncodeBirth(options_.gateway, device.id, tags, options_.config_digest, clock_.wall_ms());
  std::vector<UserProperty> props;
  if (const DeviceKey* k = KeyOf(device.id); k != nullptr && !k->key.empty()) {
    props.push_back(UserProperty{"kid", k->kid});
    props.push_back(UserProperty{"sig", Sign(k->key, topic, payload)});
  }
  Result<int> mid = client_->Publish(topic, payload, 1, true, props);
  if (mid.ok()) control_mids_.insert(*mid);
}

}  // namespace tagrelay::uplink
