// RequestPlan: the read requests that fetch every tag of one device.
//
// Promise: every tag is covered by exactly one request of its own table; no
// request reads more than `max_registers` registers; tags whose registers are
// at most `max_gap` unused registers apart share a request.
//
// Threads: plain values, built once per device and then owned by its poller.
#pragma once

#include <cstdint>
#include <vector>

#include "drivers/modbus/types.h"

namespace tagrelay::modbus {

struct ReadRequest {
  Table table = Table::kHolding;
  uint16_t address = 0;
  uint16_t count = 0;
  std::vector<size_t> tags;  // indexes into DeviceSpec::tags, in address order
};

struct PlanLimits {
  uint16_t max_registers = kMaxRegistersPerRead;
  uint16_t max_gap = 0;
};

std::vector<ReadRequest> PlanRequests(const std::vector<TagSpec>& tags, PlanLimits limits = {});

}  // namespace tagrelay::modbus
