// StoreWriter: the only thread that writes to the SQLite ring.
//
// Promise:
// - Items are applied in arrival order. Readings get their per-device sequence
//   numbers when the writer takes them, so any later loss is a visible,
//   reported range of numbers.
// - Group commit: items are committed together once `commit_rows` rows are
//   waiting or `commit_interval` after the first of them, whichever is first.
//   While a group is open, the writer is not woken for each item: it takes
//   what queued up when the group is due, or once about as many items are
//   queued as the group still has room for (by the rows per item seen so far).
// - When a commit fails (disk full, I/O error), the writer keeps taking items
//   into memory, retries with backoff (100 ms doubling to 5 s) and recovers by
//   itself when the disk does. Memory stays bounded: past max_memory_readings
//   the oldest readings are dropped, counted, and reported in a readings_lost
//   event (reason memory_full) once the store works again.
// - Producers never block on the disk, only on a full queue.
// - An observer (alarm rules, counters) sees every reading as it is taken and
//   a tick every tick_interval(); its records and state changes go into the
//   same group as the readings they came from.
// - Stop() commits what was queued before it returns (three attempts if the
//   disk is failing; what still fails is counted as lost_at_stop).
// - A writer made with a StoreOpener starts without a store (its data
//   directory could not be written): it takes readings into memory as above,
//   runs the observer on them (alarms go on, from the state a read-only look
//   at the database found), and tries to open the store with the same backoff.
//   Readings get their sequence numbers once it opens, in arrival order; those
//   dropped from memory before that get numbers too, and a readings_lost
//   record for them, so the loss stays a visible range.
//
// Threads: the Submit* methods, usage(), counters() and heartbeat() are safe from any
// thread. The commit listener runs on the writer thread and must not block.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <thread>
#include <unordered_map>
#include <vector>

#include "agent/core/bounded_queue.h"
#include "agent/core/clock.h"
#include "agent/core/heartbeat.h"
#include "agent/core/mutex.h"
#include "agent/core/stop_signal.h"
#include "store/ring_store.h"
#include "store/types.h"
#include "store/writer_observer.h"

namespace tagrelay::store {

struct WriterCounters {
  std::atomic<uint64_t> rows_committed{0};
  std::atomic<uint64_t> acks_committed{0};  // acks and discards
  std::atomic<uint64_t> events_committed{0};
  std::atomic<uint64_t> commits{0};
  std::atomic<uint64_t> failed_commits{0};
  std::atomic<uint64_t> lost_in_memory{0};    // readings dropped while the disk failed
  std::atomic<uint64_t> lost_at_stop{0};      // readings not saved at stop (disk failing)
  std::atomic<bool> failing{false};           // the last commit (or opening the store) failed
  std::atomic<bool> open{false};              // the store is open
  std::atomic<uint64_t> pending_readings{0};  // taken, not yet committed
};

// Opens the ring for a writer that started without one; appends to `events`
// what opening it has to report (a corrupt database moved aside). Called on
// the writer thread.
using StoreOpener =
    std::function<Result<std::unique_ptr<RingStore>>(std::vector<NewEvent>& events)>;

class StoreWriter {
 public:
  StoreWriter(std::unique_ptr<RingStore> store, const StoreOptions& options,
              const Clock& clock = RealClock());
  // Starts without a store; `opener` is tried at start and then with backoff.
  StoreWriter(StoreOpener opener, const StoreOptions& options, const Clock& clock = RealClock());
  ~StoreWriter();
  StoreWriter(const StoreWriter&) = delete;
  StoreWriter& operator=(const StoreWriter&) = delete;

  // Called after every commit that wrote readings or events, with what it
  // added. Set before Start().
  void SetCommitListener(std::function<void(const CommitNews&)> listener) {
    on_commit_ = std::move(listener);
  }

  // Runs on every reading and every tick in the writer thread (alarms,
  // counters); its records and state are stored with the readings. Set before
  // Start(); not owned.
  void SetObserver(WriterObserver* observer) { observer_ = observer; }

  void Start();
  // Closes the queue, commits what is in it and joins the thread.
  void Stop();

  // Queues a batch, waiting up to `deadline` for room; false if it stayed full.
  bool SubmitReadings(ReadingBatch&& batch, MonoTime deadline);
  // Queues any item, waiting for room as long as it takes: for acks, records
  // and discards, which are small and few.
  void Submit(StoreItem&& item);

  const WriterCounters& counters() const { return counters_; }
  size_t queued() const { return queue_.size(); }
  // The ring's usage after the last commit.
  RingUsage usage() const;
  // Beats every turn of the writer's loop, at least every kHeartbeatEvery.
  const Heartbeat& heartbeat() const { return heartbeat_; }

 private:
  struct Loss {
    int64_t first = 0;
    int64_t last = 0;
    int64_t count = 0;
  };

  void Run();
  void Tick();
  void Accept(StoreItem&& item);
  void Sequence(ReadingBatch&& batch);
  void DropOldestReadings();
  void TryCommit(bool stopping);
  // Where `n` new readings of `device` start; may queue a loss record.
  int64_t TakeSeqs(const std::string& device, int64_t n, std::vector<WriteItem>& records);
  // Tries the opener; once open, numbers the readings that waited for it.
  Status OpenStore();
  // Counts a failed commit or open, logs it (rate-limited) and sets the retry.
  void Failed(const Status& s, MonoTime now);

  std::unique_ptr<RingStore> store_;  // null until the opener succeeds
  StoreOpener opener_;
  const StoreOptions options_;
  const Clock& clock_;
  BoundedQueue<StoreItem> queue_;
  // How many items the queue may gather before an open group wants the writer awake.
  size_t GroupWakeAt() const;

  std::function<void(const CommitNews&)> on_commit_;
  CommitNews news_;  // of the commit being made, reused
  WriterObserver* observer_ = nullptr;
  WriterCounters counters_;
  Heartbeat heartbeat_;

  // Writer thread only.
  std::vector<WriteItem> pending_;
  size_t pending_rows_ = 0;
  uint64_t items_taken_ = 0;  // items and their rows taken so far: the rows an item brings
  uint64_t rows_taken_ = 0;
  MonoTime group_deadline_ = MonoTime::max();
  MonoTime next_tick_ = MonoTime::max();
  std::vector<NewEvent> observed_;  // scratch for the observer's records
  std::unordered_map<std::string, int64_t> next_seq_;
  std::map<std::string, Loss> memory_losses_;          // dropped in memory, to report
  std::map<std::string, int64_t> dropped_unnumbered_;  // dropped before the store opened
  std::map<std::string, std::string> unsaved_state_;   // the observer's, not yet committed
  MonoTime retry_at_{};
  std::chrono::milliseconds backoff_{0};
  MonoTime failing_since_{};
  MonoTime last_failure_log_{};

  mutable Mutex usage_mu_;
  RingUsage usage_ TR_GUARDED_BY(usage_mu_);
  std::thread thread_;
};

}  // namespace tagrelay::store
