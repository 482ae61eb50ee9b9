#include "agent/uplink/telemetry.h"

#include <type_traits>

#include "agent/core/json_writer.h"

namespace tagrelay::uplink {

std::string StatusTopic(std::string_view prefix, std::string_view gateway) {
  std::string t(prefix);
  t += '/';
  t += gateway;
  t += "/status";
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

void WriteValue(JsonWriter& w, const Value& v) {
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::monostate>) {
          w.Null();
        } else if constexpr (std::is_same_v<T, bool>) {
          w.Bool(x);
        } else if constexpr (std::is_same_v<T, int64_t>) {
          w.Int(x);
        } else if constexpr (std::is_same_v<T, uint64_t>) {
          w.Uint(x);
        } else if constexpr (std::is_same_v<T, double>) {
          w.Double(x);
        } else {
          w.String(x);
        }
      },
      v);
}

}  // namespace

std::string EncodeTelemetry(const BatchHeader& header,
                            std::span<const store::StoredReading> readings) {
  std::string out;
  out.reserve(160 + readings.size() * 64);
  JsonWriter w(&out);
  w.BeginObject();
  w.Key("schema").String(kTelemetrySchema);
  w.Key("gateway").String(header.gateway);
  w.Key("device").String(header.device);
  w.Key("seq_first").Int(readings.front().seq);
  w.Key("seq_last").Int(readings.back().seq);
  w.Key("historical").Bool(header.historical);
  w.Key("readings").BeginArray();
  for (const store::StoredReading& r : readings) {
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
