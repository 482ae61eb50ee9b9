#include "agent/core/clock.h"

namespace tagrelay {

int64_t SystemClock::wall_ms() const {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

const Clock& RealClock() {
  static const SystemClock clock;
  return clock;
}

}  // namespace tagrelay
