// Tests of the wire contract's building blocks: agent/uplink/signing.h and the
// size-bounded encoders of agent/uplink/telemetry.h. The JSON itself is also
// checked against docs/schema/ by the integration tests' reference receiver.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "agent/rules/records.h"
#include "agent/uplink/signing.h"
#include "agent/uplink/telemetry.h"

namespace tagrelay::uplink {
namespace {

using rules::AlarmEvent;
using rules::AlarmRecord;
using rules::AlarmState;
using rules::CounterRecord;
using rules::CounterSnapshot;

TEST(SigningTest, SignatureIsBase64HmacSha256OfTopicNewlinePayload) {
  // Known answer, computed independently (Python's hmac module).
  EXPECT_EQ(Sign("Jefe", "tagrelay/v1/gw/d/telemetry", R"({"x":1})"),
            "OXh1sp0fptWD7tekLA/Up2Rfj46z/xrqq6baCzzwkz0=");
}

TEST(SigningTest, AnyChangeOfKeyTopicOrPayloadChangesTheSignature) {
  const std::string base = Sign("key-a", "t/d/telemetry", "payload");
  EXPECT_NE(Sign("key-b", "t/d/telemetry", "payload"), base);
  EXPECT_NE(Sign("key-a", "t/e/telemetry", "payload"), base);
  EXPECT_NE(Sign("key-a", "t/d/telemetry", "payloaD"), base);
  // The newline separates topic and payload: moving a byte across it changes the result.
  EXPECT_NE(Sign("key-a", "t/d/telemetryp", "ayload"), base);
  EXPECT_EQ(Sign("key-a", "t/d/telemetry", "payload"), base) << "deterministic";
}

TEST(SigningTest, KeyIdIsTheStartOfSha256AndDoesNotShowTheKey) {
  EXPECT_EQ(KeyId("Jefe"), "005725b48609c45e");
  EXPECT_EQ(KeyId("Jefe").size(), 16u);
  EXPECT_NE(KeyId("Jefe2"), KeyId("Jefe"));
  EXPECT_EQ(KeyId("k3y-material").find("k3y"), std::string::npos);
}

TEST(SigningTest, WipeEmptiesTheString) {
  std::string secret = "secret";
  Wipe(secret);
  EXPECT_TRUE(secret.empty());
}

std::vector<store::StoredReading> Rows(int64_t first, int n) {
  std::vector<store::StoredReading> rows;
  for (int i = 0; i < n; ++i) {
    rows.push_back(store::StoredReading{
        first + i, "voltage_l1", 1763800000000 + i, 230.0 + i / 10.0, Quality::kGood, {}});
  }
  return rows;
}

TEST(EncodeTelemetryTest, TakesTheLeadingReadingsThatFitTheByteBound) {
  const auto rows = Rows(41, 100);
  const std::string all = EncodeTelemetry({"gw", "d", false}, rows);
  for (size_t max : {size_t{300}, size_t{1000}, size_t{2500}, all.size() - 1}) {
    std::string out;
    const size_t n = EncodeTelemetry({"gw", "d", false}, rows, max, &out);
    ASSERT_GE(n, 1u);
    ASSERT_LT(n, rows.size()) << max;
    EXPECT_LE(out.size(), max) << "payload stays within the bound";
    EXPECT_NE(out.find("\"seq_first\":41,"), std::string::npos);
    EXPECT_NE(out.find("\"seq_last\":" + std::to_string(41 + n - 1) + ","), std::string::npos)
        << out;
    // Exactly n readings, and one more would not have fitted.
    size_t count = 0;
    for (size_t at = out.find("\"tag\":"); at != std::string::npos;
         at = out.find("\"tag\":", at + 1))
      ++count;
    EXPECT_EQ(count, n);
    std::string more;
    EncodeTelemetry({"gw", "d", false}, std::span(rows).first(n + 1), kUnbounded, &more);
    EXPECT_GT(more.size(), max) << "one more reading would not have fitted";
  }
  std::string out;
  EXPECT_EQ(EncodeTelemetry({"gw", "d", false}, rows, all.size(), &out), rows.size());
  EXPECT_TRUE(out == all) << "the exact size of the whole batch is enough for all of it";
}

TEST(EncodeTelemetryTest, OneReadingLargerThanTheBoundStillGoesAlone) {
  const auto rows = Rows(1, 3);
  std::string out;
  EXPECT_EQ(EncodeTelemetry({"gw", "d", true}, rows, 10, &out), 1u);
  EXPECT_NE(out.find("\"seq_first\":1,\"seq_last\":1,\"historical\":true"), std::string::npos)
      << out;
}

TEST(EncodeRecordsTest, AlarmRecordsGoIntoTheBatchAsStored) {
  AlarmEvent raised;
  raised.alarm = "overvoltage-l1";
  raised.tag = "voltage_l1";
  raised.ts_ms = 1763800000000;
  raised.kind = "high";
  raised.severity = "major";
  raised.value = 251.5;
  raised.limit = 250.0;
  raised.message = "L1 overvoltage: 251.5 V";
  AlarmEvent cleared;
  cleared.alarm = "comm";
  cleared.ts_ms = 1763800001000;
  cleared.state = AlarmState::kCleared;
  cleared.kind = "comm_loss";
  cleared.severity = "minor";
  const std::vector<store::StoredEvent> records{{7, raised.ts_ms, AlarmRecord(raised)},
                                                {8, cleared.ts_ms, AlarmRecord(cleared)}};
  std::string out;
  EXPECT_EQ(EncodeRecords(Stream::kAlarms, {"gw", "meter-3", false}, records, kUnbounded, &out),
            2u);
  EXPECT_EQ(out,
            R"({"schema":"tagrelay.alarms.v1","gateway":"gw","device":"meter-3","seq_first":7,)"
            R"("seq_last":8,"historical":false,"events":[)"
            R"({"alarm":"overvoltage-l1","tag":"voltage_l1","ts":1763800000000,"state":"raised",)"
            R"("kind":"high","severity":"major","v":251.5,"limit":250,)"
            R"("message":"L1 overvoltage: 251.5 V"},)"
            R"({"alarm":"comm","ts":1763800001000,"state":"cleared","kind":"comm_loss",)"
            R"("severity":"minor"}]})");
}

TEST(EncodeRecordsTest, CounterSnapshots) {
  const std::vector<store::StoredEvent> records{
      {3, 1763800000000, CounterRecord({"pump-1-hours", 1763800000000, 3600.5, 12, std::nullopt})}};
  std::string out;
  EXPECT_EQ(EncodeRecords(Stream::kCounters, {"gw", "vfd-1", true}, records, kUnbounded, &out), 1u);
  EXPECT_EQ(out,
            R"({"schema":"tagrelay.counters.v1","gateway":"gw","device":"vfd-1","seq_first":3,)"
            R"("seq_last":3,"historical":true,"snapshots":[)"
            R"({"counter":"pump-1-hours","ts":1763800000000,"run_s":3600.5,"starts":12}]})");
}

TEST(EncodeRecordsTest, TheGatewaysEventsHaveNoDevice) {
  const std::vector<store::StoredEvent> records{
      {1, 5,
       R"({"kind":"readings_lost","ts":5,"device":"d","seq_first":1,"seq_last":9,"count":9,"reason":"ring_full"})"},
      {2, 6, R"({"kind":"store_reset","ts":6,"reason":"corrupt"})"}};
  std::string out;
  EXPECT_EQ(EncodeRecords(Stream::kEvents, {"gw", "", false}, records, kUnbounded, &out), 2u);
  EXPECT_EQ(out,
            R"({"schema":"tagrelay.events.v1","gateway":"gw","seq_first":1,"seq_last":2,)"
            R"("historical":false,"events":[)"
            R"({"kind":"readings_lost","ts":5,"device":"d","seq_first":1,"seq_last":9,"count":9,)"
            R"("reason":"ring_full"},{"kind":"store_reset","ts":6,"reason":"corrupt"}]})");
}

TEST(EncodeBirthTest, ListsTheTagsWithTypeAndUnit) {
  const std::vector<TagInfo> tags{{"voltage_l1", "float32", "V", "L1 to neutral"},
                                  {"status", "uint16", "", ""}};
  EXPECT_EQ(EncodeBirth("gw", "meter-3", tags, "abcd", 1763800000000),
            R"({"schema":"tagrelay.birth.v1","gateway":"gw","device":"meter-3",)"
            R"("ts":1763800000000,"config_digest":"abcd","tags":[)"
            R"({"name":"voltage_l1","type":"float32","unit":"V","description":"L1 to neutral"},)"
            R"({"name":"status","type":"uint16"}]})");
}

}  // namespace
}  // namespace tagrelay::uplink
