// Tests of drivers/modbus/poll_schedule.h, driven by a FakeClock: no waiting.
#include "drivers/modbus/poll_schedule.h"

#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <utility>
#include <vector>

#include "agent/core/clock.h"

namespace tagrelay::modbus {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;

// Moves `clock` forward to `t` (never back).
void AdvanceTo(FakeClock& clock, MonoTime t) {
  if (clock.mono() < t) clock.Advance(t - clock.mono());
}

TEST(PollScheduleTest, FirstDueAtStart) {
  FakeClock clock;
  PollSchedule s;
  const MonoTime t0 = clock.mono();
  EXPECT_EQ(s.size(), 0u);
  EXPECT_EQ(s.Add(t0, milliseconds(100)), 0u);
  EXPECT_EQ(s.Add(t0 + milliseconds(50), milliseconds(1000)), 1u);
  EXPECT_EQ(s.size(), 2u);
  EXPECT_EQ(s.next_due(0), t0);
  EXPECT_EQ(s.next_due(1), t0 + milliseconds(50));
}

TEST(PollScheduleTest, NoDriftOverManyCycles) {
  FakeClock clock;
  PollSchedule s;
  const MonoTime t0 = clock.mono();
  // An interval that is not a whole number of milliseconds.
  const nanoseconds interval(333'333'333);
  s.Add(t0, interval);
  std::mt19937 rng(42);
  std::uniform_int_distribution<int64_t> poll_ns(0, interval.count());
  for (int64_t k = 0; k < 10000; ++k) {
    AdvanceTo(clock, s.next_due(0));
    ASSERT_EQ(clock.mono(), t0 + k * interval);
    clock.Advance(nanoseconds(poll_ns(rng)));  // a poll that takes up to one whole interval
    ASSERT_EQ(s.Complete(0, clock.mono()), 0u) << "cycle " << k;
    ASSERT_EQ(s.next_due(0), t0 + (k + 1) * interval) << "cycle " << k;
  }
}

TEST(PollScheduleTest, PollEndingExactlyOnTheNextSlotIsNotAnOverrun) {
  FakeClock clock;
  PollSchedule s;
  const MonoTime t0 = clock.mono();
  s.Add(t0, milliseconds(100));
  clock.Advance(milliseconds(100));
  EXPECT_EQ(s.Complete(0, clock.mono()), 0u);
  EXPECT_EQ(s.next_due(0), t0 + milliseconds(100));
}

TEST(PollScheduleTest, OverrunSkipsTheCoveredSlotsAndLandsOnTheGrid) {
  FakeClock clock;
  PollSchedule s;
  const MonoTime t0 = clock.mono();
  s.Add(t0, milliseconds(100));

  // The poll takes 2.5 intervals: the slots at +100 and +200 are missed, the
  // next one is +300, the first slot after the poll ended at +250.
  clock.Advance(milliseconds(250));
  EXPECT_EQ(s.Complete(0, clock.mono()), 2u);
  EXPECT_EQ(s.next_due(0), t0 + milliseconds(300));

  // Back to normal: the grid is the same as before the overrun.
  AdvanceTo(clock, s.next_due(0));
  clock.Advance(milliseconds(10));
  EXPECT_EQ(s.Complete(0, clock.mono()), 0u);
  EXPECT_EQ(s.next_due(0), t0 + milliseconds(400));
}

TEST(PollScheduleTest, OverrunByOneNanosecondMissesOneSlot) {
  FakeClock clock;
  PollSchedule s;
  const MonoTime t0 = clock.mono();
  s.Add(t0, milliseconds(100));
  clock.Advance(milliseconds(100) + nanoseconds(1));
  EXPECT_EQ(s.Complete(0, clock.mono()), 1u);
  EXPECT_EQ(s.next_due(0), t0 + milliseconds(200));
}

TEST(PollScheduleTest, PollEndingExactlyOnALaterSlotGetsThatSlot) {
  FakeClock clock;
  PollSchedule s;
  const MonoTime t0 = clock.mono();
  s.Add(t0, milliseconds(100));
  // Ends at +200: the slot at +100 was missed; +200 is "at or after its end".
  clock.Advance(milliseconds(200));
  EXPECT_EQ(s.Complete(0, clock.mono()), 1u);
  EXPECT_EQ(s.next_due(0), t0 + milliseconds(200));
}

TEST(PollScheduleTest, LongOverrun) {
  FakeClock clock;
  PollSchedule s;
  const MonoTime t0 = clock.mono() + milliseconds(7);
  s.Add(t0, milliseconds(1000));
  AdvanceTo(clock, t0);
  clock.Advance(milliseconds(10'500));  // e.g. a device that timed out on every request
  EXPECT_EQ(s.Complete(0, clock.mono()), 10u);
  EXPECT_EQ(s.next_due(0), t0 + milliseconds(11'000));
}

TEST(PollScheduleTest, LateStartCountsTheSlotsItMissed) {
  FakeClock clock;
  PollSchedule s;
  const MonoTime t0 = clock.mono();
  s.Add(t0, milliseconds(100));
  // Another device kept the poller busy: this poll ran from +150 to +160.
  clock.Advance(milliseconds(160));
  EXPECT_EQ(s.Complete(0, clock.mono()), 1u);
  EXPECT_EQ(s.next_due(0), t0 + milliseconds(200));
}

TEST(PollScheduleTest, EarliestPicksTheEntryDueFirst) {
  FakeClock clock;
  PollSchedule s;
  const MonoTime t0 = clock.mono();
  s.Add(t0 + milliseconds(300), milliseconds(1000));
  s.Add(t0 + milliseconds(100), milliseconds(1000));
  s.Add(t0 + milliseconds(200), milliseconds(1000));
  EXPECT_EQ(s.Earliest(), 1u);
  AdvanceTo(clock, s.next_due(1));
  s.Complete(1, clock.mono());  // now due at +1100
  EXPECT_EQ(s.Earliest(), 2u);
  AdvanceTo(clock, s.next_due(2));
  s.Complete(2, clock.mono());  // now due at +1200
  EXPECT_EQ(s.Earliest(), 0u);
}

TEST(PollScheduleTest, EarliestTieGoesToTheLowestIndex) {
  FakeClock clock;
  PollSchedule s;
  const MonoTime t0 = clock.mono();
  s.Add(t0 + milliseconds(5), milliseconds(100));
  s.Add(t0, milliseconds(100));
  s.Add(t0, milliseconds(100));
  EXPECT_EQ(s.Earliest(), 1u);
  s.Complete(1, t0);
  EXPECT_EQ(s.Earliest(), 2u);
}

TEST(PollScheduleTest, InterleavesEntriesOfDifferentIntervals) {
  FakeClock clock;
  PollSchedule s;
  const MonoTime t0 = clock.mono();
  s.Add(t0, milliseconds(300));
  s.Add(t0, milliseconds(200));
  // Polls that take no time: the order of (entry, time in ms) is fixed.
  const std::vector<std::pair<size_t, int>> expected = {
      {0, 0}, {1, 0}, {1, 200}, {0, 300}, {1, 400}, {0, 600}, {1, 600}, {1, 800}, {0, 900}};
  for (const auto& [entry, ms] : expected) {
    const size_t i = s.Earliest();
    ASSERT_EQ(i, entry) << "at " << ms << " ms";
    ASSERT_EQ(s.next_due(i), t0 + milliseconds(ms));
    AdvanceTo(clock, s.next_due(i));
    EXPECT_EQ(s.Complete(i, clock.mono()), 0u);
  }
}

TEST(PollScheduleTest, PollerLoopKeepsEveryDeviceOnItsGrid) {
  // The loop a poller runs: wait for the earliest entry, poll it (5 ms here),
  // complete it. Over 10 s every device is polled on every slot of its grid.
  FakeClock clock;
  PollSchedule s;
  const MonoTime t0 = clock.mono();
  const std::vector<milliseconds> intervals = {milliseconds(100), milliseconds(250),
                                               milliseconds(1000)};
  for (milliseconds interval : intervals) s.Add(t0, interval);
  std::vector<int> polls(intervals.size(), 0);
  uint64_t missed = 0;
  for (;;) {
    const size_t i = s.Earliest();
    const MonoTime due = s.next_due(i);
    if (due >= t0 + milliseconds(10'000)) break;
    ASSERT_EQ(due, t0 + polls[i] * intervals[i]) << "device " << i;
    AdvanceTo(clock, due);
    ASSERT_LT(clock.mono() - due, intervals[i])
        << "device " << i << " polled a whole interval late";
    clock.Advance(milliseconds(5));
    missed += s.Complete(i, clock.mono());
    ++polls[i];
  }
  EXPECT_EQ(missed, 0u);
  EXPECT_EQ(polls, (std::vector<int>{100, 40, 10}));
}

}  // namespace
}  // namespace tagrelay::modbus
