// Tests of drivers/modbus/codec.h: registers -> typed, scaled values.
#include "drivers/modbus/codec.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <variant>
#include <vector>

namespace tagrelay::modbus {
namespace {

// The two registers (ABCD: high word first) that hold `f` on the wire.
std::vector<uint16_t> Float32Registers(float f) {
  const uint32_t bits = std::bit_cast<uint32_t>(f);
  return {static_cast<uint16_t>(bits >> 16), static_cast<uint16_t>(bits & 0xFFFF)};
}

Value Decode(std::vector<uint16_t> regs, DataType type) {
  Result<Value> v = DecodeRaw(regs, type, WordOrder::kABCD);
  EXPECT_TRUE(v.ok()) << v.status().ToString();
  return v.ok() ? *v : Value{};
}

TEST(CodecTest, Int16IsSigned) {
  EXPECT_EQ(Decode({0x0000}, DataType::kInt16), Value{int64_t{0}});
  EXPECT_EQ(Decode({0x0001}, DataType::kInt16), Value{int64_t{1}});
  EXPECT_EQ(Decode({0x7FFF}, DataType::kInt16), Value{int64_t{32767}});
  EXPECT_EQ(Decode({0x8000}, DataType::kInt16), Value{int64_t{-32768}});
  EXPECT_EQ(Decode({0xFFFF}, DataType::kInt16), Value{int64_t{-1}});
  EXPECT_EQ(Decode({0xFF38}, DataType::kInt16), Value{int64_t{-200}});
}

TEST(CodecTest, Uint16IsUnsigned) {
  EXPECT_EQ(Decode({0x0000}, DataType::kUint16), Value{uint64_t{0}});
  EXPECT_EQ(Decode({0x00D9}, DataType::kUint16), Value{uint64_t{217}});
  EXPECT_EQ(Decode({0x8000}, DataType::kUint16), Value{uint64_t{32768}});
  EXPECT_EQ(Decode({0xFFFF}, DataType::kUint16), Value{uint64_t{65535}});
}

TEST(CodecTest, Float32IsBigEndianAbcd) {
  // 230.5f = 0x43668000: the high word comes first.
  EXPECT_EQ(Decode({0x4366, 0x8000}, DataType::kFloat32), Value{230.5});
  EXPECT_EQ(Decode({0x3F80, 0x0000}, DataType::kFloat32), Value{1.0});
  EXPECT_EQ(Decode({0xC000, 0x0000}, DataType::kFloat32), Value{-2.0});
  EXPECT_EQ(Decode({0x0000, 0x0000}, DataType::kFloat32), Value{0.0});
  // The words swapped (CDAB) would be another number entirely.
  EXPECT_NE(Decode({0x8000, 0x4366}, DataType::kFloat32), Value{230.5});
}

TEST(CodecTest, Float32HelperMatchesTheKnownEncoding) {
  EXPECT_EQ(Float32Registers(230.5f), (std::vector<uint16_t>{0x4366, 0x8000}));
}

TEST(CodecTest, Float32SmallestAndLargestFiniteValuesDecode) {
  const float max = std::numeric_limits<float>::max();
  const float denorm = std::numeric_limits<float>::denorm_min();
  const Value big = Decode(Float32Registers(max), DataType::kFloat32);
  const Value tiny = Decode(Float32Registers(denorm), DataType::kFloat32);
  ASSERT_TRUE(std::holds_alternative<double>(big));
  ASSERT_TRUE(std::holds_alternative<double>(tiny));
  EXPECT_EQ(static_cast<float>(std::get<double>(big)), max);
  EXPECT_EQ(static_cast<float>(std::get<double>(tiny)), denorm);
}

TEST(CodecTest, Float32AppearsAsTheShortestDouble) {
  // 230.6221f is 230.62210083007812 exactly; the device meant 230.6221.
  const Value v = Decode(Float32Registers(230.6221f), DataType::kFloat32);
  ASSERT_TRUE(std::holds_alternative<double>(v));
  EXPECT_EQ(std::get<double>(v), 230.6221);
  EXPECT_NE(std::get<double>(v), static_cast<double>(230.6221f));
  // Nothing is lost: it reads back as the same float.
  EXPECT_EQ(static_cast<float>(std::get<double>(v)), 230.6221f);

  for (float f : {0.1f, 1.1f, -49.95f, 3.3333333f, 1e-5f, 123456.7f}) {
    const Value d = Decode(Float32Registers(f), DataType::kFloat32);
    ASSERT_TRUE(std::holds_alternative<double>(d));
    EXPECT_EQ(static_cast<float>(std::get<double>(d)), f) << f;
  }
  EXPECT_EQ(Decode(Float32Registers(0.1f), DataType::kFloat32), Value{0.1});
  EXPECT_EQ(Decode(Float32Registers(-49.95f), DataType::kFloat32), Value{-49.95});
}

TEST(CodecTest, WrongRegisterCountIsAnError) {
  const std::vector<uint16_t> none;
  const std::vector<uint16_t> one = {0x4366};
  const std::vector<uint16_t> two = {0x4366, 0x8000};
  const std::vector<uint16_t> three = {1, 2, 3};

  Result<Value> r = DecodeRaw(one, DataType::kFloat32, WordOrder::kABCD);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(), "decode float32: got 1 registers, need 2");

  r = DecodeRaw(three, DataType::kFloat32, WordOrder::kABCD);
  EXPECT_FALSE(r.ok());
  r = DecodeRaw(none, DataType::kUint16, WordOrder::kABCD);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  r = DecodeRaw(two, DataType::kInt16, WordOrder::kABCD);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "decode int16: got 2 registers, need 1");
  r = DecodeRaw(two, DataType::kUint16, WordOrder::kABCD);
  EXPECT_FALSE(r.ok());
}

TEST(CodecTest, NonFiniteFloatIsAnError) {
  const std::vector<std::vector<uint16_t>> bad = {
      {0x7FC0, 0x0000},  // quiet NaN
      {0x7F80, 0x0001},  // signalling NaN
      {0xFFC0, 0x0000},  // negative NaN
      {0x7F80, 0x0000},  // +inf
      {0xFF80, 0x0000},  // -inf
  };
  for (const auto& regs : bad) {
    const Result<Value> r = DecodeRaw(regs, DataType::kFloat32, WordOrder::kABCD);
    ASSERT_FALSE(r.ok()) << std::hex << regs[0] << " " << regs[1];
    EXPECT_EQ(r.status().code(), StatusCode::kDeviceError);
    EXPECT_EQ(r.status().message(), "non-finite");
  }
  // DecodeTag passes the error on rather than scaling a made-up number.
  TagSpec tag;
  tag.type = DataType::kFloat32;
  tag.scale = 0.1;
  const Result<Value> r = DecodeTag(tag, bad[0]);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "non-finite");
}

TEST(CodecTest, ApplyScaleKeepsIntegersWhenIdentity) {
  const Value i = ApplyScale(Value{int64_t{-5}}, 1.0, 0.0);
  ASSERT_TRUE(std::holds_alternative<int64_t>(i));
  EXPECT_EQ(std::get<int64_t>(i), -5);
  const Value u = ApplyScale(Value{uint64_t{65535}}, 1.0, 0.0);
  ASSERT_TRUE(std::holds_alternative<uint64_t>(u));
  EXPECT_EQ(std::get<uint64_t>(u), 65535u);
  const Value d = ApplyScale(Value{2.5}, 1.0, 0.0);
  ASSERT_TRUE(std::holds_alternative<double>(d));
  EXPECT_EQ(std::get<double>(d), 2.5);
}

TEST(CodecTest, ApplyScaleGivesADoubleOtherwise) {
  const Value scaled = ApplyScale(Value{int64_t{-5}}, 2.0, 0.0);
  ASSERT_TRUE(std::holds_alternative<double>(scaled));
  EXPECT_EQ(std::get<double>(scaled), -10.0);

  const Value offset = ApplyScale(Value{uint64_t{10}}, 1.0, -3.0);
  ASSERT_TRUE(std::holds_alternative<double>(offset));
  EXPECT_EQ(std::get<double>(offset), 7.0);

  const Value both = ApplyScale(Value{uint64_t{100}}, 0.5, 1.0);
  ASSERT_TRUE(std::holds_alternative<double>(both));
  EXPECT_EQ(std::get<double>(both), 51.0);

  const Value dbl = ApplyScale(Value{230.5}, 2.0, 0.5);
  ASSERT_TRUE(std::holds_alternative<double>(dbl));
  EXPECT_EQ(std::get<double>(dbl), 461.5);
}

TEST(CodecTest, DecimalScaleIsExact) {
  // 217 * 0.1 is 21.700000000000003 in binary floating point; the codec gives 21.7.
  const Value v = ApplyScale(Value{uint64_t{217}}, 0.1, 0.0);
  ASSERT_TRUE(std::holds_alternative<double>(v));
  EXPECT_EQ(std::get<double>(v), 21.7);

  EXPECT_EQ(ApplyScale(Value{int64_t{-217}}, 0.1, 0.0), Value{-21.7});
  EXPECT_EQ(ApplyScale(Value{uint64_t{12345}}, 0.01, 0.0), Value{123.45});
  EXPECT_EQ(ApplyScale(Value{uint64_t{7}}, 0.001, 0.0), Value{0.007});
  EXPECT_EQ(ApplyScale(Value{uint64_t{3}}, 0.1, 0.0), Value{0.3});
  EXPECT_EQ(ApplyScale(Value{uint64_t{217}}, -0.1, 0.0), Value{-21.7});
}

TEST(CodecTest, ApplyScaleLeavesNonNumbersAlone) {
  EXPECT_EQ(ApplyScale(Value{true}, 10.0, 1.0), Value{true});
  EXPECT_EQ(ApplyScale(Value{std::string("x")}, 10.0, 1.0), Value{std::string("x")});
  EXPECT_EQ(ApplyScale(Value{}, 10.0, 1.0), Value{});
}

TEST(CodecTest, DecodeTagAppliesTheTagsSettings) {
  TagSpec voltage;
  voltage.type = DataType::kUint16;
  voltage.scale = 0.1;
  const std::vector<uint16_t> regs = {217};
  Result<Value> v = DecodeTag(voltage, regs);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, Value{21.7});

  TagSpec temp;
  temp.type = DataType::kInt16;
  temp.scale = 0.5;
  temp.offset = -40.0;
  const std::vector<uint16_t> neg = {0xFFFE};  // -2
  v = DecodeTag(temp, neg);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, Value{-41.0});

  TagSpec raw;
  raw.type = DataType::kInt16;
  v = DecodeTag(raw, neg);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, Value{int64_t{-2}});

  TagSpec power;
  power.type = DataType::kFloat32;
  power.scale = 1000.0;
  const std::vector<uint16_t> f = {0x4366, 0x8000};
  v = DecodeTag(power, f);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, Value{230500.0});

  v = DecodeTag(power, regs);  // one register for a float32
  EXPECT_FALSE(v.ok());
}

}  // namespace
}  // namespace tagrelay::modbus
