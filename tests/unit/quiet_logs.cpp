// Unit tests run with logging switched off, so that their output is the test
// report; TAGRELAY_TEST_LOGS=1 shows the agent's log lines again.
#include <gtest/gtest.h>

#include <cstdlib>

#include "agent/core/log.h"

namespace tagrelay {
namespace {

class QuietLogs : public ::testing::Environment {
 public:
  void SetUp() override {
    if (std::getenv("TAGRELAY_TEST_LOGS") == nullptr) SetLogSink([](const LogEvent&) {});
  }
};

[[maybe_unused]] ::testing::Environment* const kQuietLogs =
    ::testing::AddGlobalTestEnvironment(new QuietLogs);

}  // namespace
}  // namespace tagrelay
