// Tests of the wire contract's building blocks: agent/uplink/signing.h and the
// size-bounded encoders of agent/uplink/telemetry.h. The JSON itself is also
// checked against docs/schema/ by the integration tests' reference receiver.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "agent/rules/records.h"
#include "agent/uplink/signing.h"
#include "agent/uplink/telemetry.h"
#include "store/chunk_codec.h"

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

// Chunks as the store keeps them, and the StoredReadings they decode to.
struct StoredRun {
  std::vector<store::StoredChunk> chunks;
  std::vector<store::StoredReading> rows;
  store::TagNames names;
};

StoredRun MakeRun(int64_t first, const std::vector<std::vector<Reading>>& polls) {
  StoredRun run;
  std::vector<std::string> tags;
  int64_t seq = first;
  for (const std::vector<Reading>& poll : polls) {
    std::vector<int64_t> ids;
    for (const Reading& r : poll) {
      auto it = std::find(tags.begin(), tags.end(), r.tag);
      if (it == tags.end()) {
        tags.push_back(r.tag);
        run.names.Add(static_cast<int64_t>(tags.size()), r.tag);
        it = tags.end() - 1;
      }
      ids.push_back(it - tags.begin() + 1);
    }
    store::StoredChunk c{seq, static_cast<int64_t>(poll.size()), {}};
    store::EncodeChunk(poll, ids, &c.data);
    for (size_t i = 0; i < poll.size(); ++i) {
      const Reading& r = poll[i];
      run.rows.push_back(store::StoredReading{seq++, r.tag, r.ts_ms, r.value, r.quality, r.error,
                                              i + 1 == poll.size()});
    }
    run.chunks.push_back(std::move(c));
  }
  return run;
}

std::vector<std::vector<Reading>> EveryKindOfPoll() {
  const int64_t t = 1763800000000;
  return {
      {Reading::Good("voltage_l1", t, 230.5), Reading::Good("voltage_l2", t, 231.0),
       Reading::Good("energy_total", t, uint64_t{18446744073709551615u})},
      {Reading::Good("voltage_l1", t + 1000, 0.1 + 0.2), Reading::Good("count", t + 1000, -7),
       Reading::Good("on", t + 1000, true), Reading::Good("off", t + 999, false)},
      {Reading::Good("text", t + 2000, std::string("h\xC3\xA9llo \"q\" \\ \x01 \xFF")),
       Reading::Bad("voltage_l1", t + 2000, "exception:2"),
       Reading{"voltage_l2", t + 2000, 1.5, Quality::kUncertain, "stale"},
       Reading{"tag \"quoted\"", t + 2000, std::numeric_limits<double>::quiet_NaN(), Quality::kGood,
               "ignored while good"},
       Reading::Good("inf", -5, -std::numeric_limits<double>::infinity())},
      {Reading::Good("big", t + 3000, 1e21), Reading::Good("small", t + 3000, 5e-324),
       Reading::Good("neg", t + 3000, -0.0), Reading::Good("empty", t + 3000, std::string())},
  };
}

TEST(EncodeTelemetryChunksTest, WritesTheBytesOfTheReadingsTheChunksHold) {
  const StoredRun run = MakeRun(98, EveryKindOfPoll());
  for (bool historical : {false, true}) {
    const BatchHeader h{"gw", "meter-3", historical};
    std::string out;
    EXPECT_EQ(EncodeTelemetryChunks(h, run.chunks, run.names, kUnbounded, &out), run.chunks.size());
    EXPECT_EQ(out, EncodeTelemetry(h, run.rows));
  }
  std::string out;
  EncodeTelemetryChunks({"gw", "", false}, run.chunks, run.names, kUnbounded, &out);
  EXPECT_EQ(out, EncodeTelemetry({"gw", "", false}, run.rows)) << "no device";
}

// Random runs: tag names from one character to longer than the encoder's
// scratch buffer, more tags than its cache of tag openings, every kind of
// value and quality, errors, chunks of up to 250 readings.
TEST(EncodeTelemetryChunksTest, WritesTheBytesOfRandomRuns) {
  std::mt19937_64 rng(11);
  std::vector<std::string> names;
  for (int i = 0; i < 150; ++i) {
    const size_t len = i == 7 ? 20000 : i % 10 == 3 ? 200 + rng() % 300 : 1 + rng() % 40;
    std::string name;
    for (size_t k = 0; k < len; ++k) name += static_cast<char>('a' + rng() % 26);
    if (i % 17 == 0) name += "\"\\\x02\xC3\xA9";
    names.push_back(name);
  }
  for (int round = 0; round < 20; ++round) {
    std::vector<std::vector<Reading>> polls;
    int64_t ts = 1763800000000 + static_cast<int64_t>(rng() % 1000000);
    for (int p = 0; p < 8; ++p) {
      std::vector<Reading> poll;
      const size_t n = 1 + rng() % 250;
      for (size_t i = 0; i < n; ++i) {
        if (rng() % 4 == 0) ts += static_cast<int64_t>(rng() % 5000) - 1000;
        Reading r;
        r.tag = names[rng() % (round % 2 == 0 ? 6 : names.size())];
        r.ts_ms = ts;
        switch (rng() % 8) {
          case 0: break;
          case 1: r.value = rng() % 2 == 0; break;
          case 2: r.value = static_cast<int64_t>(rng()); break;
          case 3: r.value = static_cast<uint64_t>(rng()); break;
          case 4: r.value = std::bit_cast<double>(rng()); break;
          case 5: r.value = std::string(rng() % 30, static_cast<char>(rng() % 128)); break;
          default: r.value = 230.0 + static_cast<double>(rng() % 1000) / 10; break;
        }
        r.quality = static_cast<Quality>(rng() % 3);
        if (rng() % 3 == 0) r.error = std::string(rng() % 20, static_cast<char>(rng() % 256));
        poll.push_back(std::move(r));
      }
      polls.push_back(std::move(poll));
    }
    const StoredRun run = MakeRun(1 + round * 10000, polls);
    const BatchHeader h{"gw", "meter-3", round % 3 == 0};
    std::string out;
    EXPECT_EQ(EncodeTelemetryChunks(h, run.chunks, run.names, kUnbounded, &out), run.chunks.size());
    ASSERT_EQ(out, EncodeTelemetry(h, run.rows)) << "round " << round;
  }
}

TEST(EncodeTelemetryChunksTest, TakesTheLeadingWholeChunksThatFitTheByteBound) {
  std::vector<std::vector<Reading>> polls;
  for (int p = 0; p < 40; ++p) {
    std::vector<Reading> poll;
    for (int i = 0; i <= p % 7; ++i) {
      poll.push_back(Reading::Good("t" + std::to_string(i), 1763800000000 + p * 1000,
                                   230.0 + (p * 7 + i) / 10.0));
    }
    polls.push_back(poll);
  }
  // Seqs that gain a digit inside the run: seq_last's width changes the size.
  const StoredRun run = MakeRun(9990, polls);
  const BatchHeader h{"gw", "d", true};
  const size_t all = EncodeTelemetry(h, run.rows).size();
  for (size_t max = 100; max <= all + 1; max += 37) {
    std::string out;
    const size_t n = EncodeTelemetryChunks(h, run.chunks, run.names, max, &out);
    ASSERT_GE(n, 1u);
    size_t readings = 0;
    for (size_t i = 0; i < n; ++i) readings += static_cast<size_t>(run.chunks[i].count);
    EXPECT_EQ(out, EncodeTelemetry(h, std::span(run.rows).first(readings))) << max;
    if (n > 1) {
      EXPECT_LE(out.size(), max);
    }
    if (n < run.chunks.size()) {
      const size_t more = readings + static_cast<size_t>(run.chunks[n].count);
      EXPECT_GT(EncodeTelemetry(h, std::span(run.rows).first(more)).size(), max)
          << "one more chunk would not have fitted";
    } else {
      EXPECT_GE(max, all);
    }
  }
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
