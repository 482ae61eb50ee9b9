#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "agent/core/clock.h"
#include "agent/rules/engine.h"

namespace tagrelay::rules {
namespace {

using std::chrono::milliseconds;

// The fields of a stored record the tests look at, by text search.
std::string Field(const std::string& json, const std::string& key) {
  const std::string needle = "\"" + key + "\":";
  const size_t at = json.find(needle);
  if (at == std::string::npos) return "";
  size_t begin = at + needle.size(), end = begin;
  if (json[begin] == '"') {
    end = json.find('"', begin + 1) + 1;
  } else {
    while (end < json.size() && json[end] != ',' && json[end] != '}') ++end;
  }
  return json.substr(begin, end - begin);
}

AlarmRule Rule(AlarmKind kind, double limit = 0, double deadband = 0) {
  AlarmRule r;
  r.id = "a1";
  r.device = "d";
  r.tag = "t";
  r.unit = "V";
  r.kind = kind;
  r.limit = limit;
  r.deadband = deadband;
  r.message = "{alarm} on {device}/{tag}: {value} {unit} (limit {limit})";
  return r;
}

class EngineTest : public ::testing::Test {
 protected:
  void Build(std::vector<AlarmRule> alarms, std::vector<CounterRule> counters = {}) {
    engine_ = std::make_unique<AlarmEngine>(std::move(alarms), std::move(counters), clock_,
                                            [this](const std::string&) { return link_down_; });
    engine_->Restore(state_);
  }
  // One poll of tag t at the fake clock's time, then the clock moves on.
  void Feed(Value v, milliseconds step = milliseconds(1000), Quality q = Quality::kGood,
            const std::string& tag = "t") {
    store::SequencedBatch b{"d", seq_++, {}};
    Reading r{tag, clock_.wall_ms(), std::move(v), q, q == Quality::kGood ? "" : "timeout"};
    if (q != Quality::kGood) r.value = std::monostate{};
    b.readings.push_back(std::move(r));
    engine_->OnReadings(b, out_);
    clock_.Advance(step);
  }
  // The views for status are refreshed on ticks; a tick whose records are not
  // looked at.
  void Refresh() { engine_->OnTick(ticked_); }
  void Tick() { engine_->OnTick(out_); }
  std::vector<std::string> States() const {
    std::vector<std::string> s;
    for (const auto& e : out_) {
      if (e.stream == "alarms") s.push_back(Field(e.body, "state"));
    }
    return s;
  }
  std::vector<store::NewEvent> Counters() const {
    std::vector<store::NewEvent> c;
    for (const auto& e : out_) {
      if (e.stream == "counters") c.push_back(e);
    }
    return c;
  }
  // Keeps the engine's state as the store would, for a restart.
  void Persist() {
    std::vector<store::StateUpdate> updates;
    engine_->TakeState(updates);
    for (auto& u : updates) state_[u.key] = u.value;
  }

  FakeClock clock_;
  bool link_down_ = false;
  int64_t seq_ = 1;
  std::map<std::string, std::string> state_;
  std::unique_ptr<AlarmEngine> engine_;
  std::vector<store::NewEvent> out_;
  std::vector<store::NewEvent> ticked_;  // records of the ticks Feed() adds
};

TEST_F(EngineTest, HighRaisesAboveTheLimitAndClearsOnlyBelowTheDeadband) {
  Build({Rule(AlarmKind::kHigh, 250, 2)});
  for (double v : {249.0, 250.0, 250.5, 251.0, 249.5, 250.8, 248.5, 251.2, 247.9, 249.9}) Feed(v);
  // Hovering around the limit: one raise at 250.5, held through 249.5 / 248.5
  // (inside the deadband), cleared at 247.9, not raised again at 249.9.
  EXPECT_EQ(States(), (std::vector<std::string>{"\"raised\"", "\"cleared\""}));
  ASSERT_EQ(out_.size(), 2u);
  EXPECT_EQ(Field(out_[0].body, "v"), "250.5");
  EXPECT_EQ(Field(out_[0].body, "limit"), "250");
  EXPECT_EQ(Field(out_[0].body, "kind"), "\"high\"");
  EXPECT_EQ(Field(out_[0].body, "message"), "\"a1 on d/t: 250.5 V (limit 250)\"");
  EXPECT_EQ(Field(out_[1].body, "v"), "247.9");
  EXPECT_EQ(out_[0].stream, "alarms");
  EXPECT_EQ(out_[0].device, "d");
}

TEST_F(EngineTest, LowAndTheDoubleLimitsMirrorHigh) {
  AlarmRule low = Rule(AlarmKind::kLow, 10, 1);
  low.id = "low";
  AlarmRule low_low = Rule(AlarmKind::kLowLow, 5, 1);
  low_low.id = "lowlow";
  AlarmRule high_high = Rule(AlarmKind::kHighHigh, 100);
  high_high.id = "hihi";
  Build({low, low_low, high_high});
  for (double v : {12.0, 9.0, 10.5, 4.0, 5.5, 6.5, 11.5, 101.0, 100.0}) Feed(v);
  std::vector<std::string> seen;
  for (const auto& e : out_) seen.push_back(Field(e.body, "alarm") + Field(e.body, "state"));
  EXPECT_EQ(seen, (std::vector<std::string>{"\"low\"\"raised\"", "\"lowlow\"\"raised\"",
                                            "\"lowlow\"\"cleared\"", "\"low\"\"cleared\"",
                                            "\"hihi\"\"raised\"", "\"hihi\"\"cleared\""}));
}

TEST_F(EngineTest, OnDelayNeedsTheConditionToHoldAndRunsOutOnATick) {
  AlarmRule r = Rule(AlarmKind::kHigh, 250);
  r.on_delay = milliseconds(5000);
  Build({r});
  const int64_t t0 = clock_.wall_ms();
  for (int i = 0; i < 4; ++i) Feed(260.0);  // 4 s above: not long enough
  Feed(240.0);
  EXPECT_TRUE(out_.empty());

  const int64_t t1 = clock_.wall_ms();
  Feed(260.0, milliseconds(3000));  // above again, then no reading for a while
  Tick();
  EXPECT_TRUE(out_.empty()) << "3 s of 5";
  clock_.Advance(milliseconds(2000));
  Tick();
  ASSERT_EQ(States(), std::vector<std::string>{"\"raised\""});
  EXPECT_EQ(out_[0].ts_ms, t1 + 5000) << "raised when the delay ran out";
  EXPECT_GT(t1, t0);
}

TEST_F(EngineTest, OffDelayHoldsTheAlarmThroughShortDips) {
  AlarmRule r = Rule(AlarmKind::kHigh, 250);
  r.off_delay = milliseconds(3000);
  Build({r});
  Feed(260.0);
  Feed(240.0);
  Feed(240.0);
  Feed(260.0);  // back above before 3 s passed
  for (int i = 0; i < 3; ++i) Feed(240.0);
  Feed(240.0);
  EXPECT_EQ(States(), (std::vector<std::string>{"\"raised\"", "\"cleared\""}));
}

TEST_F(EngineTest, EqualsWatchesAStateOrABit) {
  AlarmRule bit = Rule(AlarmKind::kEquals);
  bit.equals = true;
  bit.message = "";
  Build({bit});
  Feed(false);
  Feed(true);
  Feed(true);
  Feed(uint64_t{1});  // a number is not the bit true
  EXPECT_EQ(States(), (std::vector<std::string>{"\"raised\"", "\"cleared\""}));
  EXPECT_EQ(Field(out_[0].body, "v"), "true");
  EXPECT_EQ(Field(out_[0].body, "limit"), "") << "no limit on an equals alarm";

  out_.clear();
  AlarmRule state = Rule(AlarmKind::kEquals);
  state.equals = int64_t{3};
  Build({state});
  Feed(uint64_t{2});
  Feed(uint64_t{3});
  Feed(3.0);
  Feed(int64_t{4});
  EXPECT_EQ(States(), (std::vector<std::string>{"\"raised\"", "\"cleared\""}));
}

TEST_F(EngineTest, RateRaisesOnAFastChangeOverTheWindow) {
  AlarmRule r = Rule(AlarmKind::kRate, 1.0);  // more than 1 unit per second
  r.window = milliseconds(10000);
  Build({r});
  for (int i = 0; i < 10; ++i) Feed(100.0 + 0.5 * i);  // 0.5/s
  EXPECT_TRUE(out_.empty());
  for (int i = 0; i < 10; ++i) Feed(105.0 + 3.0 * i);  // 3/s
  ASSERT_EQ(States(), std::vector<std::string>{"\"raised\""});
  for (int i = 0; i < 12; ++i) Feed(135.0);  // flat again
  EXPECT_EQ(States(), (std::vector<std::string>{"\"raised\"", "\"cleared\""}));
}

TEST_F(EngineTest, StaleRaisesWithoutGoodValuesAndClearsOnTheNextOne) {
  AlarmRule r = Rule(AlarmKind::kStale);
  r.after = milliseconds(5000);
  Build({r});
  const int64_t last_good = clock_.wall_ms();
  Feed(1.0);
  for (int i = 0; i < 3; ++i) Feed(Value{}, milliseconds(1000), Quality::kBad);
  Tick();
  EXPECT_TRUE(out_.empty());
  clock_.Advance(milliseconds(2500));
  Tick();
  ASSERT_EQ(States(), std::vector<std::string>{"\"raised\""});
  EXPECT_EQ(out_[0].ts_ms, last_good + 5000);
  EXPECT_EQ(Field(out_[0].body, "v"), "") << "a stale alarm carries no value";
  Tick();
  EXPECT_EQ(out_.size(), 1u) << "raised once";
  Feed(2.0);
  EXPECT_EQ(States(), (std::vector<std::string>{"\"raised\"", "\"cleared\""}));
}

TEST_F(EngineTest, CommLossFollowsTheDevicesLink) {
  AlarmRule r = Rule(AlarmKind::kCommLoss);
  r.tag.clear();
  r.on_delay = milliseconds(2000);
  Build({r});
  Tick();
  link_down_ = true;
  Tick();
  clock_.Advance(milliseconds(1000));
  Tick();
  EXPECT_TRUE(out_.empty());
  clock_.Advance(milliseconds(1000));
  Tick();
  ASSERT_EQ(States(), std::vector<std::string>{"\"raised\""});
  EXPECT_EQ(Field(out_[0].body, "tag"), "") << "device-wide";
  link_down_ = false;
  Tick();
  EXPECT_EQ(States(), (std::vector<std::string>{"\"raised\"", "\"cleared\""}));
}

TEST_F(EngineTest, BadReadingsNeitherRaiseNorClear) {
  Build({Rule(AlarmKind::kHigh, 250)});
  Feed(Value{}, milliseconds(1000), Quality::kBad);
  Feed(260.0);
  for (int i = 0; i < 5; ++i) Feed(Value{}, milliseconds(1000), Quality::kBad);
  EXPECT_EQ(States(), std::vector<std::string>{"\"raised\""});
  Refresh();
  EXPECT_EQ(engine_->ActiveAlarms().size(), 1u);
}

TEST_F(EngineTest, AnActiveAlarmIsNotRaisedAgainAfterARestart) {
  Build({Rule(AlarmKind::kHigh, 250)});
  Feed(260.0);
  Persist();
  ASSERT_EQ(States(), std::vector<std::string>{"\"raised\""});
  out_.clear();

  Build({Rule(AlarmKind::kHigh, 250)});  // the agent restarts; still above the limit
  ASSERT_EQ(engine_->ActiveAlarms().size(), 1u) << "known active from the store";
  Feed(261.0);
  Feed(262.0);
  EXPECT_TRUE(out_.empty()) << "not raised twice";
}

TEST_F(EngineTest, AnAlarmThatClearedWhileTheAgentWasDownIsClearedOnce) {
  Build({Rule(AlarmKind::kHigh, 250)});
  Feed(260.0);
  Persist();
  out_.clear();
  Build({Rule(AlarmKind::kHigh, 250)});
  Feed(240.0);
  Feed(239.0);
  Persist();
  EXPECT_EQ(States(), std::vector<std::string>{"\"cleared\""});
  Refresh();
  EXPECT_TRUE(engine_->ActiveAlarms().empty());
  out_.clear();
  Build({Rule(AlarmKind::kHigh, 250)});
  Feed(238.0);
  EXPECT_TRUE(out_.empty()) << "cleared once, not on every restart";
}

TEST_F(EngineTest, ActiveAlarmsAreVisibleWithTheirMessage) {
  AlarmRule r = Rule(AlarmKind::kHigh, 250);
  r.severity = "critical";
  Build({r});
  const int64_t t = clock_.wall_ms();
  Feed(260.0);
  EXPECT_TRUE(engine_->ActiveAlarms().empty()) << "views refresh on ticks";
  Refresh();
  const auto active = engine_->ActiveAlarms();
  ASSERT_EQ(active.size(), 1u);
  EXPECT_EQ(active[0].alarm, "a1");
  EXPECT_EQ(active[0].severity, "critical");
  EXPECT_EQ(active[0].since_ms, t);
  EXPECT_EQ(active[0].message, "a1 on d/t: 260 V (limit 250)");
}

CounterRule Running() {
  CounterRule c;
  c.id = "pump-hours";
  c.device = "d";
  c.tag = "frequency";
  c.op = Comparison::kGreater;
  c.threshold = 1.0;
  c.snapshot = milliseconds(60000);
  return c;
}

TEST_F(EngineTest, CountersIntegrateRunningTimeCountStartsAndReportDowntime) {
  Build({}, {Running()});
  Tick();  // a snapshot at start
  ASSERT_EQ(Counters().size(), 1u);
  auto feed = [&](double hz, int seconds) {
    for (int i = 0; i < seconds; ++i) Feed(hz, milliseconds(1000), Quality::kGood, "frequency");
  };
  feed(0.0, 10);  // stopped
  const int64_t stopped_at = clock_.wall_ms() - 10000;
  feed(50.0, 30);  // running 30 s (the first sample starts it)
  feed(0.0, 5);
  feed(49.0, 10);
  Refresh();
  const auto views = engine_->Counters();
  ASSERT_EQ(views.size(), 1u);
  EXPECT_EQ(views[0].starts, 2);
  // From each sample that saw it running to the next sample: 30 s of the first
  // run (up to the sample that saw it stopped) and 9 s of the second so far.
  EXPECT_DOUBLE_EQ(views[0].run_s, 39.0);
  EXPECT_TRUE(views[0].running);

  std::vector<store::NewEvent> downtime;
  for (const auto& e : Counters()) {
    if (Field(e.body, "kind") == "\"downtime\"") downtime.push_back(e);
  }
  ASSERT_EQ(downtime.size(), 2u);
  EXPECT_EQ(Field(downtime[0].body, "from"), std::to_string(stopped_at));
  EXPECT_EQ(Field(downtime[0].body, "duration_s"), "10");
  EXPECT_EQ(Field(downtime[1].body, "duration_s"), "5");
}

TEST_F(EngineTest, ABadReadingOrARestartIsNotCountedAsRunningTime) {
  Build({}, {Running()});
  auto feed = [&](double hz, int seconds, Quality q = Quality::kGood) {
    for (int i = 0; i < seconds; ++i) Feed(hz, milliseconds(1000), q, "frequency");
  };
  feed(0.0, 1);
  feed(50.0, 11);  // 10 s counted (11 samples)
  feed(0.0, 3, Quality::kBad);
  feed(50.0, 2);  // 1 s: the time across the bad readings is not counted
  Persist();
  Refresh();
  EXPECT_DOUBLE_EQ(engine_->Counters()[0].run_s, 11.0);
  EXPECT_EQ(engine_->Counters()[0].starts, 1);

  // Restart in the middle of the running interval, an hour later.
  clock_.Advance(std::chrono::hours(1));
  Build({}, {Running()});
  EXPECT_DOUBLE_EQ(engine_->Counters()[0].run_s, 11.0) << "totals survive the restart";
  feed(50.0, 6);
  Refresh();
  EXPECT_DOUBLE_EQ(engine_->Counters()[0].run_s, 16.0)
      << "the hour the agent was down is not counted";
  EXPECT_EQ(engine_->Counters()[0].starts, 1) << "still the same run, not a new start";
}

TEST_F(EngineTest, SnapshotsComeEverySnapshotPeriod) {
  CounterRule c = Running();
  c.snapshot = milliseconds(10000);
  Build({}, {c});
  for (int i = 0; i < 35; ++i) {
    Tick();
    clock_.Advance(milliseconds(1000));
  }
  const auto snaps = Counters();
  ASSERT_EQ(snaps.size(), 4u) << "at 0, 10, 20 and 30 s";
  EXPECT_EQ(snaps[1].ts_ms - snaps[0].ts_ms, 10000);
  EXPECT_EQ(Field(snaps[0].body, "counter"), "\"pump-hours\"");
}

TEST_F(EngineTest, EvaluationsAreCounted) {
  std::vector<AlarmRule> rules;
  for (int i = 0; i < 10; ++i) {
    AlarmRule r = Rule(AlarmKind::kHigh, 250);
    r.id = "a" + std::to_string(i);
    rules.push_back(r);
  }
  Build(rules);
  Feed(1.0);
  Feed(2.0);
  EXPECT_EQ(engine_->evaluations(), 20u);
}

}  // namespace
}  // namespace tagrelay::rules
