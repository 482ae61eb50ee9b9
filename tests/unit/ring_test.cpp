// The ring's bound, eviction, crash safety and recovery from bad files, on
// real SQLite in a temp dir.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "fakes/sequencing.h"
#include "fakes/sqlite_peek.h"
#include "fakes/temp_dir.h"
#include "store/delivery_holds.h"
#include "store/outbox_reader.h"
#include "store/ring_store.h"
#include "store/schema.h"

namespace tagrelay::store {
namespace {

using testing::Sql;
using testing::SqlInt;
using testing::SqlText;

const std::string kData = TAGRELAY_TEST_DATA_DIR;

ReadingBatch Batch(const std::string& device, int n) {
  ReadingBatch b{device, {}};
  for (int i = 0; i < n; ++i) {
    b.readings.push_back(
        Reading::Good("tag-" + std::to_string(i % 10), 1763800000000 + i, 230.0 + i));
  }
  return b;
}

uint64_t FileSize(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

std::vector<std::string> CorruptCopies(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.starts_with("corrupt-") && name.ends_with(".db")) out.push_back(name);
  }
  return out;
}

class RingTest : public ::testing::Test {
 protected:
  StoreOptions Options() {
    StoreOptions o;
    o.path = dir_.File("tagrelay.db");
    o.sequence_block = 1000;
    return o;
  }
  std::unique_ptr<RingStore> Open(StoreOptions o, OpenReport* report = nullptr) {
    auto s = RingStore::Open(o, report);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::move(s).value() : nullptr;
  }
  std::unique_ptr<RingStore> Open() { return Open(Options()); }
  std::set<int64_t> StoredSeqs(const std::string& device) {
    std::set<int64_t> out;
    auto reader = OutboxReader::Open(Options().path);
    EXPECT_TRUE(reader.ok());
    auto devices = reader->Devices();
    for (const DeviceBacklog& d : *devices) {
      if (d.name != device) continue;
      std::vector<StoredReading> rows;
      EXPECT_TRUE(reader->FetchUndelivered(d.id, 1, INT64_MAX, 10'000'000, rows).ok());
      for (const auto& r : rows) out.insert(r.seq);
    }
    return out;
  }

  TempDir dir_;
};

TEST_F(RingTest, AnOldSchemaIsMigratedWithItsDataIntact) {
  std::filesystem::copy_file(kData + "/schema-v1.db", Options().path);
  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(SqlInt(Options().path, "PRAGMA user_version"), kSchemaVersion);
  EXPECT_EQ(SqlInt(Options().path, "SELECT sum(count) FROM chunks"), 7);
  EXPECT_EQ(SqlInt(Options().path, "SELECT sum(count) FROM outbox"), 5);
  EXPECT_EQ(SqlInt(Options().path, "SELECT count(*) FROM sqlite_master WHERE name = 'readings'"),
            0);
  EXPECT_EQ(SqlInt(Options().path, "SELECT count(*) FROM events"), 0);
  EXPECT_EQ(store->StartDevice("meter-3").next_seq, 6);
  EXPECT_EQ(store->StartDevice("vfd-1").next_seq, 3);
  ASSERT_TRUE(Sequencer(*store).Write({Batch("meter-3", 2)}).ok());
  EXPECT_EQ(StoredSeqs("meter-3"), (std::set<int64_t>{3, 4, 5, 6, 7}));
}

TEST_F(RingTest, AVersion2StoreKeepsWhatWasUndeliveredAndOnlyThat) {
  // Written by the version 2 store: meter-3 seq 1..9 in three chunks, vfd-1
  // seq 1..5 in two; meter-3 1..3 and vfd-1 1..3 acknowledged.
  std::filesystem::copy_file(kData + "/schema-v2.db", Options().path);
  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(SqlInt(Options().path, "PRAGMA user_version"), kSchemaVersion);
  EXPECT_EQ(SqlInt(Options().path, "SELECT count(*) FROM chunks"), 5) << "no chunk rewritten";
  EXPECT_EQ(SqlInt(Options().path, "SELECT count(*) FROM outbox"), 3);
  EXPECT_EQ(SqlInt(Options().path, "SELECT count(*) FROM acked"), 2);
  EXPECT_EQ(SqlInt(Options().path,
                   "SELECT count(*) FROM sqlite_master WHERE name = 'chunks_undelivered'"),
            0);
  EXPECT_EQ(StoredSeqs("meter-3"), (std::set<int64_t>{4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(StoredSeqs("vfd-1"), (std::set<int64_t>{4, 5}));
  EXPECT_EQ(store->StartDevice("meter-3").next_seq, 10);
  ASSERT_TRUE(store->WriteGroup({DeliveryAck{"meter-3", 4, 6}}).ok());
  EXPECT_EQ(StoredSeqs("meter-3"), (std::set<int64_t>{7, 8, 9}));
  EXPECT_EQ(SqlInt(Options().path, "SELECT count(*) FROM chunks"), 5) << "acked, still kept";
  EXPECT_EQ(SqlInt(Options().path, "SELECT count(*) FROM acked"), 3);
}

TEST_F(RingTest, DeliveryListsThatDoNotMatchTheChunksAreRepairedAtOpenTowardsSendingAgain) {
  {
    auto store = Open();
    Sequencer seq(*store);
    for (int i = 0; i < 4; ++i) ASSERT_TRUE(seq.Write({Batch("a", 10)}).ok());  // chunks of 10
    ASSERT_TRUE(seq.Write({DeliveryAck{"a", 1, 20}}).ok());
  }
  // seq 21..30 listed nowhere; seq 1..10's chunk gone but still listed as acked;
  // an outbox entry without its chunk.
  Sql(Options().path,
      "DELETE FROM outbox WHERE seq_first = 21;"
      "DELETE FROM chunks WHERE seq_first = 1;"
      "INSERT INTO outbox (device_id, seq_first, count, ts, chunk_id) "
      "SELECT device_id, 41, 10, ts, 999 FROM outbox LIMIT 1");
  auto store = Open();
  ASSERT_NE(store, nullptr);
  std::set<int64_t> expected;
  for (int64_t s = 21; s <= 40; ++s) expected.insert(s);
  EXPECT_EQ(StoredSeqs("a"), expected);
  EXPECT_EQ(SqlInt(Options().path, "SELECT count(*) FROM acked"), 1) << "11..20 stays delivered";
  EXPECT_EQ(SqlInt(Options().path, "SELECT count(*) FROM outbox"), 2);
}

TEST_F(RingTest, ADatabaseThatFailsToOpenIsMovedAsideAndAFreshOneStarts) {
  for (const char* fixture : {"truncated.db", "not-a-database.db", "corrupt-page.db"}) {
    SCOPED_TRACE(fixture);
    TempDir dir;
    StoreOptions o = Options();
    o.path = dir.File("tagrelay.db");
    std::filesystem::copy_file(kData + "/" + fixture, o.path);
    const uint64_t original_size = FileSize(o.path);
    OpenReport report;
    auto store = RingStore::Open(o, &report);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    EXPECT_TRUE(report.created);
    EXPECT_FALSE(report.corruption.empty());
    ASSERT_FALSE(report.quarantined.empty());
    EXPECT_EQ(FileSize(report.quarantined), original_size) << "moved aside as it was, for analysis";
    EXPECT_EQ(CorruptCopies(dir.path()).size(), 1u);
    Sequencer seq(**store);
    ASSERT_TRUE(seq.Write({Batch("d", 3)}).ok()) << "the fresh store works";
    EXPECT_EQ(SqlText(o.path, "PRAGMA quick_check"), "ok");
  }
}

TEST_F(RingTest, OnlyTheNewestCorruptCopiesAreKept) {
  for (int i = 0; i < 5; ++i) {
    std::filesystem::remove(Options().path);
    std::filesystem::remove(Options().path + "-wal");
    std::filesystem::copy_file(kData + "/not-a-database.db", Options().path);
    OpenReport report;
    ASSERT_NE(Open(Options(), &report), nullptr);
    EXPECT_FALSE(report.quarantined.empty());
  }
  EXPECT_EQ(CorruptCopies(dir_.path()).size(), 3u) << "repeated corruption cannot fill the disk";
}

TEST_F(RingTest, AGarbageWalIsIgnoredAndCommittedDataSurvives) {
  {
    auto store = Open();
    ASSERT_TRUE(Sequencer(*store).Write({Batch("d", 10)}).ok());
  }
  std::ofstream(Options().path + "-wal", std::ios::binary) << std::string(8192, '\x5a');
  OpenReport report;
  auto store = Open(Options(), &report);
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(report.quarantined.empty());
  EXPECT_EQ(StoredSeqs("d").size(), 10u);
}

TEST_F(RingTest, ANewerDatabaseIsRefusedNotQuarantined) {
  { auto store = Open(); }
  Sql(Options().path, "PRAGMA user_version = 99");
  OpenReport report;
  auto store = RingStore::Open(Options(), &report);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(report.quarantined.empty());
  EXPECT_TRUE(CorruptCopies(dir_.path()).empty());
}

TEST_F(RingTest, SequenceNumbersAreNotReusedWhenTheDatabaseIsLost) {
  {
    auto store = Open();
    Sequencer seq(*store);
    ASSERT_TRUE(seq.Write({Batch("d", 5)}).ok());
    ASSERT_TRUE(seq.Write({NewEvent{"events", "", 1, "{}"}}).ok());
  }
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(Options().path + suffix);

  auto store = Open();
  const RingStore::DeviceStart start = store->StartDevice("d");
  EXPECT_GT(start.next_seq, 5) << "numbering continues above what the lost database used";
  EXPECT_EQ(start.lost_below, start.next_seq);
  EXPECT_EQ(store->StartDevice("other").next_seq, 1) << "a device never seen starts at 1";
  ASSERT_TRUE(Sequencer(*store).Write({NewEvent{"events", "", 2, "{}"}}).ok());
  EXPECT_GT(SqlInt(Options().path, "SELECT max(seq) FROM events"), 1) << "event numbers too";
  ASSERT_TRUE(Sequencer(*store).Write({NewEvent{"alarms", "d", 3, "{}"}}).ok());
  EXPECT_EQ(SqlInt(Options().path, "SELECT seq FROM events WHERE stream = 'alarms'"), 1)
      << "a stream never seen starts at 1";
}

TEST_F(RingTest, AMalformedMarksFileIsRebuiltFromTheDatabase) {
  {
    auto store = Open();
    ASSERT_TRUE(Sequencer(*store).Write({Batch("d", 5)}).ok());
  }
  std::ofstream(dir_.File("sequence.marks")) << "garbage\n";
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    EXPECT_EQ(store->StartDevice("d").next_seq, 6)
        << "the database is authoritative while it exists";
  }
  std::string text;
  std::getline(std::ifstream(dir_.File("sequence.marks")), text);
  EXPECT_EQ(text, "tagrelay-sequence-marks 1") << "rewritten";
}

TEST_F(RingTest, TheDatabaseAndWalStayWithinMaxBytesAndEveryLossIsReported) {
  StoreOptions o = Options();
  o.max_bytes = 1 << 20;
  auto store = Open(o);
  Sequencer seq(*store);
  uint64_t biggest = 0;
  int evicting_groups = 0, groups_with_news = 0;
  for (int i = 0; i < 120; ++i) {
    const uint64_t evicted = store->Usage().evicted_undelivered;
    ASSERT_TRUE(seq.Write({Batch("a", 400), Batch("b", 100)}).ok()) << "group " << i;
    biggest = std::max(biggest, FileSize(o.path) + FileSize(o.path + "-wal"));
    // The loss records an eviction adds are news for the uplink, as a group's own records are.
    const bool news = store->TakeEventsAdded();
    if (store->Usage().evicted_undelivered > evicted) {
      ++evicting_groups;
      groups_with_news += news ? 1 : 0;
    }
    EXPECT_FALSE(store->TakeEventsAdded()) << "the mark is taken once";
  }
  EXPECT_GT(evicting_groups, 0);
  EXPECT_EQ(groups_with_news, evicting_groups) << "an eviction's loss records went unannounced";
  EXPECT_LE(biggest, o.max_bytes);
  RingUsage u = store->Usage();
  EXPECT_LE(u.db_bytes + u.wal_bytes, o.max_bytes);
  EXPECT_GT(u.evicted_undelivered, 0u);

  // What is gone is exactly what the readings_lost events say, per device.
  for (const auto& [device, written] : std::map<std::string, int64_t>{{"a", 48000}, {"b", 12000}}) {
    SCOPED_TRACE(device);
    const std::set<int64_t> kept = StoredSeqs(device);
    ASSERT_FALSE(kept.empty());
    EXPECT_EQ(*kept.rbegin(), written) << "the newest readings are kept";
    EXPECT_EQ(static_cast<int64_t>(kept.size()), *kept.rbegin() - *kept.begin() + 1)
        << "the oldest go first";
    const int64_t lost = *kept.begin() - 1;
    EXPECT_EQ(SqlInt(o.path, "SELECT lost FROM devices WHERE name = '" + device + "'"), lost);
    const std::string of_device =
        " FROM events WHERE stream = 'events' AND json_extract(body, '$.kind') = "
        "'readings_lost' AND json_extract(body, '$.device') = '" +
        device + "'";
    EXPECT_EQ(SqlInt(o.path, "SELECT sum(json_extract(body, '$.count'))" + of_device), lost);
    EXPECT_EQ(SqlInt(o.path, "SELECT min(json_extract(body, '$.seq_first'))" + of_device), 1);
    EXPECT_EQ(SqlInt(o.path, "SELECT max(json_extract(body, '$.seq_last'))" + of_device), lost);
  }
  EXPECT_EQ(SqlText(o.path, "SELECT DISTINCT json_extract(body, '$.reason') FROM events"),
            "ring_full");
  EXPECT_EQ(SqlText(o.path, "PRAGMA integrity_check"), "ok");
}

TEST_F(RingTest, DeliveredRowsGoBeforeAnyUndeliveredOne) {
  StoreOptions o = Options();
  o.max_bytes = 1 << 20;
  auto store = Open(o);
  Sequencer seq(*store);
  int64_t written = 0;
  // Fill to about 60% of the cap, all delivered.
  while (store->Usage().used_bytes < o.max_bytes * 6 / 10) {
    ASSERT_TRUE(seq.Write({Batch("d", 500)}).ok());
    written += 500;
    ASSERT_TRUE(seq.Write({DeliveryAck{"d", 1, written}}).ok());
  }
  // Then undelivered rows amounting to less than the cap.
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(seq.Write({Batch("d", 500)}).ok());
  EXPECT_EQ(store->Usage().evicted_undelivered, 0u);
  EXPECT_EQ(SqlInt(o.path, "SELECT count(*) FROM events"), 0);
  EXPECT_EQ(StoredSeqs("d").size(), 10000u) << "every undelivered reading is still there";
  EXPECT_LT(SqlInt(o.path,
                   "SELECT sum(count) FROM chunks WHERE id NOT IN "
                   "(SELECT chunk_id FROM outbox)"),
            written)
      << "delivered rows made the room";
}

// Every readings_lost record of `device` covers only seqs that are gone.
::testing::AssertionResult LossRecordsCoverOnlyMissing(const std::string& db,
                                                       const std::string& device,
                                                       const std::set<int64_t>& kept,
                                                       int64_t* total) {
  *total = 0;
  const auto rows = testing::SqlRows(
      db,
      "SELECT json_extract(body, '$.seq_first'), json_extract(body, '$.seq_last'), "
      "json_extract(body, '$.count') FROM events WHERE stream = 'events' AND "
      "json_extract(body, '$.kind') = 'readings_lost' AND json_extract(body, '$.device') = '" +
          device + "'");
  for (const auto& r : rows) {
    const int64_t first = std::stoll(r[0]), last = std::stoll(r[1]), count = std::stoll(r[2]);
    if (count != last - first + 1) {
      return ::testing::AssertionFailure()
             << "record " << first << ".." << last << " counts " << count;
    }
    auto it = kept.lower_bound(first);
    if (it != kept.end() && *it <= last) {
      return ::testing::AssertionFailure()
             << "record " << first << ".." << last << " claims stored seq " << *it;
    }
    *total += count;
  }
  return ::testing::AssertionSuccess();
}

TEST_F(RingTest, HeldChunksArePassedOverWhileOthersCanGo) {
  StoreOptions o = Options();
  o.max_bytes = 1 << 20;
  auto store = Open(o);
  DeliveryHolds holds;
  store->SetHolds(&holds);
  Sequencer seq(*store);
  ASSERT_TRUE(seq.Write({Batch("a", 400)}).ok());
  holds.Hold("a", 1, 400);  // the uplink took the first poll: on its way
  for (int i = 0; i < 150; ++i) ASSERT_TRUE(seq.Write({Batch("a", 400)}).ok());
  ASSERT_GT(store->Usage().evicted_undelivered, 0u);

  const std::set<int64_t> kept = StoredSeqs("a");
  for (int64_t s = 1; s <= 400; ++s) ASSERT_TRUE(kept.count(s)) << "held seq " << s << " is gone";
  EXPECT_EQ(*kept.rbegin(), 151 * 400) << "the newest readings are kept";
  int64_t reported = 0;
  EXPECT_TRUE(LossRecordsCoverOnlyMissing(o.path, "a", kept, &reported));
  EXPECT_EQ(reported, 151 * 400 - static_cast<int64_t>(kept.size()));
  EXPECT_EQ(SqlInt(o.path, "SELECT lost FROM devices WHERE name = 'a'"), reported);
  EXPECT_EQ(holds.HeldCount(), 400) << "eviction does not touch the holds";
}

TEST_F(RingTest, HeldChunksGoWhenNothingElseIsLeftAndStayWithinTheBound) {
  StoreOptions o = Options();
  o.max_bytes = 1 << 20;
  auto store = Open(o);
  DeliveryHolds holds;
  store->SetHolds(&holds);
  holds.Hold("a", 1, 1'000'000'000);  // everything, as if the uplink held it all
  Sequencer seq(*store);
  for (int i = 0; i < 150; ++i) {
    ASSERT_TRUE(seq.Write({Batch("a", 400)}).ok()) << "group " << i;
    ASSERT_LE(FileSize(o.path) + FileSize(o.path + "-wal"), o.max_bytes);
  }
  const std::set<int64_t> kept = StoredSeqs("a");
  int64_t reported = 0;
  EXPECT_TRUE(LossRecordsCoverOnlyMissing(o.path, "a", kept, &reported));
  EXPECT_GT(reported, 0);
  EXPECT_EQ(reported, 150 * 400 - static_cast<int64_t>(kept.size()));
}

TEST_F(RingTest, ACommittedAckReleasesItsRangeAndAFailedOneDoesNot) {
  auto store = Open();
  DeliveryHolds holds;
  store->SetHolds(&holds);
  Sequencer seq(*store);
  ASSERT_TRUE(seq.Write({Batch("a", 40), Batch("a", 60)}).ok());  // chunks 1..40, 41..100
  holds.Hold("a", 1, 100);
  ASSERT_TRUE(seq.Write({DeliveryAck{"a", 1, 40}}).ok());
  EXPECT_EQ(holds.HeldCount(), 60);
  const std::vector<HeldRange> held = holds.Held();
  ASSERT_EQ(held.size(), 1u);
  EXPECT_EQ(held[0].first, 41);
  EXPECT_EQ(held[0].last, 100);
  // An ack whose group fails to commit is not delivered: its range stays held.
  Sql(Options().path,
      "CREATE TRIGGER fail_ack BEFORE DELETE ON outbox "
      "BEGIN SELECT RAISE(ABORT, 'injected failure'); END");
  EXPECT_FALSE(seq.Write({DeliveryAck{"a", 41, 100}}).ok());
  EXPECT_EQ(holds.HeldCount(), 60);
}

TEST_F(RingTest, TheBacklogSummaryIsCountedAfreshAtEachCall) {
  auto store = Open();
  Sequencer seq(*store);
  ASSERT_TRUE(seq.Write({Batch("b", 30), Batch("a", 20)}).ok());
  auto reader = OutboxReader::Open(Options().path);
  ASSERT_TRUE(reader.ok());
  Result<BacklogSummary> first = reader->Summary();
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(first->undelivered_readings, 50);
  EXPECT_EQ(first->oldest_undelivered_ts_ms, 1763800000000);
  EXPECT_EQ(first->undelivered_events, 0);
  ASSERT_EQ(first->devices.size(), 2u);
  EXPECT_EQ(first->devices[0].name, "a");
  EXPECT_EQ(first->devices[0].undelivered, 20);
  EXPECT_EQ(first->devices[1].name, "b");
  EXPECT_EQ(first->devices[1].undelivered, 30);

  // The same reader after the store changed: the new state, not the first call's.
  ASSERT_TRUE(seq.Write({DeliveryAck{"b", 1, 30},
                         NewEvent{std::string(kStreamEvents), "", 1763800000500, "{}"}})
                  .ok());
  Result<BacklogSummary> second = reader->Summary();
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_EQ(second->undelivered_readings, 20);
  EXPECT_EQ(second->oldest_undelivered_ts_ms, 1763800000000);
  EXPECT_EQ(second->undelivered_events, 1);
  ASSERT_EQ(second->devices.size(), 2u);
  EXPECT_EQ(second->devices[1].undelivered, 0);
}

TEST_F(RingTest, ALowerMaxBytesShrinksTheFile) {
  StoreOptions big = Options();
  big.max_bytes = 8 << 20;
  {
    auto store = Open(big);
    Sequencer seq(*store);
    for (int i = 0; i < 500; ++i) ASSERT_TRUE(seq.Write({Batch("d", 500)}).ok());
  }
  ASSERT_GT(FileSize(big.path), 2u << 20);
  StoreOptions small = Options();
  small.max_bytes = 2 << 20;
  auto store = Open(small);
  ASSERT_TRUE(Sequencer(*store).Write({Batch("d", 10)}).ok());
  EXPECT_LE(FileSize(small.path) + FileSize(small.path + "-wal"), small.max_bytes);
  EXPECT_EQ(SqlText(small.path, "PRAGMA integrity_check"), "ok");
}

}  // namespace
}  // namespace tagrelay::store
