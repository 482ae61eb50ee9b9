#include "agent/rules/records.h"

#include "agent/core/json_writer.h"

namespace tagrelay::rules {

std::string_view AlarmStateName(AlarmState s) {
  return s == AlarmState::kRaised ? "raised" : "cleared";
}

std::string AlarmRecord(const AlarmEvent& e) {
  std::string out;
  JsonWriter w(&out);
  w.BeginObject();
  w.Key("alarm").String(e.alarm);
  if (!e.tag.empty()) w.Key("tag").String(e.tag);
  w.Key("ts").Int(e.ts_ms);
  w.Key("state").String(AlarmStateName(e.state));
  w.Key("kind").String(e.kind);
  w.Key("severity").String(e.severity);
  if (!std::holds_alternative<std::monostate>(e.value)) {
    w.Key("v");
    WriteValue(w, e.value);
  }
  if (e.limit) w.Key("limit").Double(*e.limit);
  if (!e.message.empty()) w.Key("message").String(e.message);
  w.EndObject();
  return out;
}

std::string CounterRecord(const CounterSnapshot& c) {
  std::string out;
  JsonWriter w(&out);
  w.BeginObject();
  w.Key("counter").String(c.counter);
  w.Key("ts").Int(c.ts_ms);
  w.Key("run_s").Double(c.run_s);
  w.Key("starts").Int(c.starts);
  if (c.running) w.Key("running").Bool(*c.running);
  w.EndObject();
  return out;
}

std::string DowntimeRecord(const Downtime& d) {
  std::string out;
  JsonWriter w(&out);
  w.BeginObject();
  w.Key("counter").String(d.counter);
  w.Key("ts").Int(d.ts_ms);
  w.Key("kind").String("downtime");
  w.Key("from").Int(d.from_ms);
  w.Key("duration_s").Double(static_cast<double>(d.ts_ms - d.from_ms) / 1000.0);
  w.EndObject();
  return out;
}

}  // namespace tagrelay::rules
