#include "agent/uplink/key_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

namespace tagrelay::uplink {
namespace {

constexpr size_t kMaxKeyBytes = 4096;

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

}  // namespace

Result<std::string> ReadKeyFile(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    return Status::InvalidArgument("key file " + path + ": " + std::strerror(errno));
  }
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    close(fd);
    return Status::IOError("key file " + path + ": " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return Status::InvalidArgument("key file " + path + ": not a regular file");
  }
  if ((st.st_mode & 077) != 0) {
    close(fd);
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return Status::InvalidArgument("key file " + path + " has mode " + mode +
                                   ": it must not be readable by group or others; run chmod 600 " +
                                   path);
  }
  std::string buf(kMaxKeyBytes + 1, '\0');
  size_t len = 0;
  for (;;) {
    const ssize_t n = read(fd, buf.data() + len, buf.size() - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      close(fd);
      return Status::IOError("key file " + path + ": " + std::strerror(err));
    }
    if (n == 0) break;
    len += static_cast<size_t>(n);
    if (len > kMaxKeyBytes) {
      close(fd);
      return Status::InvalidArgument("key file " + path + ": longer than 4096 bytes");
    }
  }
  close(fd);
  buf.resize(len);
  size_t b = 0, e = buf.size();
  while (b < e && IsSpace(buf[b])) ++b;
  while (e > b && IsSpace(buf[e - 1])) --e;
  std::string key = buf.substr(b, e - b);
  std::fill(buf.begin(), buf.end(), '\0');
  if (key.empty()) return Status::InvalidArgument("key file " + path + " is empty");
  if (key.find_first_of("\r\n") != std::string::npos) {
    return Status::InvalidArgument("key file " + path + " holds more than one line");
  }
  return key;
}

}  // namespace tagrelay::uplink
