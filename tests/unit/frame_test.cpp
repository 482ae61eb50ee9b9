// Tests of drivers/modbus/frame.h: request bytes and reply checks, on byte
// arrays written out by hand.
#include "drivers/modbus/frame.h"

#include <gtest/gtest.h>

#include <vector>

namespace tagrelay::modbus {
namespace {

using Bytes = std::vector<uint8_t>;

TEST(FrameTest, RtuRequestCarriesTheStandardCrc) {
  // Read 2 holding registers at 0 from unit 1: the classic example frame.
  const ReadFrame r{0, 1, 3, 0, 2};
  EXPECT_EQ(BuildReadRequest(Framing::kRtu, r),
            (Bytes{0x01, 0x03, 0x00, 0x00, 0x00, 0x02, 0xC4, 0x0B}));
  EXPECT_EQ(Crc16(Bytes{0x01, 0x03, 0x00, 0x00, 0x00, 0x02}), 0x0BC4);
}

TEST(FrameTest, TcpRequestHasAnMbapHeader) {
  const ReadFrame r{0x1234, 17, 4, 0x0100, 125};
  EXPECT_EQ(BuildReadRequest(Framing::kTcp, r),
            (Bytes{0x12, 0x34, 0, 0, 0, 6, 17, 4, 0x01, 0x00, 0x00, 0x7D}));
}

TEST(FrameTest, ChecksTcpReplies) {
  const ReadFrame r{7, 1, 3, 0, 2};
  const Bytes good = {0, 7, 0, 0, 0, 7, 1, 3, 4, 0x12, 0x34, 0x56, 0x78};
  ReplyCheck c = CheckReply(Framing::kTcp, good, r);
  ASSERT_EQ(c.kind, ReplyCheck::kOk);
  uint16_t regs[2];
  UnpackRegisters(c.data, 2, regs);
  EXPECT_EQ(regs[0], 0x1234);
  EXPECT_EQ(regs[1], 0x5678);

  const auto error = [&](Bytes b, const uint16_t* stale = nullptr) {
    const ReplyCheck x =
        CheckReply(Framing::kTcp, b, r,
                   stale ? std::span<const uint16_t>(stale, 1) : std::span<const uint16_t>());
    return x.kind == ReplyCheck::kOk      ? "ok"
           : x.kind == ReplyCheck::kStale ? "stale"
                                          : x.error.message();
  };
  EXPECT_EQ(error({0, 7, 0, 0, 0, 3, 1, 0x83, 2}), "exception:2");
  EXPECT_EQ(error({0, 8, 0, 0, 0, 7, 1, 3, 4, 1, 2, 3, 4}), "bad-frame") << "unknown transaction";
  const uint16_t old = 8;
  EXPECT_EQ(error({0, 8, 0, 0, 0, 7, 1, 3, 4, 1, 2, 3, 4}, &old), "stale");
  EXPECT_EQ(error({0, 7, 0, 1, 0, 7, 1, 3, 4, 1, 2, 3, 4}), "bad-frame") << "protocol id";
  EXPECT_EQ(error({0, 7, 0, 0, 0, 9, 1, 3, 4, 1, 2, 3, 4}), "bad-frame") << "length field";
  EXPECT_EQ(error({0, 7, 0, 0, 0, 7, 2, 3, 4, 1, 2, 3, 4}), "bad-frame") << "unit id";
  EXPECT_EQ(error({0, 7, 0, 0, 0, 7, 1, 4, 4, 1, 2, 3, 4}), "bad-frame") << "function code";
  EXPECT_EQ(error({0, 7, 0, 0, 0, 5, 1, 3, 2, 1, 2}), "bad-frame") << "one register of two";
  EXPECT_EQ(error({0, 7, 0, 0, 0, 4, 1, 0x83, 2, 9}), "bad-frame") << "exception with a tail";
}

TEST(FrameTest, ChecksRtuReplies) {
  const ReadFrame coils{0, 5, 1, 0, 10};
  Bytes good = {5, 1, 2, 0b0000'0101, 0b0000'0010};
  const uint16_t crc = Crc16(good);
  good.push_back(static_cast<uint8_t>(crc & 0xFF));
  good.push_back(static_cast<uint8_t>(crc >> 8));
  ReplyCheck c = CheckReply(Framing::kRtu, good, coils);
  ASSERT_EQ(c.kind, ReplyCheck::kOk);
  uint8_t bits[10];
  UnpackBits(c.data, 10, bits);
  EXPECT_EQ(Bytes(bits, bits + 10), (Bytes{1, 0, 1, 0, 0, 0, 0, 0, 0, 1}));

  Bytes three_bytes = {5, 1, 3, 0, 0, 0, 0xAA, 0xAA};
  EXPECT_EQ(CheckReply(Framing::kRtu, three_bytes, coils).error.message(), "bad-frame");
  Bytes exception = {5, 0x81, 1, 0xAA, 0xAA};
  EXPECT_EQ(CheckReply(Framing::kRtu, exception, coils).error.message(), "exception:1");
  Bytes tiny = {5, 1, 0xAA};
  EXPECT_EQ(CheckReply(Framing::kRtu, tiny, coils).error.message(), "bad-frame");
}

}  // namespace
}  // namespace tagrelay::modbus
