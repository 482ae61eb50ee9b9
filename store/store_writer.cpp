#include "store/store_writer.h"

#include <algorithm>
#include <string>
#include <type_traits>

#include "agent/core/log.h"
#include "agent/core/thread_name.h"

namespace tagrelay::store {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

constexpr milliseconds kRetryFirst{100};
constexpr milliseconds kRetryCap{5000};
constexpr milliseconds kFailureLogEvery{60000};
constexpr int kAttemptsWhenStopping = 3;

}  // namespace

StoreWriter::StoreWriter(std::unique_ptr<RingStore> store, const StoreOptions& options,
                         const Clock& clock)
    : store_(std::move(store)), options_(options), clock_(clock), queue_(options.queue_capacity) {
  counters_.open = true;
  MutexLock lock(&usage_mu_);
  usage_ = store_->Usage();
}

StoreWriter::StoreWriter(StoreOpener opener, const StoreOptions& options, const Clock& clock)
    : opener_(std::move(opener)), options_(options), clock_(clock), queue_(options.queue_capacity) {
  MutexLock lock(&usage_mu_);
  usage_.max_bytes = options.max_bytes;
}

StoreWriter::~StoreWriter() { Stop(); }

void StoreWriter::Start() {
  thread_ = std::thread([this] {
    NameThisThread("store writer");
    Run();
  });
}

void StoreWriter::Stop() {
  queue_.Close();
  if (thread_.joinable()) thread_.join();
}

bool StoreWriter::SubmitReadings(ReadingBatch&& batch, MonoTime deadline) {
  StoreItem item(std::move(batch));
  return queue_.PushUntil(std::move(item), deadline) == PushResult::kOk;
}

void StoreWriter::Submit(StoreItem&& item) {
  if (queue_.Push(std::move(item)) != PushResult::kOk) {
    // Only after Stop(): an ack is simply sent again next time, an event raised
    // during shutdown is logged where it was raised.
    Log(LogLevel::kDebug, "store", "item after stop ignored");
  }
}

RingUsage StoreWriter::usage() const {
  MutexLock lock(&usage_mu_);
  return usage_;
}

void StoreWriter::Run() {
  if (!store_) {
    const Status s = OpenStore();
    if (!s.ok()) Failed(s, steady_clock::now());
  }
  if (observer_ != nullptr) {
    // Without a store, its last state is read without writing anything.
    Result<std::map<std::string, std::string>> state =
        store_ ? store_->LoadState() : RingStore::ReadState(options_.path);
    if (!state.ok() && state.status().code() != StatusCode::kNotFound) {
      Log(LogLevel::kError, "store",
          "read the alarm and counter state: " + state.status().ToString() +
              "; alarms and counters start afresh");
    }
    observer_->Restore(state.ok() ? *state : std::map<std::string, std::string>{});
    next_tick_ = steady_clock::now() + observer_->tick_interval();
  }
  for (;;) {
    // Without a store, opening it is retried even with nothing to write.
    const bool work = !pending_.empty() || !store_;
    MonoTime deadline = next_tick_;
    if (work) deadline = std::min(deadline, counters_.failing ? retry_at_ : group_deadline_);
    heartbeat_.Beat(clock_.mono());
    // An open group takes what queues up without a wake-up per item.
    const size_t wake_at = work && store_ && !counters_.failing ? GroupWakeAt() : 1;
    std::optional<StoreItem> item =
        queue_.PopUntil(std::min(deadline, steady_clock::now() + kHeartbeatEvery), wake_at);
    const bool drained = !item && queue_.closed();
    if (item) Accept(std::move(*item));
    // What queued up meanwhile joins the group, as long as the group has room.
    while (item && pending_rows_ < options_.commit_rows) {
      item = queue_.TryPop();
      if (item) Accept(std::move(*item));
    }
    if (observer_ != nullptr && steady_clock::now() >= next_tick_) Tick();
    const MonoTime now = steady_clock::now();
    const bool due = counters_.failing
                         ? now >= retry_at_
                         : pending_rows_ >= options_.commit_rows || now >= group_deadline_;
    if ((!pending_.empty() || !store_) && (due || drained)) TryCommit(drained);
    if (drained) return;
  }
}

size_t StoreWriter::GroupWakeAt() const {
  if (pending_rows_ >= options_.commit_rows) return 1;
  const uint64_t per_item =
      std::max<uint64_t>(1, rows_taken_ / std::max<uint64_t>(1, items_taken_));
  const uint64_t room = (options_.commit_rows - pending_rows_ + per_item - 1) / per_item;
  // Half the queue at most, so that producers never meet a full queue because of it.
  return static_cast<size_t>(
      std::clamp<uint64_t>(room, 1, std::max<size_t>(1, queue_.capacity() / 2)));
}

void StoreWriter::Tick() {
  next_tick_ = steady_clock::now() + observer_->tick_interval();
  observed_.clear();
  observer_->OnTick(observed_);
  if (observed_.empty()) return;
  if (pending_.empty()) group_deadline_ = steady_clock::now() + options_.commit_interval;
  for (NewEvent& e : observed_) pending_.emplace_back(std::move(e));
  pending_rows_ += observed_.size();
}

void StoreWriter::Accept(StoreItem&& item) {
  if (pending_.empty()) group_deadline_ = steady_clock::now() + options_.commit_interval;
  ++items_taken_;
  if (auto* batch = std::get_if<ReadingBatch>(&item)) {
    rows_taken_ += batch->readings.size();
    Sequence(std::move(*batch));
  } else {
    // Acks, records and discards are small; each counts as one row of the group.
    std::visit(
        [this](auto&& x) {
          if constexpr (!std::is_same_v<std::decay_t<decltype(x)>, ReadingBatch>) {
            pending_.emplace_back(std::move(x));
          }
        },
        std::move(item));
    ++pending_rows_;
    ++rows_taken_;
  }
  while (counters_.pending_readings > options_.max_memory_readings) DropOldestReadings();
}

int64_t StoreWriter::TakeSeqs(const std::string& device, int64_t n,
                              std::vector<WriteItem>& records) {
  auto it = next_seq_.find(device);
  if (it == next_seq_.end()) {
    const RingStore::DeviceStart start = store_->StartDevice(device);
    if (start.lost_below > 1) {
      LogDevice(LogLevel::kError, "store", device,
                "the store once held this device but its database was lost; readings before seq " +
                    std::to_string(start.lost_below) + " that did not reach the cloud are lost");
      records.emplace_back(NewEvent{
          std::string(kStreamEvents), "", clock_.wall_ms(),
          LossRecord(clock_.wall_ms(), device, 1, start.lost_below - 1, 0, kLossStoreLost)});
    }
    it = next_seq_.emplace(device, start.next_seq).first;
  }
  const int64_t first = it->second;
  it->second += n;
  return first;
}

void StoreWriter::Sequence(ReadingBatch&& batch) {
  if (batch.readings.empty()) return;
  int64_t first = 0;  // 0: numbered when the store opens
  if (store_) {
    std::vector<WriteItem> records;
    first = TakeSeqs(batch.device, static_cast<int64_t>(batch.readings.size()), records);
    pending_rows_ += records.size();
    for (WriteItem& r : records) pending_.push_back(std::move(r));
  }
  pending_rows_ += batch.readings.size();
  counters_.pending_readings += batch.readings.size();
  pending_.emplace_back(SequencedBatch{std::move(batch.device), first, std::move(batch.readings)});
  if (observer_ != nullptr) {
    observed_.clear();
    observer_->OnReadings(std::get<SequencedBatch>(pending_.back()), observed_);
    for (NewEvent& e : observed_) pending_.emplace_back(std::move(e));
    pending_rows_ += observed_.size();
  }
}

void StoreWriter::DropOldestReadings() {
  auto it = std::find_if(pending_.begin(), pending_.end(), [](const WriteItem& w) {
    return std::holds_alternative<SequencedBatch>(w);
  });
  if (it == pending_.end()) return;
  const SequencedBatch& b = std::get<SequencedBatch>(*it);
  const auto n = static_cast<int64_t>(b.readings.size());
  if (b.seq_first == 0) {
    dropped_unnumbered_[b.device] += n;
  } else {
    Loss& loss = memory_losses_[b.device];
    if (loss.count == 0) loss.first = b.seq_first;
    loss.last = b.seq_first + n - 1;
    loss.count += n;
  }
  counters_.lost_in_memory += static_cast<uint64_t>(n);
  counters_.pending_readings -= static_cast<uint64_t>(n);
  pending_rows_ -= static_cast<size_t>(n);
  pending_.erase(it);
}

void StoreWriter::TryCommit(bool stopping) {
  if (!store_) {
    const Status s = OpenStore();
    if (!s.ok()) {
      Failed(s, steady_clock::now());
      if (stopping) {
        counters_.lost_at_stop += counters_.pending_readings.load();
        Log(LogLevel::kError, "store",
            "stopping without a store: " + std::to_string(counters_.pending_readings.load()) +
                " readings not saved");
      }
      return;
    }
  }
  if (observer_ != nullptr) {
    // The latest value per key: a store that fails for long does not pile up updates.
    std::vector<StateUpdate> state;
    observer_->TakeState(state);
    for (StateUpdate& u : state) unsaved_state_[u.key] = std::move(u.value);
  }
  // Readings dropped in memory are reported as soon as the store can take it;
  // the events go first in the group and come out again if the commit fails
  // (the losses may still grow before the next try).
  const size_t loss_events = memory_losses_.size();
  if (loss_events > 0) {
    std::vector<WriteItem> events;
    for (const auto& [device, loss] : memory_losses_) {
      events.emplace_back(NewEvent{std::string(kStreamEvents), "", clock_.wall_ms(),
                                   LossRecord(clock_.wall_ms(), device, loss.first, loss.last,
                                              loss.count, kLossMemoryFull)});
    }
    pending_.insert(pending_.begin(), std::make_move_iterator(events.begin()),
                    std::make_move_iterator(events.end()));
  }
  const size_t state_from = pending_.size();
  for (const auto& [key, value] : unsaved_state_) pending_.emplace_back(StateUpdate{key, value});
  for (int attempt = 1;; ++attempt) {
    Status s = store_->WriteGroup(pending_);
    if (s.ok()) break;
    Failed(s, steady_clock::now());
    if (!stopping || attempt >= kAttemptsWhenStopping) {
      pending_.erase(pending_.begin() + static_cast<std::ptrdiff_t>(state_from), pending_.end());
      pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(loss_events));
      if (stopping) {
        counters_.lost_at_stop += counters_.pending_readings.load();
        Log(LogLevel::kError, "store",
            "stopping with the store failing: " +
                std::to_string(counters_.pending_readings.load()) + " readings not saved");
      }
      return;
    }
  }
  unsaved_state_.clear();

  size_t readings = 0, acks = 0, events = 0;
  news_.devices.clear();
  for (const WriteItem& w : pending_) {
    if (const auto* b = std::get_if<SequencedBatch>(&w)) {
      readings += b->readings.size();
      news_.AddDevice(b->device);
    }
    if (std::holds_alternative<DeliveryAck>(w) || std::holds_alternative<EventAck>(w) ||
        std::holds_alternative<DiscardReadings>(w)) {
      ++acks;
    }
    if (std::holds_alternative<NewEvent>(w)) ++events;
  }
  if (counters_.failing) {
    Log(LogLevel::kInfo, "store",
        "writing again after " +
            std::to_string(std::chrono::duration_cast<std::chrono::seconds>(steady_clock::now() -
                                                                            failing_since_)
                               .count()) +
            " s; " + std::to_string(counters_.lost_in_memory.load()) +
            " readings were dropped in memory meanwhile");
  }
  counters_.failing = false;
  backoff_ = milliseconds(0);
  memory_losses_.clear();
  pending_.clear();
  pending_rows_ = 0;
  counters_.pending_readings = 0;
  counters_.rows_committed += readings;
  counters_.acks_committed += acks;
  counters_.events_committed += events;
  ++counters_.commits;
  {
    MutexLock lock(&usage_mu_);
    usage_ = store_->Usage();
  }
  // The store's own records (an eviction's losses) are news as well.
  news_.events = store_->TakeEventsAdded() || events > 0;
  if ((readings > 0 || news_.events) && on_commit_) on_commit_(news_);
}

Status StoreWriter::OpenStore() {
  std::vector<NewEvent> events;
  Result<std::unique_ptr<RingStore>> opened = opener_(events);
  if (!opened.ok()) return opened.status();
  store_ = std::move(opened).value();
  counters_.open = true;
  // What waited for the store gets its numbers now, in arrival order; what was
  // dropped meanwhile was older, so it comes first and is reported lost.
  std::vector<WriteItem> records;
  for (NewEvent& e : events) records.emplace_back(std::move(e));
  for (const auto& [device, n] : dropped_unnumbered_) {
    const int64_t first = TakeSeqs(device, n, records);
    memory_losses_[device] = Loss{first, first + n - 1, n};
  }
  dropped_unnumbered_.clear();
  for (WriteItem& w : pending_) {
    auto* b = std::get_if<SequencedBatch>(&w);
    if (b == nullptr || b->seq_first != 0) continue;
    b->seq_first = TakeSeqs(b->device, static_cast<int64_t>(b->readings.size()), records);
  }
  pending_rows_ += records.size();
  pending_.insert(pending_.begin(), std::make_move_iterator(records.begin()),
                  std::make_move_iterator(records.end()));
  {
    MutexLock lock(&usage_mu_);
    usage_ = store_->Usage();
  }
  Log(LogLevel::kInfo, "store",
      "opened " + options_.path + "; " + std::to_string(counters_.pending_readings.load()) +
          " readings kept in memory meanwhile go into it now");
  return Status::Ok();
}

void StoreWriter::Failed(const Status& s, MonoTime now) {
  ++counters_.failed_commits;
  const std::string what = store_ ? "the write is retried" : "opening the store is retried";
  if (!counters_.failing) {
    counters_.failing = true;
    failing_since_ = now;
    last_failure_log_ = now;
    Log(LogLevel::kError, "store",
        s.ToString() + "; polling and alarms go on, readings are kept in memory (up to " +
            std::to_string(options_.max_memory_readings) + ") and " + what);
  } else if (now - last_failure_log_ >= kFailureLogEvery) {
    last_failure_log_ = now;
    Log(LogLevel::kError, "store",
        "still failing: " + s.ToString() + "; " +
            std::to_string(counters_.pending_readings.load()) + " readings in memory, " +
            std::to_string(counters_.lost_in_memory.load()) + " dropped");
  }
  backoff_ = backoff_.count() == 0 ? kRetryFirst : std::min(backoff_ * 2, kRetryCap);
  retry_at_ = now + backoff_;
}

}  // namespace tagrelay::store
