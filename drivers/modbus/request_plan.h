// RequestPlan: the read requests that fetch a set of tags of one device.
//
// Promise: every tag is covered by exactly one request of its own table; no
// request reads more than the limit of its table (max_registers, max_bits);
// inside a request, no run of registers (bits) that none of its tags uses is
// longer than max_gap (max_bit_gap). Among all plans that keep these rules,
// PlanRequests() returns one with the fewest requests (the greedy below is
// optimal; tests/unit/request_plan_test.cpp checks it against an exhaustive
// search on small maps). A request reads exactly from its first tag's first
// register to its last tag's last register.
//
// Threads: plain values, built once per device and then owned by its poller.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "drivers/modbus/types.h"

namespace tagrelay::modbus {

struct ReadRequest {
  Table table = Table::kHolding;
  uint16_t address = 0;
  uint16_t count = 0;        // registers, or bits in a coil/discrete table
  std::vector<size_t> tags;  // indexes into the device's tags, in address order
};

// Plans every tag of `tags`.
std::vector<ReadRequest> PlanRequests(const std::vector<TagSpec>& tags, PlanLimits limits = {});

// Plans the tags whose indexes are in `subset` (one poll group).
// REQUIRES: every tag passes ValidateTag(tag, limits).
std::vector<ReadRequest> PlanRequests(const std::vector<TagSpec>& tags,
                                      std::span<const size_t> subset, PlanLimits limits);

// Splits `r` in two, each reading about half of its tags' distinct spans, to
// find the address a device refuses. Returns false (and leaves `out` alone)
// if `r` cannot be split: all its tags read the same registers.
bool SplitRequest(const ReadRequest& r, const std::vector<TagSpec>& tags,
                  std::vector<ReadRequest>* out);

}  // namespace tagrelay::modbus
