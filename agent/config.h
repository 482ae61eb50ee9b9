// Config: the agent's configuration, parsed from TOML into plain structs and
// validated in one pass.
//
// Promise: LoadConfig() either returns a Config that every component can use
// as is, or every error it found (not just the first), each with file:line:col
// and a hint. Unknown keys, wrong types, out-of-range values, duplicate ids and
// dangling references are errors; nothing is silently ignored, clipped or
// defaulted past what docs/configuration.md states.
//
// Threads: plain values; parsed on the main thread, copied into components. A
// device's tags (and their descriptions) are immutable lists that the copies
// share (agent/core/shared_list.h), so the pollers and the uplink hold no copy
// of their own.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/core/shared_list.h"
#include "agent/rules/rules.h"
#include "agent/uplink/mqtt_client.h"
#include "drivers/modbus/types.h"
#include "store/types.h"

namespace tagrelay {

struct GatewayConfig {
  std::string id;
  std::string data_dir = "/var/lib/tagrelay";
  // Where `profile = "name"` finds name.toml, first match wins.
  std::vector<std::string> profile_dirs = {"/etc/tagrelay/profiles",
                                           "/usr/share/tagrelay/profiles"};
};

struct StatusConfig {
  std::string listen = "127.0.0.1:9470";             // the web page and /metrics; "" = none
  std::string socket = "/run/tagrelay/status.sock";  // for `tagrelay status`; "" = none
};

struct StoreConfig {
  uint64_t max_bytes = 256ull << 20;
  store::SyncMode sync = store::SyncMode::kNormal;
  size_t commit_rows = 1000;
  std::chrono::milliseconds commit_interval{200};
  size_t max_memory_readings = 50000;
};

struct UplinkConfig {
  std::vector<std::string> urls;
  uplink::MqttVersion mqtt_version = uplink::MqttVersion::kV5;
  bool insecure = false;
  std::string ca_file;
  std::string api_key_file;
  std::string cert_file;
  std::string key_file;
  std::string client_id;  // default: "tagrelay-" + gateway id
  std::string topic_prefix = "tagrelay/v1";
  size_t batch_max_readings = 500;
  uint64_t batch_max_bytes = 256 * 1024;
  std::chrono::milliseconds batch_linger{1000};
  uint64_t backlog_rate = 0;  // bytes/s; 0 = no cap
  int max_inflight = 20;
  int keepalive_s = 30;
  std::chrono::milliseconds reconnect_min{500};
  std::chrono::milliseconds reconnect_max{30000};
};

struct BusConfig {
  std::string name;
  std::string type;  // "tcp", "rtu" or "rtu-over-tcp"
  std::string host;  // tcp, rtu-over-tcp
  uint16_t port = 502;
  modbus::SerialSpec serial;  // rtu: serial.device is the config's `port`
  std::chrono::milliseconds timeout{500};
  int retries = 1;
  std::chrono::milliseconds backoff_max{30000};

  modbus::EndpointSpec Endpoint() const;
};

struct DeviceConfig {
  std::string id;
  std::string bus;
  int unit = 1;
  std::chrono::milliseconds poll{1000};
  std::string api_key_file;  // signs this device's batches; empty: unsigned
  std::string profile;       // the profile its tags came from; empty: none
  modbus::PlanLimits limits;
  modbus::TagList tags;
  // One per tag ("" if none), or empty if no tag of the device has a description.
  SharedList<std::string> tag_descriptions;

  modbus::DeviceSpec Spec() const;
};

struct Config {
  std::string path;
  std::string digest;  // first 16 hex digits of the SHA-256 of the file
  GatewayConfig gateway;
  StoreConfig store;
  UplinkConfig uplink;
  StatusConfig status;
  std::vector<BusConfig> buses;
  std::vector<DeviceConfig> devices;
  std::vector<rules::AlarmRule> alarms;
  std::vector<rules::CounterRule> counters;

  // data_dir + "/tagrelay.db"
  std::string StorePath() const;
  // The bus named `name`, or nullptr.
  const BusConfig* FindBus(std::string_view name) const;
};

struct ConfigError {
  std::string file;
  int line = 0;  // 1-based; 0 if the error has no place in the file
  int column = 0;
  std::string message;
  std::string hint;

  // "file:line:col: error: message (hint: ...)"
  std::string ToString() const;
};

struct ConfigResult {
  std::optional<Config> config;  // set only if errors is empty
  std::vector<ConfigError> errors;
};

ConfigResult LoadConfig(const std::string& path);
ConfigResult ParseConfig(std::string_view text, const std::string& path);

// "1s", "250ms", "2m", "1h", "0.5s" -> milliseconds.
std::optional<std::chrono::milliseconds> ParseDuration(std::string_view s);
// "256MiB", "1GiB", "500KB", "1048576" -> bytes.
std::optional<uint64_t> ParseByteSize(std::string_view s);

// One documented configuration key: the parser accepts exactly these keys, and
// docs/configuration.md's key reference is generated from them.
struct ConfigKey {
  // "gateway", "store", "uplink", "status", "bus", "device", "device.tag", "alarm", "counter",
  // or "profile" (the [profile] table of a profile file, whose [[tag]] tables take the keys of
  // "device.tag").
  std::string_view section;
  std::string_view key;
  std::string_view type;
  std::string_view default_value;  // "required", "" (optional, no default) or the default
  std::string_view description;
};
const std::vector<ConfigKey>& ConfigKeys();

// The key reference as Markdown (the body of docs/configuration.md's reference).
std::string ConfigReferenceMarkdown();

}  // namespace tagrelay
