#include "agent/rules/engine.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <type_traits>

#include "agent/core/log.h"
#include "agent/rules/records.h"

namespace tagrelay::rules {
namespace {

// A value as a double for the level, rate and counter rules; nullopt if it has none.
std::optional<double> AsNumber(const Value& v) {
  if (const auto* d = std::get_if<double>(&v)) return *d;
  if (const auto* i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
  if (const auto* u = std::get_if<uint64_t>(&v)) return static_cast<double>(*u);
  if (const auto* b = std::get_if<bool>(&v)) return *b ? 1.0 : 0.0;
  return std::nullopt;
}

bool SameValue(const Value& a, const Value& b) {
  if (std::holds_alternative<std::string>(a) || std::holds_alternative<std::string>(b)) {
    return a == b;
  }
  if (std::holds_alternative<bool>(a) != std::holds_alternative<bool>(b)) return false;
  const std::optional<double> x = AsNumber(a), y = AsNumber(b);
  return x && y && *x == *y;
}

std::string Format(double d) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, d);
  return std::string(buf, r.ptr);
}

std::string Format(const Value& v) {
  return std::visit(
      [](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::monostate>) {
          return "-";
        } else if constexpr (std::is_same_v<T, bool>) {
          return x ? "true" : "false";
        } else if constexpr (std::is_same_v<T, double>) {
          return Format(x);
        } else if constexpr (std::is_same_v<T, std::string>) {
          return x;
        } else {
          return std::to_string(x);
        }
      },
      v);
}

std::string AlarmKey(const std::string& id) { return "alarm/" + id; }
std::string CounterKey(const std::string& id) { return "counter/" + id; }

}  // namespace

AlarmEngine::AlarmEngine(std::vector<AlarmRule> alarms, std::vector<CounterRule> counters,
                         const Clock& clock, LinkDown link_down)
    : clock_(clock), link_down_(std::move(link_down)) {
  const int64_t now = clock_.wall_ms();
  for (AlarmRule& r : alarms) {
    Alarm a;
    a.last_good_ms = now;  // stale counts from the start until a good value comes
    a.rule = std::move(r);
    alarms_.push_back(std::move(a));
    const Alarm& added = alarms_.back();
    if (!added.rule.tag.empty()) {
      by_device_[added.rule.device].alarms[added.rule.tag].push_back(alarms_.size() - 1);
    }
  }
  for (CounterRule& r : counters) {
    Counter c;
    c.rule = std::move(r);
    counters_.push_back(std::move(c));
    by_device_[counters_.back().rule.device].counters[counters_.back().rule.tag].push_back(
        counters_.size() - 1);
  }
  PublishViews();
}

void AlarmEngine::Restore(const std::map<std::string, std::string>& state) {
  for (Alarm& a : alarms_) {
    auto it = state.find(AlarmKey(a.rule.id));
    if (it == state.end()) continue;
    std::istringstream in(it->second);
    std::string word;
    int64_t since = 0;
    if (in >> word >> since && word == "active") {
      a.active = true;  // not raised again; cleared once its condition is gone
      a.since_ms = since;
    }
  }
  for (Counter& c : counters_) {
    auto it = state.find(CounterKey(c.rule.id));
    if (it == state.end()) continue;
    std::istringstream in(it->second);
    int64_t run_ms = 0, starts = 0, stopped_since = 0, last_snapshot = 0;
    int running = 0;
    if (in >> run_ms >> starts >> running >> stopped_since >> last_snapshot && run_ms >= 0 &&
        starts >= 0) {
      c.run_ms = run_ms;
      c.starts = starts;
      c.running = running != 0;
      c.known = true;
      c.stopped_since_ms = stopped_since;
      c.last_snapshot_ms = last_snapshot;
      c.last_sample_ms = 0;  // the time the agent was down is not counted
    }
  }
  views_dirty_ = true;
  PublishViews();
}

void AlarmEngine::OnReadings(const store::SequencedBatch& batch,
                             std::vector<store::NewEvent>& out) {
  auto dev = by_device_.find(batch.device);
  if (dev == by_device_.end()) return;
  for (const Reading& r : batch.readings) {
    if (auto a = dev->second.alarms.find(r.tag); a != dev->second.alarms.end()) {
      for (size_t i : a->second) Evaluate(alarms_[i], r, out);
    }
    if (auto c = dev->second.counters.find(r.tag); c != dev->second.counters.end()) {
      for (size_t i : c->second) Sample(counters_[i], r, out);
    }
  }
  // The views for status are refreshed on the next tick, not on every poll.
}

void AlarmEngine::Evaluate(Alarm& a, const Reading& r, std::vector<store::NewEvent>& out) {
  evaluations_.fetch_add(1, std::memory_order_relaxed);
  if (r.quality != Quality::kGood) return;  // says nothing about the value
  const AlarmRule& rule = a.rule;
  a.last_value = r.value;
  const std::optional<double> x = AsNumber(r.value);
  switch (rule.kind) {
    case AlarmKind::kHigh:
    case AlarmKind::kHighHigh:
      if (!x) return;
      a.raise_cond = *x > rule.limit;
      a.clear_cond = *x < rule.limit - rule.deadband || (rule.deadband == 0 && *x <= rule.limit);
      break;
    case AlarmKind::kLow:
    case AlarmKind::kLowLow:
      if (!x) return;
      a.raise_cond = *x < rule.limit;
      a.clear_cond = *x > rule.limit + rule.deadband || (rule.deadband == 0 && *x >= rule.limit);
      break;
    case AlarmKind::kEquals:
      a.raise_cond = SameValue(r.value, rule.equals);
      a.clear_cond = !a.raise_cond;
      break;
    case AlarmKind::kRate: {
      if (!x) return;
      a.samples.emplace_back(r.ts_ms, *x);
      while (!a.samples.empty() && r.ts_ms - a.samples.front().first > rule.window.count()) {
        a.samples.pop_front();
      }
      const int64_t span = a.samples.back().first - a.samples.front().first;
      if (span <= 0 || span * 2 < rule.window.count()) {
        a.raise_cond = a.clear_cond = false;  // not enough history to tell
        return;
      }
      const double rate = std::fabs(a.samples.back().second - a.samples.front().second) /
                          (static_cast<double>(span) / 1000.0);
      a.raise_cond = rate > rule.limit;
      a.clear_cond =
          rate < rule.limit - rule.deadband || (rule.deadband == 0 && rate <= rule.limit);
      break;
    }
    case AlarmKind::kStale:
      a.last_good_ms = r.ts_ms;
      a.raise_cond = false;
      a.clear_cond = true;
      break;
    case AlarmKind::kCommLoss: return;  // ticks watch the link
  }
  Step(a, r.ts_ms, out);
}

void AlarmEngine::Step(Alarm& a, int64_t t, std::vector<store::NewEvent>& out) {
  if (!a.active) {
    a.clear_pending = -1;
    if (!a.raise_cond) {
      a.raise_pending = -1;
      return;
    }
    if (a.raise_pending < 0) a.raise_pending = t;
    const int64_t due = a.raise_pending + a.rule.on_delay.count();
    if (t >= due) Transition(a, true, due, out);
  } else {
    a.raise_pending = -1;
    if (!a.clear_cond) {
      a.clear_pending = -1;
      return;
    }
    if (a.clear_pending < 0) a.clear_pending = t;
    const int64_t due = a.clear_pending + a.rule.off_delay.count();
    if (t >= due) Transition(a, false, due, out);
  }
}

void AlarmEngine::Transition(Alarm& a, bool raise, int64_t t, std::vector<store::NewEvent>& out) {
  a.active = raise;
  a.raise_pending = a.clear_pending = -1;
  if (raise) a.since_ms = t;
  a.dirty = true;
  views_dirty_ = true;
  const AlarmRule& rule = a.rule;
  AlarmEvent e;
  e.alarm = rule.id;
  e.tag = rule.tag;
  e.ts_ms = t;
  e.state = raise ? AlarmState::kRaised : AlarmState::kCleared;
  e.kind = std::string(AlarmKindName(rule.kind));
  e.severity = rule.severity;
  if (rule.kind != AlarmKind::kStale && rule.kind != AlarmKind::kCommLoss) e.value = a.last_value;
  if (IsLevel(rule.kind) || rule.kind == AlarmKind::kRate) e.limit = rule.limit;
  e.message = Message(a);
  LogDevice(raise ? LogLevel::kWarning : LogLevel::kInfo, "alarm", rule.device,
            "alarm " + rule.id + (raise ? " raised" : " cleared") +
                (e.message.empty() ? std::string() : ": " + e.message));
  out.push_back(store::NewEvent{std::string(store::kStreamAlarms), rule.device, t, AlarmRecord(e)});
}

std::string AlarmEngine::Message(const Alarm& a) const {
  const AlarmRule& rule = a.rule;
  std::string out;
  const std::string& m = rule.message;
  for (size_t i = 0; i < m.size();) {
    const size_t close = m[i] == '{' ? m.find('}', i) : std::string::npos;
    if (close == std::string::npos) {
      out += m[i++];
      continue;
    }
    const std::string_view name(m.data() + i + 1, close - i - 1);
    if (name == "value") {
      out += Format(a.last_value);
    } else if (name == "unit") {
      out += rule.unit;
    } else if (name == "limit") {
      out += Format(rule.limit);
    } else if (name == "tag") {
      out += rule.tag;
    } else if (name == "device") {
      out += rule.device;
    } else if (name == "alarm") {
      out += rule.id;
    } else {
      out.append(m, i, close - i + 1);  // validated away; kept as written if it gets here
    }
    i = close + 1;
  }
  return out;
}

void AlarmEngine::OnTick(std::vector<store::NewEvent>& out) {
  const int64_t now = clock_.wall_ms();
  for (Alarm& a : alarms_) {
    switch (a.rule.kind) {
      case AlarmKind::kStale:
        evaluations_.fetch_add(1, std::memory_order_relaxed);
        if (now - a.last_good_ms >= a.rule.after.count()) {
          if (!a.raise_cond) a.raise_pending = a.last_good_ms + a.rule.after.count();
          a.raise_cond = true;
          a.clear_cond = false;
        }
        Step(a, now, out);
        break;
      case AlarmKind::kCommLoss: {
        evaluations_.fetch_add(1, std::memory_order_relaxed);
        const bool down = link_down_ && link_down_(a.rule.device);
        a.raise_cond = down;
        a.clear_cond = !down;
        Step(a, now, out);
        break;
      }
      default:
        // A delay running out while no new reading comes.
        if ((!a.active && a.raise_pending >= 0) || (a.active && a.clear_pending >= 0)) {
          Step(a, now, out);
        }
    }
  }
  for (Counter& c : counters_) {
    if (now - c.last_snapshot_ms >= c.rule.snapshot.count()) Snapshot(c, now, out);
  }
  PublishViews();
}

void AlarmEngine::Sample(Counter& c, const Reading& r, std::vector<store::NewEvent>& out) {
  evaluations_.fetch_add(1, std::memory_order_relaxed);
  const std::optional<double> x = r.quality == Quality::kGood ? AsNumber(r.value) : std::nullopt;
  if (!x) {
    c.last_sample_ms = 0;  // unknown until the next good sample: nothing is counted meanwhile
    return;
  }
  // Running time is counted from a sample that saw the machine running to the
  // next sample, whatever that one sees.
  const bool running = Compare(*x, c.rule.op, c.rule.threshold);
  const int64_t t = r.ts_ms;
  if (c.known && c.running && c.last_sample_ms > 0 && t > c.last_sample_ms) {
    c.run_ms += t - c.last_sample_ms;
  }
  if (c.known && running && !c.running) {
    ++c.starts;
    if (c.stopped_since_ms > 0 && t > c.stopped_since_ms) {
      out.push_back(store::NewEvent{std::string(store::kStreamCounters), c.rule.device, t,
                                    DowntimeRecord(Downtime{c.rule.id, t, c.stopped_since_ms})});
    }
    c.stopped_since_ms = 0;
  } else if (!running && (c.running || !c.known)) {
    c.stopped_since_ms = t;
  }
  views_dirty_ = true;
  c.known = true;
  c.running = running;
  c.last_sample_ms = t;
  c.dirty = true;
}

void AlarmEngine::Snapshot(Counter& c, int64_t now, std::vector<store::NewEvent>& out) {
  c.last_snapshot_ms = now;
  c.dirty = true;
  views_dirty_ = true;
  CounterSnapshot s{c.rule.id, now, static_cast<double>(c.run_ms) / 1000.0, c.starts,
                    c.known ? std::optional<bool>(c.running) : std::nullopt};
  out.push_back(
      store::NewEvent{std::string(store::kStreamCounters), c.rule.device, now, CounterRecord(s)});
}

void AlarmEngine::TakeState(std::vector<store::StateUpdate>& out) {
  for (Alarm& a : alarms_) {
    if (!a.dirty) continue;
    a.dirty = false;
    out.push_back(
        {AlarmKey(a.rule.id), a.active ? "active " + std::to_string(a.since_ms) : "clear 0"});
  }
  for (Counter& c : counters_) {
    if (!c.dirty) continue;
    c.dirty = false;
    out.push_back({CounterKey(c.rule.id),
                   std::to_string(c.run_ms) + " " + std::to_string(c.starts) + " " +
                       (c.running ? "1" : "0") + " " + std::to_string(c.stopped_since_ms) + " " +
                       std::to_string(c.last_snapshot_ms)});
  }
}

void AlarmEngine::PublishViews() {
  if (!views_dirty_) return;
  views_dirty_ = false;
  std::vector<ActiveAlarm> active;
  for (const Alarm& a : alarms_) {
    if (!a.active) continue;
    active.push_back(ActiveAlarm{a.rule.id, a.rule.device, a.rule.tag,
                                 std::string(AlarmKindName(a.rule.kind)), a.rule.severity,
                                 Message(a), a.since_ms});
  }
  std::vector<CounterView> counters;
  for (const Counter& c : counters_) {
    counters.push_back(CounterView{c.rule.id, c.rule.device, static_cast<double>(c.run_ms) / 1000.0,
                                   c.starts, c.running});
  }
  MutexLock lock(&views_mu_);
  active_view_ = std::move(active);
  counter_view_ = std::move(counters);
}

std::vector<AlarmEngine::ActiveAlarm> AlarmEngine::ActiveAlarms() const {
  MutexLock lock(&views_mu_);
  return active_view_;
}

std::vector<AlarmEngine::CounterView> AlarmEngine::Counters() const {
  MutexLock lock(&views_mu_);
  return counter_view_;
}

}  // namespace tagrelay::rules
