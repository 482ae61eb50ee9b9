// Logging: the rate limiter of repeated events, the process-wide log with it,
// and the fields of a journal entry.
#include "agent/core/log.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <string>
#include <vector>

#include "agent/systemd.h"

namespace tagrelay {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

const LogEvent kTimeout{LogLevel::kWarning, "modbus", "meter-3", {}, "read failed: timeout"};

TEST(LogRateLimiterTest, LetsABurstThroughThenSummarises) {
  FakeClock clock;
  LogRateLimiter limiter(LogRateLimit{3, milliseconds(60000), 16}, clock);
  std::vector<SuppressedLogs> ended;
  int passed = 0;
  for (int i = 0; i < 50; ++i) passed += limiter.Admit(kTimeout, &ended) ? 1 : 0;
  EXPECT_EQ(passed, 3);
  EXPECT_TRUE(ended.empty());

  // Another device's identical message is another event.
  LogEvent other = kTimeout;
  other.device = "meter-4";
  EXPECT_TRUE(limiter.Admit(other, &ended));

  clock.Advance(seconds(59));
  limiter.Expire(&ended);
  EXPECT_TRUE(ended.empty()) << "the window is not over yet";
  clock.Advance(seconds(1));
  limiter.Expire(&ended);
  ASSERT_EQ(ended.size(), 1u) << "meter-4 suppressed nothing, so it has no summary";
  EXPECT_EQ(ended[0].count, 47u);
  EXPECT_EQ(ended[0].device, "meter-3");
  std::string text;
  const LogEvent summary = ended[0].Summary(&text);
  EXPECT_EQ(summary.level, LogLevel::kWarning);
  EXPECT_EQ(FormatLogLine(summary),
            "warning modbus device=meter-3: read failed: timeout (47 more like this suppressed "
            "in the last 60 s)");
  // A new window lets a burst through again.
  ended.clear();
  EXPECT_TRUE(limiter.Admit(kTimeout, &ended));
}

TEST(LogRateLimiterTest, AnEventAfterTheWindowBringsTheSummary) {
  FakeClock clock;
  LogRateLimiter limiter(LogRateLimit{1, milliseconds(10000), 16}, clock);
  std::vector<SuppressedLogs> ended;
  EXPECT_TRUE(limiter.Admit(kTimeout, &ended));
  EXPECT_FALSE(limiter.Admit(kTimeout, &ended));
  clock.Advance(seconds(10));
  EXPECT_TRUE(limiter.Admit(kTimeout, &ended));
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_EQ(ended[0].count, 1u);
}

TEST(LogRateLimiterTest, TracksABoundedNumberOfEvents) {
  FakeClock clock;
  LogRateLimiter limiter(LogRateLimit{1, milliseconds(60000), 4}, clock);
  std::vector<SuppressedLogs> ended;
  std::vector<std::string> messages;
  for (int i = 0; i < 10; ++i) messages.push_back("message " + std::to_string(i));
  for (int i = 0; i < 10; ++i) {
    LogEvent e = kTimeout;
    e.message = messages[static_cast<size_t>(i)];
    EXPECT_TRUE(limiter.Admit(e, &ended));
    EXPECT_FALSE(limiter.Admit(e, &ended));
    clock.Advance(milliseconds(1));
  }
  EXPECT_EQ(limiter.tracked(), 4u);
  ASSERT_EQ(ended.size(), 6u) << "each event pushed out is summarised";
  EXPECT_EQ(ended[0].message, "message 0");
}

TEST(LogRateLimiterTest, ExpireSaysWhenTheNextWindowEnds) {
  FakeClock clock;
  LogRateLimiter limiter(LogRateLimit{1, milliseconds(60000), 16}, clock);
  std::vector<SuppressedLogs> ended;
  const MonoTime t0 = clock.mono();
  EXPECT_EQ(limiter.Expire(&ended), t0 + seconds(60)) << "nothing tracked: a window from now";

  EXPECT_TRUE(limiter.Admit(kTimeout, &ended));
  EXPECT_FALSE(limiter.Admit(kTimeout, &ended));
  clock.Advance(seconds(10));
  LogEvent other = kTimeout;
  other.device = "meter-4";
  EXPECT_TRUE(limiter.Admit(other, &ended));
  EXPECT_EQ(limiter.Expire(&ended), t0 + seconds(60)) << "the first run's window";

  clock.Advance(seconds(50));
  EXPECT_EQ(limiter.Expire(&ended), t0 + seconds(70)) << "then the second's";
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_EQ(ended[0].device, "meter-3");
  clock.Advance(seconds(10));
  EXPECT_EQ(limiter.Expire(&ended), clock.mono() + seconds(60));
  EXPECT_EQ(limiter.tracked(), 0u);
  EXPECT_EQ(ended.size(), 1u) << "meter-4 suppressed nothing";

  // A new run: its own window.
  EXPECT_TRUE(limiter.Admit(kTimeout, &ended));
  clock.Advance(seconds(30));
  EXPECT_EQ(limiter.Expire(&ended), clock.mono() + seconds(30));
}

TEST(LogTest, FlushSaysWhenToFlushNext) {
  SetLogSink([](const LogEvent&) {});
  SetLogRateLimit(std::nullopt);
  EXPECT_EQ(FlushSuppressedLogs(), std::nullopt) << "not rate-limited: nothing to flush, ever";
  FakeClock clock;
  SetLogRateLimit(LogRateLimit{2, milliseconds(1000), 16}, clock);
  const MonoTime t0 = clock.mono();
  EXPECT_EQ(FlushSuppressedLogs(), t0 + seconds(1));
  clock.Advance(milliseconds(300));
  Log(kTimeout);
  clock.Advance(milliseconds(300));
  EXPECT_EQ(FlushSuppressedLogs(), t0 + milliseconds(1300));
  SetLogRateLimit(std::nullopt);
}

TEST(LogTest, TheProcessLogIsRateLimitedWhenAsked) {
  std::vector<std::string> lines;
  SetLogSink([&](const LogEvent& e) { lines.push_back(FormatLogLine(e)); });
  FakeClock clock;
  SetLogRateLimit(LogRateLimit{2, milliseconds(1000), 16}, clock);
  for (int i = 0; i < 10; ++i) Log(kTimeout);
  Log(LogEvent{LogLevel::kError, "uplink", {}, {}, "refused", "hv"});
  EXPECT_EQ(lines.size(), 3u);
  clock.Advance(seconds(1));
  FlushSuppressedLogs();
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[2], "error uplink alarm=hv: refused");
  EXPECT_NE(lines[3].find("(8 more like this suppressed"), std::string::npos) << lines[3];
  SetLogRateLimit(std::nullopt);
  for (int i = 0; i < 10; ++i) Log(kTimeout);
  EXPECT_EQ(lines.size(), 14u);
  SetLogSink([](const LogEvent&) {});
}

TEST(JournalTest, StructuredFields) {
  const std::vector<std::string> f =
      JournalFields(LogEvent{LogLevel::kError, "rules", "meter-3", "voltage_l1", "high", "hv-1"});
  const std::vector<std::string> expected = {
      "MESSAGE=rules device=meter-3 tag=voltage_l1 alarm=hv-1: high",
      "PRIORITY=3",
      "SYSLOG_IDENTIFIER=tagrelay",
      "TAGRELAY_COMPONENT=rules",
      "DEVICE=meter-3",
      "TAG=voltage_l1",
      "ALARM=hv-1"};
  EXPECT_EQ(f, expected);
  const std::vector<std::string> plain =
      JournalFields(LogEvent{LogLevel::kInfo, "agent", {}, {}, "running"});
  EXPECT_EQ(plain.size(), 4u);
  EXPECT_EQ(plain[1], "PRIORITY=6");
}

TEST(JournalTest, StderrIsTheJournalOnlyWhenJournalStreamNamesIt) {
  unsetenv("JOURNAL_STREAM");
  EXPECT_FALSE(StderrIsJournal());
  struct stat st {};
  ASSERT_EQ(fstat(2, &st), 0);
  const std::string mine = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
  setenv("JOURNAL_STREAM", mine.c_str(), 1);
  EXPECT_TRUE(StderrIsJournal());
  setenv("JOURNAL_STREAM", (std::to_string(st.st_dev) + ":1").c_str(), 1);
  EXPECT_FALSE(StderrIsJournal()) << "a child's stderr was redirected elsewhere";
  unsetenv("JOURNAL_STREAM");
}

}  // namespace
}  // namespace tagrelay
