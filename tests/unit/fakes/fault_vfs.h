// FaultVfs: an SQLite VFS for tests that wraps the default one and makes
// writes or syncs fail on demand, as a full disk or a dying medium would.
//
// Register() once, then open the database with vfs = FaultVfs::kName. A fault
// is armed with Arm(): the Nth write (or sync) from now and, in kForever mode,
// every one after it fails with the given SQLite code (SQLITE_FULL,
// SQLITE_IOERR_WRITE, ...) until Disarm().
//
// Threads: Arm/Disarm/counters are atomic and may be called from the test
// while a store writer thread uses the VFS.
#pragma once

#include <atomic>

namespace tagrelay::testing {

class FaultVfs {
 public:
  static constexpr const char* kName = "tagrelay-fault";
  enum class Op { kWrite, kSync };
  enum class Mode { kOnce, kForever };

  static void Register();
  // The `nth` (1-based) operation `op` from now fails with `code`.
  static void Arm(Op op, int nth, Mode mode, int code);
  static void Disarm();
  static int faults();  // how many operations failed since Register()
};

}  // namespace tagrelay::testing
