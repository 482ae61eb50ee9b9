#include "drivers/modbus/request_plan.h"

#include <algorithm>
#include <numeric>
#include <tuple>

namespace tagrelay::modbus {
namespace {

struct Span {
  uint32_t begin;  // first register (bit)
  uint32_t end;    // one past the last
  size_t tag;
};

// Whether the window [begin, end) would leave no unused run longer than
// `max_gap`, counting the tags of `sorted` (by begin) that lie wholly inside it.
bool WindowValid(const std::vector<Span>& sorted, size_t first, uint32_t begin, uint32_t end,
                 uint32_t max_gap) {
  uint32_t reach = begin;
  for (size_t i = first; i < sorted.size() && sorted[i].begin < end; ++i) {
    if (sorted[i].end > end) continue;
    if (sorted[i].begin > reach + max_gap) return false;
    reach = std::max(reach, sorted[i].end);
  }
  return reach == end;
}

// The greedy, for the tags of one table. Why it is optimal: let t be the
// uncovered tag that starts first (the longest of those that start there).
// Some request of any plan reads t; a request can be trimmed to start at t's
// start without losing an uncovered tag or opening a gap (every tag that
// starts earlier and is not yet covered does not exist, and every covered one
// lies inside t). Of all valid windows that start there and hold t, the one
// that reaches furthest covers a superset of what any other covers, so taking
// it never costs a request. Repeat on what is left.
void PlanTable(Table table, std::vector<Span> spans, uint32_t max_count, uint32_t max_gap,
               std::vector<ReadRequest>* plan) {
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return std::tie(a.begin, a.end, a.tag) < std::tie(b.begin, b.end, b.tag);
  });
  std::vector<bool> covered(spans.size(), false);
  std::vector<uint32_t> ends;
  size_t next = 0;  // first possibly uncovered span
  for (;;) {
    while (next < spans.size() && covered[next]) ++next;
    if (next == spans.size()) break;
    const uint32_t begin = spans[next].begin;
    uint32_t must_end = spans[next].end;
    for (size_t i = next; i < spans.size() && spans[i].begin == begin; ++i) {
      if (!covered[i]) must_end = std::max(must_end, spans[i].end);
    }
    // Candidate ends: ends of tags inside [begin, begin + max_count), past must_end.
    ends.clear();
    for (size_t i = next; i < spans.size() && spans[i].begin < begin + max_count; ++i) {
      if (spans[i].end > must_end && spans[i].end <= begin + max_count)
        ends.push_back(spans[i].end);
    }
    std::sort(ends.begin(), ends.end());
    ends.erase(std::unique(ends.begin(), ends.end()), ends.end());
    uint32_t best = must_end;
    for (uint32_t end : ends) {
      if (WindowValid(spans, next, begin, end, max_gap)) best = end;
    }
    ReadRequest r{table, static_cast<uint16_t>(begin), static_cast<uint16_t>(best - begin), {}};
    for (size_t i = next; i < spans.size() && spans[i].begin < best; ++i) {
      if (!covered[i] && spans[i].end <= best) {
        covered[i] = true;
        r.tags.push_back(spans[i].tag);
      }
    }
    plan->push_back(std::move(r));
  }
}

}  // namespace

std::vector<ReadRequest> PlanRequests(const std::vector<TagSpec>& tags, PlanLimits limits) {
  std::vector<size_t> all(tags.size());
  std::iota(all.begin(), all.end(), size_t{0});
  return PlanRequests(tags, all, limits);
}

std::vector<ReadRequest> PlanRequests(const std::vector<TagSpec>& tags,
                                      std::span<const size_t> subset, PlanLimits limits) {
  std::vector<ReadRequest> plan;
  for (Table table : {Table::kCoil, Table::kDiscrete, Table::kInput, Table::kHolding}) {
    std::vector<Span> spans;
    for (size_t i : subset) {
      const TagSpec& t = tags[i];
      if (t.table != table) continue;
      spans.push_back(Span{t.address, uint32_t{t.address} + ElementCount(t), i});
    }
    if (spans.empty()) continue;
    const bool bits = IsBitTable(table);
    PlanTable(table, std::move(spans), bits ? limits.max_bits : limits.max_registers,
              bits ? limits.max_bit_gap : limits.max_gap, &plan);
  }
  return plan;
}

bool SplitRequest(const ReadRequest& r, const std::vector<TagSpec>& tags,
                  std::vector<ReadRequest>* out) {
  std::vector<Span> spans;
  for (size_t i : r.tags) {
    spans.push_back(Span{tags[i].address, uint32_t{tags[i].address} + ElementCount(tags[i]), i});
  }
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return std::tie(a.begin, a.end, a.tag) < std::tie(b.begin, b.end, b.tag);
  });
  size_t distinct = 0;
  for (size_t i = 0; i < spans.size(); ++i) {
    if (i == 0 || spans[i].begin != spans[i - 1].begin || spans[i].end != spans[i - 1].end)
      ++distinct;
  }
  if (distinct < 2) return false;
  const size_t first_half = distinct / 2;
  ReadRequest halves[2];
  size_t seen = 0;
  for (size_t i = 0; i < spans.size(); ++i) {
    if (i == 0 || spans[i].begin != spans[i - 1].begin || spans[i].end != spans[i - 1].end) ++seen;
    ReadRequest& h = halves[seen <= first_half ? 0 : 1];
    if (h.tags.empty()) {
      h.table = r.table;
      h.address = static_cast<uint16_t>(spans[i].begin);
    }
    h.count =
        static_cast<uint16_t>(std::max<uint32_t>(h.address + h.count, spans[i].end) - h.address);
    h.tags.push_back(spans[i].tag);
  }
  out->push_back(std::move(halves[0]));
  out->push_back(std::move(halves[1]));
  return true;
}

}  // namespace tagrelay::modbus
