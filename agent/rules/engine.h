// AlarmEngine: local alarm rules and maintenance counters, evaluated in the
// store writer thread on every reading (a store::WriterObserver).
//
// Promise:
// - Level alarms (high, high_high, low, low_low) raise past their limit and
//   clear only once the value is back past limit -/+ deadband, so a value that
//   hovers around the limit does not chatter. equals raises while the tag has
//   the given value, rate while the change over `window` is faster than the
//   limit (units per second), stale when no good value came for `after`,
//   comm_loss while the device's link is down.
// - A condition must hold for on_delay before an alarm is raised, and the
//   clear condition for off_delay before it clears; the event's time is when
//   the delay ran out. Bad readings say nothing about a value: they neither
//   raise nor clear a value alarm (stale and comm_loss watch for them).
// - Every transition is one record on the device's alarms stream, stored in
//   the same transaction as the readings that caused it, with the state that
//   survives a restart: an alarm active before a restart is not raised again,
//   and one whose condition went away meanwhile is cleared once.
// - Counters integrate running time between good samples while the running
//   condition holds (never across a bad reading or a restart), count starts,
//   report each stopped interval when the machine runs again, and publish a
//   snapshot every `snapshot` period and at start. Both totals only grow.
//
// Threads: the WriterObserver methods run on the store writer thread, which
// owns all rule state. ActiveAlarms(), Counters() and evaluations() are safe
// from any thread (status); the first two are refreshed at every tick.
#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "agent/core/clock.h"
#include "agent/core/mutex.h"
#include "agent/rules/rules.h"
#include "store/writer_observer.h"

namespace tagrelay::rules {

class AlarmEngine final : public store::WriterObserver {
 public:
  // Whether a device's link is down now; called on the writer thread.
  using LinkDown = std::function<bool(const std::string& device)>;

  AlarmEngine(std::vector<AlarmRule> alarms, std::vector<CounterRule> counters, const Clock& clock,
              LinkDown link_down);

  void Restore(const std::map<std::string, std::string>& state) override;
  void OnReadings(const store::SequencedBatch& batch, std::vector<store::NewEvent>& out) override;
  void OnTick(std::vector<store::NewEvent>& out) override;
  void TakeState(std::vector<store::StateUpdate>& out) override;

  struct ActiveAlarm {
    std::string alarm;
    std::string device;
    std::string tag;
    std::string kind;
    std::string severity;
    std::string message;
    int64_t since_ms = 0;
  };
  std::vector<ActiveAlarm> ActiveAlarms() const;

  struct CounterView {
    std::string counter;
    std::string device;
    double run_s = 0;
    int64_t starts = 0;
    bool running = false;
  };
  std::vector<CounterView> Counters() const;

  // Rule evaluations so far (one per rule per reading or tick that reached it).
  uint64_t evaluations() const { return evaluations_.load(std::memory_order_relaxed); }

 private:
  struct Alarm {
    AlarmRule rule;
    bool active = false;
    int64_t since_ms = 0;
    bool raise_cond = false;  // the conditions at the last evaluation
    bool clear_cond = false;
    int64_t raise_pending = -1;  // since when raise_cond holds; -1: it does not
    int64_t clear_pending = -1;
    Value last_value;
    int64_t last_good_ms = 0;                        // stale
    std::deque<std::pair<int64_t, double>> samples;  // rate
    bool dirty = false;
  };
  struct Counter {
    CounterRule rule;
    bool known = false;  // running is known (a good sample came, or a restart restored it)
    bool running = false;
    int64_t run_ms = 0;
    int64_t starts = 0;
    int64_t last_sample_ms = 0;  // 0: no sample to integrate from
    int64_t stopped_since_ms = 0;
    int64_t last_snapshot_ms = 0;
    bool dirty = false;
  };
  // Rules by device, then by tag (indexes into alarms_ / counters_).
  struct DeviceRules {
    std::unordered_map<std::string, std::vector<size_t>> alarms;
    std::unordered_map<std::string, std::vector<size_t>> counters;
  };

  void Evaluate(Alarm& a, const Reading& r, std::vector<store::NewEvent>& out);
  void Step(Alarm& a, int64_t t, std::vector<store::NewEvent>& out);
  void Transition(Alarm& a, bool raise, int64_t t, std::vector<store::NewEvent>& out);
  void Sample(Counter& c, const Reading& r, std::vector<store::NewEvent>& out);
  void Snapshot(Counter& c, int64_t now, std::vector<store::NewEvent>& out);
  std::string Message(const Alarm& a) const;
  void PublishViews();

  const Clock& clock_;
  LinkDown link_down_;
  std::vector<Alarm> alarms_;
  std::vector<Counter> counters_;
  std::unordered_map<std::string, DeviceRules> by_device_;
  bool views_dirty_ = true;
  std::atomic<uint64_t> evaluations_{0};

  mutable Mutex views_mu_;
  std::vector<ActiveAlarm> active_view_ TR_GUARDED_BY(views_mu_);
  std::vector<CounterView> counter_view_ TR_GUARDED_BY(views_mu_);
};

}  // namespace tagrelay::rules
