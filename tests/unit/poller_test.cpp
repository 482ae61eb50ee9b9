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
    t->clock = &clock_;
    poller_ = std::make_unique<ModbusPoller>(
        "bus", std::move(t), std::move(devices), clock_,
        [this, sink_accepts](ReadingBatch&& b) {
          if (!sink_accepts) return false;
          batches_.push_back(std::move(b));
          return true;
        },
        options_);
  }
  DeviceSpec Meter(std::string id = "meter", int unit = 3) {
    return DeviceSpec{std::move(id),
                      unit,
                      milliseconds(1000),
                      {Tag("count", Table::kHolding, 0, DataType::kUint16),
                       Tag("temp", Table::kHolding, 1, DataType::kInt16),
                       Tag("volts", Table::kInput, 0, DataType::kFloat32)},
                      {}};
  }
  const Reading& Find(const ReadingBatch& b, const std::string& tag) {
    for (const Reading& r : b.readings) {
      if (r.tag == tag) return r;
    }
    ADD_FAILURE() << "no reading of " << tag;
    static Reading none;
    return none;
  }

  // The batches of `device`, in order.
  std::vector<const ReadingBatch*> Of(const std::string& device) {
    std::vector<const ReadingBatch*> out;
    for (const ReadingBatch& b : batches_) {
      if (b.device == device) out.push_back(&b);
    }
    return out;
  }
  static bool AllGood(const ReadingBatch& b) {
    for (const Reading& r : b.readings) {
      if (r.quality != Quality::kGood) return false;
    }
    return !b.readings.empty();
  }
  // Runs the poller as its thread would, on the fake clock, for `d`.
  void RunFor(std::chrono::milliseconds d) {
    const MonoTime end = clock_.mono() + d;
    while (clock_.mono() < end) {
      const MonoTime next = poller_->RunDue();
      if (next > clock_.mono()) clock_.Advance(std::min(next, end) - clock_.mono());
    }
  }

  FakeClock clock_;
  PollerOptions options_;
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

TEST_F(PollerTest, ATimeoutIsRetriedAndTheRetryCounts) {
  Build({Meter()});
  transport_->read_errors.push_back(Status::Timeout("timeout"));
  poller_->RunDue();
  ASSERT_EQ(batches_.size(), 1u);
  for (const Reading& r : batches_[0].readings) EXPECT_EQ(r.quality, Quality::kGood) << r.tag;
  EXPECT_EQ(transport_->requests.size(), 3u) << "two requests, the first one twice";
  EXPECT_EQ(poller_->counters(0).timeouts.load(), 1u);
  EXPECT_EQ(poller_->counters(0).retries.load(), 1u);
  EXPECT_EQ(poller_->link_state(0), LinkState::kOk);
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
  DeviceSpec d{
      "d", 1, milliseconds(1000), {Tag("v", Table::kHolding, 0, DataType::kUint16, 5.0)}, {}};
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

TEST_F(PollerTest, ADeviceThatStopsAnsweringSkipsItsOtherRequestsInThatPoll) {
  Build({Meter()});
  transport_->dead_units = {3};
  poller_->RunDue();
  ASSERT_EQ(batches_.size(), 1u);
  for (const Reading& r : batches_[0].readings) {
    EXPECT_EQ(r.quality, Quality::kBad);
    EXPECT_EQ(r.error, "timeout");
  }
  EXPECT_EQ(transport_->requests.size(), 2u) << "one request and its retry, not one per request";
  EXPECT_EQ(poller_->link_state(0), LinkState::kDegraded) << "not down after one poll";
}

TEST_F(PollerTest, ADeadDeviceIsBackedOffSoTheOthersOnTheBusKeepTheirRate) {
  DeviceSpec alive = Meter("alive", 1);
  DeviceSpec dead = Meter("dead", 2);
  alive.poll = dead.poll = milliseconds(100);
  Build({alive, dead});
  transport_->read_cost = milliseconds(5);
  transport_->timeout_cost = milliseconds(200);
  transport_->dead_units = {2};
  RunFor(milliseconds(60'000));

  const auto good = Of("alive");
  size_t good_polls = 0;
  for (const ReadingBatch* b : good) good_polls += AllGood(*b) ? 1 : 0;
  // 600 slots in a minute. Each attempt on the dead device holds the bus for
  // 200 ms; without backoff it would cost 400 ms (timeout and retry) every
  // 100 ms slot and the live device would get a poll in maybe one slot of five.
  EXPECT_GE(good_polls, 540u) << "the live device keeps at least 90% of its rate";
  EXPECT_EQ(poller_->link_state(0), LinkState::kOk);
  EXPECT_EQ(poller_->link_state(1), LinkState::kDown);

  // The dead device: 3 polls of 2 attempts, then single attempts at 1, 2, 4,
  // 8, 16, 30 and 30 s after each other.
  const size_t attempts = transport_->RequestsTo(2);
  EXPECT_GE(attempts, 9u);
  EXPECT_LE(attempts, 14u);
  // Its slots still yield readings, all bad, without asking the device.
  const auto dead_batches = Of("dead");
  EXPECT_GE(dead_batches.size(), 400u);
  for (const ReadingBatch* b : dead_batches) {
    for (const Reading& r : b->readings) {
      ASSERT_EQ(r.quality, Quality::kBad);
      ASSERT_EQ(r.error, "timeout");
    }
  }
  EXPECT_GT(poller_->counters(1).backed_off_polls.load(), 300u);
}

TEST_F(PollerTest, ADownDeviceComesBackAtItsNextAttempt) {
  Build({Meter()});
  transport_->dead_units = {3};
  for (int i = 0; i < 3; ++i) {
    if (i > 0) clock_.Advance(milliseconds(1000));
    poller_->RunDue();
  }
  EXPECT_EQ(poller_->link_state(0), LinkState::kDown);
  const size_t before = transport_->requests.size();
  transport_->dead_units.clear();
  RunFor(milliseconds(999));  // the first backoff is 1 s from the failed poll
  EXPECT_EQ(transport_->requests.size(), before) << "no request while backed off";
  RunFor(milliseconds(2000));
  EXPECT_EQ(poller_->link_state(0), LinkState::kOk);
  EXPECT_TRUE(AllGood(batches_.back()));
}

TEST_F(PollerTest, LinkStateFollowsTheAnswers) {
  Build({Meter()});
  poller_->RunDue();
  EXPECT_EQ(poller_->link_state(0), LinkState::kOk);

  // The first request answers with a bad CRC twice (attempt and retry), the
  // second one fine: degraded, and the bad tag says why.
  clock_.Advance(milliseconds(1000));
  transport_->read_errors = {Status::DeviceError("crc"), Status::DeviceError("crc")};
  poller_->RunDue();
  EXPECT_EQ(poller_->link_state(0), LinkState::kDegraded);
  EXPECT_EQ(Find(batches_.back(), "volts").error, "crc");
  EXPECT_EQ(Find(batches_.back(), "count").quality, Quality::kGood);
  EXPECT_EQ(poller_->counters(0).crc_errors.load(), 2u);

  // An exception is an answer: the link is ok, the tag is bad.
  clock_.Advance(milliseconds(1000));
  transport_->read_errors = {Status::DeviceError("exception:4")};
  poller_->RunDue();
  EXPECT_EQ(poller_->link_state(0), LinkState::kOk);
  EXPECT_EQ(Find(batches_.back(), "volts").error, "exception:4");
  EXPECT_EQ(poller_->counters(0).exceptions.load(), 1u);
  EXPECT_EQ(poller_->counters(0).retries.load(), 1u) << "exceptions are not retried";
}

TEST_F(PollerTest, AnEndpointOutageMarksDevicesDownWithoutDeviceBackoff) {
  Build({Meter()});
  poller_->RunDue();
  transport_->Close();
  transport_->connect_failures = 1;
  clock_.Advance(milliseconds(1000));
  poller_->RunDue();
  EXPECT_EQ(poller_->link_state(0), LinkState::kDown);
  EXPECT_EQ(Find(batches_.back(), "count").error, "not-connected");
  // The endpoint comes back: the device is read at the next slot after the
  // reconnect backoff (1 s), not after a device backoff on top of it.
  clock_.Advance(milliseconds(1000));
  poller_->RunDue();
  EXPECT_EQ(poller_->link_state(0), LinkState::kOk);
  EXPECT_TRUE(AllGood(batches_.back()));
}

TEST_F(PollerTest, ExceptionTwoSplitsTheRequestUntilTheBadTagIsIsolated) {
  std::vector<TagSpec> tags;
  for (uint16_t a = 0; a < 10; ++a) {
    tags.push_back(Tag("r" + std::to_string(a), Table::kHolding, a, DataType::kUint16));
  }
  DeviceSpec d{"d", 1, milliseconds(1000), std::move(tags), {}};
  Build({d});
  for (uint16_t a = 0; a < 10; ++a) transport_->registers[{Table::kHolding, a}] = a * 10;
  transport_->refused = {{Table::kHolding, 6}};
  EXPECT_EQ(poller_->counters(0).requests_per_cycle.load(), 1u);
  poller_->RunDue();
  ASSERT_EQ(batches_.size(), 1u);
  for (const Reading& r : batches_[0].readings) {
    if (r.tag == "r6") {
      EXPECT_EQ(r.quality, Quality::kBad);
      EXPECT_EQ(r.error, "exception:2");
    } else {
      EXPECT_EQ(r.quality, Quality::kGood) << r.tag;
      EXPECT_EQ(std::get<uint64_t>(r.value), std::stoul(r.tag.substr(1)) * 10) << r.tag;
    }
  }
  EXPECT_EQ(batches_[0].readings.size(), 10u);
  const size_t first_poll = transport_->requests.size();
  EXPECT_LE(first_poll, 9u) << "binary splitting, not one request per tag";
  const uint32_t plan = poller_->counters(0).requests_per_cycle.load();
  EXPECT_GE(plan, 3u);
  EXPECT_LE(plan, 5u);

  // The split plan is kept: the next poll sends exactly its requests, and
  // only the isolated one is refused.
  clock_.Advance(milliseconds(1000));
  const uint64_t exceptions = poller_->counters(0).exceptions.load();
  poller_->RunDue();
  EXPECT_EQ(transport_->requests.size() - first_poll, plan);
  EXPECT_EQ(poller_->counters(0).exceptions.load(), exceptions + 1);
  EXPECT_EQ(poller_->link_state(0), LinkState::kOk);
}

// Every exception a device may answer with (but 2, which splits, and 10 and
// 11, which come from a gateway): the tags of that request are bad with the
// code, the device's other requests are still read, the device counts as
// answering, and the next poll asks again.
class PollerExceptionTest : public PollerTest, public ::testing::WithParamInterface<int> {};

TEST_P(PollerExceptionTest, MakesOnlyTheRefusedRequestBadAndTheDeviceAnswering) {
  const std::string code = "exception:" + std::to_string(GetParam());
  Build({Meter("meter", 3), Meter("other", 4)});
  transport_->registers[{Table::kHolding, 0}] = 7;
  transport_->read_errors.push_back(Status::DeviceError(code));  // the meter's first request
  poller_->RunDue();
  ASSERT_EQ(batches_.size(), 2u);
  const ReadingBatch& meter = *Of("meter").at(0);
  EXPECT_EQ(Find(meter, "volts").quality, Quality::kBad);
  EXPECT_EQ(Find(meter, "volts").error, code);
  EXPECT_TRUE(std::holds_alternative<std::monostate>(Find(meter, "volts").value));
  EXPECT_EQ(Find(meter, "count").quality, Quality::kGood);
  EXPECT_EQ(Find(meter, "count").value, Value(uint64_t{7}));
  EXPECT_TRUE(AllGood(*Of("other").at(0)));
  EXPECT_EQ(poller_->counters(0).exceptions.load(), 1u);
  EXPECT_EQ(poller_->counters(0).retries.load(), 0u) << "a refusal is not retried";
  EXPECT_EQ(poller_->link_state(0), LinkState::kOk) << "the device answered";

  clock_.Advance(milliseconds(1000));
  poller_->RunDue();
  EXPECT_TRUE(AllGood(*Of("meter").at(1)));
}

INSTANTIATE_TEST_SUITE_P(Codes, PollerExceptionTest, ::testing::Values(1, 3, 4, 5, 6, 8),
                         [](const auto& param_info) {
                           return "Exception" + std::to_string(param_info.param);
                         });

// A gateway in front of a dead device answers exception 11 after its own
// timeout: for the device that is no answer, so it goes down and is backed
// off, and the other devices behind the gateway keep their rate.
class PollerGatewayExceptionTest : public PollerTest, public ::testing::WithParamInterface<int> {};

TEST_P(PollerGatewayExceptionTest, CountsAsNoAnswerAndTheDeviceIsBackedOff) {
  const std::string code = "exception:" + std::to_string(GetParam());
  DeviceSpec alive = Meter("alive", 1);
  DeviceSpec dead = Meter("dead", 2);
  alive.poll = dead.poll = milliseconds(100);
  Build({alive, dead});
  transport_->read_cost = milliseconds(5);
  transport_->unit_errors[2] = {Status::DeviceError(code), milliseconds(200)};
  RunFor(milliseconds(30'000));

  size_t good_polls = 0;
  for (const ReadingBatch* b : Of("alive")) good_polls += AllGood(*b) ? 1 : 0;
  EXPECT_GE(good_polls, 270u) << "the live device keeps at least 90% of its 300 slots";
  EXPECT_EQ(poller_->link_state(1), LinkState::kDown);
  EXPECT_EQ(poller_->counters(1).retries.load(), 0u) << "the gateway has waited already";
  // Three polls of one request each (the rest of each poll is skipped), then
  // single attempts at 1, 2, 4, 8 and 16 s.
  EXPECT_GE(transport_->RequestsTo(2), 6u);
  EXPECT_LE(transport_->RequestsTo(2), 9u);
  for (const ReadingBatch* b : Of("dead")) {
    for (const Reading& r : b->readings) {
      ASSERT_EQ(r.quality, Quality::kBad);
      ASSERT_EQ(r.error, code);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Codes, PollerGatewayExceptionTest, ::testing::Values(10, 11),
                         [](const auto& param_info) {
                           return "Exception" + std::to_string(param_info.param);
                         });

TEST_F(PollerTest, TagsWithTheirOwnIntervalFormPollGroups) {
  DeviceSpec d = Meter("d", 1);
  std::vector<TagSpec> tags = d.tags;
  tags[1].poll = milliseconds(250);  // temp, 4 times a second
  d.tags = std::move(tags);
  Build({d});
  RunFor(milliseconds(1000));
  ASSERT_EQ(batches_.size(), 4u);
  EXPECT_EQ(batches_[0].readings.size(), 3u) << "both groups due at once share one batch";
  for (size_t i = 1; i < 4; ++i) {
    ASSERT_EQ(batches_[i].readings.size(), 1u);
    EXPECT_EQ(batches_[i].readings[0].tag, "temp");
  }
  EXPECT_EQ(poller_->counters(0).requests_per_cycle.load(), 3u)
      << "temp is read apart from count, in its own group";
}

TEST_F(PollerTest, CoilsAndDiscreteInputsDecodeAsBool) {
  DeviceSpec d{"d",
               1,
               milliseconds(1000),
               {Tag("run", Table::kCoil, 4, DataType::kBool),
                Tag("fault", Table::kDiscrete, 0, DataType::kBool),
                Tag("door", Table::kCoil, 5, DataType::kBool)},
               {}};
  Build({d});
  transport_->registers[{Table::kCoil, 4}] = 1;
  transport_->registers[{Table::kDiscrete, 0}] = 0;
  poller_->RunDue();
  ASSERT_EQ(batches_.size(), 1u);
  EXPECT_EQ(Find(batches_[0], "run").value, Value(true));
  EXPECT_EQ(Find(batches_[0], "door").value, Value(false));
  EXPECT_EQ(Find(batches_[0], "fault").value, Value(false));
  EXPECT_EQ(transport_->requests.size(), 2u);
}

}  // namespace
}  // namespace tagrelay::modbus
