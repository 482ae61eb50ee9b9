// Tests of agent/core: BoundedQueue, JsonWriter and thread names.
#include <gtest/gtest.h>
#include <pthread.h>

#include <atomic>
#include <bit>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "agent/core/bounded_queue.h"
#include "agent/core/json_writer.h"
#include "agent/core/thread_name.h"

namespace tagrelay {
namespace {

using Deadline = BoundedQueue<int>::Deadline;

Deadline Past() { return std::chrono::steady_clock::now() - std::chrono::seconds(1); }

// ---------------------------------------------------------------------------
// BoundedQueue

TEST(BoundedQueueTest, Capacity) {
  EXPECT_EQ(BoundedQueue<int>(3).capacity(), 3u);
  EXPECT_EQ(BoundedQueue<int>(0).capacity(), 1u);  // 0 would deadlock every producer
}

TEST(BoundedQueueTest, TryPushFailsWhenFullAndKeepsFifoOrder) {
  BoundedQueue<int> q(3);
  EXPECT_EQ(q.TryPush(1), PushResult::kOk);
  EXPECT_EQ(q.TryPush(2), PushResult::kOk);
  EXPECT_EQ(q.TryPush(3), PushResult::kOk);
  EXPECT_EQ(q.size(), 3u);
  EXPECT_EQ(q.TryPush(4), PushResult::kFull);
  EXPECT_EQ(q.size(), 3u);  // never more than capacity
  EXPECT_EQ(q.PopUntil(Past()), 1);
  EXPECT_EQ(q.TryPush(5), PushResult::kOk);
  EXPECT_EQ(q.PopUntil(Past()), 2);
  EXPECT_EQ(q.PopUntil(Past()), 3);
  EXPECT_EQ(q.PopUntil(Past()), 5);
  EXPECT_EQ(q.PopUntil(Past()), std::nullopt);
  EXPECT_FALSE(q.closed());
}

TEST(BoundedQueueTest, PushUntilADeadlineInThePastOnAFullQueueTimesOut) {
  BoundedQueue<std::unique_ptr<int>> q(1);
  EXPECT_EQ(q.PushUntil(std::make_unique<int>(1), Past()),
            PushResult::kOk);  // room: no wait needed
  auto item = std::make_unique<int>(2);
  EXPECT_EQ(q.PushUntil(std::move(item), Past()), PushResult::kFull);
  ASSERT_NE(item, nullptr)
      << "a refused item must be left untouched";  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(*item, 2);
  EXPECT_EQ(q.size(), 1u);
  std::optional<std::unique_ptr<int>> first = q.PopUntil(Past());
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(**first, 1);
}

TEST(BoundedQueueTest, PushUntilWithATimeoutReturnsFull) {
  BoundedQueue<int> q(1);
  ASSERT_EQ(q.TryPush(1), PushResult::kOk);
  // A short real deadline: nobody pops, so it must give up (and not hang).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(10);
  EXPECT_EQ(q.PushUntil(2, deadline), PushResult::kFull);
  EXPECT_GE(std::chrono::steady_clock::now(), deadline);
  EXPECT_EQ(q.size(), 1u);
}

TEST(BoundedQueueTest, PopUntilADeadlineInThePastOnAnEmptyQueue) {
  BoundedQueue<int> q(2);
  EXPECT_EQ(q.PopUntil(Past()), std::nullopt);
  EXPECT_FALSE(q.closed());  // a timeout, not a close
}

TEST(BoundedQueueTest, CloseFailsPushesAndDrainsPops) {
  BoundedQueue<std::unique_ptr<int>> q(2);
  ASSERT_EQ(q.TryPush(std::make_unique<int>(1)), PushResult::kOk);
  ASSERT_EQ(q.TryPush(std::make_unique<int>(2)), PushResult::kOk);
  q.Close();
  EXPECT_TRUE(q.closed());

  // A full, closed queue reports closed, not full; the item stays with the caller.
  auto item = std::make_unique<int>(3);
  EXPECT_EQ(q.TryPush(std::move(item)), PushResult::kClosed);
  EXPECT_EQ(q.PushUntil(std::move(item), Past()), PushResult::kClosed);
  EXPECT_EQ(q.Push(std::move(item)), PushResult::kClosed);
  ASSERT_NE(item, nullptr);  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(q.size(), 2u);

  // Pops drain what is left, in order, then report closed without waiting.
  std::optional<std::unique_ptr<int>> a = q.Pop();
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(**a, 1);
  std::optional<std::unique_ptr<int>> b = q.PopUntil(Past());
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(**b, 2);
  EXPECT_FALSE(q.Pop().has_value());  // would block forever if close were ignored
  EXPECT_FALSE(q.PopUntil(BoundedQueue<std::unique_ptr<int>>::Deadline::max()).has_value());
  EXPECT_TRUE(q.closed());
}

TEST(BoundedQueueTest, APopWithAWakeThresholdWaitsForThatManyItemsOrItsDeadline) {
  BoundedQueue<int> q(8);
  std::atomic<bool> returned{false};
  std::optional<int> got;
  std::thread consumer([&] {
    got = q.PopUntil(Deadline::max(), 3);
    returned = true;
  });
  ASSERT_EQ(q.TryPush(1), PushResult::kOk);
  ASSERT_EQ(q.TryPush(2), PushResult::kOk);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(returned.load()) << "two items are fewer than asked for";
  ASSERT_EQ(q.PushUntil(3, Deadline::max()), PushResult::kOk);
  consumer.join();
  EXPECT_EQ(got, 1) << "the first item, in order";
  EXPECT_EQ(q.size(), 2u);

  // At the deadline it takes what there is; a threshold above the capacity is the capacity.
  EXPECT_EQ(q.PopUntil(Past(), 100), 2);
  EXPECT_EQ(q.TryPop(), 3);
  EXPECT_FALSE(q.TryPop().has_value());
  EXPECT_FALSE(q.PopUntil(Past(), 2).has_value());
}

TEST(BoundedQueueTest, CloseOfAnEmptyQueueMakesPushFail) {
  BoundedQueue<int> q(4);
  q.Close();
  EXPECT_EQ(q.TryPush(1), PushResult::kClosed);
  EXPECT_EQ(q.Push(1), PushResult::kClosed);
  EXPECT_EQ(q.size(), 0u);
  EXPECT_EQ(q.Pop(), std::nullopt);
}

TEST(BoundedQueueTest, DrainIntoTakesUpToMax) {
  BoundedQueue<int> q(5);
  for (int i = 0; i < 5; ++i) ASSERT_EQ(q.TryPush(int{i}), PushResult::kOk);
  std::vector<int> out = {-1};
  EXPECT_EQ(q.DrainInto(out, 3), 3u);
  EXPECT_EQ(out, (std::vector<int>{-1, 0, 1, 2}));
  EXPECT_EQ(q.size(), 2u);
  EXPECT_EQ(q.DrainInto(out, 10), 2u);
  EXPECT_EQ(out, (std::vector<int>{-1, 0, 1, 2, 3, 4}));
  EXPECT_EQ(q.DrainInto(out, 10), 0u);
}

TEST(BoundedQueueTest, BlockedPushResumesWhenAConsumerPops) {
  BoundedQueue<int> q(1);
  ASSERT_EQ(q.TryPush(1), PushResult::kOk);
  PushResult result = PushResult::kFull;
  std::thread producer([&] { result = q.Push(2); });  // blocks until there is room
  EXPECT_EQ(q.Pop(), 1);
  producer.join();
  EXPECT_EQ(result, PushResult::kOk);
  EXPECT_EQ(q.Pop(), 2);
}

TEST(BoundedQueueTest, CloseWakesABlockedConsumerAndProducer) {
  BoundedQueue<int> empty(1);
  std::optional<int> popped = 7;
  std::thread consumer([&] { popped = empty.Pop(); });  // blocks: nothing to pop

  BoundedQueue<int> full(1);
  ASSERT_EQ(full.TryPush(1), PushResult::kOk);
  PushResult pushed = PushResult::kOk;
  std::thread producer([&] { pushed = full.Push(2); });  // blocks: no room

  empty.Close();
  full.Close();
  consumer.join();
  producer.join();
  EXPECT_EQ(popped, std::nullopt);
  EXPECT_EQ(pushed, PushResult::kClosed);
}

TEST(BoundedQueueTest, ManyProducersOneConsumerEveryItemOnceInOrder) {
  constexpr int kProducers = 4;
  constexpr int kItemsEach = 20000;
  BoundedQueue<std::pair<int, int>> q(8);  // small: producers block often

  std::vector<int> next(kProducers, 0);  // the sequence number expected next from each producer
  bool in_order = true;
  int received = 0;
  std::thread consumer([&] {
    while (std::optional<std::pair<int, int>> item = q.Pop()) {
      const auto [producer, seq] = *item;
      if (producer < 0 || producer >= kProducers || seq != next[producer]) in_order = false;
      if (producer >= 0 && producer < kProducers) next[producer] = seq + 1;
      ++received;
    }
  });
  std::vector<std::thread> producers;
  std::vector<int> refused(kProducers, 0);
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&q, &refused, p] {
      for (int i = 0; i < kItemsEach; ++i) {
        if (q.Push({p, i}) != PushResult::kOk) ++refused[p];
      }
    });
  }
  for (std::thread& t : producers) t.join();
  q.Close();  // the consumer drains what is left, then Pop() returns nullopt
  consumer.join();

  EXPECT_TRUE(in_order);
  EXPECT_EQ(received, kProducers * kItemsEach);
  EXPECT_EQ(next, std::vector<int>(kProducers, kItemsEach));
  EXPECT_EQ(refused, std::vector<int>(kProducers, 0));
  EXPECT_EQ(q.size(), 0u);
}

// ---------------------------------------------------------------------------
// JsonWriter

std::string Json(const std::function<void(JsonWriter&)>& write) {
  std::string out;
  JsonWriter w(&out);
  write(w);
  return out;
}

std::string QuotedJson(std::string_view s) {
  std::string out;
  AppendJsonString(&out, s);
  return out;
}

TEST(JsonWriterTest, CommasBetweenValuesAndMembers) {
  EXPECT_EQ(Json([](JsonWriter& w) {
              w.BeginObject()
                  .Key("a")
                  .Int(1)
                  .Key("b")
                  .String("x")
                  .Key("c")
                  .Bool(true)
                  .Key("d")
                  .Null()
                  .Key("e")
                  .Bool(false);
              w.EndObject();
            }),
            R"({"a":1,"b":"x","c":true,"d":null,"e":false})");
  EXPECT_EQ(
      Json([](JsonWriter& w) { w.BeginArray().Int(1).Int(2).Uint(3).String("4").EndArray(); }),
      R"([1,2,3,"4"])");
  EXPECT_EQ(Json([](JsonWriter& w) { w.BeginArray().Int(1).EndArray(); }), "[1]");
}

TEST(JsonWriterTest, EmptyContainers) {
  EXPECT_EQ(Json([](JsonWriter& w) { w.BeginObject().EndObject(); }), "{}");
  EXPECT_EQ(Json([](JsonWriter& w) { w.BeginArray().EndArray(); }), "[]");
  EXPECT_EQ(Json([](JsonWriter& w) {
              w.BeginArray().BeginArray().EndArray().BeginObject().EndObject().EndArray();
            }),
            "[[],{}]");
}

TEST(JsonWriterTest, Nesting) {
  const std::string out = Json([](JsonWriter& w) {
    w.BeginObject();
    w.Key("schema").String("tagrelay.telemetry.v1");
    w.Key("readings").BeginArray();
    w.BeginObject().Key("tag").String("v1").Key("v").Double(231.4).EndObject();
    w.BeginObject()
        .Key("tag")
        .String("v2")
        .Key("q")
        .String("bad")
        .Key("err")
        .String("timeout")
        .EndObject();
    w.EndArray();
    w.Key("meta")
        .BeginObject()
        .Key("n")
        .BeginArray()
        .Int(1)
        .BeginArray()
        .Int(2)
        .Int(3)
        .EndArray()
        .EndArray();
    w.EndObject();
    w.Key("last").Int(0);
    w.EndObject();
  });
  EXPECT_EQ(out, R"({"schema":"tagrelay.telemetry.v1","readings":[{"tag":"v1","v":231.4},)"
                 R"({"tag":"v2","q":"bad","err":"timeout"}],"meta":{"n":[1,[2,3]]},"last":0})");
}

TEST(JsonWriterTest, AppendsToWhatIsThere) {
  std::string out = "prefix ";
  JsonWriter w(&out);
  w.BeginArray().Int(1).EndArray();
  EXPECT_EQ(out, "prefix [1]");
}

TEST(JsonWriterTest, EscapesQuotesBackslashesAndControlCharacters) {
  EXPECT_EQ(QuotedJson("plain"), R"("plain")");
  EXPECT_EQ(QuotedJson(""), R"("")");
  EXPECT_EQ(QuotedJson("say \"hi\""), R"("say \"hi\"")");
  EXPECT_EQ(QuotedJson("C:\\dir\\"), R"("C:\\dir\\")");
  EXPECT_EQ(QuotedJson("a\nb\rc\td\be\ff"), R"("a\nb\rc\td\be\ff")");
  EXPECT_EQ(QuotedJson(std::string_view("\0\x01\x1f\x7f", 4)), R"("\u0000\u0001\u001f\u007f")");
  EXPECT_EQ(QuotedJson("/ and ' stay"), R"("/ and ' stay")");
  // Keys are escaped too.
  EXPECT_EQ(Json([](JsonWriter& w) { w.BeginObject().Key("k\"\n").String("v\\").EndObject(); }),
            R"({"k\"\n":"v\\"})");
}

TEST(JsonWriterTest, InvalidUtf8BecomesReplacementCharacter) {
  const std::string fffd = "\xEF\xBF\xBD";
  EXPECT_EQ(QuotedJson("a\xFF"
                       "b"),
            "\"a" + fffd + "b\"");                      // never valid in UTF-8
  EXPECT_EQ(QuotedJson("\x80"), "\"" + fffd + "\"");    // a lone continuation byte
  EXPECT_EQ(QuotedJson("x\xC3"), "\"x" + fffd + "\"");  // truncated at the end
  EXPECT_EQ(QuotedJson("\xC3"
                       "A"),
            "\"" + fffd + "A\"");                                // truncated before ASCII
  EXPECT_EQ(QuotedJson("\xC0\xAF"), "\"" + fffd + fffd + "\"");  // overlong '/'
  EXPECT_EQ(QuotedJson("\xE0\x80\xAF"), "\"" + fffd + fffd + fffd + "\"");  // overlong, 3 bytes
  EXPECT_EQ(QuotedJson("\xED\xA0\x80"), "\"" + fffd + fffd + fffd + "\"");  // a UTF-16 surrogate
  EXPECT_EQ(QuotedJson("\xF4\x90\x80\x80"),
            "\"" + fffd + fffd + fffd + fffd + "\"");  // past U+10FFFF
  EXPECT_EQ(QuotedJson("\xF8\x88\x80\x80\x80"),
            "\"" + fffd + fffd + fffd + fffd + fffd + "\"");  // 5 bytes
}

TEST(JsonWriterTest, ValidMultibyteUtf8IsKept) {
  for (const char* s :
       {"\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80", "\xE6\x97\xA5\xE6\x9C\xAC", "\xC2\x80",
        "\xDF\xBF", "\xEF\xBF\xBF", "\xF4\x8F\xBF\xBF", "\xEE\x80\x80"}) {
    EXPECT_EQ(QuotedJson(s), "\"" + std::string(s) + "\"") << s;
  }
  EXPECT_EQ(QuotedJson("230 \xC2\xB0"
                       "C, 5 \xE2\x82\xAC"),
            "\"230 \xC2\xB0"
            "C, 5 \xE2\x82\xAC\"");
}

TEST(JsonWriterTest, DoublesAreShortestRoundTrip) {
  auto d = [](double v) { return Json([v](JsonWriter& w) { w.Double(v); }); };
  EXPECT_EQ(d(0.1), "0.1");
  EXPECT_EQ(d(21.7), "21.7");
  EXPECT_EQ(d(230.6221), "230.6221");
  EXPECT_EQ(d(1.0), "1");
  EXPECT_EQ(d(-2.5), "-2.5");
  EXPECT_EQ(d(0.0), "0");
  EXPECT_EQ(d(0.1 + 0.2), "0.30000000000000004");
  EXPECT_EQ(d(5e-324), "5e-324");
  EXPECT_EQ(d(1e300), "1e+300");
  EXPECT_EQ(d(std::numeric_limits<double>::max()), "1.7976931348623157e+308");

  std::mt19937_64 rng(99);
  for (int i = 0; i < 10000; ++i) {
    const double v = std::bit_cast<double>(rng());
    if (!std::isfinite(v)) continue;
    const std::string s = d(v);
    EXPECT_EQ(std::strtod(s.c_str(), nullptr), v) << s;
  }
}

// FormatDouble() has a shortcut for values of at most 15 digits; whatever
// path it takes, its text is std::to_chars's.
TEST(JsonWriterTest, FormatDoubleWritesWhatToCharsWrites) {
  auto check = [](double v) {
    char a[32], b[32];
    const std::string ours(a, FormatDouble(v, a));
    const std::string theirs(b, std::to_chars(b, b + sizeof b, v).ptr);
    EXPECT_EQ(ours, theirs) << std::hexfloat << v;
    return ours == theirs;
  };
  for (double v : {0.0,
                   -0.0,
                   1.0,
                   -1.0,
                   9.5,
                   10.0,
                   99999.0,
                   100000.0,
                   123456.0,
                   1200000.0,
                   999999999999999.0,
                   1e15,
                   1e14,
                   123456789012345.0,
                   12345678901234.5,
                   0.30000000000000004,
                   230.60000000000002,
                   5e-324,
                   1e300,
                   0.5,
                   0.001}) {
    check(v);
  }
  std::mt19937_64 rng(7);
  const double kPow10[] = {1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12};
  int mismatches = 0;
  for (int i = 0; i < 200000 && mismatches < 10; ++i) {
    // Decimals of a few digits (what meters give), their neighbours, and anything.
    const auto m = static_cast<double>(rng() % 100000000000ull);
    double v = m / kPow10[rng() % 13];
    if (rng() & 1) v = -v;
    for (double x : {v, std::nextafter(v, 1e300), std::nextafter(v, -1e300),
                     std::bit_cast<double>(rng()), static_cast<double>(static_cast<float>(v))}) {
      if (std::isfinite(x) && !check(x)) ++mismatches;
    }
  }
}

// The same comparison, systematically: every decimal of 0 to 6 places in
// runs at each magnitude of the shortcut's range (and just past it), each
// with its neighbouring doubles and its float rounding, the integers around
// each power of ten (where the layout turns scientific), and random bit
// patterns.
TEST(JsonWriterTest, FormatDoubleMatchesToCharsOverManyDecimals) {
  int mismatches = 0;
  auto check = [&](double v) {
    if (!std::isfinite(v) || mismatches >= 10) return;
    char a[32], b[32];
    const std::string ours(a, FormatDouble(v, a));
    const std::string theirs(b, std::to_chars(b, b + sizeof b, v).ptr);
    if (ours != theirs) {
      ++mismatches;
      ADD_FAILURE() << ours << " != " << theirs << " " << std::hexfloat << v;
    }
  };
  auto around = [&](double v) {
    for (double x : {v, -v, std::nextafter(v, 1e300), std::nextafter(v, -1e300),
                     static_cast<double>(static_cast<float>(v))}) {
      check(x);
    }
  };
  const double kPow10[] = {1,    10,   100,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                           1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
  for (int places = 0; places <= 6; ++places) {
    for (int magnitude = 0; magnitude + places <= 17; ++magnitude) {
      // 20000 consecutive decimals from 10^magnitude on, 0..places after the point.
      const auto start = static_cast<uint64_t>(kPow10[magnitude + places]);
      for (uint64_t m = start; m < start + 20000; ++m)
        around(static_cast<double>(m) / kPow10[places]);
    }
    for (uint64_t m = 0; m < 200000; ++m) around(static_cast<double>(m) / kPow10[places]);
  }
  for (int e = 1; e <= 22; ++e) {
    for (int d = -1000; d <= 1000; ++d) around(kPow10[e] + d);
  }
  std::mt19937_64 rng(2024);
  for (int i = 0; i < 300000; ++i) {
    check(std::bit_cast<double>(rng()));
    around(static_cast<double>(rng() % 1000000000000000ull) / kPow10[rng() % 16]);
  }
  EXPECT_EQ(mismatches, 0);
}

TEST(JsonWriterTest, NonFiniteDoublesAreNull) {
  EXPECT_EQ(Json([](JsonWriter& w) {
              w.BeginArray()
                  .Double(1.5)
                  .Double(std::numeric_limits<double>::quiet_NaN())
                  .Double(std::numeric_limits<double>::infinity())
                  .Double(-std::numeric_limits<double>::infinity())
                  .Double(2)
                  .EndArray();
            }),
            "[1.5,null,null,null,2]");
  EXPECT_EQ(Json([](JsonWriter& w) {
              w.BeginObject().Key("v").Double(std::nan("")).Key("w").Int(1).EndObject();
            }),
            R"({"v":null,"w":1})");
}

TEST(JsonWriterTest, IntegerExtremes) {
  EXPECT_EQ(Json([](JsonWriter& w) {
              w.BeginArray()
                  .Int(std::numeric_limits<int64_t>::min())
                  .Int(std::numeric_limits<int64_t>::max())
                  .Uint(std::numeric_limits<uint64_t>::max())
                  .Int(0)
                  .Int(-1)
                  .Uint(0)
                  .EndArray();
            }),
            "[-9223372036854775808,9223372036854775807,18446744073709551615,0,-1,0]");
}

// ---------------------------------------------------------------------------
// Thread names

std::string NameOf(const std::function<void()>& body) {
  std::string name;
  std::thread t([&] {
    body();
    char buf[64] = {};
    pthread_getname_np(pthread_self(), buf, sizeof buf);
    name = buf;
  });
  t.join();
  return name;
}

TEST(ThreadNameTest, AWorkerNamesItsThread) {
  EXPECT_EQ(NameOf([] { NameThisThread("store writer"); }), "store writer");
}

TEST(ThreadNameTest, ALongNameIsCutToWhatTheKernelKeeps) {
  EXPECT_EQ(NameOf([] { NameThisThread("poll a-long-bus-name-here"); }), "poll a-long-bus");
}

}  // namespace
}  // namespace tagrelay
