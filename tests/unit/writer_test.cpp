// The store writer under disk faults (a fault-injecting SQLite VFS), with a
// real SQLite database in a temp dir.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <thread>

#include "fakes/fault_vfs.h"
#include "fakes/sqlite_peek.h"
#include "fakes/temp_dir.h"
#include "store/outbox_reader.h"
#include "store/ring_store.h"
#include "store/store_writer.h"

namespace tagrelay::store {
namespace {

using testing::FaultVfs;
using testing::SqlInt;
using testing::SqlText;

ReadingBatch Batch(const std::string& device, int n) {
  ReadingBatch b{device, {}};
  for (int i = 0; i < n; ++i) b.readings.push_back(Reading::Good("t", 1000 + i, int64_t{i}));
  return b;
}

// Waits for a condition the writer thread brings about; fails after 20 s.
void WaitFor(const std::function<bool()>& done, const char* what) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!done()) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "timed out waiting for " << what;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

class WriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    FaultVfs::Register();
    options_.path = dir_.File("tagrelay.db");
    options_.vfs = FaultVfs::kName;
    options_.commit_interval = std::chrono::milliseconds(1);
    options_.commit_rows = 10;
  }
  void TearDown() override { FaultVfs::Disarm(); }

  std::unique_ptr<StoreWriter> Start() {
    auto ring = RingStore::Open(options_);
    EXPECT_TRUE(ring.ok()) << ring.status().ToString();
    auto w = std::make_unique<StoreWriter>(std::move(ring).value(), options_);
    w->Start();
    return w;
  }
  std::set<int64_t> Seqs(const std::string& device) {
    std::set<int64_t> out;
    auto reader = OutboxReader::Open(options_.path);
    EXPECT_TRUE(reader.ok());
    const Result<std::vector<DeviceBacklog>> devices = reader->Devices();
    for (const DeviceBacklog& d : *devices) {
      if (d.name != device) continue;
      std::vector<StoredReading> rows;
      EXPECT_TRUE(reader->FetchUndelivered(d.id, 1, INT64_MAX, 1000000, rows).ok());
      for (const auto& r : rows) out.insert(r.seq);
    }
    return out;
  }
  static std::set<int64_t> Range(int64_t first, int64_t last) {
    std::set<int64_t> s;
    for (int64_t i = first; i <= last; ++i) s.insert(i);
    return s;
  }
  void Submit(StoreWriter& w, ReadingBatch b) {
    ASSERT_TRUE(w.SubmitReadings(std::move(b), MonoTime::max()));
  }

  TempDir dir_;
  StoreOptions options_;
};

TEST_F(WriterTest, ADiskFullIsRiddenOutInMemoryAndNothingIsLost) {
  auto w = Start();
  Submit(*w, Batch("d", 10));
  WaitFor([&] { return w->counters().rows_committed == 10; }, "the first commit");

  FaultVfs::Arm(FaultVfs::Op::kWrite, 1, FaultVfs::Mode::kForever, SQLITE_FULL);
  Submit(*w, Batch("d", 10));
  WaitFor([&] { return w->counters().failing.load(); }, "the failure");
  for (int i = 0; i < 8; ++i) Submit(*w, Batch("d", 10));
  WaitFor([&] { return w->counters().pending_readings == 90; }, "readings held in memory");
  EXPECT_EQ(w->counters().rows_committed.load(), 10u);

  FaultVfs::Disarm();  // space is back
  WaitFor([&] { return !w->counters().failing && w->counters().pending_readings == 0; },
          "recovery");
  w->Stop();
  EXPECT_GE(w->counters().failed_commits.load(), 1u);
  EXPECT_EQ(w->counters().lost_in_memory.load(), 0u);
  EXPECT_EQ(Seqs("d"), Range(1, 100));
  EXPECT_EQ(SqlInt(options_.path, "SELECT count(*) FROM events"), 0)
      << "nothing was lost to report";
  EXPECT_EQ(SqlText(options_.path, "PRAGMA integrity_check"), "ok");
}

TEST_F(WriterTest, MemoryStaysBoundedAndTheDroppedRangeIsReported) {
  options_.max_memory_readings = 50;
  auto w = Start();
  FaultVfs::Arm(FaultVfs::Op::kWrite, 1, FaultVfs::Mode::kForever, SQLITE_IOERR_WRITE);
  Submit(*w, Batch("d", 10));
  WaitFor([&] { return w->counters().failing.load(); }, "the failure");
  for (int i = 0; i < 19; ++i) Submit(*w, Batch("d", 10));
  WaitFor([&] { return w->queued() == 0 && w->counters().lost_in_memory == 150; }, "drops");
  EXPECT_LE(w->counters().pending_readings.load(), 50u);

  FaultVfs::Disarm();
  WaitFor([&] { return !w->counters().failing && w->counters().pending_readings == 0; },
          "recovery");
  w->Stop();
  EXPECT_EQ(Seqs("d"), Range(151, 200)) << "the newest are kept, under their own numbers";
  EXPECT_EQ(SqlText(options_.path,
                    "SELECT json_remove(body, '$.ts') FROM events WHERE stream = 'events'"),
            R"({"kind":"readings_lost","device":"d","seq_first":1,"seq_last":150,"count":150,)"
            R"("reason":"memory_full"})");
  EXPECT_EQ(SqlText(options_.path, "SELECT device FROM events"), "") << "the gateway's stream";
}

TEST_F(WriterTest, AFailedSyncIsRetried) {
  options_.sync = SyncMode::kFull;
  auto w = Start();
  FaultVfs::Arm(FaultVfs::Op::kSync, 1, FaultVfs::Mode::kOnce, SQLITE_IOERR_FSYNC);
  const int faults = FaultVfs::faults();
  Submit(*w, Batch("d", 25));
  WaitFor([&] { return w->counters().rows_committed == 25; }, "the commit");
  w->Stop();
  EXPECT_EQ(FaultVfs::faults(), faults + 1);
  EXPECT_EQ(w->counters().failed_commits.load(), 1u);
  EXPECT_EQ(Seqs("d"), Range(1, 25));
}

TEST_F(WriterTest, AStoppingWriterWithAFailingDiskCountsWhatItCouldNotSave) {
  auto w = Start();
  FaultVfs::Arm(FaultVfs::Op::kWrite, 1, FaultVfs::Mode::kForever, SQLITE_FULL);
  Submit(*w, Batch("d", 7));
  w->Stop();
  EXPECT_EQ(w->counters().lost_at_stop.load(), 7u);
  EXPECT_EQ(w->counters().rows_committed.load(), 0u);
}

TEST_F(WriterTest, ALostDatabaseIsReportedAndNumbersGoOn) {
  {
    auto w = Start();
    Submit(*w, Batch("d", 5));
    w->Stop();
  }
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(options_.path + suffix);
  auto w = Start();
  Submit(*w, Batch("d", 5));
  w->Stop();
  const std::set<int64_t> seqs = Seqs("d");
  ASSERT_EQ(seqs.size(), 5u);
  EXPECT_GT(*seqs.begin(), 5) << "no number is handed out twice";
  EXPECT_EQ(SqlText(options_.path, "SELECT json_extract(body, '$.reason') FROM events"),
            "store_lost");
  EXPECT_EQ(SqlInt(options_.path, "SELECT json_extract(body, '$.seq_last') FROM events"),
            *seqs.begin() - 1);
}

// Counts the readings it sees and keeps that count as its state.
class CountingObserver : public WriterObserver {
 public:
  void Restore(const std::map<std::string, std::string>& state) override {
    auto it = state.find("count");
    seen_ = it == state.end() ? 0 : std::stoll(it->second);
    restored_ = true;
  }
  void OnReadings(const SequencedBatch& batch, std::vector<NewEvent>&) override {
    seen_ += static_cast<int64_t>(batch.readings.size());
    dirty_ = true;
  }
  void OnTick(std::vector<NewEvent>&) override {}
  void TakeState(std::vector<StateUpdate>& out) override {
    if (dirty_) out.push_back({"count", std::to_string(seen_.load())});
    dirty_ = false;
  }
  std::atomic<int64_t> seen_{0};
  std::atomic<bool> restored_{false};

 private:
  bool dirty_ = false;
};

class UnopenedWriterTest : public WriterTest {
 protected:
  // A writer whose store opens only once allow_ is set.
  std::unique_ptr<StoreWriter> StartUnopened(WriterObserver* observer = nullptr) {
    StoreOptions options = options_;
    auto w = std::make_unique<StoreWriter>(
        [this, options](std::vector<NewEvent>&) -> Result<std::unique_ptr<RingStore>> {
          ++attempts_;
          if (!allow_) return Status::IOError("open store: unable to open database file");
          return RingStore::Open(options);
        },
        options_);
    if (observer != nullptr) w->SetObserver(observer);
    w->Start();
    return w;
  }
  std::atomic<bool> allow_{false};
  std::atomic<int> attempts_{0};
};

TEST_F(UnopenedWriterTest, ReadingsWaitInMemoryAndAreNumberedWhenTheStoreOpens) {
  {
    auto w = Start();
    Submit(*w, Batch("d", 5));
    w->Stop();
  }
  {  // the state an earlier run kept
    auto ring = RingStore::Open(options_);
    ASSERT_TRUE(ring.ok());
    ASSERT_TRUE((*ring)->WriteGroup({StateUpdate{"count", "5"}}).ok());
  }
  CountingObserver observer;
  auto w = StartUnopened(&observer);
  WaitFor([&] { return w->counters().failing.load(); }, "the failure to open");
  EXPECT_FALSE(w->counters().open.load());
  for (int i = 0; i < 3; ++i) Submit(*w, Batch("d", 10));
  Submit(*w, Batch("e", 4));
  WaitFor([&] { return w->counters().pending_readings == 34; }, "readings held in memory");
  EXPECT_EQ(observer.seen_.load(), 5 + 34) << "the rules go on, from the state on disk";
  EXPECT_EQ(w->counters().rows_committed.load(), 0u);
  const int tried = attempts_;
  WaitFor([&] { return attempts_ > tried + 1; }, "another attempt to open");

  allow_ = true;
  WaitFor([&] { return w->counters().open && w->counters().pending_readings == 0; }, "the open");
  EXPECT_FALSE(w->counters().failing.load());
  Submit(*w, Batch("d", 2));
  w->Stop();
  EXPECT_EQ(Seqs("d"), Range(1, 37)) << "numbered on from the earlier 5, in arrival order";
  EXPECT_EQ(Seqs("e"), Range(1, 4));
  EXPECT_EQ(w->counters().lost_in_memory.load(), 0u);
  EXPECT_EQ(SqlText(options_.path, "SELECT value FROM state WHERE key = 'count'"), "41");
  EXPECT_EQ(SqlInt(options_.path, "SELECT count(*) FROM events"), 0);
}

TEST_F(UnopenedWriterTest, ReadingsDroppedBeforeTheStoreOpensAreAReportedRange) {
  options_.max_memory_readings = 50;
  auto w = StartUnopened();
  for (int i = 0; i < 20; ++i) Submit(*w, Batch("d", 10));
  WaitFor([&] { return w->queued() == 0 && w->counters().lost_in_memory == 150; }, "drops");
  allow_ = true;
  WaitFor([&] { return w->counters().open && w->counters().pending_readings == 0; }, "the open");
  w->Stop();
  EXPECT_EQ(Seqs("d"), Range(151, 200)) << "the dropped readings have their numbers too";
  EXPECT_EQ(SqlText(options_.path,
                    "SELECT json_remove(body, '$.ts') FROM events WHERE stream = 'events'"),
            R"({"kind":"readings_lost","device":"d","seq_first":1,"seq_last":150,"count":150,)"
            R"("reason":"memory_full"})");
}

TEST_F(WriterTest, TheKeptStateIsReadWithoutWritingAnything) {
  EXPECT_EQ(RingStore::ReadState(options_.path).status().code(), StatusCode::kNotFound);
  {
    auto ring = RingStore::Open(options_);
    ASSERT_TRUE(ring.ok());
    ASSERT_TRUE((*ring)->WriteGroup({StateUpdate{"a", "1"}, StateUpdate{"b", "two"}}).ok());
  }
  auto listing = [&] {
    std::set<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(dir_.path())) {
      names.insert(e.path().filename().string());
    }
    return names;
  };
  const std::set<std::string> before = listing();
  Result<std::map<std::string, std::string>> state = RingStore::ReadState(options_.path);
  ASSERT_TRUE(state.ok()) << state.status().ToString();
  EXPECT_EQ(*state, (std::map<std::string, std::string>{{"a", "1"}, {"b", "two"}}));
  EXPECT_EQ(listing(), before) << "no WAL, no shared memory file, nothing created";
}

TEST_F(UnopenedWriterTest, StoppingWithoutAStoreCountsWhatItCouldNotSave) {
  auto w = StartUnopened();
  Submit(*w, Batch("d", 7));
  WaitFor([&] { return w->counters().pending_readings == 7; }, "readings held in memory");
  w->Stop();
  EXPECT_EQ(w->counters().lost_at_stop.load(), 7u);
  EXPECT_FALSE(std::filesystem::exists(options_.path));
}

TEST_F(UnopenedWriterTest, AStoreThatOpensAtOnceIsUsedAtOnce) {
  allow_ = true;
  auto w = StartUnopened();
  Submit(*w, Batch("d", 3));
  w->Stop();
  EXPECT_EQ(attempts_.load(), 1);
  EXPECT_EQ(w->counters().failed_commits.load(), 0u);
  EXPECT_EQ(Seqs("d"), Range(1, 3));
}

}  // namespace
}  // namespace tagrelay::store
