#include "agent/config.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <tuple>

#include "agent/uplink/broker_url.h"
#include "agent/uplink/key_file.h"
#include "agent/uplink/signing.h"

#define TOML_HEADER_ONLY 1
#define TOML_EXCEPTIONS 0
#define TOML_ENABLE_FORMATTERS 0
#include <toml++/toml.h>

namespace tagrelay {

std::string Config::StorePath() const { return gateway.data_dir + "/tagrelay.db"; }

const BusConfig* Config::FindBus(std::string_view name) const {
  for (const BusConfig& b : buses) {
    if (b.name == name) return &b;
  }
  return nullptr;
}

modbus::EndpointSpec BusConfig::Endpoint() const {
  modbus::EndpointSpec e;
  e.name = name;
  e.type = type == "rtu"            ? modbus::BusType::kRtu
           : type == "rtu-over-tcp" ? modbus::BusType::kRtuOverTcp
                                    : modbus::BusType::kTcp;
  e.host = host;
  e.port = port;
  e.serial = serial;
  e.timeout = timeout;
  e.retries = retries;
  e.backoff_max = backoff_max;
  return e;
}

modbus::DeviceSpec DeviceConfig::Spec() const {
  return modbus::DeviceSpec{id, unit, poll, tags, limits};
}

std::string ConfigError::ToString() const {
  std::string out = file;
  if (line > 0) out += ":" + std::to_string(line) + ":" + std::to_string(column);
  out += ": error: " + message;
  if (!hint.empty()) out += " (hint: " + hint + ")";
  return out;
}

std::optional<std::chrono::milliseconds> ParseDuration(std::string_view s) {
  // Exact decimal arithmetic: "1.005s" is 1005 ms, which 1.005 * 1000 in binary
  // floating point is not.
  size_t i = 0;
  uint64_t whole = 0, frac = 0, frac_scale = 1;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
    if (i >= 12) return std::nullopt;
    whole = whole * 10 + static_cast<uint64_t>(s[i++] - '0');
  }
  if (i == 0) return std::nullopt;
  if (i < s.size() && s[i] == '.') {
    ++i;
    const size_t first = i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
      if (i - first >= 6) return std::nullopt;
      frac = frac * 10 + static_cast<uint64_t>(s[i++] - '0');
      frac_scale *= 10;
    }
    if (i == first) return std::nullopt;
  }
  const std::string_view unit = s.substr(i);
  uint64_t factor = 0;
  if (unit == "ms")
    factor = 1;
  else if (unit == "s")
    factor = 1000;
  else if (unit == "m")
    factor = 60'000;
  else if (unit == "h")
    factor = 3'600'000;
  else
    return std::nullopt;
  const uint64_t scaled = (whole * frac_scale + frac) * factor;  // ms * frac_scale
  if (scaled % frac_scale != 0) return std::nullopt;             // whole milliseconds only
  return std::chrono::milliseconds(static_cast<int64_t>(scaled / frac_scale));
}

std::optional<uint64_t> ParseByteSize(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
  if (i == 0 || i > 15) return std::nullopt;
  const uint64_t n = std::stoull(std::string(s.substr(0, i)));
  const std::string_view unit = s.substr(i);
  uint64_t factor = 0;
  if (unit.empty() || unit == "B")
    factor = 1;
  else if (unit == "KiB")
    factor = 1ull << 10;
  else if (unit == "MiB")
    factor = 1ull << 20;
  else if (unit == "GiB")
    factor = 1ull << 30;
  else if (unit == "KB")
    factor = 1000;
  else if (unit == "MB")
    factor = 1000 * 1000;
  else if (unit == "GB")
    factor = 1000 * 1000 * 1000;
  else
    return std::nullopt;
  if (n > (uint64_t{1} << 50) / factor) return std::nullopt;
  return n * factor;
}

namespace {

constexpr size_t kMaxNameLength = 64;

// Names end up in MQTT topics: no '/', '+', '#', spaces, and not starting with '$'.
bool ValidName(std::string_view s) {
  if (s.empty() || s.size() > kMaxNameLength) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
}

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      cur[j] =
          std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string JoinNames(const std::set<std::string>& names) {
  std::string out;
  for (const std::string& n : names) {
    if (!out.empty()) out += ", ";
    out += n;
  }
  return out;
}

std::string Digest(std::string_view text) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(text.data(), text.size(), md, &len, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < 8 && i < len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 0xF];
  }
  return out;
}

// A device profile file, parsed once per config however many devices use it.
struct Profile {
  std::string path;
  bool ok = false;
  std::optional<uint16_t> max_registers, max_bits, max_gap, max_bit_gap;
  std::vector<modbus::TagSpec> tags;
  std::vector<std::string> descriptions;  // one per tag
};

class Section;

class Parser {
 public:
  explicit Parser(std::string file) : file_(std::move(file)) {}

  std::vector<ConfigError>& errors() { return errors_; }
  const std::string& file() const { return file_; }

  std::vector<std::string> profile_dirs;
  // The profile `name` (a name in profile_dirs, or a path) for the device whose
  // table is `s`; nullptr (and an error at its "profile" key) if it cannot be used.
  std::shared_ptr<const Profile> FindProfile(const std::string& name, Section& s);

  void Error(const toml::source_region& where, std::string message, std::string hint = {}) {
    errors_.push_back(ConfigError{file_, static_cast<int>(where.begin.line),
                                  static_cast<int>(where.begin.column), std::move(message),
                                  std::move(hint)});
  }

  Config Parse(const toml::table& root);

 private:
  friend class Section;
  std::string file_;
  std::vector<ConfigError> errors_;
  std::map<std::string, std::shared_ptr<const Profile>> profiles_;  // by path
};

// One TOML table of a known section. Reading a key marks it as used; keys that
// the section does not document are reported when the Section is built.
class Section {
 public:
  Section(Parser& p, const toml::table& t, std::string_view section, std::string label)
      : p_(p), t_(t), label_(std::move(label)) {
    std::vector<std::string_view> known;
    for (const ConfigKey& k : ConfigKeys()) {
      if (k.section == section) known.push_back(k.key);
    }
    for (auto&& [key, node] : t) {
      if (std::find(known.begin(), known.end(), key.str()) != known.end()) continue;
      std::string hint;
      size_t best = 3;  // suggest only keys at most 2 edits away, the closest one
      for (std::string_view k : known) {
        const size_t d = EditDistance(k, key.str());
        if (d < best) {
          best = d;
          hint = "did you mean '" + std::string(k) + "'?";
        }
      }
      if (hint.empty()) hint = "the keys of " + label_ + " are listed in docs/configuration.md";
      p_.Error(key.source(), "unknown key '" + std::string(key.str()) + "' in " + label_, hint);
    }
  }

  const toml::source_region& where() const { return t_.source(); }
  const toml::node* Node(std::string_view key) const { return t_.get(key); }
  const toml::source_region& Where(std::string_view key) const {
    const toml::node* n = Node(key);
    return n != nullptr ? n->source() : t_.source();
  }

  void Missing(std::string_view key, std::string hint = {}) {
    p_.Error(t_.source(), label_ + ": missing required key '" + std::string(key) + "'",
             std::move(hint));
  }
  void Bad(std::string_view key, std::string message, std::string hint = {}) {
    p_.Error(Where(key), label_ + "." + std::string(key) + ": " + message, std::move(hint));
  }

  std::optional<std::string> Str(std::string_view key, bool required = false) {
    const toml::node* n = Node(key);
    if (n == nullptr) {
      if (required) Missing(key);
      return std::nullopt;
    }
    if (!n->is_string()) {
      Bad(key, std::string("expected a string, got ") + TypeName(*n));
      return std::nullopt;
    }
    return n->value<std::string>();
  }

  std::optional<int64_t> Int(std::string_view key, int64_t min, int64_t max,
                             bool required = false) {
    const toml::node* n = Node(key);
    if (n == nullptr) {
      if (required) Missing(key);
      return std::nullopt;
    }
    if (!n->is_integer()) {
      Bad(key, std::string("expected an integer, got ") + TypeName(*n));
      return std::nullopt;
    }
    const int64_t v = *n->value<int64_t>();
    if (v < min || v > max) {
      Bad(key, std::to_string(v) + " is out of range " + std::to_string(min) + ".." +
                   std::to_string(max));
      return std::nullopt;
    }
    return v;
  }

  std::optional<double> Float(std::string_view key) {
    const toml::node* n = Node(key);
    if (n == nullptr) return std::nullopt;
    if (!n->is_floating_point() && !n->is_integer()) {
      Bad(key, std::string("expected a number, got ") + TypeName(*n));
      return std::nullopt;
    }
    const double v = *n->value<double>();
    if (!std::isfinite(v)) {
      Bad(key, "must be a finite number");
      return std::nullopt;
    }
    return v;
  }

  std::optional<bool> Bool(std::string_view key) {
    const toml::node* n = Node(key);
    if (n == nullptr) return std::nullopt;
    if (!n->is_boolean()) {
      Bad(key, std::string("expected true or false, got ") + TypeName(*n));
      return std::nullopt;
    }
    return n->value<bool>();
  }

  std::optional<std::chrono::milliseconds> Duration(std::string_view key,
                                                    std::chrono::milliseconds min,
                                                    std::chrono::milliseconds max) {
    std::optional<std::string> s = Str(key);
    if (!s) return std::nullopt;
    std::optional<std::chrono::milliseconds> d = ParseDuration(*s);
    if (!d) {
      Bad(key, "'" + *s + "' is not a duration",
          "write a number and a unit: \"500ms\", \"1s\", \"5m\", \"1h\"");
      return std::nullopt;
    }
    if (*d < min || *d > max) {
      Bad(key, "'" + *s + "' is out of range " + FormatMs(min) + ".." + FormatMs(max));
      return std::nullopt;
    }
    return d;
  }

  std::optional<uint64_t> Bytes(std::string_view key, uint64_t min) {
    const toml::node* n = Node(key);
    if (n == nullptr) return std::nullopt;
    std::optional<uint64_t> v;
    if (n->is_integer() && *n->value<int64_t>() >= 0) {
      v = static_cast<uint64_t>(*n->value<int64_t>());
    } else if (n->is_string()) {
      v = ParseByteSize(*n->value<std::string>());
    }
    if (!v) {
      Bad(key, "not a size", "write bytes or a number and a unit: \"64MiB\", \"1GiB\", \"500MB\"");
      return std::nullopt;
    }
    if (*v < min) {
      Bad(key, std::to_string(*v) + " bytes is below the minimum of " + std::to_string(min));
      return std::nullopt;
    }
    return v;
  }

  // A string that must be one of `choices`.
  std::optional<std::string> Choice(std::string_view key,
                                    std::initializer_list<std::string_view> choices) {
    std::optional<std::string> s = Str(key);
    if (!s) return std::nullopt;
    for (std::string_view c : choices) {
      if (*s == c) return s;
    }
    Bad(key, "'" + *s + "' is not one of: " + Join(choices));
    return std::nullopt;
  }

  // A path that must name a readable file; "" if absent or bad.
  std::string ReadableFile(std::string_view key) {
    std::optional<std::string> s = Str(key);
    if (!s) return {};
    struct stat st {};
    if (stat(s->c_str(), &st) != 0 || access(s->c_str(), R_OK) != 0) {
      Bad(key, "cannot read '" + *s + "': " + std::strerror(errno));
      return {};
    }
    if (!S_ISREG(st.st_mode)) {
      Bad(key, "'" + *s + "' is not a regular file");
      return {};
    }
    return *s;
  }

  // A path to an API key file that ReadKeyFile() accepts (mode 0600 or
  // stricter, one line); "" if absent or bad. The key itself is dropped here.
  std::string KeyFile(std::string_view key) {
    std::optional<std::string> s = Str(key);
    if (!s) return {};
    Result<std::string> read = uplink::ReadKeyFile(*s);
    if (!read.ok()) {
      Bad(key, read.status().message());
      return {};
    }
    uplink::Wipe(read.value());
    return *s;
  }

  // A name used in topics (see ValidName).
  std::optional<std::string> Name(std::string_view key) {
    std::optional<std::string> s = Str(key, /*required=*/true);
    if (s && !ValidName(*s)) {
      Bad(key, "'" + *s + "' is not a valid name",
          "use 1 to 64 letters, digits, '.', '_' or '-' (names appear in MQTT topics)");
      return std::nullopt;
    }
    return s;
  }

  static std::string Join(std::initializer_list<std::string_view> items) {
    std::string out;
    for (std::string_view i : items) {
      if (!out.empty()) out += ", ";
      out += i;
    }
    return out;
  }

  static const char* TypeName(const toml::node& n) {
    switch (n.type()) {
      case toml::node_type::string: return "a string";
      case toml::node_type::integer: return "an integer";
      case toml::node_type::floating_point: return "a float";
      case toml::node_type::boolean: return "a boolean";
      case toml::node_type::table: return "a table";
      case toml::node_type::array: return "an array";
      default: return "a date or time";
    }
  }

  static std::string FormatNumber(double v) {
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    return std::string(buf, r.ptr);
  }

  static std::string FormatMs(std::chrono::milliseconds d) {
    const int64_t ms = d.count();
    if (ms % 3'600'000 == 0 && ms > 0) return std::to_string(ms / 3'600'000) + "h";
    if (ms % 1000 == 0 && ms > 0) return std::to_string(ms / 1000) + "s";
    return std::to_string(ms) + "ms";
  }

  const std::string& label() const { return label_; }

 private:
  Parser& p_;
  const toml::table& t_;
  std::string label_;
};

using std::chrono::milliseconds;

GatewayConfig ParseGateway(Parser& p, const toml::table& root) {
  GatewayConfig g;
  const toml::node* n = root.get("gateway");
  if (n == nullptr || !n->is_table()) {
    p.Error(n != nullptr ? n->source() : root.source(), "missing [gateway] table",
            "every config needs [gateway] with at least id = \"...\"");
    return g;
  }
  Section s(p, *n->as_table(), "gateway", "[gateway]");
  if (auto v = s.Name("id")) g.id = *v;
  if (auto v = s.Str("data_dir")) {
    if (v->empty() || (*v)[0] != '/') {
      s.Bad("data_dir", "must be an absolute path");
    } else {
      g.data_dir = *v;
      while (g.data_dir.size() > 1 && g.data_dir.back() == '/') g.data_dir.pop_back();
    }
  }
  if (const toml::node* dirs = s.Node("profile_dirs")) {
    std::vector<std::string> list;
    bool good = dirs->is_array();
    if (good) {
      for (const toml::node& e : *dirs->as_array()) {
        if (!e.is_string() || e.value<std::string>()->empty() ||
            e.value<std::string>()->front() != '/') {
          good = false;
          break;
        }
        list.push_back(*e.value<std::string>());
      }
    }
    if (good) {
      g.profile_dirs = std::move(list);
    } else {
      s.Bad("profile_dirs", "expected a list of absolute paths",
            "e.g. profile_dirs = [\"/etc/tagrelay/profiles\", \"/usr/share/tagrelay/profiles\"]");
    }
  }
  return g;
}

StoreConfig ParseStore(Parser& p, const toml::table& root) {
  StoreConfig c;
  const toml::node* n = root.get("store");
  if (n == nullptr) return c;
  if (!n->is_table()) {
    p.Error(n->source(), "[store] must be a table");
    return c;
  }
  Section s(p, *n->as_table(), "store", "[store]");
  if (auto v = s.Bytes("max_bytes", 1ull << 20)) c.max_bytes = *v;
  if (auto v = s.Choice("sync", {"normal", "full"})) {
    c.sync = *v == "full" ? store::SyncMode::kFull : store::SyncMode::kNormal;
  }
  if (auto v = s.Int("commit_rows", 1, 100000)) c.commit_rows = static_cast<size_t>(*v);
  if (auto v = s.Duration("commit_interval", milliseconds(1), milliseconds(10000)))
    c.commit_interval = *v;
  return c;
}

bool ParseListen(std::string_view text) {
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 >= text.size()) return false;
  std::string_view host = text.substr(0, colon);
  const std::string_view port = text.substr(colon + 1);
  if (port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return false;
  }
  if (std::stoul(std::string(port)) > 65535) return false;
  unsigned char buf[sizeof(in6_addr)];
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    return inet_pton(AF_INET6, std::string(host.substr(1, host.size() - 2)).c_str(), buf) == 1;
  }
  return inet_pton(AF_INET, std::string(host).c_str(), buf) == 1;
}

StatusConfig ParseStatus(Parser& p, const toml::table& root) {
  StatusConfig c;
  const toml::node* n = root.get("status");
  if (n == nullptr) return c;
  if (!n->is_table()) {
    p.Error(n->source(), "[status] must be a table");
    return c;
  }
  Section s(p, *n->as_table(), "status", "[status]");
  if (auto v = s.Str("listen")) {
    if (!v->empty() && !ParseListen(*v)) {
      s.Bad("listen", "'" + *v + "' is not an address and port",
            "e.g. \"127.0.0.1:9470\", \"[::1]:9470\", \"0.0.0.0:9470\" (every interface), or \"\" "
            "for none");
    } else {
      c.listen = *v;
    }
  }
  if (auto v = s.Str("socket")) {
    if (!v->empty() && ((*v)[0] != '/' || v->size() > 100)) {
      s.Bad("socket", "must be an absolute path of at most 100 characters, or \"\"");
    } else {
      c.socket = *v;
    }
  }
  return c;
}

UplinkConfig ParseUplink(Parser& p, const toml::table& root) {
  UplinkConfig c;
  const toml::node* n = root.get("uplink");
  if (n == nullptr || !n->is_table()) {
    p.Error(n != nullptr ? n->source() : root.source(), "missing [uplink] table",
            "the uplink needs at least url = \"mqtts://broker:8883\"");
    return c;
  }
  Section s(p, *n->as_table(), "uplink", "[uplink]");
  if (auto v = s.Bool("insecure")) c.insecure = *v;
  if (auto v = s.Choice("mqtt_version", {"5", "3.1.1"})) {
    c.mqtt_version = *v == "5" ? uplink::MqttVersion::kV5 : uplink::MqttVersion::kV311;
  }

  const toml::node* url = s.Node("url");
  std::vector<const toml::node*> url_nodes;
  if (url == nullptr) {
    s.Missing("url", "e.g. url = \"mqtts://broker.example.com:8883\"");
  } else if (url->is_string()) {
    url_nodes.push_back(url);
  } else if (url->is_array() && !url->as_array()->empty()) {
    for (const toml::node& e : *url->as_array()) url_nodes.push_back(&e);
  } else {
    s.Bad("url", "expected a string or a non-empty list of strings");
  }
  for (const toml::node* u : url_nodes) {
    if (!u->is_string()) {
      p.Error(u->source(), "[uplink].url: expected a string");
      continue;
    }
    const std::string text = *u->value<std::string>();
    Result<uplink::BrokerUrl> parsed = uplink::BrokerUrl::Parse(text);
    if (!parsed.ok()) {
      p.Error(u->source(), "[uplink].url '" + text + "': " + parsed.status().message());
      continue;
    }
    if (!parsed->tls && !c.insecure) {
      p.Error(u->source(), "[uplink].url '" + text + "' has no TLS",
              "use mqtts://; for a local test broker only, set insecure = true");
      continue;
    }
    c.urls.push_back(text);
  }

  c.ca_file = s.ReadableFile("ca_file");
  c.cert_file = s.ReadableFile("cert_file");
  c.key_file = s.ReadableFile("key_file");
  c.api_key_file = s.KeyFile("api_key_file");
  if (c.cert_file.empty() != c.key_file.empty()) {
    s.Bad(c.cert_file.empty() ? "key_file" : "cert_file", "cert_file and key_file go together",
          "mutual TLS needs both the client certificate and its private key");
  }
  if (auto v = s.Str("client_id")) {
    if (v->empty() || v->size() > 128) {
      s.Bad("client_id", "must be 1 to 128 characters");
    } else {
      c.client_id = *v;
    }
  }
  if (auto v = s.Str("topic_prefix")) {
    if (v->empty() || v->find_first_of("+#") != std::string::npos || v->front() == '/' ||
        v->back() == '/' || v->front() == '$') {
      s.Bad("topic_prefix", "'" + *v + "' is not a valid topic prefix",
            "no wildcards (+ #), no leading '$' or '/', no trailing '/'");
    } else {
      c.topic_prefix = *v;
    }
  }
  if (auto v = s.Int("batch_max_readings", 1, 10000))
    c.batch_max_readings = static_cast<size_t>(*v);
  if (auto v = s.Bytes("batch_max_bytes", 1024)) {
    if (*v > (16ull << 20)) {
      s.Bad("batch_max_bytes", std::to_string(*v) + " bytes is above the maximum of 16MiB");
    } else {
      c.batch_max_bytes = *v;
    }
  }
  if (auto v = s.Duration("batch_linger", milliseconds(0), milliseconds(60000)))
    c.batch_linger = *v;
  if (auto v = s.Bytes("backlog_rate", 0)) c.backlog_rate = *v;
  if (auto v = s.Int("max_inflight", 1, 1000)) c.max_inflight = static_cast<int>(*v);
  if (auto v = s.Duration("keepalive", milliseconds(5000), milliseconds(3600000))) {
    if (v->count() % 1000 != 0) {
      s.Bad("keepalive", "MQTT keepalive is whole seconds", "e.g. \"30s\"");
    } else {
      c.keepalive_s = static_cast<int>(v->count() / 1000);
    }
  }
  if (auto v = s.Duration("reconnect_min", milliseconds(100), milliseconds(60000)))
    c.reconnect_min = *v;
  if (auto v = s.Duration("reconnect_max", milliseconds(100), milliseconds(3600000))) {
    if (*v < c.reconnect_min) {
      s.Bad("reconnect_max",
            "must not be below reconnect_min (" + std::to_string(c.reconnect_min.count()) + "ms)");
    } else {
      c.reconnect_max = *v;
    }
  } else if (c.reconnect_max < c.reconnect_min) {
    c.reconnect_max = c.reconnect_min;
  }
  return c;
}

std::vector<const toml::table*> ArrayOfTables(Parser& p, const toml::table& parent,
                                              std::string_view key, std::string_view label) {
  std::vector<const toml::table*> out;
  const toml::node* n = parent.get(key);
  if (n == nullptr) return out;
  if (!n->is_array_of_tables()) {
    p.Error(n->source(),
            std::string(label) + " must be written as [[" + std::string(label) + "]] tables");
    return out;
  }
  for (const toml::node& e : *n->as_array()) out.push_back(e.as_table());
  return out;
}

std::vector<BusConfig> ParseBuses(Parser& p, const toml::table& root) {
  static constexpr std::string_view kSerialKeys[] = {"baud",      "parity", "data_bits",
                                                     "stop_bits", "rs485",  "rts"};
  std::vector<BusConfig> buses;
  for (const toml::table* t : ArrayOfTables(p, root, "bus", "bus")) {
    Section s(p, *t, "bus", "[[bus]]");
    BusConfig b;
    if (auto v = s.Name("name")) b.name = *v;
    if (auto v = s.Str("type", true)) {
      if (*v == "tcp" || *v == "rtu" || *v == "rtu-over-tcp") {
        b.type = *v;
      } else {
        s.Bad("type", "'" + *v + "' is not a bus type", "use \"tcp\", \"rtu\" or \"rtu-over-tcp\"");
      }
    }
    if (b.type == "rtu") {
      if (s.Node("host") != nullptr) {
        s.Bad("host", "applies to tcp and rtu-over-tcp buses", "a serial bus names its port");
      }
      const toml::node* port = s.Node("port");
      if (port != nullptr && !port->is_string()) {
        s.Bad("port", "a serial bus's port is the path of its device",
              "e.g. port = \"/dev/ttyUSB0\"");
      } else if (auto v = s.Str("port", true)) {
        if (v->empty() || (*v)[0] != '/') {
          s.Bad("port", "'" + *v + "' is not an absolute path", "e.g. port = \"/dev/ttyS1\"");
        } else {
          b.serial.device = *v;
        }
      }
      if (auto v = s.Int("baud", 1, 4'000'000)) {
        if (!modbus::IsSupportedBaud(static_cast<int>(*v)) || *v < 1200 || *v > 921600) {
          s.Bad("baud", std::to_string(*v) + " is not a standard baud rate",
                "e.g. 9600, 19200, 38400, 57600, 115200");
        } else {
          b.serial.baud = static_cast<int>(*v);
        }
      }
      if (auto v = s.Choice("parity", {"none", "even", "odd"})) {
        b.serial.parity = *v == "none"  ? modbus::Parity::kNone
                          : *v == "odd" ? modbus::Parity::kOdd
                                        : modbus::Parity::kEven;
      }
      if (auto v = s.Int("data_bits", 7, 8)) b.serial.data_bits = static_cast<int>(*v);
      if (auto v = s.Int("stop_bits", 1, 2)) b.serial.stop_bits = static_cast<int>(*v);
      if (auto v = s.Bool("rs485")) b.serial.rs485 = *v;
      if (auto v = s.Choice("rts", {"none", "up", "down"})) {
        b.serial.rts = *v == "up"     ? modbus::RtsMode::kUp
                       : *v == "down" ? modbus::RtsMode::kDown
                                      : modbus::RtsMode::kNone;
      }
    } else if (!b.type.empty()) {
      if (auto v = s.Str("host", true)) {
        if (v->empty()) {
          s.Bad("host", "must not be empty");
        } else {
          b.host = *v;
        }
      }
      if (auto v = s.Int("port", 1, 65535)) b.port = static_cast<uint16_t>(*v);
      for (std::string_view key : kSerialKeys) {
        if (s.Node(key) != nullptr) {
          s.Bad(key, "applies to rtu buses only",
                b.type == "rtu-over-tcp" ? "the serial server sets the line up" : "");
        }
      }
    }
    if (auto v = s.Duration("timeout", milliseconds(10), milliseconds(60000))) b.timeout = *v;
    if (auto v = s.Int("retries", 0, 5)) b.retries = static_cast<int>(*v);
    if (auto v = s.Duration("backoff_max", milliseconds(1000), milliseconds(3'600'000)))
      b.backoff_max = *v;
    buses.push_back(std::move(b));
  }
  return buses;
}

// The table and address of a tag: `table` + `address`, or `register`.
void ParseTagAddress(Section& s, modbus::TagSpec* tag, bool* ok) {
  std::optional<modbus::Table> table;
  if (auto v = s.Choice("table", {"coil", "discrete", "input", "holding"})) {
    table = modbus::ParseTable(*v);
  } else if (s.Node("table") != nullptr) {
    *ok = false;
  }
  const toml::node* reg = s.Node("register");
  if (reg == nullptr) {
    if (table) tag->table = *table;
    if (auto v = s.Int("address", 0, 65535, /*required=*/true)) {
      tag->address = static_cast<uint16_t>(*v);
    } else {
      *ok = false;
    }
    return;
  }
  *ok = false;
  std::string digits;
  if (reg->is_integer()) {
    digits = std::to_string(*reg->value<int64_t>());
  } else if (reg->is_string()) {
    digits = *reg->value<std::string>();
  } else {
    s.Bad("register", "expected a register number such as \"40001\"");
    return;
  }
  if (s.Node("address") != nullptr) {
    s.Bad("register", "give either address (with table) or register, not both");
    return;
  }
  const std::optional<modbus::RegisterNumber> r = modbus::ParseRegisterNumber(digits);
  if (!r) {
    s.Bad("register", "'" + digits + "' is not a register number",
          "5 digits such as \"40001\" or 6 such as \"400001\": a table digit (0 coil, 1 discrete, "
          "3 input, 4 holding), then the 1-based number; coils as strings (\"00001\")");
    return;
  }
  if (table && *table != r->table) {
    s.Bad("register", "register " + digits + " is in the " +
                          std::string(modbus::TableName(r->table)) + " table, but table = \"" +
                          std::string(modbus::TableName(*table)) + "\"");
    return;
  }
  tag->table = r->table;
  tag->address = r->address;
  *ok = true;
}

modbus::TagSpec ParseTag(Parser& p, const toml::table& t, const std::string& label,
                         const modbus::PlanLimits& limits, std::string* description) {
  Section s(p, t, "device.tag", label);
  const size_t errors_before = p.errors().size();
  modbus::TagSpec tag;
  if (auto v = s.Name("name")) tag.name = *v;
  bool located = true;
  ParseTagAddress(s, &tag, &located);
  const bool bits = modbus::IsBitTable(tag.table);
  if (bits) tag.type = modbus::DataType::kBool;
  if (auto v = s.Choice("type", {"bool", "bit", "int16", "uint16", "int32", "uint32", "int64",
                                 "uint64", "float32", "float64", "string"})) {
    if (bits && *v != "bool") {
      s.Bad("type", "a " + std::string(modbus::TableName(tag.table)) +
                        " holds one bit: its type is bool, not " + *v);
    } else {
      tag.type = *modbus::ParseDataType(*v);
    }
  }
  if (auto v = s.Str("order")) {
    bool eight = false;
    const std::optional<modbus::WordOrder> o = modbus::ParseWordOrder(*v, &eight);
    if (!o) {
      s.Bad("order", "'" + *v + "' is not a byte order",
            "ABCD, CDAB, BADC or DCBA (8-byte types also ABCDEFGH, GHEFCDAB, BADCFEHG, HGFEDCBA)");
    } else if (bits) {
      s.Bad("order", "does not apply to a " + std::string(modbus::TableName(tag.table)));
    } else if (eight && modbus::RegisterCount(tag.type) != 4) {
      s.Bad("order", "'" + *v + "' is an 8-byte order; a " +
                         std::string(modbus::DataTypeName(tag.type)) +
                         " takes ABCD, CDAB, BADC or DCBA");
    } else {
      tag.order = *o;
    }
  }
  if (auto v = s.Int("bit", 0, 15)) {
    if (tag.type != modbus::DataType::kBit) {
      s.Bad("bit", "applies to type = \"bit\" only");
    } else {
      tag.bit = static_cast<uint8_t>(*v);
    }
  } else if (tag.type == modbus::DataType::kBit && s.Node("bit") == nullptr) {
    s.Missing("bit", "type = \"bit\" reads one bit of the register: bit = 0..15");
  }
  if (auto v = s.Int("length", 1, 250)) {
    if (tag.type != modbus::DataType::kString) {
      s.Bad("length", "applies to type = \"string\" only");
    } else {
      tag.length = static_cast<uint16_t>(*v);
    }
  } else if (tag.type == modbus::DataType::kString && s.Node("length") == nullptr) {
    s.Missing("length", "a string needs its length in bytes: length = 1..250");
  }
  const bool numeric = modbus::IsNumeric(tag.type);
  const auto number = [&](std::string_view key) -> std::optional<double> {
    std::optional<double> v = s.Float(key);
    if (v && !numeric) {
      s.Bad(key,
            "applies to numeric types only, not " + std::string(modbus::DataTypeName(tag.type)));
      return std::nullopt;
    }
    return v;
  };
  if (auto v = number("scale")) {
    if (*v == 0.0) {
      s.Bad("scale", "must not be 0", "a scale of 0 turns every value into the offset");
    } else {
      tag.scale = *v;
    }
  }
  if (auto v = number("offset")) tag.offset = *v;
  if (auto v = s.Str("unit")) tag.unit = *v;
  if (auto v = s.Str("description")) {
    if (v->size() > 256) {
      s.Bad("description", "is longer than 256 characters");
    } else {
      *description = *v;
    }
  }
  if (auto v = number("deadband")) {
    if (*v < 0) {
      s.Bad("deadband", "must not be negative");
    } else {
      tag.deadband = *v;
    }
  }
  if (auto v = s.Duration("poll", milliseconds(10), milliseconds(86'400'000))) tag.poll = *v;
  if (located && p.errors().size() == errors_before) {
    std::string key;
    const std::string problem = modbus::ValidateTag(tag, limits, &key);
    if (!problem.empty()) {
      if (key == "address" && s.Node("register") != nullptr) key = "register";
      s.Bad(key, problem);
    }
  }
  return tag;
}

// A list of strings, or nullopt (and an error) if the node is something else.
std::optional<std::vector<std::string>> StringList(Section& s, std::string_view key) {
  const toml::node* n = s.Node(key);
  if (n == nullptr) return std::nullopt;
  std::vector<std::string> out;
  if (n->is_array()) {
    for (const toml::node& e : *n->as_array()) {
      if (!e.is_string()) {
        out.clear();
        break;
      }
      out.push_back(*e.value<std::string>());
    }
  }
  if (out.empty()) {
    s.Bad(key, "expected a non-empty list of strings");
    return std::nullopt;
  }
  return out;
}

std::shared_ptr<const Profile> LoadProfile(Parser& p, const std::string& path) {
  auto profile = std::make_shared<Profile>();
  profile->path = path;
  const size_t errors_before = p.errors().size();
  constexpr std::streamsize kMaxProfileBytes = 1 << 20;
  std::ifstream in(path, std::ios::binary);
  std::string text(static_cast<size_t>(kMaxProfileBytes) + 1, '\0');
  in.read(text.data(), kMaxProfileBytes + 1);
  if (!in.eof() || in.gcount() > kMaxProfileBytes) {
    p.errors().push_back(
        ConfigError{path,
                    0,
                    0,
                    in.gcount() > kMaxProfileBytes
                        ? "the profile is larger than 1 MiB"
                        : "cannot read the profile: " + std::string(std::strerror(errno)),
                    {}});
    return profile;
  }
  text.resize(static_cast<size_t>(in.gcount()));
  toml::parse_result parsed = toml::parse(text, path);
  if (!parsed) {
    const toml::parse_error& e = parsed.error();
    p.errors().push_back(ConfigError{path,
                                     static_cast<int>(e.source().begin.line),
                                     static_cast<int>(e.source().begin.column),
                                     "TOML syntax: " + std::string(e.description()),
                                     {}});
    return profile;
  }
  Parser sub(path);
  const toml::table& root = parsed.table();
  for (auto&& [key, node] : root) {
    if (key.str() != "profile" && key.str() != "tag") {
      sub.Error(key.source(), "unknown key '" + std::string(key.str()) + "' in a profile",
                "a profile has a [profile] table and [[tag]] tables");
    }
  }
  const toml::node* head = root.get("profile");
  std::string name = path.substr(path.rfind('/') + 1);
  if (head == nullptr || !head->is_table()) {
    sub.Error(head != nullptr ? head->source() : root.source(), "missing [profile] table",
              "a profile starts with [profile] and description = \"...\"");
  } else {
    Section s(sub, *head->as_table(), "profile", "[profile]");
    (void)s.Str("description", /*required=*/true);
    (void)s.Str("manufacturer");
    (void)s.Str("source");
    if (auto v = s.Int("max_registers", 1, modbus::kMaxRegistersPerRead))
      profile->max_registers = static_cast<uint16_t>(*v);
    if (auto v = s.Int("max_bits", 1, modbus::kMaxBitsPerRead))
      profile->max_bits = static_cast<uint16_t>(*v);
    if (auto v = s.Int("max_gap", 0, modbus::kMaxRegistersPerRead - 1))
      profile->max_gap = static_cast<uint16_t>(*v);
    if (auto v = s.Int("max_bit_gap", 0, modbus::kMaxBitsPerRead - 1))
      profile->max_bit_gap = static_cast<uint16_t>(*v);
  }
  modbus::PlanLimits limits;
  if (profile->max_registers) limits.max_registers = *profile->max_registers;
  if (profile->max_bits) limits.max_bits = *profile->max_bits;
  const std::vector<const toml::table*> tags = ArrayOfTables(sub, root, "tag", "tag");
  if (tags.empty()) sub.Error(root.source(), "a profile needs at least one [[tag]]");
  std::set<std::string> names;
  for (const toml::table* t : tags) {
    std::string description;
    modbus::TagSpec tag = ParseTag(sub, *t, "[[tag]] of profile " + name, limits, &description);
    if (!tag.name.empty() && !names.insert(tag.name).second) {
      sub.Error(t->source(), "the profile has two tags named '" + tag.name + "'");
    }
    profile->tags.push_back(std::move(tag));
    profile->descriptions.push_back(std::move(description));
  }
  for (ConfigError& e : sub.errors()) p.errors().push_back(std::move(e));
  profile->ok = p.errors().size() == errors_before;
  return profile;
}

std::shared_ptr<const Profile> Parser::FindProfile(const std::string& name, Section& s) {
  std::string path;
  if (name.find('/') != std::string::npos || name.ends_with(".toml")) {
    path = name;
    if (name.front() != '/') {
      const size_t slash = file_.rfind('/');
      path = (slash == std::string::npos ? std::string(".") : file_.substr(0, slash)) + "/" + name;
    }
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) {
      s.Bad("profile", "cannot read the profile file '" + path + "': " + std::strerror(errno));
      return nullptr;
    }
    if (!S_ISREG(st.st_mode)) {
      s.Bad("profile", "'" + path + "' is not a regular file");
      return nullptr;
    }
  } else {
    if (!ValidName(name)) {
      s.Bad("profile", "'" + name + "' is not a profile name",
            "a name such as \"eastron-sdm630\", or the path of a profile file");
      return nullptr;
    }
    std::set<std::string> available;
    for (const std::string& dir : profile_dirs) {
      const std::string candidate = dir + "/" + name + ".toml";
      struct stat st {};
      if (stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
        path = candidate;
        break;
      }
      if (DIR* d = opendir(dir.c_str())) {
        while (const dirent* e = readdir(d)) {
          const std::string f = e->d_name;
          if (f.size() > 5 && f.ends_with(".toml")) available.insert(f.substr(0, f.size() - 5));
        }
        closedir(d);
      }
    }
    if (path.empty()) {
      std::string dirs;
      for (const std::string& d : profile_dirs) dirs += (dirs.empty() ? "" : ", ") + d;
      s.Bad("profile", "no profile '" + name + "' in " + dirs,
            available.empty() ? "the package installs its profiles in /usr/share/tagrelay/profiles"
                              : "available: " + JoinNames(available));
      return nullptr;
    }
  }
  auto it = profiles_.find(path);
  if (it == profiles_.end()) it = profiles_.emplace(path, LoadProfile(*this, path)).first;
  if (!it->second->ok) {
    s.Bad("profile", "the profile " + path + " is not valid (its errors are listed)");
    return nullptr;
  }
  return it->second;
}

std::vector<DeviceConfig> ParseDevices(Parser& p, const toml::table& root) {
  std::vector<DeviceConfig> devices;
  for (const toml::table* t : ArrayOfTables(p, root, "device", "device")) {
    Section s(p, *t, "device", "[[device]]");
    DeviceConfig d;
    if (auto v = s.Name("id")) d.id = *v;
    if (auto v = s.Str("bus", true)) d.bus = *v;
    if (auto v = s.Int("unit", 0, 255)) d.unit = static_cast<int>(*v);
    if (auto v = s.Duration("poll", milliseconds(10), milliseconds(86'400'000))) d.poll = *v;
    d.api_key_file = s.KeyFile("api_key_file");
    std::shared_ptr<const Profile> profile;
    if (auto v = s.Str("profile")) {
      profile = p.FindProfile(*v, s);
      d.profile = *v;
    }
    std::optional<std::vector<std::string>> only = StringList(s, "profile_tags");
    if (only && s.Node("profile") == nullptr) {
      s.Bad("profile_tags", "applies to a device with a profile only");
    }
    // Limits: the device's own, else its profile's, else the Modbus maximum.
    if (profile) {
      if (profile->max_registers) d.limits.max_registers = *profile->max_registers;
      if (profile->max_bits) d.limits.max_bits = *profile->max_bits;
      if (profile->max_gap) d.limits.max_gap = *profile->max_gap;
      if (profile->max_bit_gap) d.limits.max_bit_gap = *profile->max_bit_gap;
    }
    if (auto v = s.Int("max_registers", 1, modbus::kMaxRegistersPerRead))
      d.limits.max_registers = static_cast<uint16_t>(*v);
    if (auto v = s.Int("max_bits", 1, modbus::kMaxBitsPerRead))
      d.limits.max_bits = static_cast<uint16_t>(*v);
    if (auto v = s.Int("max_gap", 0, modbus::kMaxRegistersPerRead - 1))
      d.limits.max_gap = static_cast<uint16_t>(*v);
    if (auto v = s.Int("max_bit_gap", 0, modbus::kMaxBitsPerRead - 1))
      d.limits.max_bit_gap = static_cast<uint16_t>(*v);
    const std::vector<const toml::table*> tags = ArrayOfTables(p, *t, "tag", "device.tag");
    if (tags.empty() && s.Node("tag") == nullptr && s.Node("profile") == nullptr) {
      s.Missing("tag", "add at least one [[device.tag]] after the [[device]], or a profile");
    }
    std::set<std::string> names;
    std::vector<modbus::TagSpec> own;
    std::vector<std::string> own_descriptions;
    own.reserve(tags.size());
    own_descriptions.reserve(tags.size());
    for (const toml::table* tt : tags) {
      std::string description;
      modbus::TagSpec tag =
          ParseTag(p, *tt, "[[device.tag]] of device '" + d.id + "'", d.limits, &description);
      if (!tag.name.empty() && !names.insert(tag.name).second) {
        p.Error(tt->source(), "device '" + d.id + "' has two tags named '" + tag.name + "'");
      }
      own.push_back(std::move(tag));
      own_descriptions.push_back(std::move(description));
    }
    std::vector<modbus::TagSpec> tag_list;
    std::vector<std::string> descriptions;
    tag_list.reserve(own.size() + (profile ? profile->tags.size() : 0));
    descriptions.reserve(tag_list.capacity());
    if (profile) {
      if (only) {
        std::set<std::string> known;
        for (const modbus::TagSpec& tag : profile->tags) known.insert(tag.name);
        for (const std::string& n : *only) {
          if (known.count(n) == 0) {
            s.Bad("profile_tags", "the profile " + d.profile + " has no tag '" + n + "'",
                  "its tags: " + JoinNames(known));
          }
        }
      }
      // The profile's tags in its order; a device tag of the same name replaces one.
      for (size_t i = 0; i < profile->tags.size(); ++i) {
        const modbus::TagSpec& tag = profile->tags[i];
        if (only && std::find(only->begin(), only->end(), tag.name) == only->end()) continue;
        auto mine = std::find_if(own.begin(), own.end(),
                                 [&](const modbus::TagSpec& o) { return o.name == tag.name; });
        if (mine != own.end()) {
          const size_t k = static_cast<size_t>(mine - own.begin());
          tag_list.push_back(std::move(*mine));
          descriptions.push_back(std::move(own_descriptions[k]));
          own.erase(mine);
          own_descriptions.erase(own_descriptions.begin() + static_cast<std::ptrdiff_t>(k));
          continue;
        }
        std::string key;
        const std::string problem = modbus::ValidateTag(tag, d.limits, &key);
        if (!problem.empty()) {
          s.Bad("profile", "profile tag '" + tag.name + "': " + problem,
                "the device's limits (max_registers, max_bits) are smaller than this tag needs");
        }
        tag_list.push_back(tag);
        descriptions.push_back(profile->descriptions[i]);
      }
    }
    for (size_t i = 0; i < own.size(); ++i) {
      tag_list.push_back(std::move(own[i]));
      descriptions.push_back(std::move(own_descriptions[i]));
    }
    d.tags = std::move(tag_list);
    // Descriptions are kept only if a tag has one: most devices have none.
    if (std::any_of(descriptions.begin(), descriptions.end(),
                    [](const std::string& x) { return !x.empty(); })) {
      d.tag_descriptions = std::move(descriptions);
    }
    devices.push_back(std::move(d));
  }
  return devices;
}

const modbus::TagSpec* FindTag(const DeviceConfig& d, std::string_view tag) {
  for (const modbus::TagSpec& t : d.tags) {
    if (t.name == tag) return &t;
  }
  return nullptr;
}

std::string TagNames(const DeviceConfig& d) {
  std::string out;
  for (const modbus::TagSpec& t : d.tags) out += (out.empty() ? "" : ", ") + t.name;
  return out;
}

// The device a rule names, reported at its `device` key if it is not configured.
const DeviceConfig* RuleDevice(Section& s, const std::string& id,
                               const std::vector<DeviceConfig>& devices) {
  for (const DeviceConfig& d : devices) {
    if (d.id == id) return &d;
  }
  if (!id.empty()) {
    std::set<std::string> ids;
    for (const DeviceConfig& d : devices) ids.insert(d.id);
    s.Bad("device", "'" + id + "' is not a configured device", "devices: " + JoinNames(ids));
  }
  return nullptr;
}

// The tag a rule names on `device`, reported at `key` if there is none.
const modbus::TagSpec* RuleTag(Section& s, std::string_view key, const std::string& tag,
                               const DeviceConfig* device) {
  if (device == nullptr || tag.empty()) return nullptr;
  const modbus::TagSpec* t = FindTag(*device, tag);
  if (t == nullptr) {
    s.Bad(key, "device '" + device->id + "' has no tag '" + tag + "'",
          "its tags: " + TagNames(*device));
  }
  return t;
}

std::vector<rules::AlarmRule> ParseAlarms(Parser& p, const toml::table& root,
                                          const std::vector<DeviceConfig>& devices) {
  using rules::AlarmKind;
  std::vector<rules::AlarmRule> alarms;
  std::set<std::string> ids;
  for (const toml::table* t : ArrayOfTables(p, root, "alarm", "alarm")) {
    Section s(p, *t, "alarm", "[[alarm]]");
    rules::AlarmRule a;
    if (auto v = s.Name("id")) {
      a.id = *v;
      if (!ids.insert(a.id).second) s.Bad("id", "two alarms have id '" + a.id + "'");
    }
    if (auto v = s.Str("device", true)) a.device = *v;
    const DeviceConfig* device = RuleDevice(s, a.device, devices);
    std::optional<AlarmKind> kind;
    if (auto v = s.Str("kind", true)) {
      kind = rules::ParseAlarmKind(*v);
      if (!kind) {
        s.Bad("kind", "'" + *v + "' is not an alarm kind",
              "high, low, high_high, low_low, equals, rate, stale or comm_loss");
      }
    }
    if (!kind) continue;
    a.kind = *kind;
    const std::string k(rules::AlarmKindName(*kind));
    // Keys that do not apply to the kind are mistakes, not silently ignored.
    auto forbid = [&](std::string_view key, std::string_view why) {
      if (s.Node(key) != nullptr)
        s.Bad(key, "does not apply to kind '" + k + "'", std::string(why));
    };
    const bool level = rules::IsLevel(*kind);
    if (*kind == AlarmKind::kCommLoss) {
      forbid("tag", "comm_loss watches the device's link, not a tag");
    } else if (auto v = s.Str("tag", true)) {
      a.tag = *v;
    }
    const modbus::TagSpec* tag = RuleTag(s, "tag", a.tag, device);
    if (tag != nullptr) {
      a.unit = tag->unit;
      if ((level || *kind == AlarmKind::kRate) && tag->type == modbus::DataType::kString) {
        s.Bad("kind", "a '" + k + "' alarm needs a numeric tag; '" + a.tag + "' is a string",
              "use kind = \"equals\" for text values");
      }
    }
    if (level || *kind == AlarmKind::kRate) {
      if (auto v = s.Float("limit")) {
        a.limit = *v;
      } else if (s.Node("limit") == nullptr) {
        s.Missing("limit", level ? "the value past which the alarm is raised"
                                 : "the rate, in units per second, past which it is raised");
      }
      if (auto v = s.Float("deadband")) {
        if (*v < 0) {
          s.Bad("deadband", "must not be negative");
        } else {
          a.deadband = *v;
        }
      }
      if (*kind == AlarmKind::kRate && a.deadband > a.limit) {
        s.Bad("deadband", "is larger than the rate limit",
              "a rate alarm clears below limit - deadband");
      }
    } else {
      forbid("limit", "");
      forbid("deadband", "");
    }
    if (*kind == AlarmKind::kRate) {
      if (auto v = s.Duration("window", milliseconds(100), milliseconds(86'400'000))) {
        a.window = *v;
      } else if (s.Node("window") == nullptr) {
        s.Missing("window", "the span the rate is measured over, e.g. window = \"60s\"");
      }
    } else {
      forbid("window", "");
    }
    if (*kind == AlarmKind::kStale) {
      if (auto v = s.Duration("after", milliseconds(100), milliseconds(86'400'000))) {
        a.after = *v;
      } else if (s.Node("after") == nullptr) {
        s.Missing("after", "how long without a good value raises it, e.g. after = \"30s\"");
      }
    } else {
      forbid("after", "");
    }
    if (*kind == AlarmKind::kEquals) {
      const toml::node* n = s.Node("value");
      if (n == nullptr) {
        s.Missing("value", "the value that raises the alarm: a number, true/false or a string");
      } else if (n->is_integer()) {
        a.equals = *n->value<int64_t>();
      } else if (n->is_floating_point()) {
        a.equals = *n->value<double>();
      } else if (n->is_boolean()) {
        a.equals = *n->value<bool>();
      } else if (n->is_string()) {
        a.equals = *n->value<std::string>();
      } else {
        s.Bad("value", "expected a number, true/false or a string");
      }
    } else {
      forbid("value", "");
    }
    if (auto v = s.Duration("on_delay", milliseconds(0), milliseconds(86'400'000))) a.on_delay = *v;
    if (auto v = s.Duration("off_delay", milliseconds(0), milliseconds(86'400'000)))
      a.off_delay = *v;
    if (auto v = s.Choice("severity", {"critical", "major", "minor", "warning", "info"}))
      a.severity = *v;
    if (auto v = s.Str("message")) {
      const std::string unknown = rules::UnknownPlaceholder(*v);
      if (!unknown.empty()) {
        s.Bad("message", "unknown placeholder " + unknown,
              "the placeholders are {value} {unit} {limit} {tag} {device} {alarm}");
      } else {
        a.message = *v;
      }
    }
    alarms.push_back(std::move(a));
  }

  // Level alarms of one tag: limits in order, deadbands inside the band.
  const auto* array = root["alarm"].as_array();
  for (size_t i = 0; i < alarms.size(); ++i) {
    const rules::AlarmRule& a = alarms[i];
    if (!rules::IsLevel(a.kind)) continue;
    for (size_t j = 0; j < alarms.size(); ++j) {
      const rules::AlarmRule& b = alarms[j];
      if (i == j || !rules::IsLevel(b.kind) || b.device != a.device || b.tag != a.tag) continue;
      const toml::node& node = (*array)[i];
      const std::string pair = "'" + a.id + "' and '" + b.id + "'";
      if (rules::IsUpper(a.kind) != rules::IsUpper(b.kind)) {
        const double upper = rules::IsUpper(a.kind) ? a.limit : b.limit;
        const double lower = rules::IsUpper(a.kind) ? b.limit : a.limit;
        if (upper <= lower) {
          if (i < j)
            p.Error(node.source(),
                    "alarms " + pair + ": the high limit must lie above the low limit");
        } else if (a.deadband >= upper - lower) {
          const toml::node* d = node.as_table()->get("deadband");
          p.Error(d != nullptr ? d->source() : node.source(),
                  "alarm '" + a.id + "': deadband " + Section::FormatNumber(a.deadband) +
                      " is larger than the band between its limits (" +
                      Section::FormatNumber(lower) + " .. " + Section::FormatNumber(upper) + ")",
                  "the alarm could never clear without raising '" + b.id + "'");
        }
      } else if (a.kind == AlarmKind::kHighHigh && b.kind == AlarmKind::kHigh &&
                 a.limit <= b.limit) {
        p.Error(node.source(), "alarm '" + a.id +
                                   "': high_high limit must lie above the high limit of '" + b.id +
                                   "'");
      } else if (a.kind == AlarmKind::kLowLow && b.kind == AlarmKind::kLow && a.limit >= b.limit) {
        p.Error(
            node.source(),
            "alarm '" + a.id + "': low_low limit must lie below the low limit of '" + b.id + "'");
      }
    }
  }
  return alarms;
}

std::vector<rules::CounterRule> ParseCounters(Parser& p, const toml::table& root,
                                              const std::vector<DeviceConfig>& devices) {
  std::vector<rules::CounterRule> counters;
  std::set<std::string> ids;
  for (const toml::table* t : ArrayOfTables(p, root, "counter", "counter")) {
    Section s(p, *t, "counter", "[[counter]]");
    rules::CounterRule c;
    if (auto v = s.Name("id")) {
      c.id = *v;
      if (!ids.insert(c.id).second) s.Bad("id", "two counters have id '" + c.id + "'");
    }
    if (auto v = s.Str("device", true)) c.device = *v;
    const DeviceConfig* device = RuleDevice(s, c.device, devices);
    if (auto v = s.Str("running", true)) {
      std::string error;
      if (std::optional<rules::RunningCondition> cond = rules::ParseRunningCondition(*v, &error)) {
        c.tag = cond->tag;
        c.op = cond->op;
        c.threshold = cond->threshold;
        const modbus::TagSpec* tag = RuleTag(s, "running", c.tag, device);
        if (tag != nullptr && tag->type == modbus::DataType::kString) {
          s.Bad("running",
                "'" + c.tag + "' is a string tag; the condition needs a number or a bit");
        }
      } else {
        s.Bad("running", "'" + *v + "': " + error, "e.g. running = \"frequency > 1.0\"");
      }
    }
    if (auto v = s.Duration("snapshot", milliseconds(1000), milliseconds(86'400'000)))
      c.snapshot = *v;
    counters.push_back(std::move(c));
  }
  return counters;
}

Config Parser::Parse(const toml::table& root) {
  static const std::set<std::string_view> kSections = {"gateway", "store",  "uplink", "status",
                                                       "bus",     "device", "alarm",  "counter"};
  for (auto&& [key, node] : root) {
    if (kSections.count(key.str()) == 0) {
      Error(key.source(), "unknown section '" + std::string(key.str()) + "'",
            "the sections are [gateway], [store], [uplink], [status], [[bus]], [[device]], "
            "[[alarm]] and [[counter]]");
    }
  }
  Config c;
  c.gateway = ParseGateway(*this, root);
  profile_dirs = c.gateway.profile_dirs;
  c.store = ParseStore(*this, root);
  c.uplink = ParseUplink(*this, root);
  c.status = ParseStatus(*this, root);
  c.buses = ParseBuses(*this, root);
  c.devices = ParseDevices(*this, root);
  if (c.uplink.client_id.empty() && !c.gateway.id.empty())
    c.uplink.client_id = "tagrelay-" + c.gateway.id;

  // Cross references: names unique, devices on existing buses.
  const auto* bus_array = root["bus"].as_array();
  const auto* dev_array = root["device"].as_array();
  std::set<std::string> bus_names;
  for (size_t i = 0; i < c.buses.size(); ++i) {
    if (!c.buses[i].name.empty() && !bus_names.insert(c.buses[i].name).second) {
      Error((*bus_array)[i].source(), "two buses are named '" + c.buses[i].name + "'");
    }
  }
  std::set<std::string> device_ids;
  for (size_t i = 0; i < c.devices.size(); ++i) {
    const DeviceConfig& d = c.devices[i];
    const toml::node& node = (*dev_array)[i];
    if (!d.id.empty() && !device_ids.insert(d.id).second) {
      Error(node.source(), "two devices have id '" + d.id + "'");
    }
    const BusConfig* bus = c.FindBus(d.bus);
    if (bus != nullptr && bus->type != "tcp" && (d.unit < 1 || d.unit > 247)) {
      const toml::node* u = node.as_table()->get("unit");
      Error(u != nullptr ? u->source() : node.source(),
            "device '" + d.id + "': unit " + std::to_string(d.unit) + " cannot answer on " +
                bus->type + " bus '" + bus->name + "'",
            "Modbus RTU unit ids are 1..247; 0 is broadcast, which no device answers");
    }
    if (!d.bus.empty() && bus_names.count(d.bus) == 0) {
      const toml::node* b = node.as_table()->get("bus");
      Error(b != nullptr ? b->source() : node.source(),
            "device '" + d.id + "' is on bus '" + d.bus + "', which is not defined",
            bus_names.empty() ? "add a [[bus]] with name = \"" + d.bus + "\""
                              : "defined buses: " + JoinNames(bus_names));
    }
  }
  if (c.uplink.mqtt_version == uplink::MqttVersion::kV311) {
    for (size_t i = 0; i < c.devices.size(); ++i) {
      if (c.devices[i].api_key_file.empty()) continue;
      const toml::node* k = (*dev_array)[i].as_table()->get("api_key_file");
      Error(k->source(),
            "device '" + c.devices[i].id +
                "' has api_key_file, but MQTT 3.1.1 cannot carry "
                "signatures",
            "remove mqtt_version = \"3.1.1\" from [uplink] (MQTT 5 is the default)");
    }
  }
  if (c.devices.empty()) {
    Error(root.source(), "no [[device]] is configured",
          "add a [[bus]] and a [[device]] with its [[device.tag]]s");
  }
  c.alarms = ParseAlarms(*this, root, c.devices);
  c.counters = ParseCounters(*this, root, c.devices);
  return c;
}

}  // namespace

namespace {

// The TOML parser (toml++ 3.3) reaches undefined behaviour when it asks whether
// a non-ASCII character is whitespace: its generated lookup has holes for
// U+00A1..U+0499, U+2C5E..U+2FFF, U+3001..U+3057 and U+FB26..U+FEFE. It asks
// that wherever whitespace or the end of a value may stand: outside strings and
// comments (after a key, through a bare value such as a number or a date, after
// a value), and in a multi-line basic string right after a backslash and at the
// start of a line continued by one. Inside strings and comments it never asks.
//
// Non-ASCII text outside strings and comments is never valid TOML, and after a
// line-ending backslash it is rare, so a config with non-ASCII text in those
// places is refused, with its place, before the parser sees it. String values
// and comments ("°C", "Température") are untouched.
//
// To know what is a string, the scan follows TOML's structure as the parser
// does: a quote opens a string where a key or a value may start, but not inside
// a bare value (the parser reads a number or a date on through quotes up to
// whitespace, ',', ']', '}' or '#') and not after a value.
class TomlTextScan {
 public:
  TomlTextScan(std::string_view text, const std::string& path) : text_(text), path_(path) {}

  std::optional<ConfigError> Run() {
    if (text_.starts_with("\xEF\xBB\xBF")) i_ = 3;  // a byte order mark is fine
    while (i_ < text_.size()) {
      const auto b = static_cast<unsigned char>(text_[i_]);
      size_t step = 1;
      if (b >= 0x80) {
        const size_t len = SequenceLength(b);
        if (in_ == In::kCode) {
          return Refuse(len, "outside a string or a comment",
                        "put the text in quotes, or retype it if it was pasted in by mistake");
        }
        if (in_ == In::kMultiBasic && after_ != After::kNothing) {
          return Refuse(len, "after a backslash in a multi-line string",
                        "start the continued text with an ASCII character, or use \\u escapes");
        }
        step = len;
      } else if (b == '\n') {
        if (in_ == In::kComment || in_ == In::kBasic || in_ == In::kLiteral) in_ = In::kCode;
        if (in_ == In::kMultiBasic && after_ == After::kBackslash) after_ = After::kLineEnd;
        if (in_ == In::kCode) EndOfLine();
      } else {
        step = Ascii(b);
      }
      Advance(step);
    }
    return std::nullopt;
  }

 private:
  enum class In { kCode, kComment, kBasic, kLiteral, kMultiBasic, kMultiLiteral };
  // In a multi-line basic string: after a backslash; skipping the whitespace
  // and line breaks after a line-ending backslash.
  enum class After { kNothing, kBackslash, kLineEnd };
  // Where a level of the document is: expecting a key, in a [table] header,
  // expecting a value, in a bare value, after a value.
  enum class Mode { kKey, kHeader, kValue, kBare, kAfter };
  struct Level {
    char kind;  // 't' the document, 'a' an array, 'i' an inline table
    Mode mode;
  };

  size_t SequenceLength(unsigned char b) const {
    size_t len = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1;
    return i_ + len > text_.size() ? 1 : len;
  }

  static bool EndsBareValue(unsigned char b) {
    return b == ' ' || b == '\t' || b == '\r' || b == ',' || b == ']' || b == '}' || b == '#';
  }

  void EndOfLine() {
    if (levels_.back().mode == Mode::kBare) levels_.back().mode = Mode::kAfter;
    if (levels_.back().kind == 't') levels_.back().mode = Mode::kKey;
  }

  // Handles one ASCII character other than a line break; returns how many
  // bytes it took.
  size_t Ascii(unsigned char b) {
    switch (in_) {
      case In::kComment: return 1;
      case In::kBasic:
        if (b == '\\') return (i_ + 1 < text_.size() && text_[i_ + 1] != '\n') ? 2 : 1;
        if (b == '"') in_ = In::kCode;
        return 1;
      case In::kLiteral:
        if (b == '\'') in_ = In::kCode;
        return 1;
      case In::kMultiBasic:
      case In::kMultiLiteral: return InMultiLine(b);
      case In::kCode: return InCode(b);
    }
    return 1;
  }

  size_t InMultiLine(unsigned char b) {
    const bool basic = in_ == In::kMultiBasic;
    if (basic && after_ == After::kBackslash) {
      // The escaped character: whitespace makes it a line-ending backslash.
      after_ = (b == ' ' || b == '\t' || b == '\r') ? After::kLineEnd : After::kNothing;
      return 1;
    }
    if (basic && after_ == After::kLineEnd) {
      if (b == ' ' || b == '\t' || b == '\r') return 1;
      after_ = After::kNothing;
    }
    if (basic && b == '\\') {
      after_ = After::kBackslash;
      return 1;
    }
    const char quote = basic ? '"' : '\'';
    if (b != static_cast<unsigned char>(quote)) return 1;
    // Three to five quotes close the string (up to two belong to it).
    const size_t n = RunOf(quote);
    if (n < 3) return n;
    in_ = In::kCode;
    return std::min<size_t>(n, 5);
  }

  size_t InCode(unsigned char b) {
    Level& level = levels_.back();
    if (level.mode == Mode::kBare) {
      if (!EndsBareValue(b)) return 1;
      level.mode = Mode::kAfter;
    }
    switch (b) {
      case ' ':
      case '\t':
      case '\r': return 1;
      case '#': in_ = In::kComment; return 1;
      case '"':
      case '\'': return Quote(b, level);
      case '=':
        if (level.mode == Mode::kKey) level.mode = Mode::kValue;
        return 1;
      case '[':
        if (level.mode == Mode::kKey && level.kind == 't') {
          level.mode = Mode::kHeader;
        } else if (level.mode == Mode::kValue) {
          level.mode = Mode::kAfter;
          levels_.push_back(Level{'a', Mode::kValue});
        }
        return 1;
      case '{':
        if (level.mode == Mode::kValue) {
          level.mode = Mode::kAfter;
          levels_.push_back(Level{'i', Mode::kKey});
        }
        return 1;
      case ']':
        if (level.mode == Mode::kHeader) {
          level.mode = Mode::kAfter;
        } else if (level.kind == 'a') {
          levels_.pop_back();
        }
        return 1;
      case '}':
        if (level.kind == 'i') levels_.pop_back();
        return 1;
      case ',':
        if (level.mode == Mode::kAfter && level.kind == 'a') level.mode = Mode::kValue;
        if (level.mode == Mode::kAfter && level.kind == 'i') level.mode = Mode::kKey;
        return 1;
      default:
        if (level.mode == Mode::kValue) level.mode = Mode::kBare;
        return 1;
    }
  }

  size_t Quote(unsigned char b, Level& level) {
    // A quote opens a string only where a key or a value may start.
    if (level.mode != Mode::kKey && level.mode != Mode::kHeader && level.mode != Mode::kValue) {
      return 1;
    }
    if (level.mode == Mode::kValue) level.mode = Mode::kAfter;
    const size_t n = RunOf(static_cast<char>(b));
    if (n >= 3) {
      in_ = b == '"' ? In::kMultiBasic : In::kMultiLiteral;
      after_ = After::kNothing;
      return 3;
    }
    if (n == 2) return 2;  // an empty string
    in_ = b == '"' ? In::kBasic : In::kLiteral;
    return 1;
  }

  size_t RunOf(char quote) const {
    size_t n = 0;
    while (i_ + n < text_.size() && text_[i_ + n] == quote) ++n;
    return n;
  }

  // Moves past `step` bytes, counting lines and characters (not bytes).
  void Advance(size_t step) {
    for (size_t k = 0; k < step && i_ < text_.size(); ++k, ++i_) {
      const auto c = static_cast<unsigned char>(text_[i_]);
      if (c == '\n') {
        ++line_;
        column_ = 1;
      } else if ((c & 0xC0) != 0x80) {
        ++column_;
      }
    }
  }

  ConfigError Refuse(size_t len, const char* where, const char* hint) const {
    uint32_t cp = static_cast<unsigned char>(text_[i_]);
    if (len > 1) {
      cp &= 0x7Fu >> len;
      for (size_t k = 1; k < len; ++k) {
        cp = (cp << 6) | (static_cast<unsigned char>(text_[i_ + k]) & 0x3Fu);
      }
    }
    char hex[16];
    std::snprintf(hex, sizeof hex, "U+%04X", static_cast<unsigned>(cp));
    return ConfigError{path_, line_, column_, std::string("character ") + hex + " " + where, hint};
  }

  std::string_view text_;
  const std::string& path_;
  size_t i_ = 0;
  int line_ = 1, column_ = 1;
  In in_ = In::kCode;
  After after_ = After::kNothing;
  std::vector<Level> levels_{Level{'t', Mode::kKey}};
};

}  // namespace

ConfigResult ParseConfig(std::string_view text, const std::string& path) {
  ConfigResult out;
  if (std::optional<ConfigError> e = TomlTextScan(text, path).Run()) {
    out.errors.push_back(std::move(*e));
    return out;
  }
  toml::parse_result parsed = toml::parse(text, path);
  if (!parsed) {
    const toml::parse_error& e = parsed.error();
    out.errors.push_back(ConfigError{path,
                                     static_cast<int>(e.source().begin.line),
                                     static_cast<int>(e.source().begin.column),
                                     "TOML syntax: " + std::string(e.description()),
                                     {}});
    return out;
  }
  Parser p(path);
  Config c = p.Parse(parsed.table());
  if (!p.errors().empty()) {
    out.errors = std::move(p.errors());
    // The config's own errors in file order, then those of the profiles it uses.
    std::stable_sort(out.errors.begin(), out.errors.end(),
                     [&path](const ConfigError& a, const ConfigError& b) {
                       return std::make_tuple(a.file != path, a.file, a.line, a.column) <
                              std::make_tuple(b.file != path, b.file, b.line, b.column);
                     });
    return out;
  }
  c.path = path;
  c.digest = Digest(text);
  out.config = std::move(c);
  return out;
}

ConfigResult LoadConfig(const std::string& path) {
  constexpr std::streamsize kMaxConfigBytes = 4 << 20;
  ConfigResult out;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    out.errors.push_back(ConfigError{path, 0, 0,
                                     std::string("cannot read the file: ") + std::strerror(errno),
                                     "pass another file with --config PATH"});
    return out;
  }
  // Read in pieces, so that the text takes the file's size and not the limit's.
  std::string text;
  struct stat st {};
  if (stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && st.st_size <= kMaxConfigBytes) {
    text.reserve(static_cast<size_t>(st.st_size));
  }
  char piece[64 * 1024];
  while (in.read(piece, sizeof piece) || in.gcount() > 0) {
    text.append(piece, static_cast<size_t>(in.gcount()));
    if (text.size() > static_cast<size_t>(kMaxConfigBytes)) {
      out.errors.push_back(
          ConfigError{path, 0, 0, "the file is larger than 4 MiB; is it a config file?", {}});
      return out;
    }
  }
  return ParseConfig(text, path);
}

}  // namespace tagrelay
