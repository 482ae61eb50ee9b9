#include "agent/supervisor.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "agent/core/json_writer.h"
#include "agent/core/log.h"
#include "agent/rules/engine.h"
#include "agent/status/status_render.h"
#include "agent/status/status_server.h"
#include "agent/uplink/mosquitto_client.h"
#include "agent/uplink/uplink.h"
#include "agent/version.h"
#include "drivers/modbus/libmodbus_transport.h"
#include "drivers/modbus/low_fd.h"
#include "drivers/modbus/poller.h"
#include "store/ring_store.h"
#include "store/store_writer.h"

namespace tagrelay {
namespace {

using std::chrono::milliseconds;

constexpr milliseconds kBacklogEvery{5000};  // the backlog query: an answer's is at most this old
constexpr milliseconds kRateWindow{1000};    // poll rates over at least this long

Status EnsureDirectory(const std::string& dir) {
  struct stat st {};
  if (stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) return Status::IOError("data_dir " + dir + " is not a directory");
    return Status::Ok();
  }
  if (mkdir(dir.c_str(), 0750) != 0) {
    return Status::IOError("create data_dir " + dir + ": " + std::strerror(errno));
  }
  return Status::Ok();
}

// The gateway-level event that tells the cloud the store started afresh.
store::NewEvent StoreResetEvent(const store::OpenReport& report, const Clock& clock) {
  std::string body;
  JsonWriter w(&body);
  w.BeginObject();
  w.Key("kind").String("store_reset");
  w.Key("ts").Int(clock.wall_ms());
  w.Key("reason").String("corrupt");
  w.Key("detail").String(report.corruption);
  w.Key("moved_to").String(report.quarantined);
  w.EndObject();
  return store::NewEvent{std::string(store::kStreamEvents), "", clock.wall_ms(), std::move(body)};
}

store::StoreOptions StoreOptionsOf(const Config& c) {
  store::StoreOptions o;
  o.path = c.StorePath();
  o.max_bytes = c.store.max_bytes;
  o.sync = c.store.sync;
  o.commit_rows = c.store.commit_rows;
  o.commit_interval = c.store.commit_interval;
  o.max_memory_readings = c.store.max_memory_readings;
  // The uplink sends whole chunks: a chunk never holds more than a batch may.
  o.max_chunk_readings = std::min<size_t>(250, c.uplink.batch_max_readings);
  return o;
}

bool SameStore(const Config& a, const Config& b) {
  const store::StoreOptions x = StoreOptionsOf(a), y = StoreOptionsOf(b);
  return x.path == y.path && x.max_bytes == y.max_bytes && x.sync == y.sync &&
         x.commit_rows == y.commit_rows && x.commit_interval == y.commit_interval &&
         x.max_memory_readings == y.max_memory_readings &&
         x.max_chunk_readings == y.max_chunk_readings;
}

// The alarm and counter rules run in the store writer.
bool SameRules(const Config& a, const Config& b) {
  return a.alarms == b.alarms && a.counters == b.counters;
}

uplink::UplinkOptions UplinkOptionsOf(const Config& c) {
  uplink::UplinkOptions o;
  for (const std::string& u : c.uplink.urls) o.brokers.push_back(*uplink::BrokerUrl::Parse(u));
  o.mqtt_version = c.uplink.mqtt_version;
  o.ca_file = c.uplink.ca_file;
  o.cert_file = c.uplink.cert_file;
  o.key_file = c.uplink.key_file;
  o.api_key_file = c.uplink.api_key_file;
  o.gateway = c.gateway.id;
  o.client_id = c.uplink.client_id;
  o.topic_prefix = c.uplink.topic_prefix;
  o.batch_max_readings = c.uplink.batch_max_readings;
  o.batch_max_bytes = static_cast<size_t>(c.uplink.batch_max_bytes);
  o.batch_linger = c.uplink.batch_linger;
  o.backlog_rate = c.uplink.backlog_rate;
  o.max_inflight = c.uplink.max_inflight;
  o.keepalive_s = c.uplink.keepalive_s;
  o.backoff_initial = c.uplink.reconnect_min;
  o.backoff_max = c.uplink.reconnect_max;
  // The devices' birth metadata and keys; the uplink knows nothing of Modbus.
  for (const DeviceConfig& d : c.devices) {
    uplink::UplinkDevice u;
    u.id = d.id;
    u.api_key_file = d.api_key_file;
    // Made at each birth from the config's tag lists, which the pollers share.
    u.tags = [tags = d.tags, descriptions = d.tag_descriptions] {
      std::vector<uplink::TagInfo> out;
      out.reserve(tags.size());
      for (size_t i = 0; i < tags.size(); ++i) {
        const modbus::TagSpec& t = tags[i];
        out.push_back(uplink::TagInfo{t.name, std::string(modbus::DataTypeName(t.type)), t.unit,
                                      i < descriptions.size() ? descriptions[i] : std::string()});
      }
      return out;
    };
    o.devices.push_back(std::move(u));
  }
  o.version = kVersion;
  o.config_digest = c.digest;
  return o;
}

// How long one turn of a bus's poller may take when all is well: every
// device's poll at its worst (each tag a request of its own, every attempt
// running to the timeout), plus a wait for room in the store queue.
milliseconds PollerStallLimit(const BusConfig& bus, const std::vector<const DeviceConfig*>& devs,
                              milliseconds shortest_poll) {
  milliseconds worst{0};
  for (const DeviceConfig* d : devs) {
    const auto requests = static_cast<int64_t>(d->tags.size()) + 1;
    const milliseconds poll = requests * (1 + bus.retries) * (bus.timeout + milliseconds(100));
    worst = std::max(worst, poll);
  }
  return std::max(kStallFloor, 2 * worst + shortest_poll);
}

}  // namespace

std::string NotifyStatusLine(const status::StatusSnapshot& s) {
  std::string line = std::to_string(s.DevicesOk()) + "/" + std::to_string(s.devices.size()) +
                     " devices ok, uplink " + (s.uplink.connected ? "connected" : "disconnected");
  if (s.store.backlog_known) {
    line += ", " + std::to_string(s.store.backlog_readings) + " readings unsent";
    if (s.store.oldest_unsent_age_ms) {
      line += " (oldest " + status::FormatAge(s.store.oldest_unsent_age_ms) + ")";
    }
  }
  if (!s.alarms.empty()) line += ", " + std::to_string(s.alarms.size()) + " alarm(s) active";
  for (const status::WorkerStatus& w : s.workers) {
    if (w.stalled) line += ", " + w.name + " STALLED";
  }
  return line;
}

Supervisor::Supervisor(Config config, const Clock& clock)
    : clock_(clock), config_(std::move(config)), born_(clock.mono()) {}

Supervisor::~Supervisor() { Stop(); }

Status Supervisor::Start() {
  {
    MutexLock lock(&mu_);
    TR_RETURN_IF_ERROR(StartWorkers(config_, /*reuse_writer=*/false, /*store_must_open=*/false));
    state_ = "running";
  }
  started_ = true;
  StartStatus();
  size_t buses = 0;
  {
    MutexLock lock(&mu_);
    buses = pollers_.size();
  }
  Log(LogLevel::kInfo, "agent",
      std::string("tagrelay ") + kVersion + " running: gateway " + config_.gateway.id + ", " +
          std::to_string(config_.devices.size()) + " device(s) on " + std::to_string(buses) +
          " bus(es), store " + config_.StorePath() + ", config digest " + config_.digest);
  return Status::Ok();
}

Status Supervisor::StartWorkers(const Config& c, bool reuse_writer, bool store_must_open) {
  const store::StoreOptions store_options = StoreOptionsOf(c);
  if (!reuse_writer || !writer_) {
    // Opens the ring; a corrupt database moved aside becomes an event for the cloud.
    store::StoreOpener open_ring =
        [store_options, data_dir = c.gateway.data_dir, clock = &clock_, holds = &holds_](
            std::vector<store::NewEvent>& events) -> Result<std::unique_ptr<store::RingStore>> {
      TR_RETURN_IF_ERROR(EnsureDirectory(data_dir));
      store::OpenReport report;
      Result<std::unique_ptr<store::RingStore>> ring =
          store::RingStore::Open(store_options, &report, *clock);
      if (!ring.ok()) return ring.status();
      (*ring)->SetHolds(holds);
      if (!report.quarantined.empty()) events.push_back(StoreResetEvent(report, *clock));
      return ring;
    };
    std::vector<store::NewEvent> events;
    Result<std::unique_ptr<store::RingStore>> ring = open_ring(events);
    if (!ring.ok() && store_must_open) return ring.status();
    if (ring.ok()) {
      writer_ =
          std::make_unique<store::StoreWriter>(std::move(ring).value(), store_options, clock_);
      for (store::NewEvent& e : events) writer_->Submit(std::move(e));
    } else {
      // Polling and alarms go on; the writer keeps readings in memory and
      // opens the store once it can (the error is its to log).
      writer_ = std::make_unique<store::StoreWriter>(std::move(open_ring), store_options, clock_);
    }
    writer_->SetCommitListener([this](const store::CommitNews& news) { NotifyUplink(news); });
    // The rules run in the writer: a reload with other rules gets a new writer.
    engine_ = std::make_shared<rules::AlarmEngine>(
        c.alarms, c.counters, clock_,
        [this](const std::string& device) { return LinkDown(device); });
    writer_->SetObserver(engine_.get());
    writer_->Start();
  }
  store::StoreWriter* writer = writer_.get();
  uplink_ = std::make_unique<uplink::Uplink>(
      UplinkOptionsOf(c), std::make_unique<uplink::MosquittoClient>(), store_options.path,
      [writer](store::StoreItem&& item) { writer->Submit(std::move(item)); }, clock_);
  uplink_->SetHolds(&holds_);

  // One low descriptor per bus (and one spare) stays reserved for Modbus, so
  // that libmodbus never has to wait on a descriptor select() cannot hold.
  Status reserved = modbus::LowDescriptors::Instance().Reserve(c.buses.size() + 1);
  if (!reserved.ok()) Log(LogLevel::kWarning, "modbus", reserved.ToString());

  pollers_.clear();
  poller_limits_.clear();
  for (const BusConfig& bus : c.buses) {
    std::vector<modbus::DeviceSpec> devices;
    std::vector<const DeviceConfig*> configs;
    milliseconds shortest_poll{60'000};
    for (const DeviceConfig& d : c.devices) {
      if (d.bus != bus.name) continue;
      devices.push_back(d.Spec());
      configs.push_back(&d);
      shortest_poll = std::min(shortest_poll, d.poll);
      for (const modbus::TagSpec& t : d.tags) {
        if (t.poll.count() > 0) shortest_poll = std::min(shortest_poll, t.poll);
      }
    }
    if (devices.empty()) continue;
    // A full store queue holds a poller back for at most one poll interval;
    // then the batch is dropped and counted.
    auto sink = [writer, shortest_poll, this](ReadingBatch&& b) {
      return writer->SubmitReadings(std::move(b), clock_.mono() + shortest_poll);
    };
    modbus::PollerOptions options;
    options.retries = bus.retries;
    options.backoff_max = bus.backoff_max;
    pollers_.push_back(
        std::make_unique<modbus::ModbusPoller>(bus.name, modbus::MakeTransport(bus.Endpoint()),
                                               std::move(devices), clock_, sink, options));
    poller_limits_.push_back(PollerStallLimit(bus, configs, shortest_poll));
  }
  {
    MutexLock lock(&links_mu_);
    links_.clear();
    for (const auto& p : pollers_) {
      for (size_t i = 0; i < p->device_count(); ++i) links_[p->device(i).id] = {p.get(), i};
    }
    devices_.clear();
    devices_.reserve(c.devices.size());
    for (const DeviceConfig& d : c.devices) {
      const auto it = links_.find(d.id);
      devices_.push_back(DeviceSlot{
          d.id, d.bus,
          it == links_.end() ? nullptr : &it->second.first->counters(it->second.second)});
    }
  }
  // The new pollers count from 0.
  rates_.assign(devices_.size(), Rate{});
  {
    MutexLock lock(&notify_mu_);
    notify_target_ = uplink_.get();
  }
  {
    MutexLock lock(&status_mu_);
    if (status_reader_path_ != store_options.path) {
      status_reader_.reset();  // opened by the status thread once the database exists
      backlog_.reset();
      status_reader_path_ = store_options.path;
      next_backlog_ = MonoTime{};
    }
  }
  uplink_->Start();
  for (auto& p : pollers_) p->Start();
  workers_since_ = clock_.mono();
  return Status::Ok();
}

void Supervisor::NotifyUplink(const store::CommitNews& news) {
  MutexLock lock(&notify_mu_);
  if (notify_target_ != nullptr) notify_target_->NotifyNewData(news);
}

void Supervisor::StopWorkers(bool keep_writer) {
  std::vector<std::unique_ptr<modbus::ModbusPoller>> pollers;
  std::unique_ptr<uplink::Uplink> up;
  std::unique_ptr<store::StoreWriter> writer;
  std::shared_ptr<rules::AlarmEngine> engine;
  {
    MutexLock lock(&mu_);
    pollers = std::move(pollers_);
    pollers_.clear();
    poller_limits_.clear();
    for (DeviceSlot& d : devices_) d.counters = nullptr;
    up = std::move(uplink_);
    if (!keep_writer) {
      writer = std::move(writer_);
      engine = std::move(engine_);  // the writer's observer: it goes after the writer
    }
  }
  {
    // The rules (in the writer) no longer see these pollers' links.
    MutexLock lock(&links_mu_);
    links_.clear();
  }
  for (auto& p : pollers) p->Stop();
  {
    MutexLock lock(&notify_mu_);
    notify_target_ = nullptr;
  }
  if (up) up->Stop();
  if (writer) writer->Stop();
  if (writer && up) {
    Log(LogLevel::kInfo, "agent",
        "stopped: " + std::to_string(writer->counters().rows_committed.load()) +
            " readings stored, " + std::to_string(up->counters().readings_acked.load()) +
            " acknowledged by the broker");
  }
}

bool Supervisor::LinkDown(const std::string& device) const {
  MutexLock lock(&links_mu_);
  auto it = links_.find(device);
  return it != links_.end() &&
         it->second.first->link_state(it->second.second) == modbus::LinkState::kDown;
}

void Supervisor::Stop() {
  if (!started_) return;
  started_ = false;
  {
    MutexLock lock(&mu_);
    state_ = "stopping";
  }
  StopWorkers(/*keep_writer=*/false);
  StopStatus();
}

Status Supervisor::Reload(Config next) {
  if (!started_) return Status::Internal("reload before start");
  if (next.digest == config_.digest) {
    Log(LogLevel::kInfo, "agent", "reload: the config is unchanged; re-reading the key files");
    ReloadKeys();
    return Status::Ok();
  }
  const bool same_store = SameStore(config_, next), same_rules = SameRules(config_, next);
  const bool keep_writer = same_store && same_rules;
  Log(LogLevel::kInfo, "agent",
      "reload: applying " + next.path + " (digest " + config_.digest + " -> " + next.digest +
          (keep_writer ? "); the store stays open"
                       : std::string(!same_store ? "); the store's settings changed"
                                                 : "); the alarm or counter rules changed") +
                             ": the store is committed and reopened"));
  {
    MutexLock lock(&mu_);
    state_ = "reloading";
  }
  StopWorkers(keep_writer);
  Status applied;
  {
    MutexLock lock(&mu_);
    applied = StartWorkers(next, keep_writer, /*store_must_open=*/true);
  }
  if (!applied.ok()) {
    Log(LogLevel::kError, "agent",
        "reload: cannot apply the new config: " + applied.ToString() +
            "; going back to the running config");
    StopWorkers(keep_writer);
    Status back;
    {
      MutexLock lock(&mu_);
      back = StartWorkers(config_, keep_writer, /*store_must_open=*/false);
      state_ = "running";
    }
    if (!back.ok()) {
      return Status::Internal("reload failed (" + applied.message() +
                              ") and the running config cannot be restored: " + back.ToString());
    }
    if (status_server_) status_server_->Refresh();
    return applied;
  }
  const bool status_changed =
      next.status.listen != config_.status.listen || next.status.socket != config_.status.socket;
  {
    MutexLock lock(&mu_);
    config_ = std::move(next);
    state_ = "running";
  }
  if (status_changed) {
    StopStatus();
    StartStatus();
  } else if (status_server_) {
    status_server_->Refresh();
  }
  Log(LogLevel::kInfo, "agent",
      "reload: running with " + std::to_string(config_.devices.size()) +
          " device(s), config "
          "digest " +
          config_.digest);
  return Status::Ok();
}

void Supervisor::ReloadKeys() {
  MutexLock lock(&mu_);
  if (uplink_) uplink_->RequestKeyReload();
}

void Supervisor::StartStatus() {
  status::StatusServerOptions options;
  options.socket_path = config_.status.socket;
  options.listen = config_.status.listen;
  status_server_ = std::make_unique<status::StatusServer>(
      options, [this] { return Collect(); }, clock_, [this] { SamplePollRates(); });
  status_server_->Start();
  if (status_server_->tcp_port() != 0) {
    Log(LogLevel::kInfo, "status",
        "status page on http://" +
            config_.status.listen.substr(0, config_.status.listen.rfind(':')) + ":" +
            std::to_string(status_server_->tcp_port()) + "/");
  }
}

void Supervisor::StopStatus() {
  if (status_server_) status_server_->Stop();
  status_server_.reset();
}

std::shared_ptr<const status::StatusSnapshot> Supervisor::CurrentStatus() {
  return status_server_ ? status_server_->Current() : nullptr;
}

uint16_t Supervisor::status_port() const { return status_server_ ? status_server_->tcp_port() : 0; }

std::vector<WorkerBeat> Supervisor::BeatsLocked() const {
  std::vector<WorkerBeat> beats;
  for (size_t i = 0; i < pollers_.size(); ++i) {
    beats.push_back(
        WorkerBeat{"poller " + pollers_[i]->name(), &pollers_[i]->heartbeat(), poller_limits_[i]});
  }
  if (writer_) beats.push_back(WorkerBeat{"store writer", &writer_->heartbeat(), kStallFloor});
  if (uplink_) beats.push_back(WorkerBeat{"uplink", &uplink_->heartbeat(), kStallFloor});
  return beats;
}

std::vector<status::WorkerStatus> Supervisor::WorkersLocked(MonoTime now) const {
  std::vector<WorkerBeat> beats = BeatsLocked();
  if (status_server_)
    beats.push_back(WorkerBeat{"status", &status_server_->heartbeat(), kStallFloor});
  return CheckWorkers(beats, now, workers_since_);
}

std::vector<status::WorkerStatus> Supervisor::Workers() const {
  MutexLock lock(&mu_);
  return WorkersLocked(clock_.mono());
}

void Supervisor::SamplePollRates() {
  const MonoTime now = clock_.mono();
  MutexLock lock(&mu_);
  for (size_t i = 0; i < devices_.size(); ++i) {
    const modbus::DeviceCounters* c = devices_[i].counters;
    const uint64_t polls = c != nullptr ? c->polls.load(std::memory_order_relaxed) : 0;
    Rate& r = rates_[i];
    if (polls < r.polls || r.at == MonoTime{}) {
      r = Rate{polls, now, 0};
    } else if (now - r.at >= kRateWindow) {
      r.rate =
          static_cast<double>(polls - r.polls) / std::chrono::duration<double>(now - r.at).count();
      r.polls = polls;
      r.at = now;
    }
  }
}

status::StatusSnapshot Supervisor::Collect() {
  status::StatusSnapshot s;
  const MonoTime now = clock_.mono();
  s.taken_ms = clock_.wall_ms();
  s.version = kVersion;
  s.uptime_ms = std::chrono::duration_cast<milliseconds>(now - born_).count();
  std::shared_ptr<const rules::AlarmEngine> engine;
  {
    MutexLock lock(&mu_);
    s.gateway = config_.gateway.id;
    s.config_digest = config_.digest;
    s.state = state_;
    s.uplink.brokers = config_.uplink.urls;
    s.devices.reserve(devices_.size());
    for (size_t i = 0; i < devices_.size(); ++i) {
      status::DeviceStatus& ds = s.devices.emplace_back();
      ds.id = devices_[i].id;
      ds.bus = devices_[i].bus;
      ds.poll_rate = rates_[i].rate;
      const modbus::DeviceCounters* c = devices_[i].counters;
      if (c == nullptr) {
        ds.link = "down";
        continue;
      }
      ds.link = std::string(modbus::LinkStateName(c->link.load()));
      const int64_t good = c->last_good_ms.load();
      if (good > 0) ds.last_good_age_ms = std::max<int64_t>(s.taken_ms - good, 0);
      ds.polls = c->polls.load();
      ds.requests = c->requests.load();
      ds.failed_requests = c->failed_requests.load();
      ds.retries = c->retries.load();
      ds.timeouts = c->timeouts.load();
      ds.crc_errors = c->crc_errors.load();
      ds.bad_frames = c->bad_frames.load();
      ds.exceptions = c->exceptions.load();
      ds.overruns = c->overruns.load();
      ds.dropped_batches = c->dropped_batches.load();
    }
    if (writer_) {
      const store::WriterCounters& w = writer_->counters();
      const store::RingUsage u = writer_->usage();
      s.store.max_bytes = u.max_bytes;
      s.store.db_bytes = u.db_bytes;
      s.store.wal_bytes = u.wal_bytes;
      s.store.readings = u.readings;
      s.store.evicted = u.evicted_undelivered;
      s.store.rows_committed = w.rows_committed.load();
      s.store.commits = w.commits.load();
      s.store.failed_commits = w.failed_commits.load();
      s.store.lost_in_memory = w.lost_in_memory.load();
      s.store.failing = w.failing.load();
      s.store.open = w.open.load();
      s.store.in_memory = w.pending_readings.load();
    }
    if (uplink_) {
      const uplink::UplinkCounters& u = uplink_->counters();
      s.uplink.connected = u.connected.load();
      s.uplink.connects = u.connects.load();
      s.uplink.connection_failures = u.connection_failures.load();
      s.uplink.batches_sent = u.batches_sent.load();
      s.uplink.batches_refused = u.batches_refused.load();
      s.uplink.readings_sent = u.readings_sent.load();
      s.uplink.readings_acked = u.readings_acked.load();
      s.uplink.payload_bytes_sent = u.payload_bytes_sent.load();
      s.uplink.inflight = u.inflight.load();
      s.uplink.devices_held = u.devices_held.load();
    }
    s.workers = WorkersLocked(now);
    engine = engine_;
  }
  if (engine) {
    for (const rules::AlarmEngine::ActiveAlarm& a : engine->ActiveAlarms()) {
      s.alarms.push_back(
          status::ActiveAlarm{a.alarm, a.device, a.tag, a.severity, a.message, a.since_ms});
    }
  }

  MutexLock lock(&status_mu_);
  if (!status_reader_path_.empty() && now >= next_backlog_) {
    next_backlog_ = now + kBacklogEvery;
    if (!status_reader_) {
      // The writer may open (create) the store only later; the writer reports why.
      Result<store::OutboxReader> r = store::OutboxReader::Open(status_reader_path_);
      if (r.ok()) status_reader_.emplace(std::move(r).value());
    }
    if (status_reader_) {
      Result<store::BacklogSummary> b = status_reader_->Summary();
      if (b.ok()) {
        backlog_ = std::move(b).value();  // its devices in name order, for the lookups below
      } else {
        Log(LogLevel::kWarning, "status", "backlog query: " + b.status().ToString());
      }
    }
  }
  if (backlog_) {
    s.store.backlog_known = true;
    s.store.backlog_readings = backlog_->undelivered_readings;
    s.store.backlog_events = backlog_->undelivered_events;
    if (backlog_->oldest_undelivered_ts_ms > 0) {
      s.store.oldest_unsent_age_ms =
          std::max<int64_t>(s.taken_ms - backlog_->oldest_undelivered_ts_ms, 0);
    }
    const std::vector<store::BacklogSummary::Device>& backlog = backlog_->devices;
    for (status::DeviceStatus& d : s.devices) {
      const auto b =
          std::lower_bound(backlog.begin(), backlog.end(), d.id,
                           [](const auto& x, const std::string& id) { return x.name < id; });
      if (b == backlog.end() || b->name != d.id) continue;
      d.backlog = b->undelivered;
      d.lost = b->lost;
    }
  }
  return s;
}

}  // namespace tagrelay
