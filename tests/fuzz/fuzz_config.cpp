// The config parser: any text yields a config or errors, never a crash; every
// error has a file name and a position inside the text (or none).
#include <algorithm>
#include <cstdint>
#include <string>

#include "agent/config.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tagrelay;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const ConfigResult r = ParseConfig(text, "fuzz.toml");
  if (r.config.has_value() != r.errors.empty()) fuzz::Fail("a config and errors, or neither");
  const int lines = static_cast<int>(std::count(text.begin(), text.end(), '\n')) + 1;
  for (const ConfigError& e : r.errors) {
    if (e.file != "fuzz.toml") fuzz::Fail("an error without the file name");
    if (e.line < 0 || e.line > lines + 1) fuzz::Fail("an error past the end of the text");
    if (e.message.empty()) fuzz::Fail("an error without a message");
  }
  return 0;
}
