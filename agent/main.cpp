#include <malloc.h>

#include <cstdlib>

#include "agent/cli.h"

int main(int argc, char** argv) {
#ifdef M_ARENA_MAX
  // glibc gives each thread that allocates its own malloc arena, up to 8 per
  // core; with a poller thread per bus that is many partly used heaps. Two
  // arenas keep the resident memory small (threads allocate little and rarely
  // contend). MALLOC_ARENA_MAX in the environment still decides when set.
  if (std::getenv("MALLOC_ARENA_MAX") == nullptr) mallopt(M_ARENA_MAX, 2);
#endif
  return tagrelay::RunCli(argc, argv);
}
