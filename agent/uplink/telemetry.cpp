#include "agent/uplink/telemetry.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstring>
#include <memory>
#include <type_traits>

#include "agent/core/json_writer.h"
#include "store/chunk_codec.h"

namespace tagrelay::uplink {

std::string_view StreamName(Stream s) {
  switch (s) {
    case Stream::kTelemetry: return "telemetry";
    case Stream::kAlarms: return store::kStreamAlarms;
    case Stream::kCounters: return store::kStreamCounters;
    case Stream::kEvents: return store::kStreamEvents;
  }
  return "telemetry";
}

std::optional<Stream> ParseStream(std::string_view name) {
  for (Stream s : {Stream::kTelemetry, Stream::kAlarms, Stream::kCounters, Stream::kEvents}) {
    if (name == StreamName(s)) return s;
  }
  return std::nullopt;
}

std::string StatusTopic(std::string_view prefix, std::string_view gateway) {
  std::string t(prefix);
  t += '/';
  t += gateway;
  t += "/status";
  return t;
}

std::string EventsTopic(std::string_view prefix, std::string_view gateway) {
  std::string t(prefix);
  t += '/';
  t += gateway;
  t += "/events";
  return t;
}

std::string DeviceTopic(std::string_view prefix, std::string_view gateway, std::string_view device,
                        std::string_view kind) {
  std::string t(prefix);
  t += '/';
  t += gateway;
  t += '/';
  t += device;
  t += '/';
  t += kind;
  return t;
}

namespace {

void WriteItem(JsonWriter& w, const store::StoredReading& r) {
  w.BeginObject();
  w.Key("tag").String(r.tag);
  w.Key("ts").Int(r.ts_ms);
  if (!std::holds_alternative<std::monostate>(r.value)) {
    w.Key("v");
    WriteValue(w, r.value);
  }
  w.Key("q").String(QualityName(r.quality));
  if (r.quality != Quality::kGood && !r.error.empty()) w.Key("err").String(r.error);
  w.EndObject();
}

// A stored record is already a JSON object: it goes into the batch as it is.
void WriteItem(JsonWriter&, std::string* body, const store::StoredEvent& e) { *body += e.body; }
void WriteItem(JsonWriter& w, std::string*, const store::StoredReading& r) { WriteItem(w, r); }

// Writes one batch: the header, then as many items as fit in max_bytes (at
// least one). Returns how many items it took.
template <typename Item>
size_t EncodeBatch(std::string_view schema, std::string_view array_key, const BatchHeader& h,
                   std::span<const Item> items, size_t max_bytes, std::string* out) {
  out->clear();
  JsonWriter w(out);
  w.BeginObject();
  w.Key("schema").String(schema);
  w.Key("gateway").String(h.gateway);
  if (!h.device.empty()) w.Key("device").String(h.device);
  w.Key("seq_first").Int(items.front().seq);
  // seq_last is not known until the bound decides how many items fit: write
  // the items into a body first, counting what the rest of the header will take.
  const size_t tail = std::string_view(",\"seq_last\":").size() +
                      std::string_view(",\"historical\":").size() + (h.historical ? 4 : 5) +
                      std::string_view(",\"\":[]}").size() + array_key.size();
  std::string body;
  body.reserve(std::min<size_t>(max_bytes, 96 * items.size()));
  size_t n = 0;
  for (const Item& item : items) {
    const size_t before = body.size();
    if (n > 0) body += ',';
    JsonWriter iw(&body);
    WriteItem(iw, &body, item);
    const size_t total = out->size() + tail + std::to_string(item.seq).size() + body.size();
    if (n > 0 && total > max_bytes) {
      body.resize(before);
      break;
    }
    ++n;
  }
  w.Key("seq_last").Int(items[n - 1].seq);
  w.Key("historical").Bool(h.historical);
  w.Key(array_key);
  *out += '[';
  *out += body;
  *out += "]}";
  return n;
}

// Writes the readings of stored chunks as WriteItem() writes the
// StoredReadings they decode to. Within a batch the tags of a device repeat
// and readings of one poll share their timestamp: each tag's opening
// (`,{"tag":"name","ts":`) is kept (a small cache by tag id, for this batch)
// and a timestamp equal to the previous one is copied. A chunk's readings are
// written into a scratch buffer by pointer and appended to the payload in
// one piece; a text value or an error is escaped straight into the payload.
class ChunkItemWriter {
 public:
  explicit ChunkItemWriter(const store::TagNames& names) : names_(names) {}

  // Appends the readings of a chunk (as the reader checked it); `comma`: the
  // first of them follows another reading.
  void AppendChunk(std::string* out, const store::StoredChunk& c, bool comma) {
    store::ChunkCursor in(c.data, c.count);
    store::ChunkItem r;
    // Room for the chunk's readings as they usually are (for 256 at most).
    char* p = Room(out, nullptr,
                   kItemRoom + static_cast<size_t>(std::clamp<int64_t>(c.count, 0, 256)) * 64);
    while (in.Next(&r)) {
      const Opening tag = TagOpening(r.tag_id);
      p = Room(out, p, tag.size + kItemRoom);
      p = Copy(p, tag.text + (comma ? 0 : 1), tag.size - (comma ? 0 : 1));
      comma = true;
      if (r.ts_ms != last_ts_ || ts_len_ == 0) {
        last_ts_ = r.ts_ms;
        ts_len_ = static_cast<size_t>(std::to_chars(ts_, ts_ + 24, r.ts_ms).ptr - ts_);
      }
      p = Copy(p, ts_, ts_len_);
      using Kind = store::ChunkItem::Kind;
      if (r.kind != Kind::kNone) p = Put(p, ",\"v\":");
      switch (r.kind) {
        case Kind::kNone: break;
        case Kind::kFalse: p = Put(p, "false"); break;
        case Kind::kTrue: p = Put(p, "true"); break;
        case Kind::kInt: p = std::to_chars(p, p + 24, r.i).ptr; break;
        case Kind::kUint: p = std::to_chars(p, p + 24, r.u).ptr; break;
        case Kind::kDouble: p = std::isfinite(r.d) ? FormatDouble(r.d, p) : Put(p, "null"); break;
        case Kind::kText:
          Flush(out, p);
          AppendJsonString(out, r.text);
          p = Room(out, nullptr, kItemRoom);
          break;
      }
      if (r.quality != Quality::kGood && !r.error.empty()) {
        p = r.quality == Quality::kBad ? Put(p, ",\"q\":\"bad\",\"err\":")
                                       : Put(p, ",\"q\":\"uncertain\",\"err\":");
        Flush(out, p);
        AppendJsonString(out, r.error);
        p = Room(out, nullptr, kItemRoom);
        *p++ = '}';
        continue;
      }
      switch (r.quality) {
        case Quality::kGood: p = Put(p, ",\"q\":\"good\"}"); break;
        case Quality::kBad: p = Put(p, ",\"q\":\"bad\"}"); break;
        case Quality::kUncertain: p = Put(p, ",\"q\":\"uncertain\"}"); break;
      }
    }
    Flush(out, p);
  }

 private:
  // Room for a reading besides its tag's opening: the timestamp, ",\"v\":", a
  // number, the quality, and the 15 bytes Copy() may write past its end.
  static constexpr size_t kItemRoom = 128;
  static constexpr size_t kPad = 16;  // readable bytes after every Copy() source
  static constexpr size_t kSlots = 64;

  struct Opening {
    const char* text;  // followed by kPad readable bytes
    size_t size;
  };
  struct Slot {
    int64_t id = 0;  // 0: empty (tag ids start at 1)
    size_t offset = 0;
    size_t size = 0;
  };

  // Copies n bytes in blocks of 16: reads up to 15 bytes past src + n and
  // writes up to 15 past p + n (both have the room).
  static char* Copy(char* p, const char* src, size_t n) {
    for (size_t i = 0; i < n; i += 16) std::memcpy(p + i, src + i, 16);
    return p + n;
  }
  template <size_t N>
  static char* Put(char* p, const char (&s)[N]) {
    std::memcpy(p, s, N - 1);
    return p + N - 1;
  }

  // Returns where to write (p, or the start of the scratch when p is
  // nullptr) with at least `need` bytes of room, appending what the scratch
  // holds to `out` first if it has not. The scratch grows to what a chunk
  // asks for (a small batch does not pay for a large buffer).
  char* Room(std::string* out, char* p, size_t need) {
    if (p == nullptr) p = scratch_.get();
    const auto used = static_cast<size_t>(p - scratch_.get());
    if (scratch_size_ - used >= need) return p;
    if (used > 0) out->append(scratch_.get(), used);
    if (scratch_size_ < need) {
      scratch_size_ = need;
      scratch_ = std::make_unique_for_overwrite<char[]>(need);
    }
    return scratch_.get();
  }
  void Flush(std::string* out, char* p) {
    out->append(scratch_.get(), static_cast<size_t>(p - scratch_.get()));
  }

  Opening TagOpening(int64_t id) {
    Slot& s = slots_[static_cast<uint64_t>(id) % kSlots];
    if (s.id != id) {
      static const std::string kUnknown;  // not reached: the reader knows every tag it hands out
      const std::string* name = names_.Find(id);
      if (openings_.size() > 64 * 1024) {  // many long names: start over rather than grow
        openings_.clear();
        slots_ = {};
      }
      s.id = id;
      s.offset = openings_.size();
      openings_ += ",{\"tag\":";
      AppendJsonString(&openings_, name != nullptr ? *name : kUnknown);
      openings_ += ",\"ts\":";
      s.size = openings_.size() - s.offset;
      openings_.append(kPad, '\0');
    }
    return Opening{openings_.data() + s.offset, s.size};
  }

  const store::TagNames& names_;
  std::array<Slot, kSlots> slots_{};
  std::string openings_;
  std::unique_ptr<char[]> scratch_;
  size_t scratch_size_ = 0;
  int64_t last_ts_ = 0;
  char ts_[24 + kPad] = {};
  size_t ts_len_ = 0;
};

// The batch header as EncodeBatch() writes it, up to "seq_first" (with
// `seq_last` < 0) or up to the opening of the readings array.
void TelemetryHead(const BatchHeader& h, int64_t seq_first, int64_t seq_last, std::string* out) {
  out->clear();
  JsonWriter w(out);
  w.BeginObject();
  w.Key("schema").String(kTelemetrySchema);
  w.Key("gateway").String(h.gateway);
  if (!h.device.empty()) w.Key("device").String(h.device);
  w.Key("seq_first").Int(seq_first);
  if (seq_last < 0) return;
  w.Key("seq_last").Int(seq_last);
  w.Key("historical").Bool(h.historical);
  w.Key("readings");
  *out += '[';
}

}  // namespace

size_t EncodeTelemetryChunks(const BatchHeader& h, std::span<const store::StoredChunk> chunks,
                             const store::TagNames& names, size_t max_bytes, std::string* out) {
  std::string head;
  TelemetryHead(h, chunks.front().seq_first, -1, &head);
  const size_t tail = std::string_view(",\"seq_last\":").size() +
                      std::string_view(",\"historical\":").size() + (h.historical ? 4 : 5) +
                      std::string_view(",\"readings\":[]}").size();
  const size_t up_to_first = head.size();
  // The header as if every chunk fits; rewritten below if the bound cuts.
  TelemetryHead(h, chunks.front().seq_first, chunks.back().seq_last(), out);
  const size_t body_at = out->size();
  ChunkItemWriter writer(names);
  size_t n = 0;
  for (const store::StoredChunk& c : chunks) {
    const size_t before = out->size();
    writer.AppendChunk(out, c, before > body_at);
    char digits[24];
    const auto seq_last_size = static_cast<size_t>(
        std::to_chars(digits, digits + sizeof digits, c.seq_last()).ptr - digits);
    const size_t total = up_to_first + tail + seq_last_size + (out->size() - body_at);
    if (n > 0 && total > max_bytes) {
      out->resize(before);
      break;
    }
    ++n;
  }
  if (n < chunks.size()) {
    TelemetryHead(h, chunks.front().seq_first, chunks[n - 1].seq_last(), &head);
    out->replace(0, body_at, head);
  }
  *out += "]}";
  return n;
}

size_t EncodeTelemetry(const BatchHeader& header, std::span<const store::StoredReading> readings,
                       size_t max_bytes, std::string* out) {
  return EncodeBatch(kTelemetrySchema, "readings", header, readings, max_bytes, out);
}

std::string EncodeTelemetry(const BatchHeader& header,
                            std::span<const store::StoredReading> readings) {
  std::string out;
  EncodeTelemetry(header, readings, kUnbounded, &out);
  return out;
}

size_t EncodeRecords(Stream stream, const BatchHeader& header,
                     std::span<const store::StoredEvent> records, size_t max_bytes,
                     std::string* out) {
  switch (stream) {
    case Stream::kAlarms:
      return EncodeBatch(kAlarmsSchema, "events", header, records, max_bytes, out);
    case Stream::kCounters:
      return EncodeBatch(kCountersSchema, "snapshots", header, records, max_bytes, out);
    case Stream::kEvents:
    case Stream::kTelemetry:  // not a record stream; treated as the gateway's events
      return EncodeBatch(kEventsSchema, "events",
                         BatchHeader{header.gateway, {}, header.historical}, records, max_bytes,
                         out);
  }
  return 0;
}

std::string EncodeBirth(std::string_view gateway, std::string_view device,
                        std::span<const TagInfo> tags, std::string_view config_digest,
                        int64_t ts_ms) {
  std::string out;
  JsonWriter w(&out);
  w.BeginObject();
  w.Key("schema").String(kBirthSchema);
  w.Key("gateway").String(gateway);
  w.Key("device").String(device);
  w.Key("ts").Int(ts_ms);
  if (!config_digest.empty()) w.Key("config_digest").String(config_digest);
  w.Key("tags").BeginArray();
  for (const TagInfo& t : tags) {
    w.BeginObject();
    w.Key("name").String(t.name);
    w.Key("type").String(t.type);
    if (!t.unit.empty()) w.Key("unit").String(t.unit);
    if (!t.description.empty()) w.Key("description").String(t.description);
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  return out;
}

std::string EncodeStatus(std::string_view gateway, std::string_view state, std::string_view version,
                         std::string_view config_digest, int64_t ts_ms) {
  std::string out;
  JsonWriter w(&out);
  w.BeginObject();
  w.Key("schema").String(kStatusSchema);
  w.Key("gateway").String(gateway);
  w.Key("state").String(state);
  if (!version.empty()) w.Key("version").String(version);
  if (!config_digest.empty()) w.Key("config_digest").String(config_digest);
  if (ts_ms != 0) w.Key("ts").Int(ts_ms);
  w.EndObject();
  return out;
}

}  // namespace tagrelay::uplink
