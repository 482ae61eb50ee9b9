#include "fakes/fault_vfs.h"

#include <sqlite3.h>

#include <cstring>
#include <mutex>

namespace tagrelay::testing {
namespace {

struct Fault {
  std::atomic<bool> armed{false};
  std::atomic<int> op{0};
  std::atomic<int> countdown{0};
  std::atomic<bool> forever{false};
  std::atomic<int> code{SQLITE_IOERR};
  std::atomic<int> faults{0};
};
Fault g_fault;
sqlite3_vfs* g_real = nullptr;
sqlite3_vfs g_vfs;

// Returns the code to fail with, or SQLITE_OK to go ahead.
int Check(FaultVfs::Op op) {
  if (!g_fault.armed.load() || g_fault.op.load() != static_cast<int>(op)) return SQLITE_OK;
  if (g_fault.countdown.load() > 1) {
    --g_fault.countdown;
    return SQLITE_OK;
  }
  if (!g_fault.forever.load()) g_fault.armed = false;
  ++g_fault.faults;
  return g_fault.code.load();
}

struct File {
  sqlite3_file base;
  sqlite3_file* real;
};

sqlite3_file* Real(sqlite3_file* f) { return reinterpret_cast<File*>(f)->real; }

int Close(sqlite3_file* f) { return Real(f)->pMethods->xClose(Real(f)); }
int Read(sqlite3_file* f, void* buf, int n, sqlite3_int64 off) {
  return Real(f)->pMethods->xRead(Real(f), buf, n, off);
}
int Write(sqlite3_file* f, const void* buf, int n, sqlite3_int64 off) {
  if (int rc = Check(FaultVfs::Op::kWrite); rc != SQLITE_OK) return rc;
  return Real(f)->pMethods->xWrite(Real(f), buf, n, off);
}
int Truncate(sqlite3_file* f, sqlite3_int64 size) {
  return Real(f)->pMethods->xTruncate(Real(f), size);
}
int Sync(sqlite3_file* f, int flags) {
  if (int rc = Check(FaultVfs::Op::kSync); rc != SQLITE_OK) return rc;
  return Real(f)->pMethods->xSync(Real(f), flags);
}
int FileSize(sqlite3_file* f, sqlite3_int64* size) {
  return Real(f)->pMethods->xFileSize(Real(f), size);
}
int Lock(sqlite3_file* f, int l) { return Real(f)->pMethods->xLock(Real(f), l); }
int Unlock(sqlite3_file* f, int l) { return Real(f)->pMethods->xUnlock(Real(f), l); }
int CheckReservedLock(sqlite3_file* f, int* out) {
  return Real(f)->pMethods->xCheckReservedLock(Real(f), out);
}
int FileControl(sqlite3_file* f, int op, void* arg) {
  return Real(f)->pMethods->xFileControl(Real(f), op, arg);
}
int SectorSize(sqlite3_file* f) { return Real(f)->pMethods->xSectorSize(Real(f)); }
int DeviceCharacteristics(sqlite3_file* f) {
  return Real(f)->pMethods->xDeviceCharacteristics(Real(f));
}
int ShmMap(sqlite3_file* f, int region, int size, int extend, void volatile** out) {
  return Real(f)->pMethods->xShmMap(Real(f), region, size, extend, out);
}
int ShmLock(sqlite3_file* f, int offset, int n, int flags) {
  return Real(f)->pMethods->xShmLock(Real(f), offset, n, flags);
}
void ShmBarrier(sqlite3_file* f) { Real(f)->pMethods->xShmBarrier(Real(f)); }
int ShmUnmap(sqlite3_file* f, int del) { return Real(f)->pMethods->xShmUnmap(Real(f), del); }
int Fetch(sqlite3_file* f, sqlite3_int64 off, int n, void** out) {
  return Real(f)->pMethods->xFetch(Real(f), off, n, out);
}
int Unfetch(sqlite3_file* f, sqlite3_int64 off, void* p) {
  return Real(f)->pMethods->xUnfetch(Real(f), off, p);
}

const sqlite3_io_methods kMethods = {
    3,
    Close,
    Read,
    Write,
    Truncate,
    Sync,
    FileSize,
    Lock,
    Unlock,
    CheckReservedLock,
    FileControl,
    SectorSize,
    DeviceCharacteristics,
    ShmMap,
    ShmLock,
    ShmBarrier,
    ShmUnmap,
    Fetch,
    Unfetch,
};

int Open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* file, int flags, int* out_flags) {
  File* f = reinterpret_cast<File*>(file);
  f->real = reinterpret_cast<sqlite3_file*>(f + 1);
  std::memset(f->real, 0, static_cast<size_t>(g_real->szOsFile));
  const int rc = g_real->xOpen(g_real, name, f->real, flags, out_flags);
  f->base.pMethods = f->real->pMethods != nullptr ? &kMethods : nullptr;
  return rc;
}

}  // namespace

void FaultVfs::Register() {
  static std::once_flag once;
  std::call_once(once, [] {
    g_real = sqlite3_vfs_find(nullptr);
    g_vfs = *g_real;
    g_vfs.zName = kName;
    g_vfs.szOsFile = static_cast<int>(sizeof(File)) + g_real->szOsFile;
    g_vfs.xOpen = Open;
    sqlite3_vfs_register(&g_vfs, /*makeDflt=*/0);
  });
}

void FaultVfs::Arm(Op op, int nth, Mode mode, int code) {
  g_fault.armed = false;
  g_fault.op = static_cast<int>(op);
  g_fault.countdown = nth;
  g_fault.forever = mode == Mode::kForever;
  g_fault.code = code;
  g_fault.armed = true;
}

void FaultVfs::Disarm() { g_fault.armed = false; }

int FaultVfs::faults() { return g_fault.faults.load(); }

}  // namespace tagrelay::testing
