#include "drivers/modbus/poller.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <span>
#include <utility>

#include "agent/core/log.h"
#include "agent/core/thread_name.h"
#include "drivers/modbus/codec.h"

namespace tagrelay::modbus {
namespace {

bool IsException(const Status& s) { return s.message().starts_with("exception:"); }

// A valid answer never came: the device may be gone, so the rest of its
// requests in this poll would only cost more timeouts.
// Exceptions 10 and 11 come from a gateway in front of the device: no path
// to it, or it did not answer the gateway (which says so after a timeout of
// its own). For the device they mean no answer, like a timeout.
bool GatewayNoAnswer(const Status& s) {
  return s.message() == "exception:10" || s.message() == "exception:11";
}

bool NoAnswer(const Status& s) {
  return s.code() == StatusCode::kTimeout || s.code() == StatusCode::kUnavailable ||
         s.code() == StatusCode::kIOError || GatewayNoAnswer(s);
}

bool Retryable(const Status& s) {
  return s.code() == StatusCode::kTimeout || s.message() == "crc" || s.message() == "bad-frame";
}

bool PowerOfTwo(uint64_t n) { return n != 0 && (n & (n - 1)) == 0; }

std::string Seconds(std::chrono::milliseconds d) {
  const auto ms = d.count();
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

std::string Describe(const ReadRequest& r) {
  return std::string(TableName(r.table)) + " " + std::to_string(r.address) + "+" +
         std::to_string(r.count);
}

}  // namespace

std::string_view LinkStateName(LinkState s) {
  switch (s) {
    case LinkState::kOk: return "ok";
    case LinkState::kDegraded: return "degraded";
    case LinkState::kDown: return "down";
  }
  return "?";
}

ModbusPoller::ModbusPoller(std::string name, std::unique_ptr<ModbusTransport> transport,
                           std::vector<DeviceSpec> devices, const Clock& clock, ReadingSink sink,
                           PollerOptions options)
    : name_(std::move(name)),
      transport_(std::move(transport)),
      clock_(clock),
      sink_(std::move(sink)),
      options_(options) {
  const MonoTime start = clock_.mono();
  for (DeviceSpec& spec : devices) {
    DeviceState d;
    // One poll group per distinct interval, in the order the tags first use it.
    std::map<int64_t, std::vector<size_t>> by_interval;
    std::vector<int64_t> order;
    for (size_t t = 0; t < spec.tags.size(); ++t) {
      const auto interval = spec.tags[t].poll.count() > 0 ? spec.tags[t].poll : spec.poll;
      auto [it, added] = by_interval.try_emplace(interval.count());
      if (added) order.push_back(interval.count());
      it->second.push_back(t);
    }
    for (int64_t ms : order) {
      Group g;
      g.interval = std::chrono::milliseconds(ms);
      g.plan = PlanRequests(spec.tags, by_interval[ms], spec.limits);
      g.entry = schedule_.Add(start, g.interval);
      entries_.emplace_back(devices_.size(), d.groups.size());
      d.groups.push_back(std::move(g));
    }
    d.last_sent.assign(spec.tags.size(), std::numeric_limits<double>::quiet_NaN());
    d.refused.assign(spec.tags.size(), false);
    d.counters = std::make_unique<DeviceCounters>();
    d.spec = std::move(spec);
    CountPlan(d);
    devices_.push_back(std::move(d));
  }
  // The read buffers fit the largest request planned (a split only makes requests smaller), not
  // the largest Modbus allows: that was 2,250 bytes per bus, most of them for bits never read.
  size_t max_registers = 0;
  size_t max_bits = 0;
  for (const DeviceState& d : devices_) {
    for (const Group& g : d.groups) {
      for (const ReadRequest& r : g.plan) {
        size_t& max = IsBitTable(r.table) ? max_bits : max_registers;
        max = std::max<size_t>(max, r.count);
      }
    }
  }
  regs_.resize(max_registers);
  bits_.resize(max_bits);
}

ModbusPoller::~ModbusPoller() { Stop(); }

void ModbusPoller::Start() {
  thread_ = std::thread([this] {
    NameThisThread("poll " + name_);
    Run();
  });
}

void ModbusPoller::Stop() {
  stop_.Request();
  if (thread_.joinable()) thread_.join();
}

void ModbusPoller::Run() {
  while (!stop_.requested()) {
    const MonoTime next = RunDue();
    stop_.WaitUntil(std::min(next, clock_.mono() + kHeartbeatEvery));
  }
  transport_->Close();
}

MonoTime ModbusPoller::RunDue() {
  if (entries_.empty()) return MonoTime::max();
  std::vector<size_t> due_groups;
  for (;;) {
    const size_t i = schedule_.Earliest();
    const MonoTime due = schedule_.next_due(i);
    const MonoTime now = clock_.mono();
    heartbeat_.Beat(now);
    if (due > now || stop_.requested()) return due;
    DeviceState& d = devices_[entries_[i].first];
    due_groups.clear();
    for (size_t g = 0; g < d.groups.size(); ++g) {
      if (schedule_.next_due(d.groups[g].entry) <= now) due_groups.push_back(g);
    }
    PollDevice(d, due_groups);
    const MonoTime end = clock_.mono();
    for (size_t g : due_groups) {
      const uint64_t missed = schedule_.Complete(d.groups[g].entry, end);
      if (missed == 0) continue;
      const uint64_t total = d.counters->overruns += missed;
      if (PowerOfTwo(total) || missed >= total) LogOverrun(d, d.groups[g], total);
    }
  }
}

void ModbusPoller::LogOverrun(const DeviceState& d, const Group& g, uint64_t total) {
  LogDevice(LogLevel::kWarning, "modbus", d.spec.id,
            "poll took longer than its interval of " + Seconds(g.interval) + ": " +
                std::to_string(total) +
                " slot(s) skipped so far (slow device, timeouts, or too many devices on " + name_ +
                ")");
}

bool ModbusPoller::EnsureConnected() {
  if (transport_->connected()) return true;
  const MonoTime now = clock_.mono();
  if (now < retry_at_) return false;
  Status s = transport_->Connect();
  if (s.ok()) {
    if (connect_logged_) LogConnected();
    connect_logged_ = false;
    backoff_ = std::chrono::milliseconds(0);
    return true;
  }
  backoff_ =
      backoff_.count() == 0 ? options_.backoff_first : std::min(backoff_ * 2, options_.backoff_max);
  retry_at_ = now + backoff_;
  if (!connect_logged_) {
    LogConnectFailed();
    connect_logged_ = true;
  }
  return false;
}

void ModbusPoller::LogConnected() {
  Log(LogLevel::kInfo, "modbus", name_ + ": connected to " + transport_->Describe());
}

void ModbusPoller::LogConnectFailed() {
  Log(LogLevel::kWarning, "modbus",
      name_ + ": cannot connect to " + transport_->Describe() + ": " + transport_->last_error() +
          "; retrying with backoff up to " + Seconds(options_.backoff_max));
}

void ModbusPoller::PollDevice(DeviceState& d, const std::vector<size_t>& groups) {
  ++d.counters->polls;
  std::vector<Reading> readings;
  readings.reserve(d.spec.tags.size());
  const bool down = d.counters->link.load() == LinkState::kDown;

  if (down && d.retry_at > clock_.mono()) {
    // Backed off: report the device as it was last seen, without asking it.
    ++d.counters->backed_off_polls;
    const int64_t ts = clock_.wall_ms();
    for (size_t g : groups) {
      for (const ReadRequest& req : d.groups[g].plan) {
        for (size_t t : req.tags) {
          Reading bad = Reading::Bad(d.spec.tags[t].name, ts, d.last_failure);
          PassesDeadband(d, t, bad);
          readings.push_back(std::move(bad));
        }
      }
    }
    Emit(d, std::move(readings));
    return;
  }

  PollOutcome outcome;
  for (size_t g : groups) PollGroup(d, d.groups[g], &readings, &outcome, down);
  UpdateLink(d, outcome);
  Emit(d, std::move(readings));
}

void ModbusPoller::PollGroup(DeviceState& d, Group& g, std::vector<Reading>* out,
                             PollOutcome* outcome, bool probing) {
  const auto mark_bad = [&](const ReadRequest& req, const std::string& err) {
    ++d.counters->failed_requests;
    const int64_t ts = clock_.wall_ms();
    for (size_t t : req.tags) {
      Reading bad = Reading::Bad(d.spec.tags[t].name, ts, err);
      PassesDeadband(d, t, bad);  // always true for a bad reading; resets the band
      out->push_back(std::move(bad));
    }
  };
  for (size_t k = 0; k < g.plan.size();) {
    const ReadRequest& req = g.plan[k];
    if (!outcome->abort.ok()) {
      mark_bad(req, outcome->abort.message());
      ++k;
      continue;
    }
    Status s = ReadWithRetries(d, req, probing);
    if (s.ok()) {
      outcome->answered = true;
      Decode(d, req, out);
      ++k;
      continue;
    }
    if (s.message() == "exception:2" && SplitRefused(d, g, k)) {
      continue;  // read the first half now, then the second
    }
    if (IsException(s) && !GatewayNoAnswer(s)) {
      outcome->answered = true;  // the device is there; it refused this request
    } else {
      outcome->failed = true;
      if (outcome->failure.empty()) {
        outcome->failure = s.message();
        outcome->detail = transport_->last_error();
      }
    }
    if (NoAnswer(s)) {
      outcome->abort = s;
      if (s.code() == StatusCode::kUnavailable) outcome->endpoint_down = true;
    }
    mark_bad(req, s.message());
    ++k;
  }
}

bool ModbusPoller::SplitRefused(DeviceState& d, Group& g, size_t k) {
  const ReadRequest& req = g.plan[k];
  std::vector<ReadRequest> halves;
  if (SplitRequest(req, d.spec.tags, &halves)) {
    ++d.counters->splits;
    LogDevice(LogLevel::kInfo, "modbus", d.spec.id,
              "request " + Describe(req) +
                  " refused with exception 2 (illegal data address): "
                  "split into " +
                  Describe(halves[0]) + " and " + Describe(halves[1]));
    g.plan[k] = std::move(halves[0]);
    g.plan.insert(g.plan.begin() + static_cast<std::ptrdiff_t>(k) + 1, std::move(halves[1]));
    CountPlan(d);
    return true;
  }
  for (size_t t : req.tags) {
    if (d.refused[t]) continue;
    d.refused[t] = true;
    const TagSpec& tag = d.spec.tags[t];
    Log(LogEvent{LogLevel::kWarning, "modbus", d.spec.id, tag.name,
                 "the device refuses " + std::string(TableName(tag.table)) + " address " +
                     std::to_string(tag.address) +
                     " (exception 2, illegal data address): check the tag's address"});
  }
  return false;
}

Status ModbusPoller::ReadWithRetries(DeviceState& d, const ReadRequest& req, bool probing) {
  DeviceCounters& c = *d.counters;
  const int attempts = probing ? 1 : 1 + options_.retries;
  Status s;
  for (int a = 0; a < attempts; ++a) {
    if (!EnsureConnected()) return Status::Unavailable("not-connected");
    if (a > 0) ++c.retries;
    ++c.requests;
    s = ReadTable(*transport_, d.spec.unit_id, req.table, req.address, req.count, regs_.data(),
                  bits_.data());
    if (s.ok()) return s;
    if (s.code() == StatusCode::kTimeout) {
      ++c.timeouts;
    } else if (s.message() == "crc") {
      ++c.crc_errors;
    } else if (s.message() == "bad-frame") {
      ++c.bad_frames;
    } else if (IsException(s)) {
      ++c.exceptions;
    }
    if (!Retryable(s)) return s;
  }
  return s;
}

void ModbusPoller::Decode(DeviceState& d, const ReadRequest& req, std::vector<Reading>* out) {
  const int64_t ts = clock_.wall_ms();
  for (size_t t : req.tags) {
    const TagSpec& tag = d.spec.tags[t];
    const size_t offset = tag.address - req.address;
    // Built in place in `out` (the hot path of a poll), taken back if the
    // deadband holds it.
    if (IsBitTable(req.table)) {
      out->push_back(Reading{tag.name, ts, DecodeBitValue(bits_[offset]), Quality::kGood, {}});
    } else {
      Result<Value> v =
          DecodeTag(tag, std::span<const uint16_t>(regs_.data() + offset, ElementCount(tag)));
      if (v.ok()) {
        out->push_back(Reading{tag.name, ts, std::move(v).value(), Quality::kGood, {}});
      } else {
        out->push_back(Reading::Bad(tag.name, ts, v.status().message()));
      }
    }
    const Reading& r = out->back();
    if (r.quality == Quality::kGood) d.counters->last_good_ms = ts;
    if (!PassesDeadband(d, t, r)) out->pop_back();
  }
}

void ModbusPoller::UpdateLink(DeviceState& d, const PollOutcome& outcome) {
  const LinkState before = d.counters->link.load();
  LinkState after = LinkState::kOk;
  if (!outcome.failed) {
    d.failed_polls = 0;
    d.backoff = std::chrono::milliseconds(0);
  } else if (outcome.answered) {
    after = LinkState::kDegraded;
    d.failed_polls = 0;
    d.backoff = std::chrono::milliseconds(0);
  } else {
    ++d.failed_polls;
    d.last_failure = outcome.failure;
    if (outcome.endpoint_down) {
      after = LinkState::kDown;  // the endpoint's reconnect backoff paces the attempts
      d.retry_at = MonoTime{};
    } else if (d.failed_polls >= options_.down_after) {
      after = LinkState::kDown;
      d.backoff = d.backoff.count() == 0 ? options_.backoff_first
                                         : std::min(d.backoff * 2, options_.backoff_max);
      d.retry_at = clock_.mono() + d.backoff;
    } else {
      after = LinkState::kDegraded;
    }
  }
  d.counters->link = after;
  if (after == before) return;
  const std::string where =
      " (" + transport_->Describe() + (outcome.detail.empty() ? "" : ": " + outcome.detail) + ")";
  if (after == LinkState::kOk) {
    LogDevice(LogLevel::kInfo, "modbus", d.spec.id, "link ok again");
  } else if (after == LinkState::kDown && !outcome.endpoint_down) {
    LogDevice(LogLevel::kWarning, "modbus", d.spec.id,
              "link down: no valid answer in " + std::to_string(d.failed_polls) +
                  " polls in a row, last: " + outcome.failure + where +
                  "; trying again with backoff up to " + Seconds(options_.backoff_max));
  } else if (before == LinkState::kOk) {
    LogDevice(LogLevel::kWarning, "modbus", d.spec.id, "read failed: " + outcome.failure + where);
  }
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
    if (PowerOfTwo(n)) {  // 1, 2, 4, 8, ...: visible, but no flood
      LogDevice(LogLevel::kError, "modbus", d.spec.id,
                "store queue full: dropped " + std::to_string(n) + " batch(es) so far");
    }
  }
}

void ModbusPoller::CountPlan(DeviceState& d) {
  uint32_t n = 0;
  for (const Group& g : d.groups) n += static_cast<uint32_t>(g.plan.size());
  d.counters->requests_per_cycle = n;
}

}  // namespace tagrelay::modbus
