#include "agent/uplink/uplink.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "agent/core/clock.h"
#include "agent/core/log.h"
#include "agent/rules/records.h"
#include "agent/uplink/signing.h"
#include "fakes/fake_mqtt_client.h"
#include "fakes/sequencing.h"
#include "fakes/sqlite_peek.h"
#include "fakes/temp_dir.h"
#include "store/outbox_reader.h"
#include "store/ring_store.h"

namespace tagrelay::uplink {
namespace {

using rules::AlarmEvent;
using rules::AlarmRecord;
using rules::AlarmState;
using rules::CounterRecord;
using rules::CounterSnapshot;

using std::chrono::milliseconds;

// The few fields of a telemetry payload the tests look at, found by text
// search (the payload format itself is checked in telemetry tests).
int64_t IntField(const std::string& json, const std::string& key) {
  const size_t at = json.find("\"" + key + "\":");
  if (at == std::string::npos) return -1;
  return std::stoll(json.substr(at + key.size() + 3));
}
bool Historical(const std::string& json) {
  return json.find("\"historical\":true") != std::string::npos;
}

class UplinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    OpenStore(1);
    options_.brokers.push_back(*BrokerUrl::Parse("mqtt://127.0.0.1:1883"));
    options_.gateway = "gw";
    options_.client_id = "tagrelay-gw";
    options_.batch_max_readings = 500;
    options_.batch_linger = milliseconds(1000);
    options_.max_inflight = 4;
    options_.backoff_initial = milliseconds(100);
    options_.backoff_max = milliseconds(400);
  }

  // Opens the store with chunks of at most `chunk` readings. Most tests use 1,
  // so that a batch may end after any reading.
  void OpenStore(size_t chunk, uint64_t max_bytes = 0) {
    store_.reset();
    store::StoreOptions o;
    o.path = dir_.File("tagrelay.db");
    o.max_chunk_readings = chunk;
    if (max_bytes > 0) o.max_bytes = max_bytes;
    auto s = store::RingStore::Open(o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
  }

  void TearDown() override {
    if (capturing_) SetLogSink([](const LogEvent&) {});
  }

  // Records the uplink's log lines from now on (the tests are single-threaded).
  void CaptureLogs() {
    capturing_ = true;
    SetLogSink([this](const LogEvent& e) {
      logs_.push_back(std::string(LogLevelName(e.level)) + " " + std::string(e.device) + ": " +
                      std::string(e.message));
    });
  }
  bool Logged(const std::string& text) const {
    for (const std::string& l : logs_) {
      if (l.find(text) != std::string::npos) return true;
    }
    return false;
  }

  std::string WriteKey(const std::string& name, const std::string& key, mode_t mode = 0600) {
    const std::string path = dir_.File(name);
    std::ofstream(path) << key << "\n";
    chmod(path.c_str(), mode);
    return path;
  }

  // Published messages whose topic ends with `suffix`.
  std::vector<FakeMqttClient::Published> On(const std::string& suffix) const {
    std::vector<FakeMqttClient::Published> out;
    for (const auto& p : mqtt_->published) {
      if (p.topic.ends_with(suffix)) out.push_back(p);
    }
    return out;
  }

  static std::string Prop(const FakeMqttClient::Published& p, const std::string& key) {
    for (const UserProperty& u : p.properties) {
      if (u.key == key) return u.value;
    }
    return {};
  }

  void Build() {
    auto client = std::make_unique<FakeMqttClient>();
    mqtt_ = client.get();
    auto reader = store::OutboxReader::Open(dir_.File("tagrelay.db"));
    ASSERT_TRUE(reader.ok());
    uplink_ = std::make_unique<Uplink>(
        options_, std::move(client), std::move(reader).value(),
        [this](store::StoreItem&& item) {
          if (const auto* a = std::get_if<store::DeliveryAck>(&item)) acks_.push_back(*a);
          if (const auto* e = std::get_if<store::EventAck>(&item)) event_acks_.push_back(*e);
          ASSERT_TRUE(store::Sequencer(*store_).Write({std::move(item)}).ok());
        },
        clock_);
    uplink_->SetHolds(&holds_);
    store_->SetHolds(&holds_);
  }

  // Stores a record of an event stream, as the alarm engine will.
  void AddRecord(std::string_view stream, const std::string& device, std::string body) {
    ASSERT_TRUE(store::Sequencer(*store_)
                    .Write({store::NewEvent{std::string(stream), device, clock_.wall_ms(),
                                            std::move(body)}})
                    .ok());
    // What the store writer reports after such a commit.
    if (uplink_) uplink_->NotifyNewData(store::CommitNews{{}, /*events=*/true});
  }

  void Store(const std::string& device, int n) {
    ReadingBatch b{device, {}};
    for (int i = 0; i < n; ++i)
      b.readings.push_back(Reading::Good("t", clock_.wall_ms(), int64_t{i}));
    ASSERT_TRUE(store::Sequencer(*store_).Write({b}).ok());
    // What the store writer reports after such a commit: only this device is read again.
    if (uplink_) uplink_->NotifyNewData(store::CommitNews{{device}, /*events=*/false});
  }

  void Turn(int n = 1) {
    for (int i = 0; i < n; ++i) uplink_->RunOnce(milliseconds(0));
  }

  // Connects: the first turn sends CONNECT, the next handles the CONNACK.
  void Connect() {
    Turn(2);
    ASSERT_TRUE(uplink_->connected());
  }

  TempDir dir_;
  FakeClock clock_;
  store::DeliveryHolds holds_;
  std::unique_ptr<store::RingStore> store_;
  UplinkOptions options_;
  FakeMqttClient* mqtt_ = nullptr;
  std::unique_ptr<Uplink> uplink_;
  std::vector<store::DeliveryAck> acks_;
  std::vector<store::EventAck> event_acks_;
  bool capturing_ = false;
  std::vector<std::string> logs_;
};

TEST_F(UplinkTest, RowsAreReportedDeliveredOnlyOnPuback) {
  Store("d", 10);
  Build();
  Connect();
  auto sent = mqtt_->Telemetry();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].topic, "tagrelay/v1/gw/d/telemetry");
  EXPECT_EQ(sent[0].qos, 1);
  EXPECT_EQ(IntField(sent[0].payload, "seq_first"), 1);
  EXPECT_EQ(IntField(sent[0].payload, "seq_last"), 10);
  Turn(3);
  EXPECT_TRUE(acks_.empty()) << "no PUBACK yet, nothing delivered";

  mqtt_->Ack(sent[0].mid);
  Turn();
  ASSERT_EQ(acks_.size(), 1u);
  EXPECT_EQ(acks_[0].device, "d");
  EXPECT_EQ(acks_[0].seq_first, 1);
  EXPECT_EQ(acks_[0].seq_last, 10);
  EXPECT_EQ(uplink_->counters().readings_acked.load(), 10u);
}

TEST_F(UplinkTest, AStoreThatOpensOnlyLaterIsReadFromThen) {
  const std::string later = dir_.File("later/tagrelay.db");
  auto client = std::make_unique<FakeMqttClient>();
  mqtt_ = client.get();
  uplink_ = std::make_unique<Uplink>(
      options_, std::move(client), later, [](store::StoreItem&&) {}, clock_);
  Connect();
  Turn(3);
  EXPECT_FALSE(On("/gw/status").empty()) << "the gateway is announced all the same";
  EXPECT_TRUE(mqtt_->Telemetry().empty());

  // The writer opens (creates) the store and commits what it kept meanwhile.
  std::filesystem::create_directory(dir_.File("later"));
  store::StoreOptions o;
  o.path = later;
  auto ring = store::RingStore::Open(o);
  ASSERT_TRUE(ring.ok()) << ring.status().ToString();
  ReadingBatch b{"d", {}};
  for (int i = 0; i < 3; ++i)
    b.readings.push_back(Reading::Good("t", clock_.wall_ms(), int64_t{i}));
  ASSERT_TRUE(store::Sequencer(**ring).Write({b}).ok());
  uplink_->NotifyNewData();
  Turn();
  clock_.Advance(milliseconds(1000));  // the live batch's linger
  Turn(2);
  auto sent = mqtt_->Telemetry();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(IntField(sent[0].payload, "seq_first"), 1);
  EXPECT_EQ(IntField(sent[0].payload, "seq_last"), 3);
}

TEST_F(UplinkTest, ARefusedBatchStaysAndIsSentAgainAfterABackoff) {
  Store("d", 5);
  Build();
  Connect();
  ASSERT_EQ(mqtt_->Telemetry().size(), 1u);
  mqtt_->Ack(mqtt_->Telemetry()[0].mid, 0x97);  // quota exceeded
  Turn(3);
  EXPECT_TRUE(acks_.empty());
  EXPECT_EQ(uplink_->counters().batches_refused.load(), 1u);
  EXPECT_EQ(mqtt_->Telemetry().size(), 1u) << "not resent at once";

  clock_.Advance(milliseconds(2500));
  Turn();
  auto sent = mqtt_->Telemetry();
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(IntField(sent[1].payload, "seq_first"), 1);
  EXPECT_EQ(IntField(sent[1].payload, "seq_last"), 5);
  mqtt_->Ack(sent[1].mid);
  Turn();
  ASSERT_EQ(acks_.size(), 1u);
  EXPECT_EQ(acks_[0].seq_last, 5);
}

TEST_F(UplinkTest, UnackedBatchesAreResentAfterALostSession) {
  Store("d", 3);
  Build();
  Connect();
  ASSERT_EQ(mqtt_->Telemetry().size(), 1u);
  mqtt_->Drop();
  Turn();
  EXPECT_FALSE(uplink_->connected());
  EXPECT_EQ(uplink_->inflight(), 0u);

  clock_.Advance(milliseconds(500));  // past the (jittered) backoff
  Turn(2);
  ASSERT_TRUE(uplink_->connected());
  EXPECT_EQ(mqtt_->connects.size(), 2u);
  auto sent = mqtt_->Telemetry();
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(IntField(sent[1].payload, "seq_first"), 1);
  EXPECT_EQ(IntField(sent[1].payload, "seq_last"), 3);
  EXPECT_TRUE(Historical(sent[1].payload));
  mqtt_->AckAll();
  Turn();
  ASSERT_EQ(acks_.size(), 1u);
}

TEST_F(UplinkTest, WhatIsTakenFromTheStoreIsHeldUntilItsAckIsStored) {
  Store("d", 10);
  Build();
  Connect();
  ASSERT_EQ(mqtt_->Telemetry().size(), 1u);
  EXPECT_EQ(holds_.HeldCount(), 10) << "the batch in flight";
  Store("d", 5);  // live rows, waiting for the linger
  Turn();
  EXPECT_EQ(mqtt_->Telemetry().size(), 1u);
  EXPECT_EQ(holds_.HeldCount(), 15) << "and the rows waiting for their batch";

  mqtt_->AckAll();
  Turn();
  ASSERT_EQ(acks_.size(), 1u);
  EXPECT_EQ(holds_.HeldCount(), 5) << "the stored ack let go of its range";
  clock_.Advance(milliseconds(1100));
  Turn();
  ASSERT_EQ(mqtt_->Telemetry().size(), 2u);
  mqtt_->AckAll();
  Turn();
  EXPECT_EQ(holds_.HeldCount(), 0);
}

TEST_F(UplinkTest, ARefusedBatchAndALostSessionLetGoOfWhatTheyHeld) {
  Store("d", 5);
  Build();
  Connect();
  ASSERT_EQ(mqtt_->Telemetry().size(), 1u);
  mqtt_->Ack(mqtt_->Telemetry()[0].mid, 0x97);
  Turn();
  EXPECT_EQ(holds_.HeldCount(), 0) << "a refused batch waits in the store, not in memory";
  clock_.Advance(milliseconds(2500));
  Turn();
  ASSERT_EQ(mqtt_->Telemetry().size(), 2u);
  EXPECT_EQ(holds_.HeldCount(), 5) << "its retry holds it again";

  Store("d", 3);  // pending live rows
  Turn();
  EXPECT_EQ(holds_.HeldCount(), 8);
  mqtt_->Drop();
  Turn();
  EXPECT_FALSE(uplink_->connected());
  EXPECT_EQ(holds_.HeldCount(), 0) << "nothing is on its way without a session";
}

TEST_F(UplinkTest, ABatchOnItsWayIsNotReportedLostWhenTheRingEvicts) {
  OpenStore(100, 1 << 20);
  options_.max_inflight = 1;
  options_.batch_max_readings = 100;
  Store("d", 100);  // seq 1..100: the oldest undelivered chunk
  Build();
  Connect();
  ASSERT_EQ(mqtt_->Telemetry().size(), 1u);
  EXPECT_EQ(IntField(mqtt_->Telemetry()[0].payload, "seq_last"), 100);
  // The ring fills up while the batch waits for its ack, and evicts.
  while (store_->Usage().evicted_undelivered == 0) {
    ReadingBatch b{"d", {}};
    for (int i = 0; i < 100; ++i) b.readings.push_back(Reading::Good("t", clock_.wall_ms(), 1.5));
    ASSERT_TRUE(store::Sequencer(*store_).Write({b}).ok());
  }
  mqtt_->AckAll();
  Turn();
  ASSERT_EQ(acks_.size(), 1u);
  EXPECT_EQ(acks_[0].seq_last, 100);
  // Readings 1..100 arrived; no loss record of the store may claim them.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(dir_.File("tagrelay.db").c_str(), &db), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db,
                               "SELECT min(json_extract(body, '$.seq_first')), count(*) FROM "
                               "events WHERE json_extract(body, '$.kind') = 'readings_lost'",
                               -1, &st, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  const int64_t first_lost = sqlite3_column_int64(st, 0), records = sqlite3_column_int64(st, 1);
  sqlite3_finalize(st);
  sqlite3_close(db);
  EXPECT_GE(records, 1);
  EXPECT_EQ(first_lost, 101) << "the eviction passed over the batch in flight";
}

TEST_F(UplinkTest, BatchesAreBoundedRunsOfConsecutiveSequenceNumbers) {
  Store("d", 1200);
  Build();
  Connect();
  auto sent = mqtt_->Telemetry();
  ASSERT_EQ(sent.size(), 3u);
  EXPECT_EQ(IntField(sent[0].payload, "seq_first"), 1);
  EXPECT_EQ(IntField(sent[0].payload, "seq_last"), 500);
  EXPECT_EQ(IntField(sent[1].payload, "seq_first"), 501);
  EXPECT_EQ(IntField(sent[2].payload, "seq_last"), 1200);

  // A hole in the undelivered rows splits a batch: 1..3 acked elsewhere, 4 not.
  mqtt_->AckAll();
  Store("e", 6);
  ASSERT_TRUE(store::Sequencer(*store_).Write({store::DeliveryAck{"e", 3, 4}}).ok());
  Turn();
  clock_.Advance(milliseconds(1000));  // the linger of the live rows of "e"
  Turn();
  std::vector<std::pair<int64_t, int64_t>> ranges;
  for (const auto& p : mqtt_->Telemetry()) {
    if (p.topic.find("/e/") != std::string::npos) {
      ranges.emplace_back(IntField(p.payload, "seq_first"), IntField(p.payload, "seq_last"));
    }
  }
  EXPECT_EQ(ranges, (std::vector<std::pair<int64_t, int64_t>>{{1, 2}, {5, 6}}));
}

TEST_F(UplinkTest, TheInflightWindowIsBounded) {
  options_.batch_max_readings = 10;
  options_.max_inflight = 2;
  Store("d", 55);
  Build();
  Connect();
  EXPECT_EQ(mqtt_->Telemetry().size(), 2u);
  EXPECT_EQ(uplink_->inflight(), 2u);
  Turn(3);
  EXPECT_EQ(mqtt_->Telemetry().size(), 2u) << "no more until acks come";
  mqtt_->Ack(mqtt_->Telemetry()[0].mid);
  Turn();
  EXPECT_EQ(mqtt_->Telemetry().size(), 3u);
  EXPECT_EQ(uplink_->inflight(), 2u);
}

// The backlog is read for the whole window at once; what does not fit the
// window is let go of, and acks handled together reach the store as one range.
TEST_F(UplinkTest, TheBacklogIsReadForTheWindowAndAcksThatContinueEachOtherGoAsOne) {
  options_.batch_max_readings = 10;
  options_.max_inflight = 3;
  OpenStore(7);
  for (int i = 0; i < 9; ++i) Store("d", 7);  // 9 chunks of 7: a batch holds one
  Build();
  Connect();
  auto ranges = [this] {
    std::vector<std::pair<int64_t, int64_t>> out;
    for (const auto& p : mqtt_->Telemetry()) {
      out.emplace_back(IntField(p.payload, "seq_first"), IntField(p.payload, "seq_last"));
    }
    return out;
  };
  using R = std::vector<std::pair<int64_t, int64_t>>;
  EXPECT_EQ(ranges(), (R{{1, 7}, {8, 14}, {15, 21}}));
  EXPECT_EQ(holds_.HeldCount(), 21) << "the chunks read past the window are let go of";

  mqtt_->AckAll();
  Turn();
  ASSERT_EQ(acks_.size(), 1u);
  EXPECT_EQ(acks_[0].seq_first, 1);
  EXPECT_EQ(acks_[0].seq_last, 21);
  EXPECT_EQ(ranges(), (R{{1, 7}, {8, 14}, {15, 21}, {22, 28}, {29, 35}, {36, 42}}));
  EXPECT_EQ(holds_.HeldCount(), 21);

  // Acks of batches that do not continue each other stay apart.
  const auto sent = mqtt_->Telemetry();
  mqtt_->Ack(sent[3].mid);
  mqtt_->Ack(sent[5].mid);
  Turn();
  ASSERT_EQ(acks_.size(), 3u);
  EXPECT_EQ(acks_[1].seq_first, 22);
  EXPECT_EQ(acks_[1].seq_last, 28);
  EXPECT_EQ(acks_[2].seq_first, 36);
  EXPECT_EQ(acks_[2].seq_last, 42);
  for (int i = 0; i < 10 && uplink_->counters().readings_acked.load() < 63; ++i) {
    mqtt_->AckAll();
    Turn();
  }
  EXPECT_EQ(uplink_->counters().readings_acked.load(), 63u);
  EXPECT_EQ(uplink_->counters().readings_sent.load(), 63u) << "nothing went twice";
  EXPECT_EQ(holds_.HeldCount(), 0);
  EXPECT_EQ(testing::SqlInt(dir_.File("tagrelay.db"), "SELECT count(*) FROM outbox"), 0);
}

TEST_F(UplinkTest, LiveRowsWaitForTheLingerOrAFullBatch) {
  options_.batch_max_readings = 10;
  Build();
  Connect();
  Store("d", 3);
  Turn();
  EXPECT_TRUE(mqtt_->Telemetry().empty()) << "3 rows, linger not over";
  clock_.Advance(milliseconds(999));
  Turn();
  EXPECT_TRUE(mqtt_->Telemetry().empty());
  clock_.Advance(milliseconds(1));
  Turn();
  ASSERT_EQ(mqtt_->Telemetry().size(), 1u);
  EXPECT_FALSE(Historical(mqtt_->Telemetry()[0].payload));
  EXPECT_EQ(IntField(mqtt_->Telemetry()[0].payload, "seq_last"), 3);

  Store("d", 12);  // a full batch goes at once, the rest lingers
  Turn();
  ASSERT_EQ(mqtt_->Telemetry().size(), 2u);
  EXPECT_EQ(IntField(mqtt_->Telemetry()[1].payload, "seq_first"), 4);
  EXPECT_EQ(IntField(mqtt_->Telemetry()[1].payload, "seq_last"), 13);
}

TEST_F(UplinkTest, LiveDataGoesAheadOfTheBacklog) {
  options_.batch_max_readings = 10;
  options_.max_inflight = 1;
  Store("d", 100);  // the backlog: ten batches
  Build();
  Connect();
  ASSERT_EQ(mqtt_->Telemetry().size(), 1u);
  EXPECT_TRUE(Historical(mqtt_->Telemetry()[0].payload));

  Store("d", 10);  // live rows arrive: a full batch
  mqtt_->AckAll();
  Turn();
  auto sent = mqtt_->Telemetry();
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_FALSE(Historical(sent[1].payload)) << "the live batch jumps the backlog";
  EXPECT_EQ(IntField(sent[1].payload, "seq_first"), 101);
  mqtt_->AckAll();
  Turn();
  sent = mqtt_->Telemetry();
  ASSERT_EQ(sent.size(), 3u);
  EXPECT_TRUE(Historical(sent[2].payload));
  EXPECT_EQ(IntField(sent[2].payload, "seq_first"), 11);
}

TEST_F(UplinkTest, AnnouncesItselfOnlineRetained) {
  options_.version = "1.2.3";
  options_.config_digest = "abcd";
  Build();
  Connect();
  ASSERT_FALSE(mqtt_->published.empty());
  const auto& status = mqtt_->published[0];
  EXPECT_EQ(status.topic, "tagrelay/v1/gw/status");
  EXPECT_TRUE(status.retain);
  EXPECT_NE(status.payload.find("\"state\":\"online\""), std::string::npos);
  EXPECT_NE(status.payload.find("\"version\":\"1.2.3\""), std::string::npos);
  ASSERT_EQ(mqtt_->connects.size(), 1u);
  EXPECT_EQ(mqtt_->connects[0].will_topic, "tagrelay/v1/gw/status");
  EXPECT_NE(mqtt_->connects[0].will_payload.find("offline"), std::string::npos);
}

TEST_F(UplinkTest, RefusedConnectionsBackOffWithJitterUpToTheCap) {
  Build();
  mqtt_->refuse_connect = true;
  Turn();
  EXPECT_EQ(mqtt_->connects.size(), 1u);
  Turn(5);
  EXPECT_EQ(mqtt_->connects.size(), 1u) << "no retry before the backoff";
  for (int i = 0; i < 20; ++i) {
    clock_.Advance(milliseconds(401));  // the cap: every retry is due by now
    Turn();
  }
  EXPECT_EQ(mqtt_->connects.size(), 21u);
  EXPECT_EQ(uplink_->counters().connection_failures.load(), 21u);
}

TEST_F(UplinkTest, TheKeyIsReadAtEveryConnectAndSentAsPassword) {
  const std::string key_path = dir_.File("gw.key");
  { std::ofstream(key_path) << "first-key\n"; }
  chmod(key_path.c_str(), 0600);
  options_.api_key_file = key_path;
  Build();
  Connect();
  ASSERT_EQ(mqtt_->connects.size(), 1u);
  EXPECT_EQ(mqtt_->connects[0].username, "gw");
  EXPECT_EQ(mqtt_->connects[0].password, "first-key");

  { std::ofstream(key_path) << "rotated-key\n"; }
  mqtt_->Drop();
  Turn();
  clock_.Advance(milliseconds(500));
  Turn(2);
  ASSERT_EQ(mqtt_->connects.size(), 2u);
  EXPECT_EQ(mqtt_->connects[1].password, "rotated-key");
}

TEST_F(UplinkTest, AKeyFileOthersCanReadIsRefusedAndNothingConnects) {
  const std::string key_path = dir_.File("gw.key");
  { std::ofstream(key_path) << "k\n"; }
  chmod(key_path.c_str(), 0644);
  options_.api_key_file = key_path;
  Build();
  Turn(3);
  EXPECT_TRUE(mqtt_->connects.empty());
  EXPECT_GE(uplink_->counters().connection_failures.load(), 1u);
}

TEST_F(UplinkTest, AcksInAnyOrderMarkExactlyTheirBatchesAndAWithheldAckMarksNothing) {
  options_.batch_max_readings = 10;
  options_.max_inflight = 5;
  Store("d", 50);
  Build();
  Connect();
  auto sent = mqtt_->Telemetry();
  ASSERT_EQ(sent.size(), 5u);
  // The broker answers out of order and keeps the second batch's ack back.
  mqtt_->Ack(sent[4].mid);
  mqtt_->Ack(sent[0].mid);
  mqtt_->Ack(sent[3].mid);
  mqtt_->Ack(sent[2].mid, 0x87);  // not authorized: not delivered
  Turn();
  std::vector<std::pair<int64_t, int64_t>> marked;
  for (const auto& a : acks_) marked.emplace_back(a.seq_first, a.seq_last);
  EXPECT_EQ(marked, (std::vector<std::pair<int64_t, int64_t>>{{41, 50}, {1, 10}, {31, 40}}));
  EXPECT_EQ(uplink_->counters().batches_refused.load(), 1u);
  EXPECT_EQ(uplink_->inflight(), 1u) << "the withheld batch is still awaited";

  // The connection drops before the withheld ack: 11..20 and the refused 21..30
  // were never acknowledged, so they are sent again and only then marked.
  mqtt_->Drop();
  Turn();
  clock_.Advance(milliseconds(500));
  Turn(2);
  ASSERT_TRUE(uplink_->connected());
  std::vector<std::pair<int64_t, int64_t>> resent;
  for (const auto& p : mqtt_->Telemetry()) {
    if (p.mid > sent.back().mid) {
      resent.emplace_back(IntField(p.payload, "seq_first"), IntField(p.payload, "seq_last"));
    }
  }
  EXPECT_EQ(resent, (std::vector<std::pair<int64_t, int64_t>>{{11, 20}, {21, 30}}));
}

TEST_F(UplinkTest, RefusedBatchesBackOffLongerAtEveryRefusal) {
  options_.refused_retry = milliseconds(1000);
  options_.backoff_max = milliseconds(60000);
  Store("d", 5);
  Build();
  Connect();
  // Refuse the batch three times; the wait before each resend at least doubles.
  std::vector<int64_t> waits;
  for (int refusal = 0; refusal < 3; ++refusal) {
    const size_t before = mqtt_->Telemetry().size();
    mqtt_->Ack(mqtt_->Telemetry().back().mid, 0x80);
    Turn();
    int64_t waited = 0;
    while (mqtt_->Telemetry().size() == before && waited < 100000) {
      clock_.Advance(milliseconds(100));
      waited += 100;
      Turn();
    }
    waits.push_back(waited);
  }
  ASSERT_EQ(waits.size(), 3u);
  EXPECT_GE(waits[0], 500);
  EXPECT_LE(waits[0], 1000);
  EXPECT_GE(waits[1], 1000);
  EXPECT_LE(waits[1], 2000);
  EXPECT_GE(waits[2], 2000);
  EXPECT_LE(waits[2], 4000);
  EXPECT_TRUE(acks_.empty());
  EXPECT_EQ(uplink_->counters().batches_refused.load(), 3u);
}

TEST_F(UplinkTest, BatchesCloseOnTheByteBound) {
  options_.batch_max_bytes = 1024;
  options_.max_inflight = 100;
  Store("d", 100);
  Build();
  Connect();
  auto sent = mqtt_->Telemetry();
  ASSERT_GT(sent.size(), 5u);
  int64_t next = 1;
  for (const auto& p : sent) {
    EXPECT_LE(p.payload.size(), 1024u);
    EXPECT_EQ(IntField(p.payload, "seq_first"), next);
    next = IntField(p.payload, "seq_last") + 1;
  }
  mqtt_->AckAll();
  Turn(3);
  int64_t acked = 0;
  for (const auto& a : acks_) acked += a.seq_last - a.seq_first + 1;
  EXPECT_EQ(acked, 100);
}

TEST_F(UplinkTest, TelemetryBatchesEndOnChunkBoundaries) {
  OpenStore(4);
  options_.batch_max_readings = 10;
  options_.max_inflight = 100;
  Store("d", 20);  // chunks 1-4, 5-8, 9-12, 13-16, 17-20
  Build();
  Connect();
  std::vector<std::pair<int64_t, int64_t>> ranges;
  for (const auto& p : mqtt_->Telemetry()) {
    ranges.emplace_back(IntField(p.payload, "seq_first"), IntField(p.payload, "seq_last"));
  }
  EXPECT_EQ(ranges, (std::vector<std::pair<int64_t, int64_t>>{{1, 8}, {9, 16}, {17, 20}}))
      << "at most 10 readings, cut where a chunk ends";
  mqtt_->AckAll();
  Turn();
  auto reader = store::OutboxReader::Open(dir_.File("tagrelay.db"));
  ASSERT_TRUE(reader.ok());
  EXPECT_EQ(*reader->CountUndelivered(), 0) << "every ack covered whole chunks";
}

TEST_F(UplinkTest, TheByteBoundCutsOnAChunkBoundaryAndABigChunkGoesAlone) {
  OpenStore(6);
  options_.batch_max_bytes = 600;  // room for about eight readings
  options_.max_inflight = 100;
  Store("d", 18);
  Build();
  Connect();
  std::vector<std::pair<int64_t, int64_t>> ranges;
  for (const auto& p : mqtt_->Telemetry()) {
    ranges.emplace_back(IntField(p.payload, "seq_first"), IntField(p.payload, "seq_last"));
  }
  EXPECT_EQ(ranges, (std::vector<std::pair<int64_t, int64_t>>{{1, 6}, {7, 12}, {13, 18}}));

  options_.batch_max_bytes = 200;  // less than one chunk of six
  Build();
  Connect();
  ranges.clear();
  for (const auto& p : mqtt_->Telemetry()) {
    ranges.emplace_back(IntField(p.payload, "seq_first"), IntField(p.payload, "seq_last"));
  }
  EXPECT_EQ(ranges, (std::vector<std::pair<int64_t, int64_t>>{{1, 6}, {7, 12}, {13, 18}}))
      << "a chunk larger than the bound still goes, whole and alone";
}

TEST_F(UplinkTest, AChunkThatDoesNotDecodeIsDiscardedAndReportedAndTheRestGoes) {
  OpenStore(2);
  Store("d", 6);  // chunks 1-2, 3-4, 5-6
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(dir_.File("tagrelay.db").c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "UPDATE chunks SET data = x'01' WHERE seq_first = 3", nullptr,
                           nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
  }
  Build();
  Connect();
  std::vector<std::pair<int64_t, int64_t>> ranges;
  for (const auto& p : mqtt_->Telemetry()) {
    ranges.emplace_back(IntField(p.payload, "seq_first"), IntField(p.payload, "seq_last"));
  }
  EXPECT_EQ(ranges, (std::vector<std::pair<int64_t, int64_t>>{{1, 2}, {5, 6}}));
  EXPECT_EQ(uplink_->counters().chunks_discarded.load(), 1u);
  // The store dropped the chunk and said so on the gateway's events stream.
  uplink_->NotifyNewData();
  Turn();
  ASSERT_EQ(On("/gw/events").size(), 1u);
  const std::string payload = On("/gw/events")[0].payload;
  EXPECT_NE(payload.find(R"("kind":"readings_lost")"), std::string::npos) << payload;
  EXPECT_NE(payload.find(R"("device":"d","seq_first":3,"seq_last":4,"count":2,"reason":"corrupt")"),
            std::string::npos)
      << payload;
}

TEST_F(UplinkTest, TheBacklogIsRateCappedButLiveDataIsNot) {
  options_.batch_max_readings = 10;
  options_.batch_max_bytes = 1024;
  options_.max_inflight = 100;
  options_.backlog_rate = 2000;  // bytes/s
  Store("d", 200);               // backlog: 20 batches of about 700 bytes
  Build();
  Connect();
  mqtt_->AckAll();
  Turn();
  const auto bytes = [&](bool historical) {
    size_t n = 0;
    for (const auto& p : mqtt_->Telemetry()) {
      if (Historical(p.payload) == historical) n += p.payload.size();
    }
    return n;
  };
  const size_t first = bytes(true);
  EXPECT_GT(first, 0u);
  EXPECT_LE(first, 2000u + 1024u) << "a burst of at most one bucket";
  for (int i = 0; i < 10; ++i) {
    clock_.Advance(milliseconds(500));
    mqtt_->AckAll();
    Turn();
  }
  // Five seconds at 2000 bytes/s, plus the first bucket.
  EXPECT_LE(bytes(true), 5 * 2000u + 2000u + 1024u);
  EXPECT_GE(bytes(true), 5 * 2000u - 1024u);

  Store("d", 30);  // live rows: three full batches go at once, whatever the backlog's budget
  Turn();
  size_t live = 0;
  for (const auto& p : mqtt_->Telemetry()) live += Historical(p.payload) ? 0 : 1;
  EXPECT_EQ(live, 3u);
}

TEST_F(UplinkTest, AlarmEventsGoAheadOfTelemetryAndTheirAcksReachTheStore) {
  options_.max_inflight = 2;
  options_.batch_max_readings = 10;
  Store("d", 40);
  Build();
  AlarmEvent e;
  e.alarm = "overvoltage-l1";
  e.tag = "t";
  e.kind = "high";
  e.severity = "major";
  e.value = 251.0;
  AddRecord(store::kStreamAlarms, "d", AlarmRecord(e));
  Connect();
  ASSERT_EQ(On("/d/alarms").size(), 1u);
  EXPECT_EQ(mqtt_->Telemetry().size(), 1u) << "the alarm took one of the two window slots";
  EXPECT_TRUE(Historical(On("/d/alarms")[0].payload))
      << "stored before the session began: historical";

  // A new alarm while the window is full goes out before the waiting telemetry.
  AddRecord(store::kStreamAlarms, "d", AlarmRecord(e));
  AddRecord(store::kStreamCounters, "d",
            CounterRecord(CounterSnapshot{"pump-hours", 0, 3600, 2, true}));
  mqtt_->Ack(mqtt_->Telemetry()[0].mid);
  Turn();
  ASSERT_EQ(On("/d/alarms").size(), 2u);
  EXPECT_EQ(IntField(On("/d/alarms")[1].payload, "seq_first"), 2);
  EXPECT_FALSE(Historical(On("/d/alarms")[1].payload));
  EXPECT_EQ(mqtt_->Telemetry().size(), 1u);

  mqtt_->Ack(On("/d/alarms")[0].mid);
  mqtt_->Ack(On("/d/alarms")[1].mid);
  Turn();
  ASSERT_EQ(On("/d/counters").size(), 1u) << "counter snapshots are priority too";
  ASSERT_EQ(event_acks_.size(), 2u);
  EXPECT_EQ(event_acks_[0].stream, "alarms");
  EXPECT_EQ(event_acks_[0].device, "d");
  EXPECT_EQ(event_acks_[0].seq_first, 1);
  EXPECT_EQ(event_acks_[1].seq_first, 2);
  EXPECT_EQ(uplink_->counters().records_acked.load(), 2u);
  ASSERT_EQ(acks_.size(), 1u) << "alarm acks are not readings' acks";
  EXPECT_EQ(acks_[0].seq_last, 10);
}

TEST_F(UplinkTest, ARefusedAlarmBatchStaysUndeliveredAndIsRetried) {
  Build();
  AlarmEvent e;
  e.alarm = "a";
  e.kind = "comm_loss";
  e.severity = "minor";
  AddRecord(store::kStreamAlarms, "d", AlarmRecord(e));
  Connect();
  ASSERT_EQ(On("/d/alarms").size(), 1u);
  mqtt_->Ack(On("/d/alarms")[0].mid, 0x97);
  Turn();
  EXPECT_TRUE(event_acks_.empty());
  clock_.Advance(options_.refused_retry);
  Turn();
  ASSERT_EQ(On("/d/alarms").size(), 2u);
  mqtt_->Ack(On("/d/alarms")[1].mid);
  Turn();
  ASSERT_EQ(event_acks_.size(), 1u);
  EXPECT_EQ(event_acks_[0].seq_last, 1);
}

TEST_F(UplinkTest, ADeviceWithAKeySignsEveryMessage) {
  options_.devices.push_back(UplinkDevice{"d", WriteKey("d.key", "device-d-key"), [] {
                                            return std::vector<TagInfo>{{"t", "uint16", "V", ""}};
                                          }});
  options_.devices.push_back(UplinkDevice{"e", "", [] {
                                            return std::vector<TagInfo>{{"u", "int16", "", ""}};
                                          }});
  Store("d", 3);
  Store("e", 3);
  Build();
  Connect();
  const auto check = [&](const FakeMqttClient::Published& p) {
    EXPECT_EQ(Prop(p, "kid"), KeyId("device-d-key")) << p.topic;
    EXPECT_EQ(Prop(p, "sig"), Sign("device-d-key", p.topic, p.payload)) << p.topic;
  };
  ASSERT_EQ(On("/d/telemetry").size(), 1u);
  check(On("/d/telemetry")[0]);
  ASSERT_EQ(On("/d/birth").size(), 1u);
  check(On("/d/birth")[0]);
  EXPECT_TRUE(On("/d/birth")[0].retain);
  EXPECT_NE(On("/d/birth")[0].payload.find(R"({"name":"t","type":"uint16","unit":"V"})"),
            std::string::npos);
  ASSERT_EQ(On("/e/telemetry").size(), 1u);
  EXPECT_TRUE(On("/e/telemetry")[0].properties.empty()) << "a device without a key: unsigned";
  ASSERT_EQ(On("/e/birth").size(), 1u);
}

TEST_F(UplinkTest, ADeviceWhoseKeyFileIsUnusableIsHeldUntilTheKeyIsFixed) {
  CaptureLogs();
  const std::string key = WriteKey("d.key", "device-d-key", 0644);
  options_.devices.push_back(UplinkDevice{"d", key, {}});
  options_.devices.push_back(UplinkDevice{"e", "", {}});
  Store("d", 3);
  Store("e", 3);
  Build();
  Connect();
  EXPECT_TRUE(On("/d/telemetry").empty());
  EXPECT_TRUE(On("/d/birth").empty());
  EXPECT_EQ(On("/e/telemetry").size(), 1u) << "other devices are not held back";
  EXPECT_EQ(uplink_->counters().devices_held.load(), 1u);
  EXPECT_TRUE(Logged("d: signing key: key file " + key + " has mode 0644"));
  EXPECT_FALSE(Logged("device-d-key"));

  chmod(key.c_str(), 0600);
  uplink_->RequestKeyReload();
  Turn();
  EXPECT_EQ(uplink_->counters().devices_held.load(), 0u);
  ASSERT_EQ(On("/d/birth").size(), 1u);
  ASSERT_EQ(On("/d/telemetry").size(), 1u);
  EXPECT_EQ(Prop(On("/d/telemetry")[0], "sig"),
            Sign("device-d-key", On("/d/telemetry")[0].topic, On("/d/telemetry")[0].payload));
}

TEST_F(UplinkTest, ARotatedDeviceKeyIsUsedAfterAReload) {
  const std::string key = WriteKey("d.key", "old-key");
  options_.devices.push_back(UplinkDevice{"d", key, {}});
  options_.batch_linger = milliseconds(0);
  Build();
  Connect();
  Store("d", 1);
  Turn();
  ASSERT_EQ(On("/d/telemetry").size(), 1u);
  EXPECT_EQ(Prop(On("/d/telemetry")[0], "kid"), KeyId("old-key"));
  WriteKey("d.key", "new-key");
  uplink_->RequestKeyReload();
  Store("d", 1);
  Turn();
  ASSERT_EQ(On("/d/telemetry").size(), 2u);
  EXPECT_EQ(Prop(On("/d/telemetry")[1], "kid"), KeyId("new-key"));
  EXPECT_EQ(mqtt_->connects.size(), 1u) << "a device key needs no new session";
}

TEST_F(UplinkTest, AChangedGatewayKeyStartsANewSessionAtOnceOnReload) {
  CaptureLogs();
  options_.api_key_file = WriteKey("gw.key", "first-key");
  Build();
  Connect();
  uplink_->RequestKeyReload();
  Turn();
  EXPECT_EQ(mqtt_->connects.size(), 1u) << "same key: the session goes on";

  WriteKey("gw.key", "second-key");
  uplink_->RequestKeyReload();
  Turn(2);  // no clock advance: no backoff for a planned reconnect
  ASSERT_EQ(mqtt_->connects.size(), 2u);
  EXPECT_EQ(mqtt_->connects[1].password, "second-key");
  EXPECT_TRUE(uplink_->connected());
  EXPECT_EQ(uplink_->counters().connection_failures.load(), 0u);
  EXPECT_TRUE(Logged("gateway API key changed (key id " + KeyId("second-key") + ")"));
  for (const std::string& l : logs_) {
    EXPECT_EQ(l.find("first-key"), std::string::npos) << l;
    EXPECT_EQ(l.find("second-key"), std::string::npos) << l;
  }
}

TEST_F(UplinkTest, ARefusedConnectionSaysWhatToCheck) {
  CaptureLogs();
  Build();
  mqtt_->connack_reason = 0x86;
  Turn(2);
  EXPECT_FALSE(uplink_->connected());
  EXPECT_TRUE(Logged("broker refused the connection: Not authorized (0x86)"));
  EXPECT_TRUE(Logged("check api_key_file"));
}

TEST_F(UplinkTest, BrokersAreTriedInTurnAfterFailures) {
  options_.brokers.push_back(*BrokerUrl::Parse("mqtts://backup.example:8883"));
  Build();
  mqtt_->refuse_connect = true;
  Turn();
  clock_.Advance(milliseconds(401));
  Turn();
  clock_.Advance(milliseconds(401));
  Turn();
  ASSERT_EQ(mqtt_->connects.size(), 3u);
  EXPECT_EQ(mqtt_->connects[0].host, "127.0.0.1");
  EXPECT_EQ(mqtt_->connects[1].host, "backup.example");
  EXPECT_TRUE(mqtt_->connects[1].tls);
  EXPECT_EQ(mqtt_->connects[2].host, "127.0.0.1");
}

}  // namespace
}  // namespace tagrelay::uplink
