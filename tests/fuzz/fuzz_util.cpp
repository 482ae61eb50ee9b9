#include <cstdio>
#include <cstdlib>

#include "fuzz_input.h"

namespace tagrelay::fuzz {

void Fail(const char* what) {
  std::fprintf(stderr, "broken promise: %s\n", what);
  std::abort();
}

}  // namespace tagrelay::fuzz
