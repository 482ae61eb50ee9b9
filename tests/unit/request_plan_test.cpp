// Tests of drivers/modbus/request_plan.h: which read requests fetch a device's tags.
#include "drivers/modbus/request_plan.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace tagrelay::modbus {
namespace {

TagSpec Tag(Table table, uint16_t address, DataType type = DataType::kUint16) {
  TagSpec t;
  t.name = std::string(TableName(table)) + "@" + std::to_string(address);
  t.table = table;
  t.address = address;
  t.type = type;
  return t;
}

TagSpec Holding(uint16_t address, DataType type = DataType::kUint16) {
  return Tag(Table::kHolding, address, type);
}
TagSpec Input(uint16_t address, DataType type = DataType::kUint16) {
  return Tag(Table::kInput, address, type);
}

PlanLimits Limits(uint16_t max_registers, uint16_t max_gap) {
  PlanLimits l;
  l.max_registers = max_registers;
  l.max_gap = max_gap;
  return l;
}

TEST(RequestPlanTest, NoTagsNoRequests) { EXPECT_TRUE(PlanRequests({}).empty()); }

TEST(RequestPlanTest, ContiguousTagsShareOneRequest) {
  const std::vector<TagSpec> tags = {Holding(10), Holding(11), Holding(12, DataType::kFloat32),
                                     Holding(14)};
  const std::vector<ReadRequest> plan = PlanRequests(tags);
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].table, Table::kHolding);
  EXPECT_EQ(plan[0].address, 10);
  EXPECT_EQ(plan[0].count, 5);
  EXPECT_EQ(plan[0].tags, (std::vector<size_t>{0, 1, 2, 3}));
}

TEST(RequestPlanTest, TagsAreListedInAddressOrder) {
  const std::vector<TagSpec> tags = {Holding(3), Holding(1), Holding(2), Holding(0)};
  const std::vector<ReadRequest> plan = PlanRequests(tags);
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].address, 0);
  EXPECT_EQ(plan[0].count, 4);
  EXPECT_EQ(plan[0].tags, (std::vector<size_t>{3, 1, 2, 0}));
}

TEST(RequestPlanTest, TablesNeverMix) {
  // Same addresses in two tables: two requests, each with its own table's tags.
  const std::vector<TagSpec> tags = {Holding(0), Input(1), Holding(1), Input(0)};
  const std::vector<ReadRequest> plan = PlanRequests(tags);
  ASSERT_EQ(plan.size(), 2u);
  for (const ReadRequest& r : plan) {
    EXPECT_EQ(r.address, 0);
    EXPECT_EQ(r.count, 2);
    for (size_t i : r.tags) EXPECT_EQ(tags[i].table, r.table);
  }
  EXPECT_NE(plan[0].table, plan[1].table);
}

TEST(RequestPlanTest, AdjacentAddressesInAnotherTableStartANewRequest) {
  const std::vector<TagSpec> tags = {Holding(0), Holding(1), Input(2), Input(3)};
  const std::vector<ReadRequest> plan = PlanRequests(tags);
  ASSERT_EQ(plan.size(), 2u);
  for (const ReadRequest& r : plan) {
    ASSERT_EQ(r.tags.size(), 2u);
    EXPECT_EQ(tags[r.tags[0]].table, r.table);
    EXPECT_EQ(tags[r.tags[1]].table, r.table);
  }
}

TEST(RequestPlanTest, MaxRegistersSplits130ConsecutiveRegistersInto125And5) {
  std::vector<TagSpec> tags;
  for (uint16_t a = 0; a < 130; ++a) tags.push_back(Holding(a));
  const std::vector<ReadRequest> plan = PlanRequests(tags);
  ASSERT_EQ(plan.size(), 2u);
  EXPECT_EQ(plan[0].address, 0);
  EXPECT_EQ(plan[0].count, 125);
  EXPECT_EQ(plan[0].tags.size(), 125u);
  EXPECT_EQ(plan[1].address, 125);
  EXPECT_EQ(plan[1].count, 5);
  EXPECT_EQ(plan[1].tags.size(), 5u);
}

TEST(RequestPlanTest, LowerMaxRegistersIsRespected) {
  std::vector<TagSpec> tags;
  for (uint16_t a = 0; a < 10; ++a) tags.push_back(Holding(a));
  const std::vector<ReadRequest> plan = PlanRequests(tags, Limits(4, 0));
  ASSERT_EQ(plan.size(), 3u);
  EXPECT_EQ(plan[0].count, 4);
  EXPECT_EQ(plan[1].address, 4);
  EXPECT_EQ(plan[1].count, 4);
  EXPECT_EQ(plan[2].address, 8);
  EXPECT_EQ(plan[2].count, 2);
}

TEST(RequestPlanTest, Float32IsNeverSplitAcrossRequests) {
  // 124 uint16 then a float32 at 124..125: the float does not fit in the first
  // request's last register, so it starts the next one.
  std::vector<TagSpec> tags;
  for (uint16_t a = 0; a < 124; ++a) tags.push_back(Holding(a));
  tags.push_back(Holding(124, DataType::kFloat32));
  const std::vector<ReadRequest> plan = PlanRequests(tags);
  ASSERT_EQ(plan.size(), 2u);
  EXPECT_EQ(plan[0].count, 124);
  EXPECT_EQ(plan[1].address, 124);
  EXPECT_EQ(plan[1].count, 2);
  EXPECT_EQ(plan[1].tags, std::vector<size_t>{124});
}

TEST(RequestPlanTest, Float32SpansTwoRegisters) {
  const std::vector<TagSpec> tags = {Input(100, DataType::kFloat32),
                                     Input(102, DataType::kFloat32)};
  const std::vector<ReadRequest> plan = PlanRequests(tags);
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].address, 100);
  EXPECT_EQ(plan[0].count, 4);

  // A lone float32 reads two registers.
  const std::vector<ReadRequest> one = PlanRequests({Input(7, DataType::kFloat32)});
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].address, 7);
  EXPECT_EQ(one[0].count, 2);

  // A float32 at the very end of the address space.
  const std::vector<ReadRequest> last =
      PlanRequests({Holding(65534, DataType::kFloat32), Holding(65533)});
  ASSERT_EQ(last.size(), 1u);
  EXPECT_EQ(last[0].address, 65533);
  EXPECT_EQ(last[0].count, 3);
}

TEST(RequestPlanTest, RegisterAfterAFloat32IsNotAGap) {
  // float32 at 0 covers 0..1, so a tag at 2 is contiguous even with max_gap 0.
  const std::vector<TagSpec> tags = {Holding(0, DataType::kFloat32), Holding(2)};
  const std::vector<ReadRequest> plan = PlanRequests(tags, Limits(125, 0));
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].count, 3);
}

TEST(RequestPlanTest, OverlappingTagsShareRegisters) {
  // A float32 and a uint16 reading its low word: one request of two registers.
  const std::vector<TagSpec> tags = {Holding(0, DataType::kFloat32), Holding(1)};
  const std::vector<ReadRequest> plan = PlanRequests(tags);
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].address, 0);
  EXPECT_EQ(plan[0].count, 2);
  EXPECT_EQ(plan[0].tags.size(), 2u);
}

TEST(RequestPlanTest, GapLimit) {
  // Registers 0 and 3: two unused registers (1, 2) between them.
  const std::vector<TagSpec> tags = {Holding(0), Holding(3)};

  const std::vector<ReadRequest> no_gap = PlanRequests(tags, Limits(125, 0));
  ASSERT_EQ(no_gap.size(), 2u);
  EXPECT_EQ(no_gap[0].count, 1);
  EXPECT_EQ(no_gap[1].address, 3);
  EXPECT_EQ(no_gap[1].count, 1);

  EXPECT_EQ(PlanRequests(tags, Limits(125, 1)).size(), 2u);

  const std::vector<ReadRequest> gap2 = PlanRequests(tags, Limits(125, 2));
  ASSERT_EQ(gap2.size(), 1u);
  EXPECT_EQ(gap2[0].address, 0);
  EXPECT_EQ(gap2[0].count, 4);  // the unused registers are read too
  EXPECT_EQ(gap2[0].tags, (std::vector<size_t>{0, 1}));

  EXPECT_EQ(PlanRequests(tags, Limits(125, 10)).size(), 1u);
}

TEST(RequestPlanTest, DefaultLimitsDoNotBridgeGaps) {
  EXPECT_EQ(PlanRequests({Holding(0), Holding(2)}).size(), 2u);
}

TEST(RequestPlanTest, GapIsNotBridgedPastMaxRegisters) {
  // With max_gap 10, registers 0 and 9 may share a request, but it reads 10 registers.
  const std::vector<TagSpec> tags = {Holding(0), Holding(9)};
  EXPECT_EQ(PlanRequests(tags, Limits(10, 10)).size(), 1u);
  EXPECT_EQ(PlanRequests(tags, Limits(8, 10)).size(), 2u);
}

// ---------------------------------------------------------------------------
// Property test: random tag maps, every promise checked on each plan.

struct Scenario {
  std::vector<TagSpec> tags;
  PlanLimits limits;
};

Scenario RandomScenario(std::mt19937& rng) {
  auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  Scenario s;
  s.limits.max_registers = static_cast<uint16_t>(uniform(2, kMaxRegistersPerRead));
  s.limits.max_gap = static_cast<uint16_t>(uniform(0, 1) == 0 ? 0 : uniform(1, 20));
  const int n = uniform(1, 200);
  // Mostly a dense map in a small range (coalescing, duplicates, overlap),
  // sometimes spread out or pushed to the top of the address space.
  const int mode = uniform(0, 2);
  for (int k = 0; k < n; ++k) {
    const DataType type = uniform(0, 2) == 0
                              ? DataType::kFloat32
                              : (uniform(0, 1) ? DataType::kUint16 : DataType::kInt16);
    int address = 0;
    if (mode == 0) address = uniform(0, 300);
    if (mode == 1) address = uniform(0, 65535);
    if (mode == 2) address = uniform(65300, 65535);
    if (address + RegisterCount(type) - 1 > 65535) address = 65535 - (RegisterCount(type) - 1);
    s.tags.push_back(Tag(uniform(0, 3) == 0 ? Table::kInput : Table::kHolding,
                         static_cast<uint16_t>(address), type));
  }
  return s;
}

TEST(RequestPlanPropertyTest, EveryTagIsCoveredExactlyOnceWithinBounds) {
  std::mt19937 rng(20240611);  // fixed seed: a failure reproduces
  for (int round = 0; round < 2000; ++round) {
    const Scenario s = RandomScenario(rng);
    SCOPED_TRACE("round " + std::to_string(round) + ": " + std::to_string(s.tags.size()) +
                 " tags, max_registers " + std::to_string(s.limits.max_registers) + ", max_gap " +
                 std::to_string(s.limits.max_gap));
    const std::vector<ReadRequest> plan = PlanRequests(s.tags, s.limits);

    std::vector<int> covered(s.tags.size(), 0);
    for (const ReadRequest& r : plan) {
      ASSERT_FALSE(r.tags.empty());
      ASSERT_GE(r.count, 1);
      ASSERT_LE(r.count, s.limits.max_registers);
      ASSERT_LE(uint32_t{r.address} + r.count, 65536u);
      uint32_t lowest = UINT32_MAX, end = 0;
      uint16_t previous_address = 0;
      for (size_t k = 0; k < r.tags.size(); ++k) {
        const size_t i = r.tags[k];
        ASSERT_LT(i, s.tags.size());
        ++covered[i];
        const TagSpec& t = s.tags[i];
        ASSERT_EQ(t.table, r.table);
        const uint32_t t_end = uint32_t{t.address} + RegisterCount(t.type);
        ASSERT_GE(t.address, r.address) << t.name;
        ASSERT_LE(t_end, uint32_t{r.address} + r.count) << t.name;
        if (k > 0) {
          ASSERT_LE(previous_address, t.address) << "tags not in address order";
        }
        previous_address = t.address;
        lowest = std::min<uint32_t>(lowest, t.address);
        end = std::max(end, t_end);
      }
      // A request reads nothing before its first tag or after its last one.
      ASSERT_EQ(lowest, r.address);
      ASSERT_EQ(end, uint32_t{r.address} + r.count);
      // No run of unused registers inside it is longer than max_gap.
      std::vector<bool> used(r.count, false);
      for (size_t i : r.tags) {
        for (uint16_t k = 0; k < ElementCount(s.tags[i]); ++k)
          used[s.tags[i].address - r.address + k] = true;
      }
      int run = 0;
      for (bool u : used) {
        run = u ? 0 : run + 1;
        ASSERT_LE(run, s.limits.max_gap) << "request at " << r.address;
      }
    }
    for (size_t i = 0; i < covered.size(); ++i) {
      ASSERT_EQ(covered[i], 1) << "tag " << i << " (" << s.tags[i].name << ")";
    }
  }
}

TEST(RequestPlanPropertyTest, ContiguousRunsUseTheFewestRequests) {
  // N consecutive uint16 registers in one table need exactly ceil(N / max) requests.
  std::mt19937 rng(7);
  for (int round = 0; round < 200; ++round) {
    const int n = std::uniform_int_distribution<int>(1, 600)(rng);
    const auto max = static_cast<uint16_t>(std::uniform_int_distribution<int>(1, 125)(rng));
    std::vector<TagSpec> tags;
    for (int a = 0; a < n; ++a) tags.push_back(Input(static_cast<uint16_t>(1000 + a)));
    std::shuffle(tags.begin(), tags.end(), rng);
    const std::vector<ReadRequest> plan = PlanRequests(tags, Limits(max, 0));
    EXPECT_EQ(plan.size(), static_cast<size_t>((n + max - 1) / max)) << "n " << n << " max " << max;
  }
}

}  // namespace
}  // namespace tagrelay::modbus

namespace tagrelay::modbus {
namespace {

// ---------------------------------------------------------------------------
// Optimality: on small maps, the planner needs exactly as many requests as the
// best partition found by trying every partition of the tags.

struct Extent {
  uint32_t begin, end;
};

// Whether one request may serve exactly these tags: it reads from the first
// tag's first element to the last tag's last one, within `max`, and no run of
// elements that none of them uses is longer than `gap`.
bool BlockValid(const std::vector<Extent>& e, uint32_t mask, uint32_t max, uint32_t gap) {
  uint32_t lo = UINT32_MAX, hi = 0;
  for (size_t i = 0; i < e.size(); ++i) {
    if ((mask >> i) & 1) {
      lo = std::min(lo, e[i].begin);
      hi = std::max(hi, e[i].end);
    }
  }
  if (hi - lo > max) return false;
  uint32_t run = 0;
  for (uint32_t a = lo; a < hi; ++a) {
    bool used = false;
    for (size_t i = 0; i < e.size() && !used; ++i) {
      used = ((mask >> i) & 1) && e[i].begin <= a && a < e[i].end;
    }
    run = used ? 0 : run + 1;
    if (run > gap) return false;
  }
  return true;
}

// The fewest valid blocks that partition all tags: a DP over subsets, each
// step taking a valid block that holds the lowest remaining tag.
int BruteForceMinimum(const std::vector<Extent>& e, uint32_t max, uint32_t gap) {
  const uint32_t all = (1u << e.size()) - 1;
  std::vector<int> best(all + 1, 1000);
  best[0] = 0;
  for (uint32_t done = 0; done < all; ++done) {
    if (best[done] == 1000) continue;
    const uint32_t left = all & ~done;
    const uint32_t lowest = left & (~left + 1);
    for (uint32_t sub = left; sub != 0; sub = (sub - 1) & left) {
      if ((sub & lowest) == 0 || !BlockValid(e, sub, max, gap)) continue;
      best[done | sub] = std::min(best[done | sub], best[done] + 1);
    }
  }
  return best[all];
}

TEST(RequestPlanOptimalityTest, MatchesAnExhaustiveSearchOnSmallMaps) {
  std::mt19937 rng(424242);
  auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  int rounds_with_choice = 0;
  for (int round = 0; round < 3000; ++round) {
    const bool bits = uniform(0, 3) == 0;
    std::vector<TagSpec> tags;
    const int n = uniform(1, 8);
    const int span = uniform(4, 30);
    for (int k = 0; k < n; ++k) {
      TagSpec t;
      t.name = "t" + std::to_string(k);
      t.table = bits ? Table::kCoil : Table::kHolding;
      t.address = static_cast<uint16_t>(uniform(0, span));
      if (bits) {
        t.type = DataType::kBool;
      } else {
        switch (uniform(0, 3)) {
          case 0: t.type = DataType::kUint16; break;
          case 1: t.type = DataType::kFloat32; break;
          case 2: t.type = DataType::kFloat64; break;
          default: t.type = DataType::kString; t.length = static_cast<uint16_t>(uniform(1, 12));
        }
      }
      tags.push_back(std::move(t));
    }
    uint32_t widest = 1;
    std::vector<Extent> extents;
    for (const TagSpec& t : tags) {
      extents.push_back({t.address, uint32_t{t.address} + ElementCount(t)});
      widest = std::max<uint32_t>(widest, ElementCount(t));
    }
    PlanLimits limits;
    const auto max = static_cast<uint16_t>(uniform(static_cast<int>(widest), 16));
    const auto gap = static_cast<uint16_t>(uniform(0, 4));
    if (bits) {
      limits.max_bits = max;
      limits.max_bit_gap = gap;
    } else {
      limits.max_registers = max;
      limits.max_gap = gap;
    }
    const std::vector<ReadRequest> plan = PlanRequests(tags, limits);
    const int minimum = BruteForceMinimum(extents, max, gap);
    ASSERT_EQ(static_cast<int>(plan.size()), minimum)
        << "round " << round << ": " << n << " tags, max " << max << ", gap " << gap;
    // Each request of the plan is itself a valid block.
    for (const ReadRequest& r : plan) {
      std::vector<Extent> mine;
      for (size_t i : r.tags) mine.push_back(extents[i]);
      ASSERT_TRUE(BlockValid(mine, (1u << mine.size()) - 1, max, gap)) << "round " << round;
    }
    if (minimum > 1 && minimum < n) ++rounds_with_choice;
  }
  EXPECT_GT(rounds_with_choice, 500) << "the maps must exercise real choices";
}

TEST(RequestPlanTest, CoilsAndDiscreteInputsUseTheBitLimits) {
  std::vector<TagSpec> tags;
  for (uint16_t a = 0; a < 2100; ++a) tags.push_back(Tag(Table::kCoil, a, DataType::kBool));
  tags.push_back(Tag(Table::kDiscrete, 0, DataType::kBool));
  tags.push_back(Tag(Table::kDiscrete, 10, DataType::kBool));
  PlanLimits limits;
  std::vector<ReadRequest> plan = PlanRequests(tags, limits);
  ASSERT_EQ(plan.size(), 4u);
  EXPECT_EQ(plan[0].table, Table::kCoil);
  EXPECT_EQ(plan[0].count, 2000);
  EXPECT_EQ(plan[1].count, 100);
  EXPECT_EQ(plan[2].table, Table::kDiscrete);
  limits.max_bit_gap = 9;
  plan = PlanRequests(tags, limits);
  ASSERT_EQ(plan.size(), 3u) << "a gap of 9 unused inputs joins 0 and 10";
  EXPECT_EQ(plan[2].count, 11);
}

TEST(RequestPlanTest, ASubsetPlansOnlyItsTags) {
  const std::vector<TagSpec> tags = {Holding(0), Holding(1), Holding(2), Holding(3)};
  const std::vector<size_t> odd = {1, 3};
  const std::vector<ReadRequest> plan = PlanRequests(tags, odd, Limits(125, 0));
  ASSERT_EQ(plan.size(), 2u);
  EXPECT_EQ(plan[0].tags, std::vector<size_t>{1});
  EXPECT_EQ(plan[1].tags, std::vector<size_t>{3});
}

TEST(SplitRequestTest, HalvesTheDistinctSpansUntilOneIsLeft) {
  std::vector<TagSpec> tags = {Holding(0), Holding(1), Holding(2, DataType::kFloat32), Holding(4)};
  TagSpec bit = Holding(4, DataType::kBit);
  bit.bit = 3;
  tags.push_back(bit);
  const ReadRequest whole = PlanRequests(tags)[0];
  ASSERT_EQ(whole.count, 5);
  std::vector<ReadRequest> halves;
  ASSERT_TRUE(SplitRequest(whole, tags, &halves));
  ASSERT_EQ(halves.size(), 2u);
  EXPECT_EQ(halves[0].address, 0);
  EXPECT_EQ(halves[0].count, 2);
  EXPECT_EQ(halves[0].tags, (std::vector<size_t>{0, 1}));
  EXPECT_EQ(halves[1].address, 2);
  EXPECT_EQ(halves[1].count, 3);
  EXPECT_EQ(halves[1].tags, (std::vector<size_t>{2, 3, 4}));

  // Two tags on the same register cannot be told apart by splitting.
  std::vector<ReadRequest> more;
  const ReadRequest same{Table::kHolding, 4, 1, {3, 4}};
  EXPECT_FALSE(SplitRequest(same, tags, &more));
  EXPECT_TRUE(more.empty());
}

}  // namespace
}  // namespace tagrelay::modbus
