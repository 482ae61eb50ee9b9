// The table of configuration keys: what the parser accepts and what
// docs/configuration.md documents. Add a key here, then read it in config.cpp.
#include <string>

#include "agent/config.h"

namespace tagrelay {

const std::vector<ConfigKey>& ConfigKeys() {
  static const std::vector<ConfigKey> keys = {
      {"gateway", "id", "string", "required",
       "Unique name of this gateway: letters, digits, '.', '_' and '-', at most 64. Used in "
       "MQTT topics and as the MQTT user name."},
      {"gateway", "data_dir", "path", "/var/lib/tagrelay",
       "Directory of the store (tagrelay.db and its WAL). Must be writable by the service."},

      {"store", "max_bytes", "size", "256MiB",
       "Hard bound on the store on disk, database plus WAL (\"64MiB\", \"1GiB\", or bytes; at "
       "least 1MiB). When it is reached, delivered readings go first, then the oldest "
       "undelivered ones, each counted and reported (docs/operations.md, Store)."},
      {"store", "sync", "normal | full", "normal",
       "full: every commit is flushed to the medium and survives power loss; normal: a "
       "commit survives a crash of the agent, the last ones may be lost on power loss."},
      {"store", "commit_rows", "integer", "1000",
       "Group commit: a transaction is committed after this many rows (1..100000) ..."},
      {"store", "commit_interval", "duration", "200ms",
       "... or this long after its first row, whichever comes first (1ms..10s)."},
      {"store", "max_memory_readings", "integer", "50000",
       "Readings held in memory while the disk refuses writes (full, failing); past this the "
       "oldest are dropped and reported as lost (1000..10000000)."},

      {"uplink", "url", "string or list", "required",
       "Broker URL, mqtts://host[:port] (default port 8883); a list gives failover, tried in "
       "order. mqtt:// (no TLS) is refused unless insecure = true."},
      {"uplink", "mqtt_version", "5 | 3.1.1", "5",
       "MQTT protocol version. 3.1.1 has no PUBACK reason codes and no user properties, so "
       "it cannot carry device signatures (no device may have api_key_file)."},
      {"uplink", "insecure", "bool", "false",
       "Allow mqtt:// without TLS. For demos and tests only: the API key travels in clear "
       "text. A warning is logged at every connect."},
      {"uplink", "ca_file", "path", "system CAs",
       "PEM file of the CA(s) that signed the broker's certificate."},
      {"uplink", "api_key_file", "path", "",
       "File holding the gateway's API key (one line, mode 0600), sent as the MQTT password. "
       "Re-read at every connect, so rotating it needs no restart."},
      {"uplink", "cert_file", "path", "",
       "Client certificate (PEM) for mutual TLS; needs key_file."},
      {"uplink", "key_file", "path", "", "Private key (PEM) of cert_file."},
      {"uplink", "client_id", "string", "tagrelay-<gateway.id>", "MQTT client id."},
      {"uplink", "topic_prefix", "string", "tagrelay/v1",
       "Prefix of every topic; see docs/protocol.md."},
      {"uplink", "batch_max_readings", "integer", "500",
       "Readings per telemetry batch at most (1..10000)."},
      {"uplink", "batch_max_bytes", "size", "256KiB",
       "Payload bytes per batch at most (1KiB..16MiB); a batch closes on whichever of "
       "batch_max_readings, batch_max_bytes and batch_linger comes first."},
      {"uplink", "batch_linger", "duration", "1s",
       "How long a live batch waits to fill before it is sent (0..60s)."},
      {"uplink", "backlog_rate", "size", "0",
       "Bytes per second at most for replaying the backlog (historical batches) after an "
       "outage, for metered links (\"16KiB\"); 0 = no cap. Live data and alarms are not "
       "capped."},
      {"uplink", "max_inflight", "integer", "20",
       "Batches sent and not yet acknowledged by the broker, at most (1..1000)."},
      {"uplink", "keepalive", "duration", "30s", "MQTT keepalive (5s..1h)."},
      {"uplink", "reconnect_min", "duration", "500ms",
       "First reconnect delay after a failure (100ms..60s). Each failure doubles the delay up "
       "to reconnect_max; the actual wait is drawn at random between reconnect_min and the "
       "current delay, so that a fleet does not reconnect in step."},
      {"uplink", "reconnect_max", "duration", "30s",
       "Cap of the reconnect delay (reconnect_min..1h)."},

      {"bus", "name", "string", "required", "Unique name of the bus, referenced by devices."},
      {"bus", "type", "tcp", "required", "Bus type. This version polls Modbus TCP (\"tcp\")."},
      {"bus", "host", "string", "required",
       "Host name or address of the Modbus TCP device or gateway."},
      {"bus", "port", "integer", "502", "TCP port (1..65535)."},
      {"bus", "timeout", "duration", "500ms", "Response timeout of one request (10ms..60s)."},

      {"device", "id", "string", "required",
       "Unique name of the device (same characters as gateway.id); used in topics."},
      {"device", "bus", "string", "required", "Name of the [[bus]] the device is on."},
      {"device", "unit", "integer", "1", "Modbus unit id (slave id), 0..255."},
      {"device", "poll", "duration", "1s", "Poll interval of the device (10ms..24h)."},
      {"device", "api_key_file", "path", "",
       "File holding the device's own API key (one line, mode 0600). Every message of the "
       "device is signed with it (docs/protocol.md, Signatures), so the cloud can tell which "
       "device a batch came from and revoke one device alone. Re-read at every connect."},
      {"device", "tag", "array of tables", "required",
       "The device's tags, as [[device.tag]] tables."},

      {"device.tag", "name", "string", "required",
       "Tag name, unique within the device (same characters as gateway.id)."},
      {"device.tag", "table", "holding | input", "holding", "Register table to read."},
      {"device.tag", "address", "integer", "required",
       "0-based protocol address of the first register (0..65535): exactly what goes on the "
       "wire. Register 40001 of a device manual is holding address 0."},
      {"device.tag", "type", "int16 | uint16 | float32", "uint16",
       "Data type; float32 takes two registers."},
      {"device.tag", "order", "ABCD", "ABCD",
       "Byte order of multi-register values: ABCD is big-endian, most significant word first."},
      {"device.tag", "scale", "float", "1.0", "The value is raw * scale + offset. Not 0."},
      {"device.tag", "offset", "float", "0.0", "See scale."},
      {"device.tag", "unit", "string", "", "Engineering unit, for the cloud (\"V\", \"degC\")."},
      {"device.tag", "deadband", "float", "0.0",
       "Report by exception: a good value closer than this to the last one sent is skipped. "
       "0 sends every poll."},
  };
  return keys;
}

std::string ConfigReferenceMarkdown() {
  std::string out;
  std::string_view section;
  for (const ConfigKey& k : ConfigKeys()) {
    if (k.section != section) {
      section = k.section;
      const bool array = section == "bus" || section == "device" || section == "device.tag";
      out += "\n### ";
      out += array ? "[[" : "[";
      out += section;
      out += array ? "]]" : "]";
      out += "\n\n| key | type | default | meaning |\n| --- | --- | --- | --- |\n";
    }
    out += "| `";
    out += k.key;
    out += "` | ";
    for (char c : k.type) {
      if (c == '|') out += '\\';  // a bare '|' would end the table cell
      out += c;
    }
    out += " | ";
    if (k.default_value == "required" || k.default_value.empty()) {
      out += k.default_value.empty() ? "none" : "required";
    } else {
      out += "`";
      out += k.default_value;
      out += "`";
    }
    out += " | ";
    out += k.description;
    out += " |\n";
  }
  return out;
}

}  // namespace tagrelay
