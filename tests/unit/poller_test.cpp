#include "drivers/modbus/poller.h"

#include <gtest/gtest.h>

#include <vector>

#include "fakes/fake_transport.h"

namespace tagrelay::modbus {
namespace {

using std::chrono::milliseconds;

TagSpec Tag(std::string name, Table table, uint16_t address, DataType type, double deadband = 0) {
  TagSpec t;
  t.name = std::move(name);
  t.table = table;
  t.address = address;
  t.type = type;
  t.deadband = deadband;
  return t;
}

class PollerTest : public ::testing::Test {
 protected:
  void Build(std::vector<DeviceSpec> devices, bool sink_accepts = true) {
    auto t = std::make_unique<FakeTransport>();
    transport_ = t.get();
    poller_ = std::make_unique<ModbusPoller>("bus", std::move(t), std::move(devices), clock_,
                                             [this, sink_accepts](ReadingBatch&& b) {
                                               if (!sink_accepts) return false;
                                               batches_.push_back(std::move(b));
                                               return true;
                                             });
  }
  DeviceSpec Meter(std::string id = "meter", int unit = 3) {
    return DeviceSpec{std::move(id),
                      unit,
                      milliseconds(1000),
                      {Tag("count", Table::kHolding, 0, DataType::kUint16),
                       Tag("temp", Table::kHolding, 1, DataType::kInt16),
                       Tag("volts", Table::kInput, 0, DataType::kFloat32)}};
  }
  const Reading& Find(const ReadingBatch& b, const std::string& tag) {
    for (const Reading& r : b.readings) {
      if (r.tag == tag) return r;
    }
    ADD_FAILURE() << "no reading of " << tag;
    static Reading none;
    return none;
  }

  FakeClock clock_;
  FakeTransport* transport_ = nullptr;
  std::unique_ptr<ModbusPoller> poller_;
  std::vector<ReadingBatch> batches_;
};

TEST_F(PollerTest, OnePollGivesOneBatchWithEveryTagDecoded) {
  Build({Meter()});
  transport_->registers[{Table::kHolding, 0}] = 7;
  transport_->registers[{Table::kHolding, 1}] = static_cast<uint16_t>(-40);
  transport_->registers[{Table::kInput, 0}] = 0x4366;
  transport_->registers[{Table::kInput, 1}] = 0x8000;
  poller_->RunDue();
  ASSERT_EQ(batches_.size(), 1u);
  const ReadingBatch& b = batches_[0];
  EXPECT_EQ(b.device, "meter");
  ASSERT_EQ(b.readings.size(), 3u);
  EXPECT_EQ(Find(b, "count").value, Value(uint64_t{7}));
  EXPECT_EQ(Find(b, "temp").value, Value(int64_t{-40}));
  EXPECT_EQ(Find(b, "volts").value, Value(230.5));
  for (const Reading& r : b.readings) {
    EXPECT_EQ(r.quality, Quality::kGood);
    EXPECT_EQ(r.ts_ms, clock_.wall_ms());
  }
  // Two holding registers in one request, the float in another; all to unit 3.
  ASSERT_EQ(transport_->requests.size(), 2u);
  for (const auto& r : transport_->requests) EXPECT_EQ(r.unit, 3);
}

TEST_F(PollerTest, PollsFollowTheIntervalOnTheClock) {
  Build({Meter()});
  EXPECT_EQ(poller_->RunDue(), clock_.mono() + milliseconds(1000));
  EXPECT_EQ(batches_.size(), 1u);
  clock_.Advance(milliseconds(999));
  poller_->RunDue();
  EXPECT_EQ(batches_.size(), 1u);
  clock_.Advance(milliseconds(1));
  poller_->RunDue();
  EXPECT_EQ(batches_.size(), 2u);
  EXPECT_EQ(poller_->counters(0).polls.load(), 2u);
}

TEST_F(PollerTest, AFailedRequestMakesItsTagsBadAndOnlyThose) {
  Build({Meter()});
  transport_->registers[{Table::kInput, 0}] = 0x4366;
  transport_->registers[{Table::kInput, 1}] = 0x8000;
  // The input request comes first in the plan: make it fail with exception 2.
  transport_->read_errors.push_back(Status::DeviceError("exception:2"));
  poller_->RunDue();
  ASSERT_EQ(batches_.size(), 1u);
  const Reading& volts = Find(batches_[0], "volts");
  EXPECT_EQ(volts.quality, Quality::kBad);
  EXPECT_EQ(volts.error, "exception:2");
  EXPECT_TRUE(std::holds_alternative<std::monostate>(volts.value)) << "a bad reading has no value";
  EXPECT_EQ(Find(batches_[0], "count").quality, Quality::kGood);
  EXPECT_EQ(poller_->counters(0).failed_requests.load(), 1u);
}

TEST_F(PollerTest, ANonFiniteFloatIsBadNotANumber) {
  Build({Meter()});
  transport_->registers[{Table::kInput, 0}] = 0x7FC0;  // NaN
  poller_->RunDue();
  const Reading& volts = Find(batches_[0], "volts");
  EXPECT_EQ(volts.quality, Quality::kBad);
  EXPECT_EQ(volts.error, "non-finite");
}

TEST_F(PollerTest, AnUnreachableEndpointGivesBadReadingsAndIsRetriedWithBackoff) {
  Build({Meter()});
  transport_->connect_failures = 1000;
  poller_->RunDue();
  ASSERT_EQ(batches_.size(), 1u);
  for (const Reading& r : batches_[0].readings) {
    EXPECT_EQ(r.quality, Quality::kBad);
    EXPECT_EQ(r.error, "not-connected");
  }
  EXPECT_EQ(transport_->connect_calls, 1) << "one attempt, then the backoff holds further ones";

  // Polls go on every second; connects back off 0.5, 1, 2, 4 ... up to 30 s.
  for (int i = 0; i < 120; ++i) {
    clock_.Advance(milliseconds(1000));
    poller_->RunDue();
  }
  EXPECT_EQ(batches_.size(), 121u) << "bad readings on schedule";
  EXPECT_GE(transport_->connect_calls, 8);
  EXPECT_LE(transport_->connect_calls, 12) << "capped exponential backoff, not one try per poll";

  transport_->connect_failures = 0;
  clock_.Advance(milliseconds(31000));
  poller_->RunDue();
  EXPECT_EQ(batches_.back().readings[0].quality, Quality::kGood) << "recovers by itself";
}

TEST_F(PollerTest, ATimeoutDropsTheConnectionAndTheNextPollReconnects) {
  Build({Meter()});
  transport_->read_errors.push_back(Status::Timeout("timeout"));
  poller_->RunDue();
  EXPECT_EQ(Find(batches_[0], "volts").error, "timeout");
  // The connection was closed on the timeout, so that a late answer cannot be
  // taken for the next reply; the next request reconnects first.
  EXPECT_EQ(transport_->connect_calls, 2);
  EXPECT_EQ(Find(batches_[0], "count").quality, Quality::kGood);
  clock_.Advance(milliseconds(1000));
  poller_->RunDue();
  EXPECT_EQ(transport_->connect_calls, 2);
  for (const Reading& r : batches_[1].readings) EXPECT_EQ(r.quality, Quality::kGood);
}

TEST_F(PollerTest, DevicesOnOneBusKeepTheirOwnSchedules) {
  DeviceSpec fast = Meter("fast", 1);
  fast.poll = milliseconds(250);
  DeviceSpec slow = Meter("slow", 2);
  slow.poll = milliseconds(1000);
  Build({fast, slow});
  for (int i = 0; i < 8; ++i) {
    poller_->RunDue();
    clock_.Advance(milliseconds(250));
  }
  int n_fast = 0, n_slow = 0;
  for (const ReadingBatch& b : batches_) (b.device == "fast" ? n_fast : n_slow)++;
  EXPECT_EQ(n_fast, 8);
  EXPECT_EQ(n_slow, 2);
}

TEST_F(PollerTest, DeadbandSkipsSmallChangesButNeverBadReadings) {
  DeviceSpec d{"d", 1, milliseconds(1000), {Tag("v", Table::kHolding, 0, DataType::kUint16, 5.0)}};
  Build({d});
  const uint16_t values[] = {100, 103, 104, 105, 106};
  for (uint16_t v : values) {
    transport_->registers[{Table::kHolding, 0}] = v;
    poller_->RunDue();
    clock_.Advance(milliseconds(1000));
  }
  std::vector<uint64_t> sent;
  for (const ReadingBatch& b : batches_) sent.push_back(std::get<uint64_t>(b.readings[0].value));
  EXPECT_EQ(sent, (std::vector<uint64_t>{100, 105})) << "a change of 5 or more from the last sent";

  transport_->read_errors.push_back(Status::DeviceError("exception:4"));
  poller_->RunDue();
  ASSERT_EQ(batches_.back().readings[0].quality, Quality::kBad);
  clock_.Advance(milliseconds(1000));
  poller_->RunDue();
  EXPECT_EQ(batches_.back().readings[0].value, Value(uint64_t{106}))
      << "after a bad reading, the next good one is sent";
}

TEST_F(PollerTest, BatchesTheSinkRefusesAreCounted) {
  Build({Meter()}, /*sink_accepts=*/false);
  poller_->RunDue();
  clock_.Advance(milliseconds(1000));
  poller_->RunDue();
  EXPECT_EQ(poller_->counters(0).dropped_batches.load(), 2u);
}

TEST_F(PollerTest, AnOverrunIsCountedAndTheScheduleDoesNotDrift) {
  Build({Meter()});
  poller_->RunDue();
  clock_.Advance(milliseconds(3500));  // the agent was stalled for 3.5 intervals
  const MonoTime next = poller_->RunDue();
  // Slot 1000 was served late; slots 2000 and 3000 were missed.
  EXPECT_EQ(poller_->counters(0).overruns.load(), 2u);
  EXPECT_EQ(batches_.size(), 2u) << "missed slots are not polled in a burst";
  EXPECT_EQ(next - (clock_.mono() - milliseconds(3500)), milliseconds(4000)) << "back on the grid";
}

}  // namespace
}  // namespace tagrelay::modbus
