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
      {"gateway", "profile_dirs", "list of paths",
       "[\"/etc/tagrelay/profiles\", \"/usr/share/tagrelay/profiles\"]",
       "Where a device's profile = \"NAME\" is looked up as NAME.toml, first match first. The "
       "package installs its profiles in /usr/share/tagrelay/profiles; put your own (or a changed "
       "copy) in /etc/tagrelay/profiles."},

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
       "Readings held in memory while the disk refuses writes (full, failing) or the store "
       "cannot be opened; past this the oldest are dropped and reported as lost "
       "(1000..10000000)."},

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

      {"status", "listen", "address:port", "127.0.0.1:9470",
       "Where the read-only status page (/) and the Prometheus metrics (/metrics) are served: an "
       "IPv4 address or [IPv6] address and a port. Anyone who can reach it sees the gateway's "
       "status: keep it on 127.0.0.1 unless the network is trusted. \"\" turns it off."},
      {"status", "socket", "path", "/run/tagrelay/status.sock",
       "Unix socket that `tagrelay status` reads (it takes --socket PATH for another path). "
       "\"\" turns it off."},

      {"bus", "name", "string", "required", "Unique name of the bus, referenced by devices."},
      {"bus", "type", "tcp | rtu | rtu-over-tcp", "required",
       "Modbus TCP; Modbus RTU on a serial line; or RTU frames over a TCP connection to a "
       "serial device server. One thread polls each bus and its devices one after another."},
      {"bus", "host", "string", "required",
       "tcp, rtu-over-tcp: host name or address of the Modbus TCP device, gateway or serial "
       "server."},
      {"bus", "port", "integer or path", "502",
       "TCP port (1..65535). rtu: the serial device (required), e.g. \"/dev/ttyS1\" or "
       "\"/dev/serial/by-id/...\"."},
      {"bus", "baud", "integer", "19200", "rtu: bits per second (1200..921600, a standard rate)."},
      {"bus", "parity", "none | even | odd", "even", "rtu: parity bit."},
      {"bus", "data_bits", "integer", "8", "rtu: 7 or 8."},
      {"bus", "stop_bits", "integer", "1",
       "rtu: 1 or 2 (the Modbus standard asks for 2 with parity = \"none\")."},
      {"bus", "rs485", "bool", "false",
       "rtu: switch the port into RS-485 mode (the kernel drives the transceiver's direction), "
       "where the port's driver supports it; a warning is logged where it does not."},
      {"bus", "rts", "none | up | down", "none",
       "rtu: drive RTS for the transceiver's direction from user space: up = RTS high while "
       "sending. For adapters without automatic direction and without RS-485 mode."},
      {"bus", "timeout", "duration", "500ms",
       "Response timeout of one request (10ms..60s): the whole reply must be in by then. On a "
       "serial line the request's own wire time is added."},
      {"bus", "retries", "integer", "1",
       "Further attempts of a request after a timeout, a CRC error or a bad frame (0..5). A "
       "device that is down gets a single attempt."},
      {"bus", "backoff_max", "duration", "30s",
       "Longest wait between attempts on a device that is down, and between reconnects of the "
       "bus (1s..1h). The wait starts at 1s and doubles."},

      {"device", "id", "string", "required",
       "Unique name of the device (same characters as gateway.id); used in topics."},
      {"device", "bus", "string", "required", "Name of the [[bus]] the device is on."},
      {"device", "unit", "integer", "1",
       "Modbus unit id (slave id): 0..255 on tcp, 1..247 on a serial line (0 is broadcast)."},
      {"device", "poll", "duration", "1s",
       "Poll interval of the device's tags (10ms..24h); a tag may set its own."},
      {"device", "profile", "string", "",
       "A device profile: the tags (and request limits) of a known device model, from "
       "profile_dirs (\"eastron-sdm630\"), or the path of a profile file, ending in .toml "
       "(absolute, "
       "or relative to this file). The device's own [[device.tag]]s are added to the profile's; "
       "one with "
       "the name of a profile tag replaces it. See docs/configuration.md, Device profiles."},
      {"device", "profile_tags", "list of strings", "all",
       "Only these tags of the profile (by name); by default all of them."},
      {"device", "max_registers", "integer", "125",
       "Registers per read request at most (1..125), for devices that answer fewer than the "
       "Modbus maximum."},
      {"device", "max_bits", "integer", "2000",
       "Coils or discrete inputs per read request at most (1..2000)."},
      {"device", "max_gap", "integer", "0",
       "Unused registers that one read may span to join two tags (0..124). Larger values save "
       "requests; a device that refuses an unused address gets its request split (see "
       "docs/modbus.md)."},
      {"device", "max_bit_gap", "integer", "0",
       "The same for coils and discrete inputs (0..1999)."},
      {"device", "api_key_file", "path", "",
       "File holding the device's own API key (one line, mode 0600). Every message of the "
       "device is signed with it (docs/protocol.md, Signatures), so the cloud can tell which "
       "device a batch came from and revoke one device alone. Re-read at every connect."},
      {"device", "tag", "array of tables", "required",
       "The device's tags, as [[device.tag]] tables; optional with a profile."},

      {"device.tag", "name", "string", "required",
       "Tag name, unique within the device (same characters as gateway.id)."},
      {"device.tag", "table", "coil | discrete | input | holding", "holding",
       "Modbus table to read."},
      {"device.tag", "address", "integer", "required",
       "Unless register is given: the 0-based protocol address (0..65535): exactly what goes on "
       "the wire. Register 40001 of "
       "a device manual is holding address 0."},
      {"device.tag", "register", "string or integer", "",
       "Instead of table and address: the register number of a device manual, 5 digits "
       "(\"40001\" = holding 0, \"30010\" = input 9, \"10001\" = discrete 0, \"00001\" = coil "
       "0) or 6 digits (\"400001\"..\"465536\"). Coil numbers start with 0: write them as "
       "strings. See docs/modbus.md."},
      {"device.tag", "type",
       "bool | bit | int16 | uint16 | int32 | uint32 | int64 | uint64 | "
       "float32 | float64 | string",
       "uint16",
       "Data type; coil and discrete are bool (the default there). 32-bit types take two "
       "registers, 64-bit types four; bool on a register is "
       "true when it is not 0; bit is one bit of a register; string takes length bytes."},
      {"device.tag", "order", "ABCD | CDAB | BADC | DCBA", "ABCD",
       "Byte order of the value on the wire, A being its most significant byte: ABCD "
       "big-endian, CDAB registers swapped, BADC bytes swapped within registers, DCBA "
       "little-endian. 64-bit values may also be written ABCDEFGH, GHEFCDAB, BADCFEHG, "
       "HGFEDCBA."},
      {"device.tag", "bit", "integer", "",
       "Required for type = \"bit\": the bit of the register, 0 (least significant) .. 15."},
      {"device.tag", "length", "integer", "",
       "Required for type = \"string\": its length in bytes (1..250), two per register."},
      {"device.tag", "scale", "float", "1.0",
       "The value is raw * scale + offset (numeric types only). Not 0."},
      {"device.tag", "offset", "float", "0.0", "See scale."},
      {"device.tag", "unit", "string", "", "Engineering unit, for the cloud (\"V\", \"degC\")."},
      {"device.tag", "description", "string", "",
       "What the value is, for people (\"Phase 1 line to neutral voltage\"); sent in the "
       "device's birth message."},
      {"device.tag", "deadband", "float", "0.0",
       "Report by exception (numeric types only): a good value closer than this to the last one "
       "sent is skipped. 0 sends every poll."},
      {"device.tag", "poll", "duration", "",
       "Poll interval of this tag (10ms..24h); by default the device's. Tags of one device with "
       "the same interval form "
       "a poll group, read together."},

      {"alarm", "id", "string", "required",
       "Unique name of the alarm (same characters as gateway.id)."},
      {"alarm", "device", "string", "required", "The device whose tag (or link) it watches."},
      {"alarm", "tag", "string", "required",
       "The tag it watches (not for comm_loss, which watches the device's link)."},
      {"alarm", "kind", "string", "required",
       "high / high_high: raised above `limit`; low / low_low: raised below it; equals: raised "
       "while the tag has `value`; rate: raised while the tag changes faster than `limit` units "
       "per second over `window`; stale: raised when no good value came for `after`; comm_loss: "
       "raised while the device's link is down."},
      {"alarm", "limit", "float", "",
       "Required for the level kinds and rate: the limit (rate: units per second)."},
      {"alarm", "deadband", "float", "0.0",
       "Level kinds and rate: the alarm clears only once the value is back past limit - deadband "
       "(low kinds: limit + deadband), so a value hovering at the limit does not chatter. Must "
       "be smaller than the band between a tag's low and high limits."},
      {"alarm", "value", "number, bool or string", "",
       "Required for equals: the value that raises it."},
      {"alarm", "window", "duration", "", "Required for rate: the span the rate is measured over."},
      {"alarm", "after", "duration", "",
       "Required for stale: how long without a good value raises it."},
      {"alarm", "on_delay", "duration", "0s",
       "The condition must hold this long before the alarm is raised."},
      {"alarm", "off_delay", "duration", "0s",
       "The clear condition must hold this long before the alarm clears."},
      {"alarm", "severity", "critical | major | minor | warning | info", "major",
       "Carried in the alarm events."},
      {"alarm", "message", "string", "",
       "Text of the events, with placeholders {value} {unit} {limit} {tag} {device} {alarm}."},

      {"counter", "id", "string", "required", "Unique name of the counter."},
      {"counter", "device", "string", "required", "The device whose tag says whether it runs."},
      {"counter", "running", "string", "required",
       "The running condition: a tag, a comparison and a number, e.g. \"frequency > 1.0\" "
       "(> >= < <= == !=)."},
      {"counter", "snapshot", "duration", "15m",
       "How often a snapshot (run hours, starts) is published (1s..24h); one also goes at start."},

      {"profile", "description", "string", "required", "The device model, for people."},
      {"profile", "manufacturer", "string", "", "Who makes it."},
      {"profile", "source", "string", "",
       "Where the register map comes from: the maker's manual, its title and version."},
      {"profile", "max_registers", "integer", "125",
       "The device's limit of registers per request; a device's own max_registers wins."},
      {"profile", "max_bits", "integer", "2000", "The same for coils and discrete inputs."},
      {"profile", "max_gap", "integer", "0",
       "Unused registers that one read may span on this model (it answers them)."},
      {"profile", "max_bit_gap", "integer", "0", "The same for coils and discrete inputs."},
  };
  return keys;
}

std::string ConfigReferenceMarkdown() {
  std::string out;
  std::string_view section;
  for (const ConfigKey& k : ConfigKeys()) {
    if (k.section != section) {
      section = k.section;
      const bool array = section == "bus" || section == "device" || section == "device.tag" ||
                         section == "alarm" || section == "counter";
      out += "\n### ";
      out += array ? "[[" : "[";
      out += section;
      out += array ? "]]" : "]";
      if (section == "profile") {
        out +=
            " of a profile file\n\nA profile file has one [profile] table and [[tag]] tables, "
            "which take the keys of [[device.tag]].";
      }
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
