// StoreWriter: the only thread that writes to the SQLite ring.
//
// Promise: readings and acks are applied in arrival order. Items are grouped
// into one transaction until `commit_rows` rows or `commit_interval` after the
// first item, whichever comes first (group commit). A group that fails to
// commit (disk full, I/O error) is kept and retried with backoff; meanwhile new
// items wait in the bounded queue, so memory stays bounded and producers see a
// full queue. After each successful commit the commit listener is called.
// Stop() commits everything that was queued before it returns.
//
// Threads: SubmitReadings/SubmitAck/counters are safe from any thread. The
// commit listener runs on the writer thread and must not block.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "agent/core/bounded_queue.h"
#include "agent/core/clock.h"
#include "agent/core/stop_signal.h"
#include "store/ring_store.h"
#include "store/types.h"

namespace tagrelay::store {

struct WriterCounters {
  std::atomic<uint64_t> rows_committed{0};
  std::atomic<uint64_t> acks_committed{0};
  std::atomic<uint64_t> commits{0};
  std::atomic<uint64_t> failed_commits{0};
  std::atomic<uint64_t> lost_at_stop{0};  // rows given up when stopping with a failing disk
};

class StoreWriter {
 public:
  StoreWriter(std::unique_ptr<RingStore> store, const StoreOptions& options);
  ~StoreWriter();
  StoreWriter(const StoreWriter&) = delete;
  StoreWriter& operator=(const StoreWriter&) = delete;

  // Called after every commit that wrote readings. Set before Start().
  void SetCommitListener(std::function<void()> listener) { on_commit_ = std::move(listener); }

  void Start();
  // Closes the queue, commits what is in it and joins the thread.
  void Stop();

  // Queues a batch, waiting up to `deadline` for room; false if it stayed full.
  bool SubmitReadings(ReadingBatch&& batch, MonoTime deadline);
  // Queues an ack; waits for room as long as it takes (acks are small and few).
  void SubmitAck(DeliveryAck&& ack);

  const WriterCounters& counters() const { return counters_; }
  size_t queued() const { return queue_.size(); }

 private:
  void Run();
  void Flush(std::vector<StoreItem>& group, bool stopping);

  std::unique_ptr<RingStore> store_;
  const StoreOptions options_;
  BoundedQueue<StoreItem> queue_;
  std::function<void()> on_commit_;
  WriterCounters counters_;
  StopSignal retry_wait_;  // interrupts a retry backoff when stopping
  std::thread thread_;
};

}  // namespace tagrelay::store
