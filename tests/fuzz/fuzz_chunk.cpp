// The store's chunk decoder: stored bytes are input like any other (a damaged
// medium, a bad sector). Decoding either yields exactly `count` readings or
// Corruption with nothing appended, and what decodes encodes back the same.
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_input.h"
#include "store/chunk_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tagrelay;
  fuzz::FuzzInput in(data, size);
  const int64_t count = in.Take<uint8_t>();
  std::vector<store::ChunkReading> out;
  Status s = store::DecodeChunk(in.Rest(), count, out);
  if (!s.ok()) {
    if (s.code() != StatusCode::kCorruption) fuzz::Fail("a decode error that is not Corruption");
    if (!out.empty()) fuzz::Fail("readings appended from a bad chunk");
    return 0;
  }
  if (static_cast<int64_t>(out.size()) != count) fuzz::Fail("a chunk with another count");
  std::vector<Reading> readings;
  std::vector<int64_t> ids;
  for (const store::ChunkReading& c : out) {
    readings.push_back(Reading{"t", c.ts_ms, c.value, c.quality, c.error});
    ids.push_back(c.tag_id);
  }
  std::string again;
  store::EncodeChunk(readings, ids, &again);
  std::vector<store::ChunkReading> back;
  if (!store::DecodeChunk(again, count, back).ok())
    fuzz::Fail("a re-encoded chunk does not decode");
  for (size_t i = 0; i < back.size(); ++i) {
    const bool same_value = back[i].value == out[i].value ||
                            (std::holds_alternative<double>(out[i].value) &&
                             std::get<double>(out[i].value) != std::get<double>(out[i].value));
    if (back[i].tag_id != out[i].tag_id || back[i].ts_ms != out[i].ts_ms || !same_value ||
        back[i].quality != out[i].quality || back[i].error != out[i].error) {
      fuzz::Fail("a chunk does not survive encoding");
    }
  }
  return 0;
}
