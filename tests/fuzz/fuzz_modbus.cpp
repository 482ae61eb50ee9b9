// Modbus replies as they come off a wire (TCP and RTU), checked against the
// request they should answer, and the registers of a tag decoded with every
// type and byte order: nothing crashes, nothing reads outside the reply, a
// reply is only taken if it answers the request, and a decoded float is
// finite.
#include <cmath>
#include <cstdint>
#include <vector>

#include "drivers/modbus/codec.h"
#include "drivers/modbus/frame.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tagrelay;
  using namespace tagrelay::modbus;
  fuzz::FuzzInput in(data, size);
  const uint8_t choice = in.Take<uint8_t>();
  ReadFrame req;
  req.transaction = in.Take<uint16_t>();
  req.unit = in.Take<uint8_t>();
  req.function = static_cast<uint8_t>(1 + in.Take<uint8_t>() % 4);
  req.address = in.Take<uint16_t>();
  req.count = static_cast<uint16_t>(1 + in.Take<uint16_t>() % (req.function <= 2 ? 2000 : 125));
  const uint16_t stale[2] = {in.Take<uint16_t>(), in.Take<uint16_t>()};
  const std::string_view rest = in.Rest();
  const std::vector<uint8_t> adu(rest.begin(), rest.end());
  const Framing framing = (choice & 1) ? Framing::kRtu : Framing::kTcp;
  const ReplyCheck check = CheckReply(framing, adu, req, stale);
  if (check.kind == ReplyCheck::kOk) {
    if (check.data.size() != ReplyDataBytes(req))
      fuzz::Fail("a reply with the wrong amount of data");
    if (check.data.data() < adu.data() ||
        check.data.data() + check.data.size() > adu.data() + adu.size()) {
      fuzz::Fail("reply data outside the reply");
    }
    if (req.function <= 2) {
      std::vector<uint8_t> bits(req.count);
      UnpackBits(check.data, req.count, bits.data());
      for (uint8_t b : bits) {
        if (b > 1) fuzz::Fail("a bit that is neither 0 nor 1");
      }
    } else {
      std::vector<uint16_t> regs(req.count);
      UnpackRegisters(check.data, req.count, regs.data());
    }
  } else if (check.kind == ReplyCheck::kError && check.error.ok()) {
    fuzz::Fail("a refused reply without a reason");
  }

  // The same bytes as registers of a tag of any type and order.
  TagSpec tag;
  tag.type = static_cast<DataType>(choice % 11);
  tag.order = static_cast<WordOrder>((choice >> 4) % 4);
  tag.bit = static_cast<uint8_t>((choice >> 2) % 16);
  tag.length = static_cast<uint16_t>(1 + rest.size() % 16);
  const uint16_t n = ElementCount(tag);
  if (n == 0 || n > 125) return 0;
  std::vector<uint16_t> regs(n);
  for (size_t i = 0; i < n && 2 * i + 1 < rest.size(); ++i) {
    regs[i] = static_cast<uint16_t>((static_cast<uint8_t>(rest[2 * i]) << 8) |
                                    static_cast<uint8_t>(rest[2 * i + 1]));
  }
  Result<Value> v = DecodeTag(tag, regs);
  if (v.ok()) {
    if (const auto* d = std::get_if<double>(&*v); d != nullptr && !std::isfinite(*d)) {
      fuzz::Fail("a good value that is not finite");
    }
  }
  return 0;
}
