// ThreadCpuSeconds(): the CPU time of the calling thread alone (not the
// process's, not wall time), for the raw ceiling loops' own cost per operation.
//
// Threads: any.
#pragma once

#include <time.h>

namespace tagrelay::bench {

inline double ThreadCpuSeconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

}  // namespace tagrelay::bench
