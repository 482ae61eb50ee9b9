// The request planner on any set of valid tags and limits: every tag is read
// by exactly one request of its table, which covers all its registers, and no
// request is larger than the limits allow; splitting a request keeps every tag.
#include <cstdint>
#include <vector>

#include "drivers/modbus/request_plan.h"
#include "drivers/modbus/types.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tagrelay;
  using namespace tagrelay::modbus;
  fuzz::FuzzInput in(data, size);
  PlanLimits limits;
  limits.max_registers = static_cast<uint16_t>(1 + in.Take<uint8_t>() % 125);
  limits.max_bits = static_cast<uint16_t>(1 + in.Take<uint16_t>() % 2000);
  limits.max_gap = static_cast<uint16_t>(in.Take<uint8_t>() % limits.max_registers);
  limits.max_bit_gap = static_cast<uint16_t>(in.Take<uint8_t>() % limits.max_bits);
  std::vector<TagSpec> tags;
  while (in.left() >= 4 && tags.size() < 64) {
    TagSpec t;
    const uint8_t kind = in.Take<uint8_t>();
    t.table = static_cast<Table>(kind % 4);
    t.type = static_cast<DataType>((kind >> 2) % 11);
    t.address = in.Take<uint16_t>();
    t.length = static_cast<uint16_t>(1 + in.Take<uint8_t>() % 32);
    t.bit = static_cast<uint8_t>(kind % 16);
    if (!ValidateTag(t, limits).empty()) continue;  // the config refuses it before
    tags.push_back(t);
  }
  const std::vector<ReadRequest> plan = PlanRequests(tags, limits);
  std::vector<int> covered(tags.size(), 0);
  for (const ReadRequest& r : plan) {
    const bool bits = r.table == Table::kCoil || r.table == Table::kDiscrete;
    if (r.count == 0 || r.count > (bits ? limits.max_bits : limits.max_registers)) {
      fuzz::Fail("a request larger than the limits");
    }
    for (size_t i : r.tags) {
      const TagSpec& t = tags[i];
      if (t.table != r.table) fuzz::Fail("a tag in a request of another table");
      if (t.address < r.address || t.address + ElementCount(t) > r.address + r.count) {
        fuzz::Fail("a tag not wholly inside its request");
      }
      ++covered[i];
    }
    std::vector<ReadRequest> halves;
    if (SplitRequest(r, tags, &halves)) {
      size_t in_halves = 0;
      for (const ReadRequest& h : halves) in_halves += h.tags.size();
      if (in_halves != r.tags.size()) fuzz::Fail("a split that loses or repeats tags");
    }
  }
  for (int c : covered) {
    if (c != 1) fuzz::Fail("a tag read by no request, or by several");
  }
  return 0;
}
