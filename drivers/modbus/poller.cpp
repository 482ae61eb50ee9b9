#include "drivers/modbus/poller.h"

#include <cmath>
#include <limits>
#include <span>
#include <utility>

#include "agent/core/log.h"
#include "drivers/modbus/codec.h"

namespace tagrelay::modbus {
namespace {

constexpr std::chrono::milliseconds kBackoffFirst{500};
constexpr std::chrono::milliseconds kBackoffCap{30000};

}  // namespace

ModbusPoller::ModbusPoller(std::string name, std::unique_ptr<ModbusTransport> transport,
                           std::vector<DeviceSpec> devices, const Clock& clock, ReadingSink sink)
    : name_(std::move(name)),
      transport_(std::move(transport)),
      clock_(clock),
      sink_(std::move(sink)) {
  const MonoTime start = clock_.mono();
  for (DeviceSpec& spec : devices) {
    DeviceState d;
    d.plan = PlanRequests(spec.tags);
    d.last_sent.assign(spec.tags.size(), std::numeric_limits<double>::quiet_NaN());
    d.counters = std::make_unique<DeviceCounters>();
    schedule_.Add(start, spec.poll);
    d.spec = std::move(spec);
    devices_.push_back(std::move(d));
  }
}

ModbusPoller::~ModbusPoller() { Stop(); }

void ModbusPoller::Start() {
  thread_ = std::thread([this] { Run(); });
}

void ModbusPoller::Stop() {
  stop_.Request();
  if (thread_.joinable()) thread_.join();
}

void ModbusPoller::Run() {
  while (!stop_.requested()) {
    const MonoTime next = RunDue();
    stop_.WaitUntil(next);
  }
  transport_->Close();
}

MonoTime ModbusPoller::RunDue() {
  if (devices_.empty()) return MonoTime::max();
  for (;;) {
    const size_t i = schedule_.Earliest();
    const MonoTime due = schedule_.next_due(i);
    if (due > clock_.mono() || stop_.requested()) return due;
    PollDevice(devices_[i]);
    const uint64_t missed = schedule_.Complete(i, clock_.mono());
    if (missed > 0) devices_[i].counters->overruns += missed;
  }
}

bool ModbusPoller::EnsureConnected() {
  if (transport_->connected()) return true;
  const MonoTime now = clock_.mono();
  if (now < retry_at_) return false;
  Status s = transport_->Connect();
  if (s.ok()) {
    if (connect_logged_)
      Log(LogLevel::kInfo, "modbus", name_ + ": connected to " + transport_->Describe());
    connect_logged_ = false;
    backoff_ = std::chrono::milliseconds(0);
    return true;
  }
  backoff_ = backoff_.count() == 0 ? kBackoffFirst : std::min(backoff_ * 2, kBackoffCap);
  retry_at_ = now + backoff_;
  if (!connect_logged_) {
    Log(LogLevel::kWarning, "modbus",
        name_ + ": cannot connect to " + transport_->Describe() + ": " + s.ToString() +
            "; retrying with backoff up to " + std::to_string(kBackoffCap.count() / 1000) + "s");
    connect_logged_ = true;
  }
  return false;
}

void ModbusPoller::PollDevice(DeviceState& d) {
  ++d.counters->polls;
  std::vector<Reading> readings;
  readings.reserve(d.spec.tags.size());
  std::vector<uint16_t> regs;
  Status first_error;

  for (const ReadRequest& req : d.plan) {
    Status s = EnsureConnected() ? Status::Ok() : Status::Unavailable("not-connected");
    if (s.ok()) {
      regs.assign(req.count, 0);
      s = transport_->ReadRegisters(d.spec.unit_id, req.table, req.address, req.count, regs.data());
    }
    const int64_t ts = clock_.wall_ms();
    if (!s.ok()) {
      ++d.counters->failed_requests;
      if (first_error.ok()) first_error = s;
      for (size_t t : req.tags) {
        Reading bad = Reading::Bad(d.spec.tags[t].name, ts, s.message());
        PassesDeadband(d, t, bad);  // always true for a bad reading; resets the band
        readings.push_back(std::move(bad));
      }
      continue;
    }
    for (size_t t : req.tags) {
      const TagSpec& tag = d.spec.tags[t];
      std::span<const uint16_t> span(regs.data() + (tag.address - req.address),
                                     RegisterCount(tag.type));
      Result<Value> v = DecodeTag(tag, span);
      Reading r = v.ok() ? Reading::Good(tag.name, ts, std::move(v).value())
                         : Reading::Bad(tag.name, ts, v.status().message());
      if (r.quality == Quality::kGood) d.counters->last_good_ms = ts;
      if (PassesDeadband(d, t, r)) readings.push_back(std::move(r));
    }
  }

  if (!first_error.ok() && d.link_ok) {
    LogDevice(LogLevel::kWarning, "modbus", d.spec.id,
              "read failed: " + first_error.message() + " (" + transport_->Describe() + ")");
  } else if (first_error.ok() && !d.link_ok) {
    LogDevice(LogLevel::kInfo, "modbus", d.spec.id, "reads ok again");
  }
  d.link_ok = first_error.ok();
  Emit(d, std::move(readings));
}

bool ModbusPoller::PassesDeadband(DeviceState& d, size_t tag, const Reading& r) {
  const double band = d.spec.tags[tag].deadband;
  double x = std::numeric_limits<double>::quiet_NaN();
  if (r.quality == Quality::kGood) {
    if (const auto* i = std::get_if<int64_t>(&r.value)) x = static_cast<double>(*i);
    if (const auto* u = std::get_if<uint64_t>(&r.value)) x = static_cast<double>(*u);
    if (const auto* f = std::get_if<double>(&r.value)) x = *f;
  }
  double& last = d.last_sent[tag];
  // Bad readings always pass and reset the band, so the first good value after them is sent.
  if (band > 0.0 && !std::isnan(x) && !std::isnan(last) && std::fabs(x - last) < band) return false;
  last = x;
  return true;
}

void ModbusPoller::Emit(DeviceState& d, std::vector<Reading>&& readings) {
  if (readings.empty()) return;
  ReadingBatch batch{d.spec.id, std::move(readings)};
  if (!sink_(std::move(batch))) {
    const uint64_t n = ++d.counters->dropped_batches;
    if ((n & (n - 1)) == 0) {  // 1, 2, 4, 8, ...: visible, but no flood
      LogDevice(LogLevel::kError, "modbus", d.spec.id,
                "store queue full: dropped " + std::to_string(n) + " batch(es) so far");
    }
  }
}

}  // namespace tagrelay::modbus
