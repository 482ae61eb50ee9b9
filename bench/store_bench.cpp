// Store throughput: the ring's group write (sequencing, tag lookup, chunk
// encoding, inserts, eviction at the bound) against a ceiling measured in the
// same run: raw SQLite inserting the same rows into the same schema with the
// same settings, deleting the oldest as it goes, with nothing else to do.
//
// Each group is one commit of 1000 readings (the default commit_rows), made of
// whole device polls of `tags` readings, devices taken in turn from 100. The
// argument is the tags per device: 100 is the nominal workload (100 devices x
// 100 tags); 10 interleaves ten times more devices per commit, which costs the
// per-device index more. Prints the ratios; the goal is at least 70% of the
// ceiling and at least 300,000 readings/s with sync = normal.
#include <benchmark/benchmark.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <time.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "bench/thread_cpu.h"
#include "store/chunk_codec.h"
#include "store/ring_store.h"

namespace tagrelay::store {
namespace {

using bench::ThreadCpuSeconds;

constexpr int kDevices = 100;
constexpr int kGroupRows = 1000;  // the default commit_rows
constexpr uint64_t kMaxBytes = 64ull << 20;

// The raw insert's thread CPU per reading in us, by tags per device, from the
// last (the reported) run of each; kept out of the benchmark's counters so that
// its console rows stay as they were.
std::map<int, double> g_raw_cpu_us;

std::string FreshDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "tagrelay-bench-XXXXXX").string();
  return mkdtemp(pattern.data());
}

// Group number g: the next kGroupRows / tags device polls, devices in turn.
std::vector<ReadingBatch> Group(int64_t g, int tags, int64_t ts) {
  std::vector<ReadingBatch> out;
  const int polls = kGroupRows / tags;
  for (int p = 0; p < polls; ++p) {
    const int d = static_cast<int>((g * polls + p) % kDevices);
    ReadingBatch b{"device-" + std::to_string(d), {}};
    for (int t = 0; t < tags; ++t) {
      b.readings.push_back(Reading::Good("tag-" + std::to_string(t), ts, 230.0 + t + d * 0.01));
    }
    out.push_back(std::move(b));
  }
  return out;
}

void BM_RingStoreWriteGroup(benchmark::State& state) {
  const std::string dir = FreshDir();
  StoreOptions o;
  o.path = dir + "/tagrelay.db";
  o.max_bytes = kMaxBytes;
  auto ring = RingStore::Open(o);
  if (!ring.ok()) {
    state.SkipWithError(ring.status().ToString().c_str());
    return;
  }
  const int tags = static_cast<int>(state.range(0));
  std::map<std::string, int64_t> next;
  int64_t ts = 1763800000000, g = 0;
  for (auto _ : state) {
    state.PauseTiming();
    std::vector<ReadingBatch> cycle = Group(g++, tags, ts += 100);
    state.ResumeTiming();
    std::vector<WriteItem> group;
    group.reserve(cycle.size());
    for (ReadingBatch& b : cycle) {  // what the writer thread does on arrival
      auto it = next.find(b.device);
      if (it == next.end())
        it = next.emplace(b.device, (*ring)->StartDevice(b.device).next_seq).first;
      const int64_t first = it->second;
      it->second += static_cast<int64_t>(b.readings.size());
      group.emplace_back(SequencedBatch{std::move(b.device), first, std::move(b.readings)});
    }
    Status s = (*ring)->WriteGroup(group);
    if (!s.ok()) state.SkipWithError(s.ToString().c_str());
  }
  state.SetItemsProcessed(state.iterations() * kGroupRows);
  state.counters["evicted"] = static_cast<double>((*ring)->Usage().evicted_undelivered);
  ring->reset();
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_RingStoreWriteGroup)
    ->Arg(100)
    ->Arg(10)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(3.0);

// The ceiling: raw SQLite writing the same rows into the same tables with the
// same settings: one prepared INSERT of a ready-made chunk per poll (the blob of
// the first poll, so no encoding is measured here) with its outbox entry, and a
// delete of the oldest chunks (and their entries) once the table holds about as
// many as the ring keeps at its bound.
void BM_RawSqliteInsertDeleteOldest(benchmark::State& state) {
  const std::string dir = FreshDir();
  StoreOptions o;
  o.path = dir + "/tagrelay.db";
  o.max_bytes = kMaxBytes;
  { auto ring = RingStore::Open(o); }  // the schema and the settings, then raw SQLite only
  sqlite3* db = nullptr;
  sqlite3_open(o.path.c_str(), &db);
  const std::string pragmas =
      "PRAGMA synchronous = NORMAL; PRAGMA journal_mode = WAL; PRAGMA cache_size = -512; " +
      RingStore::LimitPragmas(RingStore::LimitsFor(kMaxBytes, 4096));
  sqlite3_exec(db, pragmas.c_str(), nullptr, nullptr, nullptr);
  const int tags = static_cast<int>(state.range(0));
  sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr);
  for (int d = 0; d < kDevices; ++d) {
    const std::string sql = "INSERT INTO devices (id, name, next_seq) VALUES (" +
                            std::to_string(d + 1) + ", 'device-" + std::to_string(d) + "', 1)";
    sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
  }
  sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
  const std::vector<ReadingBatch> first = Group(0, tags, 1763800000000);
  std::vector<int64_t> ids(static_cast<size_t>(tags));
  for (int t = 0; t < tags; ++t) ids[static_cast<size_t>(t)] = t + 1;
  std::string blob;
  EncodeChunk(first.front().readings, ids, &blob);

  sqlite3_stmt* ins = nullptr;
  sqlite3_prepare_v2(db,
                     "INSERT INTO chunks (device_id, seq_first, count, ts, data) "
                     "VALUES (?1, ?2, ?3, ?4, ?5)",
                     -1, &ins, nullptr);
  sqlite3_stmt* outbox = nullptr;
  sqlite3_prepare_v2(db,
                     "INSERT INTO outbox (device_id, seq_first, count, ts, chunk_id) "
                     "VALUES (?1, ?2, ?3, ?4, last_insert_rowid())",
                     -1, &outbox, nullptr);
  sqlite3_stmt* del = nullptr;
  sqlite3_prepare_v2(db,
                     "DELETE FROM chunks WHERE id IN (SELECT id FROM chunks ORDER BY id LIMIT ?1) "
                     "RETURNING device_id, seq_first",
                     -1, &del, nullptr);
  sqlite3_stmt* del_outbox = nullptr;
  sqlite3_prepare_v2(db, "DELETE FROM outbox WHERE device_id = ?1 AND seq_first = ?2", -1,
                     &del_outbox, nullptr);
  const int64_t keep =
      static_cast<int64_t>(kMaxBytes * 0.8 / (static_cast<double>(blob.size()) + 40));
  std::vector<int64_t> next_seq(kDevices, 1);
  int64_t chunks = 0, g = 0, ts = 1763800000000;
  const int polls = kGroupRows / tags;
  const double cpu_start = ThreadCpuSeconds();
  for (auto _ : state) {
    sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr);
    ts += 100;
    for (int p = 0; p < polls; ++p) {
      const int d = static_cast<int>((g * polls + p) % kDevices);
      sqlite3_bind_int64(ins, 1, d + 1);
      sqlite3_bind_int64(ins, 2, next_seq[static_cast<size_t>(d)]);
      sqlite3_bind_int64(ins, 3, tags);
      sqlite3_bind_int64(ins, 4, ts);
      sqlite3_bind_blob(ins, 5, blob.data(), static_cast<int>(blob.size()), SQLITE_STATIC);
      sqlite3_step(ins);
      sqlite3_reset(ins);
      sqlite3_bind_int64(outbox, 1, d + 1);
      sqlite3_bind_int64(outbox, 2, next_seq[static_cast<size_t>(d)]);
      sqlite3_bind_int64(outbox, 3, tags);
      sqlite3_bind_int64(outbox, 4, ts);
      sqlite3_step(outbox);
      sqlite3_reset(outbox);
      next_seq[static_cast<size_t>(d)] += tags;
    }
    ++g;
    chunks += polls;
    if (chunks > keep) {
      sqlite3_bind_int64(del, 1, chunks - keep);
      std::vector<std::pair<int64_t, int64_t>> gone;
      while (sqlite3_step(del) == SQLITE_ROW) {
        gone.emplace_back(sqlite3_column_int64(del, 0), sqlite3_column_int64(del, 1));
      }
      sqlite3_reset(del);
      for (const auto& [device, seq] : gone) {
        sqlite3_bind_int64(del_outbox, 1, device);
        sqlite3_bind_int64(del_outbox, 2, seq);
        sqlite3_step(del_outbox);
        sqlite3_reset(del_outbox);
      }
      chunks = keep;
    }
    sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
  }
  // SQLite runs no thread of its own: checkpoints and fsyncs run in this one.
  const double cpu_seconds = ThreadCpuSeconds() - cpu_start;
  state.SetItemsProcessed(state.iterations() * kGroupRows);
  g_raw_cpu_us[tags] = cpu_seconds * 1e6 / static_cast<double>(state.iterations() * kGroupRows);
  sqlite3_finalize(ins);
  sqlite3_finalize(outbox);
  sqlite3_finalize(del);
  sqlite3_finalize(del_outbox);
  sqlite3_close(db);
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_RawSqliteInsertDeleteOldest)
    ->Arg(100)
    ->Arg(10)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(3.0);

// Keeps the items/s of every run and prints the ratio at the end, then the raw
// insert's CPU per reading (its thread's CPU time, not wall time).
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs) {
      auto it = r.counters.find("items_per_second");
      if (it != r.counters.end())
        rate_[r.run_name.function_name + "/" + r.run_name.args] = it->second.value;
    }
    ConsoleReporter::ReportRuns(runs);
  }
  void Finalize() override {
    ConsoleReporter::Finalize();
    std::printf("\n");
    for (const char* tags : {"100", "10"}) {
      const double ring = rate_[std::string("BM_RingStoreWriteGroup/") + tags];
      const double raw = rate_[std::string("BM_RawSqliteInsertDeleteOldest/") + tags];
      if (ring > 0 && raw > 0) {
        std::printf(
            "%s tags per device: ring store %.0f readings/s, raw SQLite ceiling %.0f "
            "readings/s, ratio %.0f%% (goal: >= 70%% and >= 300000 readings/s)\n",
            tags, ring, raw, 100.0 * ring / raw);
      }
    }
    for (int tags : {100, 10}) {
      const double us = g_raw_cpu_us[tags];
      if (us > 0) {
        std::printf(
            "raw SQLite batch insert, %d tags per device: %.4f us CPU per reading (inserting "
            "thread), %.0f readings per CPU second\n",
            tags, us, 1e6 / us);
      }
    }
  }

 private:
  std::map<std::string, double> rate_;
};

}  // namespace
}  // namespace tagrelay::store

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  tagrelay::store::RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
