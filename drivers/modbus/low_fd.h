// LowDescriptors: keeps the descriptors that libmodbus waits on below
// FD_SETSIZE (1024).
//
// libmodbus 3.1.6 waits for replies with select(), and a build with
// _FORTIFY_SOURCE (Debian's) aborts the process when a descriptor of 1024 or
// more is put in an fd_set. A busy agent may well have more files open than
// that. So every Modbus descriptor goes through Adopt(): one that is already
// low is kept; a high one is moved onto a placeholder slot reserved early
// (dup3 replaces the placeholder atomically, so no other thread can take the
// slot in between), or else onto the lowest free descriptor if that is low.
// Only if none is left does Adopt() fail, with an error, never an abort.
//
// Promise: Adopt() returns a descriptor < FD_SETSIZE or an error, and always
// consumes its argument. Release() closes what Adopt() returned and turns a
// reserved slot back into a placeholder.
//
// Threads: every method is safe from any thread (one process-wide table).
#pragma once

#include <cstddef>
#include <vector>

#include "agent/core/mutex.h"
#include "agent/core/status.h"

namespace tagrelay::modbus {

class LowDescriptors {
 public:
  // The process-wide instance: descriptors are a process-wide resource.
  static LowDescriptors& Instance();

  // Opens placeholders until `n` slots below FD_SETSIZE are reserved. Call it
  // at start, before the process has many files open.
  Status Reserve(size_t n);

  Result<int> Adopt(int fd);
  void Release(int fd);

  size_t reserved() const;
  size_t in_use() const;

 private:
  struct Slot {
    int fd;
    bool used;
  };
  mutable Mutex mu_;
  std::vector<Slot> slots_ TR_GUARDED_BY(mu_);
};

}  // namespace tagrelay::modbus
