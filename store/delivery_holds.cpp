#include "store/delivery_holds.h"

#include <iterator>

namespace tagrelay::store {

void DeliveryHolds::Hold(const std::string& device, int64_t first, int64_t last) {
  if (first > last) return;
  MutexLock lock(&mu_);
  std::map<int64_t, int64_t>& ranges = held_[device];
  // Merge with every range that overlaps or touches first..last.
  auto it = ranges.upper_bound(first);
  if (it != ranges.begin() && std::prev(it)->second >= first - 1) --it;
  while (it != ranges.end() && it->first <= last + 1) {
    first = std::min(first, it->first);
    last = std::max(last, it->second);
    it = ranges.erase(it);
  }
  ranges.emplace(first, last);
}

void DeliveryHolds::Release(const std::string& device, int64_t first, int64_t last) {
  if (first > last) return;
  MutexLock lock(&mu_);
  auto dev = held_.find(device);
  if (dev == held_.end()) return;
  std::map<int64_t, int64_t>& ranges = dev->second;
  auto it = ranges.upper_bound(first);
  if (it != ranges.begin() && std::prev(it)->second >= first) --it;
  while (it != ranges.end() && it->first <= last) {
    const int64_t a = it->first, b = it->second;
    it = ranges.erase(it);
    if (a < first) ranges.emplace(a, first - 1);
    if (b > last) it = ranges.emplace(last + 1, b).first;
  }
  if (ranges.empty()) held_.erase(dev);
}

std::vector<HeldRange> DeliveryHolds::Held() const {
  MutexLock lock(&mu_);
  std::vector<HeldRange> out;
  for (const auto& [device, ranges] : held_) {
    for (const auto& [first, last] : ranges) out.push_back(HeldRange{device, first, last});
  }
  return out;
}

int64_t DeliveryHolds::HeldCount() const {
  MutexLock lock(&mu_);
  int64_t n = 0;
  for (const auto& [device, ranges] : held_) {
    for (const auto& [first, last] : ranges) n += last - first + 1;
  }
  return n;
}

}  // namespace tagrelay::store
