#include "drivers/modbus/low_fd.h"

#include <fcntl.h>
#include <sys/select.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace tagrelay::modbus {

LowDescriptors& LowDescriptors::Instance() {
  static LowDescriptors* instance = new LowDescriptors();  // never destroyed: used until exit
  return *instance;
}

Status LowDescriptors::Reserve(size_t n) {
  MutexLock lock(&mu_);
  while (slots_.size() < n) {
    const int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Status::IOError(std::string("open /dev/null: ") + std::strerror(errno));
    if (fd >= FD_SETSIZE) {
      close(fd);
      return Status::ResourceExhausted("no free descriptor below " + std::to_string(FD_SETSIZE) +
                                       " to reserve for Modbus");
    }
    slots_.push_back(Slot{fd, false});
  }
  return Status::Ok();
}

Result<int> LowDescriptors::Adopt(int fd) {
  if (fd < FD_SETSIZE) return fd;
  {
    MutexLock lock(&mu_);
    for (Slot& s : slots_) {
      if (s.used) continue;
      if (dup3(fd, s.fd, O_CLOEXEC) < 0) break;
      s.used = true;
      close(fd);
      return s.fd;
    }
  }
  const int low = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  close(fd);
  if (low >= 0 && low < FD_SETSIZE) return low;
  if (low >= 0) close(low);
  return Status::ResourceExhausted("descriptor " + std::to_string(fd) +
                                   " is above what select() can wait on, and no lower one is "
                                   "free (raise the reserve or close files)");
}

void LowDescriptors::Release(int fd) {
  if (fd < 0) return;
  {
    MutexLock lock(&mu_);
    for (Slot& s : slots_) {
      if (s.fd != fd || !s.used) continue;
      const int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (null_fd >= 0 && dup3(null_fd, s.fd, O_CLOEXEC) >= 0) {
        close(null_fd);
        s.used = false;
        return;
      }
      // Could not turn it back into a placeholder: give the slot up.
      if (null_fd >= 0) close(null_fd);
      close(fd);
      s = slots_.back();
      slots_.pop_back();
      return;
    }
  }
  close(fd);
}

size_t LowDescriptors::reserved() const {
  MutexLock lock(&mu_);
  return slots_.size();
}

size_t LowDescriptors::in_use() const {
  MutexLock lock(&mu_);
  size_t n = 0;
  for (const Slot& s : slots_) n += s.used ? 1 : 0;
  return n;
}

}  // namespace tagrelay::modbus
