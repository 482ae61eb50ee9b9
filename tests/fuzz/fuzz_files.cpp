// Files the agent reads from disk: an API key file and the sequence marks
// file, with any content. A key is one non-empty line without line breaks or
// nothing; a marks file loads or is Corruption.
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <string>

#include "agent/uplink/key_file.h"
#include "fuzz_input.h"
#include "store/seq_reservations.h"

namespace {

std::string WriteTemp(std::string_view content) {
  static const std::string path = "/tmp/tagrelay-fuzz-" + std::to_string(getpid());
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) tagrelay::fuzz::Fail("cannot write the temporary file");
  if (write(fd, content.data(), content.size()) != static_cast<ssize_t>(content.size())) {
    tagrelay::fuzz::Fail("cannot write the temporary file");
  }
  close(fd);
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tagrelay;
  const std::string_view content(reinterpret_cast<const char*>(data), size);
  const std::string path = WriteTemp(content);
  Result<std::string> key = uplink::ReadKeyFile(path);
  if (key.ok()) {
    if (key->empty() || key->size() > 4096 || key->find_first_of("\r\n") != std::string::npos) {
      fuzz::Fail("a key that is not one non-empty line");
    }
    if (content.find(*key) == std::string_view::npos) fuzz::Fail("a key that is not in the file");
  } else if (key.status().message().find(path) == std::string::npos) {
    fuzz::Fail("a refused key file whose error does not name it");
  }
  Result<store::SequenceReservations> marks = store::SequenceReservations::Load(path, 1000);
  if (!marks.ok() && marks.status().code() != StatusCode::kCorruption) {
    fuzz::Fail("a bad marks file that is not Corruption");
  }
  return 0;
}
