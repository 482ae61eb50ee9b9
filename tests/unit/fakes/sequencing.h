// Sequence(): gives a test's batches their sequence numbers the way the
// StoreWriter does, so that tests can write to a RingStore directly, without a
// writer thread.
#pragma once

#include <string>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "store/ring_store.h"

namespace tagrelay::store {

class Sequencer {
 public:
  explicit Sequencer(RingStore& ring) : ring_(ring) {}

  WriteItem operator()(StoreItem item) {
    if (auto* b = std::get_if<ReadingBatch>(&item)) {
      auto it = next_.find(b->device);
      if (it == next_.end())
        it = next_.emplace(b->device, ring_.StartDevice(b->device).next_seq).first;
      const int64_t first = it->second;
      it->second += static_cast<int64_t>(b->readings.size());
      return SequencedBatch{b->device, first, std::move(b->readings)};
    }
    return std::visit(
        [](auto&& x) -> WriteItem {
          if constexpr (std::is_same_v<std::decay_t<decltype(x)>, ReadingBatch>) {
            return SequencedBatch{};  // handled above
          } else {
            return std::move(x);
          }
        },
        std::move(item));
  }

  // Sequences and writes `items` in one group.
  Status Write(std::vector<StoreItem> items) {
    std::vector<WriteItem> group;
    for (StoreItem& i : items) group.push_back((*this)(std::move(i)));
    Status s = ring_.WriteGroup(group);
    if (!s.ok()) next_.clear();  // numbers handed out are not reused by a test either
    return s;
  }

 private:
  RingStore& ring_;
  std::unordered_map<std::string, int64_t> next_;
};

}  // namespace tagrelay::store
