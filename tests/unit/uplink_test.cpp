#include "agent/uplink/uplink.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <string>
#include <vector>

#include "agent/core/clock.h"
#include "fakes/fake_mqtt_client.h"
#include "fakes/sequencing.h"
#include "fakes/temp_dir.h"
#include "store/outbox_reader.h"
#include "store/ring_store.h"

namespace tagrelay::uplink {
namespace {

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
    store::StoreOptions o;
    o.path = dir_.File("tagrelay.db");
    auto s = store::RingStore::Open(o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
    options_.brokers.push_back(*BrokerUrl::Parse("mqtt://127.0.0.1:1883"));
    options_.gateway = "gw";
    options_.client_id = "tagrelay-gw";
    options_.batch_max_readings = 500;
    options_.batch_linger = milliseconds(1000);
    options_.max_inflight = 4;
    options_.backoff_initial = milliseconds(100);
    options_.backoff_max = milliseconds(400);
  }

  void Build() {
    auto client = std::make_unique<FakeMqttClient>();
    mqtt_ = client.get();
    auto reader = store::OutboxReader::Open(dir_.File("tagrelay.db"));
    ASSERT_TRUE(reader.ok());
    uplink_ = std::make_unique<Uplink>(
        options_, std::move(client), std::move(reader).value(),
        [this](store::DeliveryAck&& a) {
          acks_.push_back(a);
          ASSERT_TRUE(store::Sequencer(*store_).Write({a}).ok());
        },
        clock_);
  }

  void Store(const std::string& device, int n) {
    ReadingBatch b{device, {}};
    for (int i = 0; i < n; ++i)
      b.readings.push_back(Reading::Good("t", clock_.wall_ms(), int64_t{i}));
    ASSERT_TRUE(store::Sequencer(*store_).Write({b}).ok());
    if (uplink_) uplink_->NotifyNewData();
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
  std::unique_ptr<store::RingStore> store_;
  UplinkOptions options_;
  FakeMqttClient* mqtt_ = nullptr;
  std::unique_ptr<Uplink> uplink_;
  std::vector<store::DeliveryAck> acks_;
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

}  // namespace
}  // namespace tagrelay::uplink
