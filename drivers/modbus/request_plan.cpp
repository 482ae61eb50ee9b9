#include "drivers/modbus/request_plan.h"

#include <algorithm>
#include <numeric>

namespace tagrelay::modbus {

std::vector<ReadRequest> PlanRequests(const std::vector<TagSpec>& tags, PlanLimits limits) {
  std::vector<size_t> order(tags.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (tags[a].table != tags[b].table) return tags[a].table < tags[b].table;
    return tags[a].address < tags[b].address;
  });

  std::vector<ReadRequest> plan;
  for (size_t i : order) {
    const TagSpec& t = tags[i];
    const uint32_t begin = t.address;
    const uint32_t end = begin + RegisterCount(t.type);  // one past the last register
    if (!plan.empty()) {
      ReadRequest& r = plan.back();
      const uint32_t r_end = uint32_t{r.address} + r.count;
      const uint32_t new_end = std::max(r_end, end);
      if (r.table == t.table && begin <= r_end + limits.max_gap &&
          new_end - r.address <= limits.max_registers) {
        r.count = static_cast<uint16_t>(new_end - r.address);
        r.tags.push_back(i);
        continue;
      }
    }
    plan.push_back(ReadRequest{t.table, t.address, static_cast<uint16_t>(end - begin), {i}});
  }
  return plan;
}

}  // namespace tagrelay::modbus
