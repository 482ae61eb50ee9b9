#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "fakes/sequencing.h"
#include "fakes/sqlite_peek.h"
#include "fakes/temp_dir.h"
#include "store/chunk_codec.h"
#include "store/delivery_holds.h"
#include "store/outbox_reader.h"
#include "store/ring_store.h"
#include "store/schema.h"
#include "store/sqlite.h"
#include "store/store_writer.h"

namespace tagrelay::store {
namespace {

ReadingBatch Batch(const std::string& device, int n, int64_t ts = 1000) {
  ReadingBatch b{device, {}};
  for (int i = 0; i < n; ++i)
    b.readings.push_back(Reading::Good("t" + std::to_string(i % 3), ts + i, int64_t{i}));
  return b;
}

using testing::Sql;
using testing::SqlInt;

class StoreTest : public ::testing::Test {
 protected:
  StoreOptions Options() {
    StoreOptions o;
    o.path = dir_.File("tagrelay.db");
    return o;
  }
  std::unique_ptr<RingStore> OpenStore() {
    Result<std::unique_ptr<RingStore>> s = RingStore::Open(Options());
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::move(s).value() : nullptr;
  }
  OutboxReader OpenReader() {
    Result<OutboxReader> r = OutboxReader::Open(Options().path);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return std::move(r).value();
  }
  std::vector<StoredReading> Fetch(OutboxReader& r, int64_t device_id, int64_t from = 1,
                                   int64_t to = std::numeric_limits<int64_t>::max(),
                                   size_t limit = 10000) {
    std::vector<StoredReading> out;
    Status s = r.FetchUndelivered(device_id, from, to, limit, out);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }
  DeviceBacklog Backlog(OutboxReader& r, const std::string& name) {
    Result<std::vector<DeviceBacklog>> all = r.Devices();
    EXPECT_TRUE(all.ok());
    for (const DeviceBacklog& d : *all) {
      if (d.name == name) return d;
    }
    ADD_FAILURE() << "no device " << name;
    return {};
  }

  TempDir dir_;
};

// The writer's, the uplink's and the status page's connections each bound
// SQLite's page cache (default 2 MiB) to 512 KiB: part of the memory budget.
TEST_F(StoreTest, EveryConnectionBoundsItsPageCache) {
  std::unique_ptr<RingStore> store = OpenStore();
  ASSERT_NE(store, nullptr);
  Result<Db> db = Db::Open(Options().path, /*create=*/false);
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  Result<int64_t> kib = db->QueryInt("PRAGMA cache_size");
  ASSERT_TRUE(kib.ok()) << kib.status().ToString();
  EXPECT_EQ(*kib, -512);
}

TEST_F(StoreTest, SequenceNumbersArePerDeviceAndUnbroken) {
  auto store = OpenStore();
  ASSERT_TRUE(Sequencer(*store).Write({Batch("a", 3), Batch("b", 2), Batch("a", 4)}).ok());
  EXPECT_EQ(store->StartDevice("a").next_seq, 8);
  EXPECT_EQ(store->StartDevice("b").next_seq, 3);
  EXPECT_EQ(store->StartDevice("never-seen").next_seq, 1);

  OutboxReader reader = OpenReader();
  std::vector<StoredReading> rows = Fetch(reader, Backlog(reader, "a").id);
  ASSERT_EQ(rows.size(), 7u);
  for (size_t i = 0; i < rows.size(); ++i) EXPECT_EQ(rows[i].seq, static_cast<int64_t>(i + 1));
}

TEST_F(StoreTest, SequenceNumbersContinueAfterReopen) {
  {
    auto store = OpenStore();
    ASSERT_TRUE(Sequencer(*store).Write({Batch("a", 5)}).ok());
  }
  // Deleting rows (as eviction will) must not make numbers reusable.
  Sql(Options().path, "DELETE FROM chunks; DELETE FROM outbox");
  auto store = OpenStore();
  EXPECT_EQ(store->StartDevice("a").next_seq, 6);
  ASSERT_TRUE(Sequencer(*store).Write({Batch("a", 1)}).ok());
  OutboxReader reader = OpenReader();
  std::vector<StoredReading> rows = Fetch(reader, Backlog(reader, "a").id);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].seq, 6);
}

TEST_F(StoreTest, AFailedGroupWritesNothingAndLeavesNoGap) {
  auto store = OpenStore();
  ASSERT_TRUE(Sequencer(*store).Write({Batch("a", 2)}).ok());
  // A trigger makes any chunk with ts = -1 fail, in the middle of a group.
  Sql(Options().path,
      "CREATE TRIGGER fail_on_bad_ts BEFORE INSERT ON chunks WHEN NEW.ts = -1 "
      "BEGIN SELECT RAISE(ABORT, 'injected failure'); END");
  Status s = Sequencer(*store).Write({Batch("a", 3), Batch("new-device", 1), Batch("a", 1, -1)});
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("injected failure"), std::string::npos) << s.ToString();

  EXPECT_EQ(store->StartDevice("a").next_seq, 3) << "the failed group handed out no numbers";
  ASSERT_TRUE(Sequencer(*store).Write({Batch("a", 1), Batch("new-device", 1)}).ok());
  OutboxReader reader = OpenReader();
  std::vector<StoredReading> rows = Fetch(reader, Backlog(reader, "a").id);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows.back().seq, 3);
  EXPECT_EQ(Fetch(reader, Backlog(reader, "new-device").id).at(0).seq, 1);
}

TEST_F(StoreTest, AnAckMarksTheChunksItCoversWhollyAndOnlyOfItsDevice) {
  auto store = OpenStore();
  // Chunks of "a": 1..2, 3..5, 6..10; of "b": 1..10.
  ASSERT_TRUE(
      Sequencer(*store).Write({Batch("a", 2), Batch("a", 3), Batch("a", 5), Batch("b", 10)}).ok());
  ASSERT_TRUE(Sequencer(*store).Write({DeliveryAck{"a", 3, 5}}).ok());
  OutboxReader reader = OpenReader();
  auto seqs = [&](const std::string& device) {
    std::vector<int64_t> out;
    for (const StoredReading& r : Fetch(reader, Backlog(reader, device).id)) out.push_back(r.seq);
    return out;
  };
  EXPECT_EQ(seqs("a"), (std::vector<int64_t>{1, 2, 6, 7, 8, 9, 10}));
  EXPECT_EQ(seqs("b").size(), 10u);

  // An ack that covers only part of a chunk marks none of it: the chunk goes
  // again (a duplicate at worst), never half of it lost.
  ASSERT_TRUE(Sequencer(*store).Write({DeliveryAck{"a", 2, 7}}).ok());
  EXPECT_EQ(seqs("a"), (std::vector<int64_t>{1, 2, 6, 7, 8, 9, 10}));

  DeviceBacklog a = Backlog(reader, "a");
  EXPECT_EQ(a.first_undelivered, 1);
  EXPECT_EQ(a.last_seq, 10);
  ASSERT_TRUE(Sequencer(*store).Write({DeliveryAck{"a", 1, 2}}).ok());
  EXPECT_EQ(Backlog(reader, "a").first_undelivered, 6);
  ASSERT_TRUE(Sequencer(*store).Write({DeliveryAck{"a", 6, 10}}).ok());
  EXPECT_EQ(Backlog(reader, "a").first_undelivered, 0) << "0 means nothing undelivered";
  EXPECT_EQ(*reader.CountUndelivered(), 10);
}

TEST_F(StoreTest, FetchReturnsWholeChunksInSequenceOrder) {
  auto store = OpenStore();
  // Chunks at 1, 6, 11, 16, five readings each.
  ASSERT_TRUE(
      Sequencer(*store).Write({Batch("a", 5), Batch("a", 5), Batch("a", 5), Batch("a", 5)}).ok());
  OutboxReader reader = OpenReader();
  const int64_t id = Backlog(reader, "a").id;
  std::vector<StoredReading> rows = Fetch(reader, id, 6, 16, 7);
  ASSERT_EQ(rows.size(), 10u) << "the limit is reached inside the second chunk, which comes whole";
  EXPECT_EQ(rows.front().seq, 6);
  EXPECT_EQ(rows.back().seq, 15);
  for (size_t i = 0; i < rows.size(); ++i) EXPECT_EQ(rows[i].chunk_end, i == 4 || i == 9) << i;
  rows = Fetch(reader, id, 16, 16, 1);
  ASSERT_EQ(rows.size(), 5u) << "at least one chunk, even past the limit";
  EXPECT_EQ(rows.back().seq, 20);
  EXPECT_TRUE(Fetch(reader, id, 2, 5).empty()) << "no chunk starts in 2..5";
}

// The uplink's fetch: the same chunks, limits and bad chunks as
// FetchUndelivered, kept as stored, with every tag id they use named.
TEST_F(StoreTest, FetchChunksHandsOutTheStoredChunksWithTheirTagNames) {
  auto store = OpenStore();
  ASSERT_TRUE(
      Sequencer(*store).Write({Batch("a", 5), Batch("a", 5), Batch("a", 5), Batch("a", 5)}).ok());
  OutboxReader reader = OpenReader();
  const int64_t id = Backlog(reader, "a").id;
  std::vector<StoredChunk> chunks;
  ASSERT_TRUE(reader.FetchChunks(id, 6, 16, 7, chunks).ok());
  ASSERT_EQ(chunks.size(), 2u) << "the limit is reached inside the second chunk, which comes whole";
  EXPECT_EQ(chunks[0].seq_first, 6);
  EXPECT_EQ(chunks[1].seq_last(), 15);
  const std::vector<StoredReading> rows = Fetch(reader, id, 6, 16, 7);
  size_t k = 0;
  for (const StoredChunk& c : chunks) {
    std::vector<ChunkReading> decoded;
    ASSERT_TRUE(DecodeChunk(c.data, c.count, decoded).ok());
    for (const ChunkReading& r : decoded) {
      ASSERT_LT(k, rows.size());
      const std::string* tag = reader.tag_names().Find(r.tag_id);
      ASSERT_NE(tag, nullptr);
      EXPECT_EQ(*tag, rows[k].tag);
      EXPECT_EQ(r.value, rows[k].value);
      EXPECT_EQ(r.ts_ms, rows[k].ts_ms);
      ++k;
    }
  }
  EXPECT_EQ(k, rows.size());
  chunks.clear();
  ASSERT_TRUE(reader.FetchChunks(id, 16, 16, 1, chunks).ok());
  ASSERT_EQ(chunks.size(), 1u) << "at least one chunk, even past the limit";

  // A chunk that does not decode: described when it comes first, else the
  // fetch ends before it.
  Result<Db> db = Db::Open(Options().path, /*create=*/false);
  ASSERT_TRUE(db.ok());
  ASSERT_TRUE(db->Exec("UPDATE chunks SET data = x'01' WHERE seq_first = 11").ok());
  chunks.clear();
  ASSERT_TRUE(reader.FetchChunks(id, 1, 20, 100, chunks).ok());
  ASSERT_EQ(chunks.size(), 2u);
  EXPECT_EQ(chunks.back().seq_last(), 10);
  chunks.clear();
  BadChunk bad;
  Status s = reader.FetchChunks(id, 11, 20, 100, chunks, &bad);
  EXPECT_EQ(s.code(), StatusCode::kCorruption) << s.ToString();
  EXPECT_TRUE(chunks.empty());
  EXPECT_EQ(bad.seq_first, 11);
  EXPECT_EQ(bad.count, 5);
}

TEST_F(StoreTest, APollLargerThanAChunkIsSplit) {
  StoreOptions o = Options();
  o.max_chunk_readings = 4;
  Result<std::unique_ptr<RingStore>> s = RingStore::Open(o);
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE(Sequencer(**s).Write({Batch("a", 10)}).ok());
  EXPECT_EQ(SqlInt(o.path, "SELECT count(*) FROM chunks"), 3);
  EXPECT_EQ(SqlInt(o.path, "SELECT max(count) FROM chunks"), 4);
  OutboxReader reader = OpenReader();
  std::vector<StoredReading> rows = Fetch(reader, Backlog(reader, "a").id);
  ASSERT_EQ(rows.size(), 10u);
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(rows[i].seq, static_cast<int64_t>(i + 1));
    EXPECT_EQ(rows[i].chunk_end, i == 3 || i == 7 || i == 9);
  }
}

TEST_F(StoreTest, EveryValueTypeRoundTrips) {
  auto store = OpenStore();
  ReadingBatch b{"a", {}};
  b.readings.push_back(Reading::Good("bool", 1, true));
  b.readings.push_back(Reading::Good("int", 2, std::numeric_limits<int64_t>::min()));
  b.readings.push_back(Reading::Good("uint", 3, std::numeric_limits<uint64_t>::max()));
  b.readings.push_back(Reading::Good("double", 4, 231.4));
  b.readings.push_back(Reading::Good("text", 5, std::string("h\xC3\xA9llo")));
  b.readings.push_back(Reading::Bad("bad", 6, "exception:2"));
  b.readings.push_back(Reading{"unc", 7, 1.5, Quality::kUncertain, "stale"});
  ASSERT_TRUE(Sequencer(*store).Write({b}).ok());

  OutboxReader reader = OpenReader();
  std::vector<StoredReading> rows = Fetch(reader, Backlog(reader, "a").id);
  ASSERT_EQ(rows.size(), 7u);
  EXPECT_EQ(rows[0].value, Value(true));
  EXPECT_EQ(rows[1].value, Value(std::numeric_limits<int64_t>::min()));
  EXPECT_EQ(rows[2].value, Value(std::numeric_limits<uint64_t>::max()));
  EXPECT_EQ(rows[3].value, Value(231.4));
  EXPECT_EQ(rows[4].value, Value(std::string("h\xC3\xA9llo")));
  EXPECT_TRUE(std::holds_alternative<std::monostate>(rows[5].value));
  EXPECT_EQ(rows[5].quality, Quality::kBad);
  EXPECT_EQ(rows[5].error, "exception:2");
  EXPECT_EQ(rows[6].quality, Quality::kUncertain);
  EXPECT_EQ(rows[6].error, "stale");
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(rows[i].ts_ms, static_cast<int64_t>(i + 1));
    EXPECT_EQ(rows[i].tag, b.readings[i].tag);
  }
}

TEST_F(StoreTest, ADatabaseFromANewerReleaseIsRefusedAndLeftAlone) {
  { auto store = OpenStore(); }
  Sql(Options().path, "PRAGMA user_version = 99");
  Result<std::unique_ptr<RingStore>> s = RingStore::Open(Options());
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("newer"), std::string::npos) << s.status().ToString();
  EXPECT_EQ(SqlInt(Options().path, "PRAGMA user_version"), 99);
}

TEST_F(StoreTest, OpensInWalMode) {
  auto store = OpenStore();
  EXPECT_EQ(testing::SqlText(Options().path, "PRAGMA journal_mode"), "wal");
}

TEST_F(StoreTest, WriterGroupsCommitsAndStopCommitsEverything) {
  StoreOptions o = Options();
  o.commit_rows = 50;
  o.commit_interval = std::chrono::milliseconds(10000);  // only the row count closes a group here
  o.queue_capacity = 200;
  StoreWriter writer(OpenStore(), o);
  int notified = 0;
  std::vector<std::string> news;
  writer.SetCommitListener([&](const CommitNews& n) {
    ++notified;
    news.insert(news.end(), n.devices.begin(), n.devices.end());
    EXPECT_FALSE(n.events);
  });
  // Queue everything before the writer runs, so grouping does not depend on timing.
  for (int i = 0; i < 120; ++i) {
    ASSERT_TRUE(writer.SubmitReadings(Batch("a", 1), MonoTime::max()));
  }
  writer.Submit(DeliveryAck{"a", 1, 10});
  writer.Start();
  writer.Stop();

  EXPECT_EQ(writer.counters().rows_committed.load(), 120u);
  EXPECT_EQ(writer.counters().acks_committed.load(), 1u);
  EXPECT_EQ(writer.counters().commits.load(), 3u)
      << "50 + 50 + the remaining 20 with the ack at stop";
  EXPECT_EQ(notified, 3);
  EXPECT_EQ(news, (std::vector<std::string>{"a", "a", "a"})) << "each commit names its device once";
  OutboxReader reader = OpenReader();
  EXPECT_EQ(*reader.CountUndelivered(), 110);
  EXPECT_EQ(Backlog(reader, "a").last_seq, 120);
}

// Waits up to `limit` for `done`; the writer thread runs meanwhile.
bool WaitFor(const std::function<bool()>& done, std::chrono::seconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

TEST_F(StoreTest, AFullGroupCommitsBeforeItsIntervalAndNamesEachDeviceOnce) {
  StoreOptions o = Options();
  o.commit_rows = 100;
  o.commit_interval = std::chrono::seconds(60);  // never reached in this test
  StoreWriter writer(OpenStore(), o);
  std::atomic<int> notified{0};
  std::vector<std::string> news;
  writer.SetCommitListener([&](const CommitNews& n) {
    news = n.devices;
    ++notified;
  });
  writer.Start();
  // The first batch opens the group; the other nine fill it while the writer
  // waits for the group to be due or full.
  ASSERT_TRUE(writer.SubmitReadings(Batch("a", 10), MonoTime::max()));
  ASSERT_TRUE(WaitFor([&] { return writer.queued() == 0; }, std::chrono::seconds(10)));
  for (int i = 0; i < 9; ++i) {
    ASSERT_TRUE(writer.SubmitReadings(Batch(i % 2 ? "b" : "a", 10), MonoTime::max()));
  }
  EXPECT_TRUE(WaitFor([&] { return notified.load() == 1; }, std::chrono::seconds(10)))
      << "the full group waited for its interval";
  writer.Stop();
  EXPECT_EQ(writer.counters().commits.load(), 1u);
  EXPECT_EQ(writer.counters().rows_committed.load(), 100u);
  EXPECT_EQ(news, (std::vector<std::string>{"a", "b"}));
}

TEST_F(StoreTest, AGroupWithRoomWaitsForItsIntervalAndTakesWhatCameMeanwhile) {
  StoreOptions o = Options();
  o.commit_rows = 1000;
  o.commit_interval = std::chrono::milliseconds(300);
  StoreWriter writer(OpenStore(), o);
  std::atomic<int> notified{0};
  writer.SetCommitListener([&](const CommitNews&) { ++notified; });
  writer.Start();
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(writer.SubmitReadings(Batch("a", 10), MonoTime::max()));
  }
  ASSERT_TRUE(WaitFor([&] { return notified.load() == 1; }, std::chrono::seconds(10)));
  writer.Stop();
  EXPECT_EQ(writer.counters().commits.load(), 1u) << "one group, not one commit per batch";
  EXPECT_EQ(writer.counters().rows_committed.load(), 50u);
}

TEST_F(StoreTest, WriterQueueIsBoundedAndSaysSo) {
  StoreOptions o = Options();
  o.queue_capacity = 2;
  StoreWriter writer(OpenStore(), o);  // not started: nothing drains the queue
  EXPECT_TRUE(writer.SubmitReadings(Batch("a", 1), MonoTime::min()));
  EXPECT_TRUE(writer.SubmitReadings(Batch("a", 1), MonoTime::min()));
  EXPECT_FALSE(writer.SubmitReadings(Batch("a", 1), MonoTime::min())) << "full: refused, not grown";
  EXPECT_EQ(writer.queued(), 2u);
}

TEST_F(StoreTest, MigrationIsRecordedInUserVersion) {
  { auto store = OpenStore(); }
  EXPECT_EQ(SqlInt(Options().path, "PRAGMA user_version"), kSchemaVersion);
}

std::string Ranges(const DeliveryHolds& holds) {
  std::string out;
  for (const HeldRange& r : holds.Held()) {
    out += r.device + ":" + std::to_string(r.first) + ".." + std::to_string(r.last) + " ";
  }
  return out;
}

TEST(TagNamesTest, FindsEveryNameAddedWhateverItsId) {
  TagNames names;
  EXPECT_EQ(names.Find(1), nullptr);
  names.Add(5, "five");
  names.Add(10'000'000, "far");  // past the dense range: kept apart
  names.Add(-3, "negative");
  names.Add(6'000, "early");  // past the dense range when it comes, inside it later
  for (int64_t id = 6; id < 9000; ++id) {
    if (id != 6'000) names.Add(id, "t" + std::to_string(id));
  }
  ASSERT_NE(names.Find(5), nullptr);
  EXPECT_EQ(*names.Find(5), "five");
  ASSERT_NE(names.Find(10'000'000), nullptr);
  EXPECT_EQ(*names.Find(10'000'000), "far");
  ASSERT_NE(names.Find(-3), nullptr);
  EXPECT_EQ(*names.Find(-3), "negative");
  ASSERT_NE(names.Find(8'999), nullptr);
  EXPECT_EQ(*names.Find(8'999), "t8999");
  ASSERT_NE(names.Find(6'000), nullptr);
  EXPECT_EQ(*names.Find(6'000), "early");
  EXPECT_EQ(names.Find(4), nullptr);
  EXPECT_EQ(names.Find(9'000), nullptr);
  EXPECT_EQ(names.Find(10'000'001), nullptr);
}

TEST(DeliveryHoldsTest, HoldsAreAUnionPerDevice) {
  DeliveryHolds h;
  h.Hold("a", 10, 20);
  h.Hold("a", 30, 40);
  h.Hold("b", 15, 15);
  EXPECT_EQ(Ranges(h), "a:10..20 a:30..40 b:15..15 ");
  h.Hold("a", 21, 29);  // touches both: one range
  EXPECT_EQ(Ranges(h), "a:10..40 b:15..15 ");
  h.Hold("a", 5, 12);   // overlaps the start
  h.Hold("a", 12, 15);  // inside: nothing changes
  h.Hold("a", 50, 49);  // empty: ignored
  EXPECT_EQ(Ranges(h), "a:5..40 b:15..15 ");
  EXPECT_EQ(h.HeldCount(), 37);
}

TEST(DeliveryHoldsTest, ReleaseCutsWhateverItCovers) {
  DeliveryHolds h;
  h.Hold("a", 1, 100);
  h.Hold("a", 200, 300);
  h.Release("a", 40, 60);  // a hole in the middle
  EXPECT_EQ(Ranges(h), "a:1..39 a:61..100 a:200..300 ");
  h.Release("a", 90, 250);  // the end of one, the start of the next
  EXPECT_EQ(Ranges(h), "a:1..39 a:61..89 a:251..300 ");
  h.Release("a", 0, 39);
  h.Release("b", 1, 1000);  // a device with nothing held
  h.Release("a", 70, 60);   // empty: ignored
  EXPECT_EQ(Ranges(h), "a:61..89 a:251..300 ");
  h.Release("a", 1, 1000);
  EXPECT_EQ(Ranges(h), "");
  EXPECT_EQ(h.HeldCount(), 0);
}

}  // namespace
}  // namespace tagrelay::store
