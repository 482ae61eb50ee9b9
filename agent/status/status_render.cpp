#include "agent/status/status_render.h"

#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <string_view>
#include <vector>

#include "agent/core/json_writer.h"

namespace tagrelay::status {
namespace {

std::string Fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

void OptionalInt(JsonWriter& w, std::string_view key, const std::optional<int64_t>& v) {
  w.Key(key);
  if (v) {
    w.Int(*v);
  } else {
    w.Null();
  }
}

// ---- text table -------------------------------------------------------------

// Left-aligned columns, two spaces apart, sized to their widest cell.
std::string Table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& r : rows) {
    if (width.size() < r.size()) width.resize(r.size(), 0);
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  }
  std::string out;
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line.append(width[i] - r[i].size() + 2, ' ');
    }
    out += line + "\n";
  }
  return out;
}

std::string BacklogLine(const StoreStatus& st) {
  if (!st.backlog_known) return "backlog not sampled yet";
  std::string out = std::to_string(st.backlog_readings) + " readings unsent";
  if (st.oldest_unsent_age_ms) out += " (oldest " + FormatAge(st.oldest_unsent_age_ms) + ")";
  out += ", " + std::to_string(st.backlog_events) + " events unsent";
  return out;
}

// ---- Prometheus --------------------------------------------------------------

std::string LabelValue(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

class Metrics {
 public:
  explicit Metrics(std::string* out) : out_(out) {}

  // Declares a metric family (once, before its samples).
  void Family(std::string_view name, std::string_view type, std::string_view help) {
    *out_ += "# HELP ";
    *out_ += name;
    *out_ += ' ';
    *out_ += help;
    *out_ += "\n# TYPE ";
    *out_ += name;
    *out_ += ' ';
    *out_ += type;
    *out_ += '\n';
  }
  void Sample(std::string_view name,
              std::initializer_list<std::pair<std::string_view, std::string_view>> labels,
              double value) {
    *out_ += name;
    if (labels.size() > 0) {
      *out_ += '{';
      bool first = true;
      for (const auto& [k, v] : labels) {
        if (!first) *out_ += ',';
        first = false;
        *out_ += k;
        *out_ += "=\"";
        *out_ += LabelValue(v);
        *out_ += '"';
      }
      *out_ += '}';
    }
    *out_ += ' ';
    *out_ += Number(value);
    *out_ += '\n';
  }
  void One(std::string_view name, std::string_view type, std::string_view help, double value) {
    Family(name, type, help);
    Sample(name, {}, value);
  }

 private:
  static std::string Number(double v) {
    if (std::isnan(v)) return "NaN";
    if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
    if (v == std::floor(v) && std::fabs(v) < 9.007199254740992e15) {
      return std::to_string(static_cast<int64_t>(v));
    }
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.15g", v);
    return buf;
  }

  std::string* out_;
};

double D(uint64_t v) { return static_cast<double>(v); }
double D(int64_t v) { return static_cast<double>(v); }

// ---- HTML -------------------------------------------------------------------

std::string Html(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

constexpr const char* kCss = R"css(
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f4f6f8;color:#1d2733}
header{background:#1d2733;color:#fff;padding:14px 24px;display:flex;gap:24px;align-items:baseline;flex-wrap:wrap}
header h1{font-size:20px;margin:0}
header span{color:#b8c4d0;font-size:14px}
main{padding:16px 24px}
section{background:#fff;border-radius:6px;box-shadow:0 1px 2px rgba(0,0,0,.12);padding:12px 16px;margin-bottom:16px}
h2{font-size:16px;margin:0 0 8px}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #e3e8ee;white-space:nowrap}
th{color:#5b6b7b;font-weight:600}
th.n{text-align:right}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.pill{display:inline-block;padding:1px 10px;border-radius:10px;font-weight:600;font-size:13px}
.ok{background:#d8f3dc;color:#1b5e20}.degraded{background:#fff3cd;color:#7a5a00}
.down,.bad{background:#fde2e1;color:#8e1b14}
.kv{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:6px 24px;font-size:14px}
.kv b{display:block;color:#5b6b7b;font-weight:600;font-size:12px;text-transform:uppercase}
p.none{color:#5b6b7b;margin:4px 0}
footer{color:#5b6b7b;font-size:12px;padding:0 24px 16px}
)css";

std::string Pill(std::string_view cls, std::string_view text) {
  return "<span class=\"pill " + Html(cls) + "\">" + Html(text) + "</span>";
}

std::string Kv(std::string_view key, const std::string& value_html, std::string_view id = {}) {
  std::string out = "<div";
  if (!id.empty()) out += " id=\"" + Html(id) + "\"";
  out += "><b>" + Html(key) + "</b>" + value_html + "</div>";
  return out;
}

}  // namespace

std::string FormatAge(std::optional<int64_t> ms) {
  if (!ms) return "-";
  const int64_t v = std::max<int64_t>(*ms, 0);
  if (v < 10'000) return Fixed(static_cast<double>(v) / 1000.0, 1) + "s";
  const int64_t s = v / 1000;
  char buf[48];
  if (s < 60) {
    std::snprintf(buf, sizeof buf, "%" PRId64 "s", s);
  } else if (s < 3600) {
    std::snprintf(buf, sizeof buf, "%" PRId64 "m%02" PRId64 "s", s / 60, s % 60);
  } else if (s < 86400) {
    std::snprintf(buf, sizeof buf, "%" PRId64 "h%02" PRId64 "m", s / 3600, (s % 3600) / 60);
  } else {
    std::snprintf(buf, sizeof buf, "%" PRId64 "d%02" PRId64 "h", s / 86400, (s % 86400) / 3600);
  }
  return buf;
}

std::string FormatBytes(uint64_t bytes) {
  if (bytes < 1024) return std::to_string(bytes) + " B";
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes) / 1024.0;
  size_t u = 0;
  while (v >= 1024.0 && u + 1 < std::size(kUnits)) {
    v /= 1024.0;
    ++u;
  }
  return Fixed(v, 1) + " " + kUnits[u];
}

std::string RenderJson(const StatusSnapshot& s) {
  std::string out;
  JsonWriter w(&out);
  w.BeginObject();
  w.Key("schema").String("tagrelay.status.local.v1");
  w.Key("gateway").String(s.gateway);
  w.Key("version").String(s.version);
  w.Key("config_digest").String(s.config_digest);
  w.Key("state").String(s.state);
  w.Key("taken_ms").Int(s.taken_ms);
  w.Key("uptime_ms").Int(s.uptime_ms);
  w.Key("devices_ok").Uint(s.DevicesOk());
  w.Key("devices").BeginArray();
  for (const DeviceStatus& d : s.devices) {
    w.BeginObject();
    w.Key("id").String(d.id);
    w.Key("bus").String(d.bus);
    w.Key("link").String(d.link);
    OptionalInt(w, "last_good_age_ms", d.last_good_age_ms);
    w.Key("poll_rate").Double(d.poll_rate);
    w.Key("polls").Uint(d.polls);
    w.Key("requests").Uint(d.requests);
    w.Key("failed_requests").Uint(d.failed_requests);
    w.Key("retries").Uint(d.retries);
    w.Key("timeouts").Uint(d.timeouts);
    w.Key("crc_errors").Uint(d.crc_errors);
    w.Key("bad_frames").Uint(d.bad_frames);
    w.Key("exceptions").Uint(d.exceptions);
    w.Key("overruns").Uint(d.overruns);
    w.Key("dropped_batches").Uint(d.dropped_batches);
    w.Key("backlog").Int(d.backlog);
    w.Key("lost").Int(d.lost);
    w.EndObject();
  }
  w.EndArray();
  const StoreStatus& st = s.store;
  w.Key("store").BeginObject();
  w.Key("max_bytes").Uint(st.max_bytes);
  w.Key("db_bytes").Uint(st.db_bytes);
  w.Key("wal_bytes").Uint(st.wal_bytes);
  w.Key("readings").Int(st.readings);
  w.Key("evicted").Uint(st.evicted);
  w.Key("rows_committed").Uint(st.rows_committed);
  w.Key("commits").Uint(st.commits);
  w.Key("failed_commits").Uint(st.failed_commits);
  w.Key("lost_in_memory").Uint(st.lost_in_memory);
  w.Key("failing").Bool(st.failing);
  w.Key("open").Bool(st.open);
  w.Key("in_memory").Uint(st.in_memory);
  w.Key("backlog_known").Bool(st.backlog_known);
  w.Key("backlog_readings").Int(st.backlog_readings);
  OptionalInt(w, "oldest_unsent_age_ms", st.oldest_unsent_age_ms);
  w.Key("backlog_events").Int(st.backlog_events);
  w.EndObject();
  const UplinkStatus& u = s.uplink;
  w.Key("uplink").BeginObject();
  w.Key("connected").Bool(u.connected);
  w.Key("brokers").BeginArray();
  for (const std::string& b : u.brokers) w.String(b);
  w.EndArray();
  w.Key("connects").Uint(u.connects);
  w.Key("connection_failures").Uint(u.connection_failures);
  w.Key("batches_sent").Uint(u.batches_sent);
  w.Key("batches_refused").Uint(u.batches_refused);
  w.Key("readings_sent").Uint(u.readings_sent);
  w.Key("readings_acked").Uint(u.readings_acked);
  w.Key("payload_bytes_sent").Uint(u.payload_bytes_sent);
  w.Key("inflight").Uint(u.inflight);
  w.Key("devices_held").Uint(u.devices_held);
  w.EndObject();
  w.Key("alarms").BeginArray();
  for (const ActiveAlarm& a : s.alarms) {
    w.BeginObject();
    w.Key("id").String(a.id);
    w.Key("device").String(a.device);
    w.Key("tag").String(a.tag);
    w.Key("severity").String(a.severity);
    w.Key("message").String(a.message);
    w.Key("since_ms").Int(a.since_ms);
    w.EndObject();
  }
  w.EndArray();
  w.Key("workers").BeginArray();
  for (const WorkerStatus& k : s.workers) {
    w.BeginObject();
    w.Key("name").String(k.name);
    OptionalInt(w, "idle_ms", k.idle_ms);
    w.Key("stalled").Bool(k.stalled);
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  out += '\n';
  return out;
}

std::string RenderText(const StatusSnapshot& s) {
  std::string out = "tagrelay " + s.version + "  gateway " + s.gateway + "  " + s.state + ", up " +
                    FormatAge(s.uptime_ms) + "  config " + s.config_digest + "\n\n";
  const UplinkStatus& u = s.uplink;
  std::string brokers;
  for (const std::string& b : u.brokers) brokers += (brokers.empty() ? "" : ", ") + b;
  std::string uplink = (u.connected ? "connected" : "DISCONNECTED") + std::string(" (") + brokers +
                       "); " + std::to_string(u.batches_sent) + " batches sent, " +
                       std::to_string(u.readings_acked) + " readings acknowledged, " +
                       std::to_string(u.batches_refused) + " refused, " +
                       std::to_string(u.inflight) + " in flight, " +
                       std::to_string(u.connection_failures) + " connection failures";
  if (u.devices_held > 0) uplink += "; " + std::to_string(u.devices_held) + " device(s) HELD";
  const StoreStatus& st = s.store;
  std::string store = FormatBytes(st.db_bytes + st.wal_bytes) + " of " + FormatBytes(st.max_bytes) +
                      ", " + std::to_string(st.readings) + " readings; " + BacklogLine(st) + "; " +
                      std::to_string(st.evicted) + " evicted unsent";
  if (!st.open) {
    store = "NOT OPEN (see the log); " + std::to_string(st.in_memory) + " readings kept in memory";
  } else if (st.failing) {
    store += "; WRITES FAILING; " + std::to_string(st.in_memory) + " readings kept in memory";
  }
  out += Table({{"uplink", uplink}, {"store", store}});
  out += "\n";

  std::vector<std::vector<std::string>> rows = {{"DEVICE", "BUS", "LINK", "LAST GOOD", "POLL/S",
                                                 "POLLS", "ERRORS", "TIMEOUTS", "CRC", "EXCEPTIONS",
                                                 "BACKLOG", "LOST"}};
  for (const DeviceStatus& d : s.devices) {
    rows.push_back({d.id, d.bus, d.link, FormatAge(d.last_good_age_ms), Fixed(d.poll_rate, 2),
                    std::to_string(d.polls), std::to_string(d.failed_requests),
                    std::to_string(d.timeouts), std::to_string(d.crc_errors),
                    std::to_string(d.exceptions), std::to_string(d.backlog),
                    std::to_string(d.lost)});
  }
  out += Table(rows);
  out += "\n";
  if (s.alarms.empty()) {
    out += "alarms  none active\n";
  } else {
    std::vector<std::vector<std::string>> alarms = {
        {"ALARM", "DEVICE", "TAG", "SEVERITY", "FOR", "MESSAGE"}};
    for (const ActiveAlarm& a : s.alarms) {
      alarms.push_back(
          {a.id, a.device, a.tag, a.severity, FormatAge(s.taken_ms - a.since_ms), a.message});
    }
    out += Table(alarms);
  }
  std::string stalled;
  for (const WorkerStatus& w : s.workers) {
    if (w.stalled) stalled += (stalled.empty() ? "" : ", ") + w.name;
  }
  if (!stalled.empty()) out += "\nSTALLED: " + stalled + " (the watchdog will restart the agent)\n";
  return out;
}

std::string RenderPrometheus(const StatusSnapshot& s) {
  std::string out;
  Metrics m(&out);
  m.Family("tagrelay_info", "gauge", "Version, gateway and config digest of the agent.");
  m.Sample("tagrelay_info",
           {{"version", s.version}, {"gateway", s.gateway}, {"config_digest", s.config_digest}}, 1);
  m.One("tagrelay_uptime_seconds", "gauge", "Seconds since the agent started.",
        static_cast<double>(s.uptime_ms) / 1000.0);

  m.Family("tagrelay_device_link", "gauge",
           "Link state of a device: 1 for its current state (ok, degraded, down), else 0.");
  for (const DeviceStatus& d : s.devices) {
    for (std::string_view state : {"ok", "degraded", "down"}) {
      m.Sample("tagrelay_device_link", {{"device", d.id}, {"bus", d.bus}, {"state", state}},
               d.link == state ? 1 : 0);
    }
  }
  m.Family("tagrelay_device_last_good_age_seconds", "gauge",
           "Seconds since the device's last good reading (absent before the first).");
  for (const DeviceStatus& d : s.devices) {
    if (d.last_good_age_ms) {
      m.Sample("tagrelay_device_last_good_age_seconds", {{"device", d.id}},
               static_cast<double>(*d.last_good_age_ms) / 1000.0);
    }
  }
  m.Family("tagrelay_device_poll_rate", "gauge", "Polls per second of the device, measured.");
  for (const DeviceStatus& d : s.devices) {
    m.Sample("tagrelay_device_poll_rate", {{"device", d.id}}, d.poll_rate);
  }
  struct Counter {
    const char* name;
    const char* help;
    uint64_t DeviceStatus::*field;
  };
  static constexpr Counter kCounters[] = {
      {"tagrelay_device_polls_total", "Polls of the device.", &DeviceStatus::polls},
      {"tagrelay_device_requests_total", "Modbus requests sent, retries included.",
       &DeviceStatus::requests},
      {"tagrelay_device_failed_requests_total", "Requests whose tags came out bad.",
       &DeviceStatus::failed_requests},
      {"tagrelay_device_retries_total", "Requests sent again.", &DeviceStatus::retries},
      {"tagrelay_device_timeouts_total", "Requests without an answer in time.",
       &DeviceStatus::timeouts},
      {"tagrelay_device_crc_errors_total", "Answers with a bad CRC.", &DeviceStatus::crc_errors},
      {"tagrelay_device_bad_frames_total", "Answers that were not valid frames.",
       &DeviceStatus::bad_frames},
      {"tagrelay_device_exceptions_total", "Modbus exception answers.", &DeviceStatus::exceptions},
      {"tagrelay_device_overruns_total", "Poll slots skipped because a poll ran long.",
       &DeviceStatus::overruns},
      {"tagrelay_device_dropped_batches_total", "Polls dropped because the store queue was full.",
       &DeviceStatus::dropped_batches},
  };
  for (const Counter& c : kCounters) {
    m.Family(c.name, "counter", c.help);
    for (const DeviceStatus& d : s.devices) m.Sample(c.name, {{"device", d.id}}, D(d.*c.field));
  }
  if (s.store.backlog_known) {
    m.Family("tagrelay_device_backlog_readings", "gauge",
             "Readings of the device in the store that the broker has not acknowledged.");
    for (const DeviceStatus& d : s.devices) {
      m.Sample("tagrelay_device_backlog_readings", {{"device", d.id}}, D(d.backlog));
    }
    m.Family("tagrelay_device_lost_readings_total", "counter",
             "Unsent readings of the device lost to the store's bound.");
    for (const DeviceStatus& d : s.devices) {
      m.Sample("tagrelay_device_lost_readings_total", {{"device", d.id}}, D(d.lost));
    }
    m.One("tagrelay_backlog_readings", "gauge", "Readings in the store not yet acknowledged.",
          D(s.store.backlog_readings));
    m.One("tagrelay_backlog_events", "gauge", "Events in the store not yet acknowledged.",
          D(s.store.backlog_events));
    m.One("tagrelay_backlog_oldest_age_seconds", "gauge",
          "Age of the oldest unsent reading (acquisition time); 0 when nothing is unsent.",
          static_cast<double>(s.store.oldest_unsent_age_ms.value_or(0)) / 1000.0);
  }
  const StoreStatus& st = s.store;
  m.One("tagrelay_store_max_bytes", "gauge", "The store's bound (store.max_bytes).",
        D(st.max_bytes));
  m.Family("tagrelay_store_bytes", "gauge", "Bytes of the store's files.");
  m.Sample("tagrelay_store_bytes", {{"file", "db"}}, D(st.db_bytes));
  m.Sample("tagrelay_store_bytes", {{"file", "wal"}}, D(st.wal_bytes));
  m.One("tagrelay_store_readings", "gauge", "Readings held in the store.", D(st.readings));
  m.One("tagrelay_store_evicted_readings_total", "counter",
        "Unsent readings evicted to keep the store's bound, since the agent started.",
        D(st.evicted));
  m.One("tagrelay_store_rows_committed_total", "counter", "Readings committed to the store.",
        D(st.rows_committed));
  m.One("tagrelay_store_commits_total", "counter", "Store transactions committed.", D(st.commits));
  m.One("tagrelay_store_failed_commits_total", "counter", "Store transactions that failed.",
        D(st.failed_commits));
  m.One("tagrelay_store_lost_in_memory_total", "counter",
        "Readings dropped from memory while the disk refused writes.", D(st.lost_in_memory));
  m.One("tagrelay_store_failing", "gauge", "1 while the store's last commit failed.",
        st.failing ? 1 : 0);
  m.One("tagrelay_store_open", "gauge",
        "0 while the store cannot be opened (readings wait in memory).", st.open ? 1 : 0);
  m.One("tagrelay_store_in_memory_readings", "gauge", "Readings taken and not yet committed.",
        D(st.in_memory));

  const UplinkStatus& u = s.uplink;
  m.One("tagrelay_uplink_connected", "gauge", "1 while connected to the broker.",
        u.connected ? 1 : 0);
  m.One("tagrelay_uplink_connects_total", "counter", "Sessions established.", D(u.connects));
  m.One("tagrelay_uplink_connection_failures_total", "counter", "Failed or lost connections.",
        D(u.connection_failures));
  m.One("tagrelay_uplink_batches_sent_total", "counter", "Batches published.", D(u.batches_sent));
  m.One("tagrelay_uplink_batches_refused_total", "counter",
        "Batches the broker refused (PUBACK reason 0x80 or above).", D(u.batches_refused));
  m.One("tagrelay_uplink_readings_sent_total", "counter", "Readings published, resends included.",
        D(u.readings_sent));
  m.One("tagrelay_uplink_readings_acked_total", "counter", "Readings the broker acknowledged.",
        D(u.readings_acked));
  m.One("tagrelay_uplink_payload_bytes_sent_total", "counter", "Payload bytes published.",
        D(u.payload_bytes_sent));
  m.One("tagrelay_uplink_inflight_batches", "gauge", "Batches awaiting the broker's ack.",
        D(u.inflight));
  m.One("tagrelay_uplink_devices_held", "gauge",
        "Devices whose key file cannot be used; their data waits in the store.", D(u.devices_held));

  m.One("tagrelay_alarms_active", "gauge", "Alarms active now.", D(uint64_t{s.alarms.size()}));
  m.Family("tagrelay_alarm_active", "gauge", "1 for each alarm active now.");
  for (const ActiveAlarm& a : s.alarms) {
    m.Sample("tagrelay_alarm_active",
             {{"alarm", a.id}, {"device", a.device}, {"severity", a.severity}}, 1);
  }
  m.Family("tagrelay_worker_stalled", "gauge",
           "1 while a worker thread shows no progress (the watchdog then lets systemd restart "
           "the agent).");
  for (const WorkerStatus& w : s.workers) {
    m.Sample("tagrelay_worker_stalled", {{"worker", w.name}}, w.stalled ? 1 : 0);
  }
  return out;
}

std::string RenderHtml(const StatusSnapshot& s) {
  std::string h;
  h += "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">";
  h += "<meta http-equiv=\"refresh\" content=\"5\">";
  h += "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">";
  h += "<title>tagrelay " + Html(s.gateway) + "</title><style>";
  h += kCss;
  h += "</style></head><body>\n<header><h1>tagrelay &middot; " + Html(s.gateway) + "</h1>";
  h += "<span>version " + Html(s.version) + "</span><span>" + Html(s.state) + ", up " +
       Html(FormatAge(s.uptime_ms)) + "</span><span>config " + Html(s.config_digest) +
       "</span></header>\n<main>\n";

  const UplinkStatus& u = s.uplink;
  std::string brokers;
  for (const std::string& b : u.brokers) brokers += (brokers.empty() ? "" : ", ") + b;
  h += "<section id=\"uplink\"><h2>Uplink</h2><div class=\"kv\">";
  h += Kv("state", u.connected ? Pill("ok", "connected") : Pill("down", "disconnected"),
          "uplink-state");
  h += Kv("broker", Html(brokers));
  h += Kv("batches sent", std::to_string(u.batches_sent));
  h += Kv("readings acknowledged", std::to_string(u.readings_acked));
  h += Kv("refused", std::to_string(u.batches_refused));
  h += Kv("in flight", std::to_string(u.inflight));
  h += Kv("connection failures", std::to_string(u.connection_failures));
  h += Kv("devices held", std::to_string(u.devices_held));
  h += "</div></section>\n";

  const StoreStatus& st = s.store;
  h += "<section id=\"store\"><h2>Store</h2><div class=\"kv\">";
  h += Kv("size",
          Html(FormatBytes(st.db_bytes + st.wal_bytes) + " of " + FormatBytes(st.max_bytes)));
  h += Kv("readings", std::to_string(st.readings));
  h += Kv("unsent readings",
          st.backlog_known ? std::to_string(st.backlog_readings) : std::string("-"), "backlog");
  h += Kv("oldest unsent", Html(FormatAge(st.oldest_unsent_age_ms)), "oldest-unsent");
  h += Kv("unsent events", st.backlog_known ? std::to_string(st.backlog_events) : "-");
  h += Kv("evicted unsent", std::to_string(st.evicted), "evicted");
  h += Kv("writes", !st.open     ? Pill("bad", "not open")
                    : st.failing ? Pill("bad", "failing")
                                 : Pill("ok", "ok"));
  if (!st.open || st.failing) h += Kv("kept in memory", std::to_string(st.in_memory));
  h += "</div></section>\n";

  h += "<section id=\"devices\"><h2>Devices (" + std::to_string(s.DevicesOk()) + " of " +
       std::to_string(s.devices.size()) + " ok)</h2><table><thead><tr>";
  for (const char* c : {"device", "bus", "link"}) h += "<th>" + std::string(c) + "</th>";
  for (const char* c : {"last good", "polls/s", "polls", "errors", "timeouts", "CRC", "exceptions",
                        "unsent", "lost"}) {
    h += "<th class=\"n\">" + std::string(c) + "</th>";
  }
  h += "</tr></thead><tbody>\n";
  for (const DeviceStatus& d : s.devices) {
    h += "<tr class=\"device\" data-device=\"" + Html(d.id) + "\" data-link=\"" + Html(d.link) +
         "\"><td>" + Html(d.id) + "</td><td>" + Html(d.bus) + "</td><td>" + Pill(d.link, d.link) +
         "</td><td class=\"n\">" + Html(FormatAge(d.last_good_age_ms)) + "</td><td class=\"n\">" +
         Fixed(d.poll_rate, 2) + "</td><td class=\"n\">" + std::to_string(d.polls) +
         "</td><td class=\"n\">" + std::to_string(d.failed_requests) + "</td><td class=\"n\">" +
         std::to_string(d.timeouts) + "</td><td class=\"n\">" + std::to_string(d.crc_errors) +
         "</td><td class=\"n\">" + std::to_string(d.exceptions) + "</td><td class=\"n\">" +
         (st.backlog_known ? std::to_string(d.backlog) : "-") + "</td><td class=\"n\">" +
         std::to_string(d.lost) + "</td></tr>\n";
  }
  h += "</tbody></table></section>\n";

  h += "<section id=\"alarms\"><h2>Active alarms</h2>";
  if (s.alarms.empty()) {
    h += "<p class=\"none\">No active alarms.</p>";
  } else {
    h += "<table><thead><tr><th>alarm</th><th>device</th><th>tag</th><th>severity</th>"
         "<th>for</th><th>message</th></tr></thead><tbody>";
    for (const ActiveAlarm& a : s.alarms) {
      h += "<tr class=\"alarm\"><td>" + Html(a.id) + "</td><td>" + Html(a.device) + "</td><td>" +
           Html(a.tag) + "</td><td>" + Pill("bad", a.severity) + "</td><td>" +
           Html(FormatAge(s.taken_ms - a.since_ms)) + "</td><td>" + Html(a.message) + "</td></tr>";
    }
    h += "</tbody></table>";
  }
  h += "</section>\n";
  std::string stalled;
  for (const WorkerStatus& w : s.workers) {
    if (w.stalled) stalled += (stalled.empty() ? "" : ", ") + w.name;
  }
  if (!stalled.empty()) {
    h += "<section id=\"stalled\"><h2>Stalled</h2><p>" + Pill("bad", "stalled") + " " +
         Html(stalled) + ": the watchdog will restart the agent.</p></section>\n";
  }
  h += "</main><footer>Read only. Refreshes every 5 s. Metrics for Prometheus at "
       "<a href=\"/metrics\">/metrics</a>, the same as JSON at "
       "<a href=\"/status.json\">/status.json</a>.</footer>\n</body></html>\n";
  return h;
}

}  // namespace tagrelay::status
