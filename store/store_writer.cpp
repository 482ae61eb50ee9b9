#include "store/store_writer.h"

#include <algorithm>
#include <string>

#include "agent/core/log.h"

namespace tagrelay::store {
namespace {

constexpr std::chrono::milliseconds kRetryFirst{100};
constexpr std::chrono::milliseconds kRetryCap{5000};
constexpr int kAttemptsWhenStopping = 3;

size_t RowsOf(const StoreItem& item) {
  if (const auto* b = std::get_if<ReadingBatch>(&item)) return b->readings.size();
  return 1;
}

}  // namespace

StoreWriter::StoreWriter(std::unique_ptr<RingStore> store, const StoreOptions& options)
    : store_(std::move(store)), options_(options), queue_(options.queue_capacity) {}

StoreWriter::~StoreWriter() { Stop(); }

void StoreWriter::Start() {
  thread_ = std::thread([this] { Run(); });
}

void StoreWriter::Stop() {
  queue_.Close();
  retry_wait_.Request();
  if (thread_.joinable()) thread_.join();
}

bool StoreWriter::SubmitReadings(ReadingBatch&& batch, MonoTime deadline) {
  StoreItem item(std::move(batch));
  return queue_.PushUntil(std::move(item), deadline) == PushResult::kOk;
}

void StoreWriter::SubmitAck(DeliveryAck&& ack) {
  StoreItem item(std::move(ack));
  if (queue_.Push(std::move(item)) != PushResult::kOk) {
    // Only after Stop(): the rows stay undelivered and are sent again next time.
    Log(LogLevel::kDebug, "store", "ack after stop ignored; the rows will be sent again");
  }
}

void StoreWriter::Run() {
  std::vector<StoreItem> group;
  size_t rows = 0;
  MonoTime group_deadline = MonoTime::max();
  for (;;) {
    std::optional<StoreItem> item = queue_.PopUntil(group_deadline);
    const bool drained = !item && queue_.closed();
    if (item) {
      if (group.empty())
        group_deadline = std::chrono::steady_clock::now() + options_.commit_interval;
      rows += RowsOf(*item);
      group.push_back(std::move(*item));
    }
    const bool due = rows >= options_.commit_rows ||
                     std::chrono::steady_clock::now() >= group_deadline || drained;
    if (!group.empty() && due) {
      Flush(group, drained);
      group.clear();
      rows = 0;
      group_deadline = MonoTime::max();
    }
    if (drained) return;
  }
}

void StoreWriter::Flush(std::vector<StoreItem>& group, bool stopping) {
  auto backoff = kRetryFirst;
  for (int attempt = 1;; ++attempt) {
    Status s = store_->WriteGroup(group);
    if (s.ok()) break;
    ++counters_.failed_commits;
    Log(LogLevel::kError, "store",
        s.ToString() + " (attempt " + std::to_string(attempt) + "; the group is kept and retried)");
    if ((stopping || retry_wait_.requested()) && attempt >= kAttemptsWhenStopping) {
      size_t lost = 0;
      for (const StoreItem& it : group) {
        if (std::holds_alternative<ReadingBatch>(it)) lost += RowsOf(it);
      }
      counters_.lost_at_stop += lost;
      Log(LogLevel::kError, "store",
          "stopping with the store failing: " + std::to_string(lost) + " readings not saved");
      return;
    }
    retry_wait_.WaitFor(backoff);
    backoff = std::min(backoff * 2, kRetryCap);
  }
  size_t readings = 0, acks = 0;
  for (const StoreItem& it : group) {
    if (std::holds_alternative<ReadingBatch>(it)) {
      readings += RowsOf(it);
    } else {
      ++acks;
    }
  }
  counters_.rows_committed += readings;
  counters_.acks_committed += acks;
  ++counters_.commits;
  if (readings > 0 && on_commit_) on_commit_();
}

}  // namespace tagrelay::store
