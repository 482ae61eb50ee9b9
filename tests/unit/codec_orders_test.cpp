// Tests of drivers/modbus/codec.h for every type and byte order, against wire
// images built independently of the codec: from the order's own letters
// ("CDAB": the value's third byte first on the wire, ...), and from byte
// patterns written out by hand.
#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "drivers/modbus/codec.h"
#include "drivers/modbus/types.h"

namespace tagrelay::modbus {
namespace {

// The registers that carry the `bytes` low bytes of `value` (big-endian: A is
// the most significant) in the order a name like "CDAB" or "GHEFCDAB" spells.
std::vector<uint16_t> Wire(uint64_t value, const std::string& order) {
  const size_t bytes = order.size();
  std::vector<uint8_t> be(bytes);
  for (size_t i = 0; i < bytes; ++i) be[i] = static_cast<uint8_t>(value >> (8 * (bytes - 1 - i)));
  std::vector<uint8_t> wire(bytes);
  for (size_t i = 0; i < bytes; ++i) wire[i] = be[static_cast<size_t>(order[i] - 'A')];
  std::vector<uint16_t> regs;
  for (size_t i = 0; i < bytes; i += 2)
    regs.push_back(static_cast<uint16_t>(wire[i] << 8 | wire[i + 1]));
  return regs;
}

const std::vector<std::pair<WordOrder, std::string>> kOrders4 = {{WordOrder::kABCD, "ABCD"},
                                                                 {WordOrder::kCDAB, "CDAB"},
                                                                 {WordOrder::kBADC, "BADC"},
                                                                 {WordOrder::kDCBA, "DCBA"}};
const std::vector<std::pair<WordOrder, std::string>> kOrders8 = {{WordOrder::kABCD, "ABCDEFGH"},
                                                                 {WordOrder::kCDAB, "GHEFCDAB"},
                                                                 {WordOrder::kBADC, "BADCFEHG"},
                                                                 {WordOrder::kDCBA, "HGFEDCBA"}};

Value Decode(const std::vector<uint16_t>& regs, DataType type, WordOrder order) {
  Result<Value> v = DecodeRaw(regs, type, order);
  EXPECT_TRUE(v.ok()) << v.status().ToString();
  return v.ok() ? *v : Value{};
}

TEST(CodecOrderTest, HandWrittenPatterns) {
  // 0x01020304 in each order, as a device manual would print the registers.
  EXPECT_EQ(Decode({0x0102, 0x0304}, DataType::kUint32, WordOrder::kABCD),
            Value{uint64_t{0x01020304}});
  EXPECT_EQ(Decode({0x0304, 0x0102}, DataType::kUint32, WordOrder::kCDAB),
            Value{uint64_t{0x01020304}});
  EXPECT_EQ(Decode({0x0201, 0x0403}, DataType::kUint32, WordOrder::kBADC),
            Value{uint64_t{0x01020304}});
  EXPECT_EQ(Decode({0x0403, 0x0201}, DataType::kUint32, WordOrder::kDCBA),
            Value{uint64_t{0x01020304}});
  // 0x0102030405060708 in the 8-byte orders.
  const uint64_t v8 = 0x0102030405060708ull;
  EXPECT_EQ(Decode({0x0102, 0x0304, 0x0506, 0x0708}, DataType::kUint64, WordOrder::kABCD),
            Value{v8});
  EXPECT_EQ(Decode({0x0708, 0x0506, 0x0304, 0x0102}, DataType::kUint64, WordOrder::kCDAB),
            Value{v8});
  EXPECT_EQ(Decode({0x0201, 0x0403, 0x0605, 0x0807}, DataType::kUint64, WordOrder::kBADC),
            Value{v8});
  EXPECT_EQ(Decode({0x0807, 0x0605, 0x0403, 0x0201}, DataType::kUint64, WordOrder::kDCBA),
            Value{v8});
  // Known encodings of floats and signed values.
  EXPECT_EQ(Decode({0x42F6, 0xE979}, DataType::kFloat32, WordOrder::kABCD), Value{123.456});
  EXPECT_EQ(Decode({0xE979, 0x42F6}, DataType::kFloat32, WordOrder::kCDAB), Value{123.456});
  EXPECT_EQ(Decode({0x3FF8, 0, 0, 0}, DataType::kFloat64, WordOrder::kABCD), Value{1.5});
  EXPECT_EQ(Decode({0, 0, 0, 0x02C0}, DataType::kFloat64, WordOrder::kDCBA), Value{-2.25});
  EXPECT_EQ(Decode({0xF8A4, 0x32EB}, DataType::kInt32, WordOrder::kABCD),
            Value{int64_t{-123456789}});
  EXPECT_EQ(Decode({0x2800, 0xEE6B}, DataType::kUint32, WordOrder::kCDAB),
            Value{uint64_t{4000000000}});
  EXPECT_EQ(Decode({0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE}, DataType::kInt64, WordOrder::kABCD),
            Value{int64_t{-2}});
  EXPECT_EQ(Decode({0xFEFF}, DataType::kInt16, WordOrder::kBADC), Value{int64_t{-2}});
  EXPECT_EQ(Decode({0x0100}, DataType::kUint16, WordOrder::kDCBA), Value{uint64_t{1}});
  EXPECT_EQ(Decode({0x0100}, DataType::kUint16, WordOrder::kCDAB), Value{uint64_t{256}});
}

TEST(CodecOrderTest, EveryTypeInEveryOrderMatchesTheIndependentWireImage) {
  std::mt19937_64 rng(99);
  for (int round = 0; round < 2000; ++round) {
    const uint64_t bits = rng();
    const auto b16 = static_cast<uint16_t>(bits);
    const auto b32 = static_cast<uint32_t>(bits);
    for (const auto& [order, name4] : kOrders4) {
      const std::string name2 = SwapsBytes(order) ? "BA" : "AB";
      EXPECT_EQ(Decode(Wire(b16, name2), DataType::kUint16, order), Value{uint64_t{b16}});
      EXPECT_EQ(Decode(Wire(b16, name2), DataType::kInt16, order),
                Value{int64_t{static_cast<int16_t>(b16)}});
      EXPECT_EQ(Decode(Wire(b32, name4), DataType::kUint32, order), Value{uint64_t{b32}});
      EXPECT_EQ(Decode(Wire(b32, name4), DataType::kInt32, order),
                Value{int64_t{static_cast<int32_t>(b32)}});
      float f;
      std::memcpy(&f, &b32, sizeof f);
      const Result<Value> fv = DecodeRaw(Wire(b32, name4), DataType::kFloat32, order);
      if (std::isfinite(f)) {
        ASSERT_TRUE(fv.ok());
        EXPECT_EQ(static_cast<float>(std::get<double>(*fv)), f) << name4;
      } else {
        EXPECT_EQ(fv.status().message(), "non-finite");
      }
    }
    for (const auto& [order, name8] : kOrders8) {
      EXPECT_EQ(Decode(Wire(bits, name8), DataType::kUint64, order), Value{bits});
      EXPECT_EQ(Decode(Wire(bits, name8), DataType::kInt64, order),
                Value{static_cast<int64_t>(bits)});
      double d;
      std::memcpy(&d, &bits, sizeof d);
      const Result<Value> dv = DecodeRaw(Wire(bits, name8), DataType::kFloat64, order);
      if (std::isfinite(d)) {
        ASSERT_TRUE(dv.ok());
        EXPECT_EQ(std::get<double>(*dv), d) << name8;
      } else {
        EXPECT_EQ(dv.status().message(), "non-finite");
      }
    }
  }
}

TEST(CodecOrderTest, BoolAndBitOfARegister) {
  TagSpec flag;
  flag.type = DataType::kBool;
  EXPECT_EQ(*DecodeTag(flag, std::vector<uint16_t>{0}), Value{false});
  EXPECT_EQ(*DecodeTag(flag, std::vector<uint16_t>{0x8000}), Value{true});

  TagSpec bit;
  bit.type = DataType::kBit;
  const std::vector<uint16_t> reg = {0b1000'0000'0010'0100};
  for (uint8_t b = 0; b < 16; ++b) {
    bit.bit = b;
    EXPECT_EQ(*DecodeTag(bit, reg), Value{b == 2 || b == 5 || b == 15}) << int{b};
  }
  // With the bytes swapped on the wire, bit 2 of the value sits in the high byte.
  bit.order = WordOrder::kBADC;
  bit.bit = 2;
  EXPECT_EQ(*DecodeTag(bit, std::vector<uint16_t>{0x0400}), Value{true});
  EXPECT_EQ(*DecodeTag(bit, std::vector<uint16_t>{0x0004}), Value{false});
  EXPECT_EQ(DecodeBitValue(1), Value{true});
  EXPECT_EQ(DecodeBitValue(0), Value{false});
}

TEST(CodecOrderTest, Strings) {
  TagSpec s;
  s.type = DataType::kString;
  s.length = 8;
  // "SDM630" then NULs: two characters a register, the first in the high byte.
  const std::vector<uint16_t> regs = {('S' << 8) | 'D', ('M' << 8) | '6', ('3' << 8) | '0', 0};
  EXPECT_EQ(*DecodeTag(s, regs), Value{std::string("SDM630")});
  // Byte-swapped registers.
  s.order = WordOrder::kBADC;
  const std::vector<uint16_t> swapped = {('D' << 8) | 'S', ('6' << 8) | 'M', ('0' << 8) | '3', 0};
  EXPECT_EQ(*DecodeTag(s, swapped), Value{std::string("SDM630")});
  // An odd length takes the high byte of the last register only; trailing
  // spaces go, inner ones stay.
  s.order = WordOrder::kABCD;
  s.length = 5;
  const std::vector<uint16_t> padded = {('A' << 8) | ' ', ('B' << 8) | ' ', (' ' << 8) | 'Z'};
  EXPECT_EQ(*DecodeTag(s, padded), Value{std::string("A B")});
  // The wrong number of registers is an error, as for numbers.
  EXPECT_FALSE(DecodeTag(s, regs).ok());
}

TEST(CodecOrderTest, SixtyFourBitScalingGivesADouble) {
  TagSpec energy;
  energy.type = DataType::kUint64;
  energy.scale = 0.001;
  EXPECT_EQ(*DecodeTag(energy, std::vector<uint16_t>{0, 0, 0x0001, 0xE240}), Value{123.456});
  energy.scale = 1.0;
  EXPECT_EQ(*DecodeTag(energy, std::vector<uint16_t>{0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF}),
            Value{uint64_t{UINT64_MAX}});
}

TEST(TypesTest, RegisterNumbers) {
  const auto r = [](const char* s) { return ParseRegisterNumber(s); };
  ASSERT_TRUE(r("40001"));
  EXPECT_EQ(r("40001")->table, Table::kHolding);
  EXPECT_EQ(r("40001")->address, 0);
  EXPECT_EQ(r("49999")->address, 9998);
  EXPECT_EQ(r("30010")->table, Table::kInput);
  EXPECT_EQ(r("30010")->address, 9);
  EXPECT_EQ(r("10001")->table, Table::kDiscrete);
  EXPECT_EQ(r("00001")->table, Table::kCoil);
  EXPECT_EQ(r("00001")->address, 0);
  EXPECT_EQ(r("465536")->address, 65535);
  EXPECT_EQ(r("400001")->address, 0);
  // Six digits make "010001" coil 10001, not discrete input 1.
  EXPECT_EQ(r("010001")->table, Table::kCoil);
  EXPECT_EQ(r("010001")->address, 10000);
  for (const char* bad :
       {"1", "4001", "40000", "20001", "50001", "465537", "4000001", "4x001", "400000", ""}) {
    EXPECT_FALSE(r(bad)) << bad;
  }
  EXPECT_EQ(FormatRegisterNumber(Table::kHolding, 0), "40001");
  EXPECT_EQ(FormatRegisterNumber(Table::kCoil, 9), "00010");
  EXPECT_EQ(FormatRegisterNumber(Table::kInput, 9999), "310000");
}

TEST(TypesTest, OrderNames) {
  bool eight = false;
  EXPECT_EQ(ParseWordOrder("GHEFCDAB", &eight), WordOrder::kCDAB);
  EXPECT_TRUE(eight);
  EXPECT_EQ(ParseWordOrder("BADC", &eight), WordOrder::kBADC);
  EXPECT_FALSE(eight);
  EXPECT_FALSE(ParseWordOrder("ABDC"));
  EXPECT_EQ(WordOrderName(WordOrder::kDCBA, 8), "HGFEDCBA");
}

TEST(TypesTest, ValidateTagExplainsWhatIsWrong) {
  TagSpec t;
  t.table = Table::kCoil;
  t.type = DataType::kUint16;
  EXPECT_NE(ValidateTag(t, {}).find("type is bool"), std::string::npos);
  t.type = DataType::kBool;
  EXPECT_EQ(ValidateTag(t, {}), "");
  t.table = Table::kHolding;
  t.type = DataType::kString;
  EXPECT_NE(ValidateTag(t, {}).find("length"), std::string::npos);
  t.length = 20;
  PlanLimits small;
  small.max_registers = 8;
  EXPECT_NE(ValidateTag(t, small).find("does not fit"), std::string::npos);
  t.type = DataType::kFloat64;
  t.address = 65533;
  EXPECT_NE(ValidateTag(t, {}).find("runs past"), std::string::npos);
}

TEST(TypesTest, InterFrameDelay) {
  EXPECT_EQ(InterFrameDelay(9600).count(), 4011);  // 3.5 * 11 / 9600 s
  EXPECT_EQ(InterFrameDelay(19200).count(), 2006);
  EXPECT_EQ(InterFrameDelay(115200).count(), 1750);  // fixed above 19200
  EXPECT_EQ(CharacterTime(19200).count(), 572916);
}

}  // namespace
}  // namespace tagrelay::modbus
