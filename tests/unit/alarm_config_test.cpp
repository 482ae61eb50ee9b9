// [[alarm]] and [[counter]] in the config: parsed into rules, every mistake an
// error at its line and column.
#include <gtest/gtest.h>

#include <string>

#include "agent/config.h"

namespace tagrelay {
namespace {

// A valid config whose device "meter" has tags voltage (float32, V), status
// (uint16) and name (string); alarms and counters are appended. Its last line is 20.
constexpr const char* kBase = R"([gateway]
id = "gw"
[uplink]
url = "mqtts://broker.example.com"
[[bus]]
name = "b"
type = "tcp"
host = "h"
[[device]]
id = "meter"
bus = "b"
[[device.tag]]
name = "voltage"
address = 0
type = "float32"
unit = "V"
[[device.tag]]
name = "status"
address = 2
[[device.tag]]
)";

ConfigResult Parse(const std::string& rules) {
  return ParseConfig(
      std::string(kBase) + "name = \"name\"\naddress = 3\ntype = \"string\"\nlength = 4\n" + rules,
      "test.toml");
}

std::string Dump(const ConfigResult& r) {
  std::string out;
  for (const ConfigError& e : r.errors) out += e.ToString() + "\n";
  return out;
}

// Lines of the rules text start at 25.
constexpr int kFirst = 25;

testing::AssertionResult OnlyError(const ConfigResult& r, int line, int column,
                                   const std::string& message) {
  if (r.errors.size() != 1) return testing::AssertionFailure() << "errors:\n" << Dump(r);
  const ConfigError& e = r.errors[0];
  if (e.line != line || e.column != column || e.message.find(message) == std::string::npos) {
    return testing::AssertionFailure()
           << "got " << e.ToString() << "\nwanted " << line << ":" << column << " " << message;
  }
  return testing::AssertionSuccess();
}

TEST(AlarmConfigTest, EveryKindParses) {
  const ConfigResult r = Parse(R"([[alarm]]
id = "hi"
device = "meter"
tag = "voltage"
kind = "high"
limit = 250.0
deadband = 2
on_delay = "5s"
off_delay = "1s"
severity = "critical"
message = "L1 overvoltage: {value} {unit}"
[[alarm]]
id = "lo"
device = "meter"
tag = "voltage"
kind = "low"
limit = 200
[[alarm]]
id = "st"
device = "meter"
tag = "status"
kind = "equals"
value = 3
[[alarm]]
id = "text"
device = "meter"
tag = "name"
kind = "equals"
value = "FAULT"
[[alarm]]
id = "ramp"
device = "meter"
tag = "voltage"
kind = "rate"
limit = 5
window = "60s"
[[alarm]]
id = "old"
device = "meter"
tag = "voltage"
kind = "stale"
after = "30s"
[[alarm]]
id = "link"
device = "meter"
kind = "comm_loss"
[[counter]]
id = "hours"
device = "meter"
running = "voltage >= 100"
snapshot = "1h"
)");
  ASSERT_TRUE(r.config.has_value()) << Dump(r);
  const Config& c = *r.config;
  ASSERT_EQ(c.alarms.size(), 7u);
  const rules::AlarmRule& hi = c.alarms[0];
  EXPECT_EQ(hi.kind, rules::AlarmKind::kHigh);
  EXPECT_EQ(hi.limit, 250.0);
  EXPECT_EQ(hi.deadband, 2.0);
  EXPECT_EQ(hi.on_delay, std::chrono::milliseconds(5000));
  EXPECT_EQ(hi.off_delay, std::chrono::milliseconds(1000));
  EXPECT_EQ(hi.severity, "critical");
  EXPECT_EQ(hi.unit, "V") << "from the tag";
  EXPECT_EQ(c.alarms[1].severity, "major") << "the default";
  EXPECT_EQ(c.alarms[2].equals, Value(int64_t{3}));
  EXPECT_EQ(c.alarms[3].equals, Value(std::string("FAULT")));
  EXPECT_EQ(c.alarms[4].window, std::chrono::milliseconds(60000));
  EXPECT_EQ(c.alarms[5].after, std::chrono::milliseconds(30000));
  EXPECT_EQ(c.alarms[6].kind, rules::AlarmKind::kCommLoss);
  EXPECT_TRUE(c.alarms[6].tag.empty());
  ASSERT_EQ(c.counters.size(), 1u);
  EXPECT_EQ(c.counters[0].tag, "voltage");
  EXPECT_EQ(c.counters[0].op, rules::Comparison::kGreaterEqual);
  EXPECT_EQ(c.counters[0].threshold, 100.0);
  EXPECT_EQ(c.counters[0].snapshot, std::chrono::milliseconds(3600000));
}

TEST(AlarmConfigTest, AnUnknownTagIsReportedAtItsValueWithTheDevicesTags) {
  const ConfigResult r = Parse(R"([[alarm]]
id = "a"
device = "meter"
tag = "volts"
kind = "high"
limit = 1
)");
  EXPECT_TRUE(OnlyError(r, kFirst + 3, 7, "device 'meter' has no tag 'volts'"));
  EXPECT_NE(r.errors[0].hint.find("voltage, status, name"), std::string::npos) << Dump(r);
}

TEST(AlarmConfigTest, AnUnknownDevice) {
  const ConfigResult r = Parse(R"([[alarm]]
id = "a"
device = "meters"
tag = "voltage"
kind = "high"
limit = 1
)");
  EXPECT_TRUE(OnlyError(r, kFirst + 2, 10, "'meters' is not a configured device"));
}

TEST(AlarmConfigTest, ADeadbandLargerThanTheBandBetweenTheLimits) {
  const ConfigResult r = Parse(R"([[alarm]]
id = "hi"
device = "meter"
tag = "voltage"
kind = "high"
limit = 250
deadband = 60
[[alarm]]
id = "lo"
device = "meter"
tag = "voltage"
kind = "low"
limit = 200
)");
  EXPECT_TRUE(
      OnlyError(r, kFirst + 6, 12, "deadband 60 is larger than the band between its limits"));
}

TEST(AlarmConfigTest, LimitsOutOfOrder) {
  const ConfigResult r = Parse(R"([[alarm]]
id = "hi"
device = "meter"
tag = "voltage"
kind = "high"
limit = 250
[[alarm]]
id = "hihi"
device = "meter"
tag = "voltage"
kind = "high_high"
limit = 240
)");
  EXPECT_TRUE(OnlyError(r, kFirst + 6, 1, "high_high limit must lie above the high limit of 'hi'"));
}

TEST(AlarmConfigTest, WhatAKindNeedsAndWhatDoesNotApply) {
  ConfigResult r = Parse(R"([[alarm]]
id = "a"
device = "meter"
tag = "voltage"
kind = "high"
)");
  EXPECT_TRUE(OnlyError(r, kFirst, 1, "missing required key 'limit'"));
  r = Parse(R"([[alarm]]
id = "a"
device = "meter"
tag = "voltage"
kind = "stale"
after = "10s"
limit = 3
)");
  EXPECT_TRUE(OnlyError(r, kFirst + 6, 9, "limit: does not apply to kind 'stale'"));
  r = Parse(R"([[alarm]]
id = "a"
device = "meter"
tag = "voltage"
kind = "comm_loss"
)");
  EXPECT_TRUE(OnlyError(r, kFirst + 3, 7, "tag: does not apply to kind 'comm_loss'"));
  r = Parse(R"([[alarm]]
id = "a"
device = "meter"
tag = "name"
kind = "high"
limit = 1
)");
  EXPECT_TRUE(OnlyError(r, kFirst + 4, 8, "needs a numeric tag"));
  r = Parse(R"([[alarm]]
id = "a"
device = "meter"
tag = "voltage"
kind = "highest"
)");
  EXPECT_TRUE(OnlyError(r, kFirst + 4, 8, "'highest' is not an alarm kind"));
}

TEST(AlarmConfigTest, AnUnknownPlaceholderInTheMessage) {
  const ConfigResult r = Parse(R"([[alarm]]
id = "a"
device = "meter"
tag = "voltage"
kind = "high"
limit = 1
message = "{value} {units}"
)");
  EXPECT_TRUE(OnlyError(r, kFirst + 6, 11, "unknown placeholder {units}"));
}

TEST(AlarmConfigTest, DuplicateIds) {
  const ConfigResult r = Parse(R"([[alarm]]
id = "a"
device = "meter"
kind = "comm_loss"
[[alarm]]
id = "a"
device = "meter"
kind = "comm_loss"
)");
  EXPECT_TRUE(OnlyError(r, kFirst + 5, 6, "two alarms have id 'a'"));
}

TEST(AlarmConfigTest, ABadRunningCondition) {
  ConfigResult r = Parse(R"([[counter]]
id = "c"
device = "meter"
running = "voltage about 3"
)");
  EXPECT_TRUE(OnlyError(r, kFirst + 3, 11, "expected one of > >= < <= == != after the tag"));
  r = Parse(R"([[counter]]
id = "c"
device = "meter"
running = "current > 3"
)");
  EXPECT_TRUE(OnlyError(r, kFirst + 3, 11, "device 'meter' has no tag 'current'"));
  r = Parse(R"([[counter]]
id = "c"
device = "meter"
running = "voltage > lots"
)");
  EXPECT_TRUE(OnlyError(r, kFirst + 3, 11, "expected a number after the comparison"));
}

}  // namespace
}  // namespace tagrelay
