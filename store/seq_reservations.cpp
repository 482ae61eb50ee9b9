#include "store/seq_reservations.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <sstream>

namespace tagrelay::store {
namespace {

constexpr const char* kHeader = "tagrelay-sequence-marks 1";
constexpr size_t kMaxFileBytes = 1 << 20;

Status WriteAll(int fd, const std::string& data, const std::string& path) {
  size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::IOError("write " + path + ": " + std::strerror(errno));
    off += static_cast<size_t>(n);
  }
  return Status::Ok();
}

std::string DirOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

SequenceReservations SequenceReservations::Empty(const std::string& path, int64_t block) {
  return SequenceReservations(path, block);
}

Result<SequenceReservations> SequenceReservations::Load(const std::string& path, int64_t block) {
  SequenceReservations r(path, block);
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return r;
    return Status::IOError("read " + path + ": " + std::strerror(errno));
  }
  std::string text(kMaxFileBytes + 1, '\0');
  size_t len = 0;
  while (len < text.size()) {
    const ssize_t n = read(fd, text.data() + len, text.size() - len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    len += static_cast<size_t>(n);
  }
  close(fd);
  if (len > kMaxFileBytes) return Status::Corruption(path + ": larger than 1 MiB");
  text.resize(len);
  std::istringstream lines(text);
  std::string line;
  if (!std::getline(lines, line) || line != kHeader) {
    return Status::Corruption(path + ": not a sequence marks file (bad first line)");
  }
  int n = 1;
  while (std::getline(lines, line)) {
    ++n;
    if (line.empty()) continue;
    const size_t space = line.rfind(' ');
    int64_t mark = 0;
    if (space == std::string::npos || space == 0) {
      return Status::Corruption(path + ":" + std::to_string(n) + ": expected '<key> <mark>'");
    }
    const char* begin = line.data() + space + 1;
    const char* end = line.data() + line.size();
    auto [ptr, ec] = std::from_chars(begin, end, mark);
    if (ec != std::errc() || ptr != end || mark < 1) {
      return Status::Corruption(path + ":" + std::to_string(n) + ": bad mark");
    }
    r.marks_[line.substr(0, space)] = mark;
  }
  return r;
}

int64_t SequenceReservations::Mark(const std::string& key) const {
  auto it = marks_.find(key);
  return it == marks_.end() ? 1 : it->second;
}

Status SequenceReservations::Cover(const std::map<std::string, int64_t>& last_by_key) {
  std::map<std::string, int64_t> next = marks_;
  bool changed = false;
  for (const auto& [key, last] : last_by_key) {
    int64_t& mark = next[key];
    if (last >= mark) {
      mark = last + 1 + block_;
      changed = true;
    }
  }
  if (!changed) return Status::Ok();
  TR_RETURN_IF_ERROR(Write(next));
  marks_ = std::move(next);  // only what is on disk counts
  return Status::Ok();
}

Status SequenceReservations::Write(const std::map<std::string, int64_t>& marks) const {
  std::string text = std::string(kHeader) + "\n";
  for (const auto& [key, mark] : marks) text += key + " " + std::to_string(mark) + "\n";
  const std::string tmp = path_ + ".new";
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) return Status::IOError("create " + tmp + ": " + std::strerror(errno));
  Status s = WriteAll(fd, text, tmp);
  if (s.ok() && fsync(fd) != 0) s = Status::IOError("fsync " + tmp + ": " + std::strerror(errno));
  close(fd);
  if (s.ok() && rename(tmp.c_str(), path_.c_str()) != 0) {
    s = Status::IOError("rename " + tmp + ": " + std::strerror(errno));
  }
  if (!s.ok()) {
    unlink(tmp.c_str());
    return s;
  }
  const int dir = open(DirOf(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    fsync(dir);
    close(dir);
  }
  return Status::Ok();
}

}  // namespace tagrelay::store
