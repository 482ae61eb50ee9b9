#include "store/chunk_codec.h"

#include <gtest/gtest.h>

#include <limits>
#include <random>
#include <string>
#include <vector>

namespace tagrelay::store {
namespace {

std::vector<Reading> EveryKind() {
  return {
      Reading::Good("a", 1763800000000, true),
      Reading::Good("b", 1763800000000, false),
      Reading::Good("c", 1763800000005, std::numeric_limits<int64_t>::min()),
      Reading::Good("d", 1763799999000, std::numeric_limits<int64_t>::max()),  // time may go back
      Reading::Good("e", 1763800000000, std::numeric_limits<uint64_t>::max()),
      Reading::Good("f", 1763800000000, -0.0),
      Reading::Good("g", 1763800000000, 231.4),
      Reading::Good("h", 1763800000000, std::string("h\xC3\xA9llo\0x", 8)),
      Reading::Bad("i", 1763800000000, "exception:2"),
      Reading{"j", 0, 1.5, Quality::kUncertain, "stale"},
      Reading::Good("k", -5, std::string()),
  };
}

TEST(ChunkCodecTest, EverythingRoundTrips) {
  const std::vector<Reading> in = EveryKind();
  std::vector<int64_t> ids;
  for (size_t i = 0; i < in.size(); ++i) ids.push_back(static_cast<int64_t>(i * 1000 + 1));
  std::string blob;
  EncodeChunk(in, ids, &blob);
  std::vector<ChunkReading> out;
  ASSERT_TRUE(DecodeChunk(blob, static_cast<int64_t>(in.size()), out).ok());
  ASSERT_EQ(out.size(), in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(out[i].tag_id, ids[i]);
    EXPECT_EQ(out[i].ts_ms, in[i].ts_ms);
    EXPECT_EQ(out[i].value, in[i].value);
    EXPECT_EQ(out[i].quality, in[i].quality);
    EXPECT_EQ(out[i].error, in[i].error);
  }
  EXPECT_TRUE(std::signbit(std::get<double>(out[5].value))) << "-0.0 keeps its sign";
}

TEST(ChunkCodecTest, AReadingTakesAboutTwelveBytes) {
  std::vector<Reading> in;
  std::vector<int64_t> ids;
  for (int i = 0; i < 100; ++i) {
    in.push_back(Reading::Good("t", 1763800000000 + i / 10, 230.0 + i));
    ids.push_back(i + 1);
  }
  std::string blob;
  EncodeChunk(in, ids, &blob);
  EXPECT_LE(blob.size(), 100u * 12 + 16);
}

TEST(ChunkCodecTest, AnyDamageIsCorruptionNeverAMadeUpReading) {
  const std::vector<Reading> in = EveryKind();
  std::vector<int64_t> ids(in.size(), 7);
  std::string blob;
  EncodeChunk(in, ids, &blob);
  const auto count = static_cast<int64_t>(in.size());
  std::vector<ChunkReading> out;
  // Every truncation.
  for (size_t n = 0; n < blob.size(); ++n) {
    out.clear();
    EXPECT_EQ(DecodeChunk(std::string_view(blob).substr(0, n), count, out).code(),
              StatusCode::kCorruption)
        << n;
    EXPECT_TRUE(out.empty()) << "nothing is appended from a bad chunk";
  }
  // A trailing byte, a wrong count, an unknown format.
  EXPECT_EQ(DecodeChunk(blob + '\0', count, out).code(), StatusCode::kCorruption);
  EXPECT_EQ(DecodeChunk(blob, count - 1, out).code(), StatusCode::kCorruption);
  std::string other = blob;
  other[0] = 2;
  EXPECT_EQ(DecodeChunk(other, count, out).code(), StatusCode::kCorruption);
  // Random bit flips never crash, and a decode that passes yields `count` readings.
  std::mt19937 rng(42);
  for (int round = 0; round < 20000; ++round) {
    std::string damaged = blob;
    damaged[rng() % damaged.size()] ^= static_cast<char>(1 << (rng() % 8));
    out.clear();
    Status s = DecodeChunk(damaged, count, out);
    if (s.ok()) {
      EXPECT_EQ(out.size(), in.size());
    } else {
      EXPECT_EQ(s.code(), StatusCode::kCorruption);
      EXPECT_TRUE(out.empty());
    }
  }
}

}  // namespace
}  // namespace tagrelay::store
