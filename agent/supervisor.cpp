#include "agent/supervisor.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "agent/core/json_writer.h"
#include "agent/core/log.h"
#include "agent/rules/engine.h"
#include "agent/uplink/mosquitto_client.h"
#include "agent/uplink/uplink.h"
#include "agent/version.h"
#include "drivers/modbus/libmodbus_transport.h"
#include "drivers/modbus/low_fd.h"
#include "drivers/modbus/poller.h"
#include "store/outbox_reader.h"
#include "store/ring_store.h"
#include "store/store_writer.h"

namespace tagrelay {
namespace {

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
    for (const modbus::TagSpec& t : d.tags) {
      u.tags.push_back(
          uplink::TagInfo{t.name, std::string(modbus::DataTypeName(t.type)), t.unit, {}});
    }
    o.devices.push_back(std::move(u));
  }
  o.version = kVersion;
  o.config_digest = c.digest;
  return o;
}

}  // namespace

Supervisor::Supervisor(Config config, const Clock& clock)
    : config_(std::move(config)), clock_(clock) {}

Supervisor::~Supervisor() { Stop(); }

Status Supervisor::Start() {
  TR_RETURN_IF_ERROR(EnsureDirectory(config_.gateway.data_dir));
  const store::StoreOptions store_options = StoreOptionsOf(config_);
  store::OpenReport report;
  Result<std::unique_ptr<store::RingStore>> ring =
      store::RingStore::Open(store_options, &report, clock_);
  if (!ring.ok()) return ring.status();
  (*ring)->SetHolds(&holds_);
  Result<store::OutboxReader> reader = store::OutboxReader::Open(store_options.path);
  if (!reader.ok()) return reader.status().WithContext("open store reader " + store_options.path);

  writer_ = std::make_unique<store::StoreWriter>(std::move(ring).value(), store_options);
  store::StoreWriter* writer = writer_.get();
  uplink_ = std::make_unique<uplink::Uplink>(
      UplinkOptionsOf(config_), std::make_unique<uplink::MosquittoClient>(),
      std::move(reader).value(),
      [writer](store::StoreItem&& item) { writer->Submit(std::move(item)); }, clock_);
  uplink_->SetHolds(&holds_);
  uplink::Uplink* up = uplink_.get();
  writer_->SetCommitListener([up] { up->NotifyNewData(); });
  engine_ = std::make_unique<rules::AlarmEngine>(
      config_.alarms, config_.counters, clock_,
      [this](const std::string& device) { return LinkDown(device); });
  writer_->SetObserver(engine_.get());

  // One low descriptor per bus (and one spare) stays reserved for Modbus, so
  // that libmodbus never has to wait on a descriptor select() cannot hold.
  Status reserved = modbus::LowDescriptors::Instance().Reserve(config_.buses.size() + 1);
  if (!reserved.ok()) Log(LogLevel::kWarning, "modbus", reserved.ToString());

  for (const BusConfig& bus : config_.buses) {
    std::vector<modbus::DeviceSpec> devices;
    std::chrono::milliseconds shortest_poll{60'000};
    for (const DeviceConfig& d : config_.devices) {
      if (d.bus != bus.name) continue;
      devices.push_back(d.Spec());
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
  }

  if (!report.quarantined.empty()) {
    // A gateway-level event for the cloud; the store logged the details.
    std::string body;
    JsonWriter w(&body);
    w.BeginObject();
    w.Key("kind").String("store_reset");
    w.Key("ts").Int(clock_.wall_ms());
    w.Key("reason").String("corrupt");
    w.Key("detail").String(report.corruption);
    w.Key("moved_to").String(report.quarantined);
    w.EndObject();
    writer_->Submit(
        store::NewEvent{std::string(store::kStreamEvents), "", clock_.wall_ms(), std::move(body)});
  }
  {
    MutexLock lock(&links_mu_);
    links_.clear();
    for (const auto& p : pollers_) {
      for (size_t i = 0; i < p->device_count(); ++i) links_[p->device(i).id] = {p.get(), i};
    }
  }
  writer_->Start();
  uplink_->Start();
  for (auto& p : pollers_) p->Start();
  started_ = true;
  Log(LogLevel::kInfo, "agent",
      std::string("tagrelay ") + kVersion + " running: gateway " + config_.gateway.id + ", " +
          std::to_string(config_.devices.size()) + " device(s) on " +
          std::to_string(pollers_.size()) + " bus(es), store " + store_options.path +
          ", config digest " + config_.digest);
  return Status::Ok();
}

void Supervisor::ReloadKeys() {
  if (uplink_) uplink_->RequestKeyReload();
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
  for (auto& p : pollers_) p->Stop();
  uplink_->Stop();
  writer_->Stop();
  const auto& w = writer_->counters();
  Log(LogLevel::kInfo, "agent",
      "stopped: " + std::to_string(w.rows_committed.load()) + " readings stored, " +
          std::to_string(uplink_->counters().readings_acked.load()) +
          " acknowledged by the broker");
}

}  // namespace tagrelay
