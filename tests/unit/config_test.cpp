// Tests of agent/config.h: the parsed values of a good config, and every kind
// of error with its exact place in the file.
//
// The TOML is written inline. Each raw string starts right after R"( so its
// first line is line 1 of the file; an error's line is marked with a TOML
// comment "# <- line N". Columns are 1-based, as toml++ reports them: a value's
// column is that of its first character (the opening quote of a string), a
// table's column is that of its "[" or "[[", and a header's key starts after it.
#include "agent/config.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <string>
#include <tuple>

namespace tagrelay {
namespace {

using std::chrono::milliseconds;

constexpr char kFile[] = "test.toml";

// The smallest valid config. Other tests copy it and change one thing.
constexpr char kMinimal[] = R"([gateway]
id = "gw"
[uplink]
url = "mqtts://broker.example.com"
[[bus]]
name = "b"
type = "tcp"
host = "10.0.0.5"
[[device]]
id = "d"
bus = "b"
[[device.tag]]
name = "t"
address = 0
)";

ConfigResult Parse(std::string_view text) { return ParseConfig(text, kFile); }

std::string Dump(const ConfigResult& r) {
  std::string out;
  for (const ConfigError& e : r.errors) out += "\n  " + e.ToString();
  return out.empty() ? " (no errors)" : out;
}

// Succeeds if `r` holds exactly one error, at line:col, whose message contains
// `message` and whose hint contains `hint`.
::testing::AssertionResult OnlyError(const ConfigResult& r, int line, int col,
                                     std::string_view message, std::string_view hint = {}) {
  if (r.config.has_value())
    return ::testing::AssertionFailure() << "a config was returned despite errors";
  if (r.errors.size() != 1) {
    return ::testing::AssertionFailure()
           << "expected 1 error, got " << r.errors.size() << ":" << Dump(r);
  }
  const ConfigError& e = r.errors[0];
  if (e.file != kFile || e.line != line || e.column != col ||
      e.message.find(message) == std::string::npos || e.hint.find(hint) == std::string::npos) {
    return ::testing::AssertionFailure()
           << "expected an error at " << line << ":" << col << " with message '" << message
           << "' and hint '" << hint << "', got:" << Dump(r);
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult Ok(const ConfigResult& r) {
  if (!r.errors.empty()) return ::testing::AssertionFailure() << "unexpected errors:" << Dump(r);
  if (!r.config.has_value())
    return ::testing::AssertionFailure() << "no errors but no config either";
  return ::testing::AssertionSuccess();
}

// A fresh directory for files a config refers to; removed at the end of the test.
class ConfigWithFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "tagrelay_config_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  std::string WriteFile(const std::string& name, const std::string& content, mode_t mode) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path, std::ios::binary) << content;
    EXPECT_EQ(chmod(path.c_str(), mode), 0);
    return path;
  }

  std::string dir_;
};

// ---------------------------------------------------------------------------
// Good configs

TEST(ConfigTest, MinimalConfigGetsTheDocumentedDefaults) {
  const ConfigResult r = Parse(kMinimal);
  ASSERT_TRUE(Ok(r));
  const Config& c = *r.config;
  EXPECT_EQ(c.path, kFile);
  EXPECT_EQ(c.gateway.id, "gw");
  EXPECT_EQ(c.gateway.data_dir, "/var/lib/tagrelay");
  EXPECT_EQ(c.StorePath(), "/var/lib/tagrelay/tagrelay.db");

  EXPECT_EQ(c.store.max_bytes, 256ull << 20);
  EXPECT_EQ(c.store.sync, store::SyncMode::kNormal);
  EXPECT_EQ(c.store.commit_rows, 1000u);
  EXPECT_EQ(c.store.commit_interval, milliseconds(200));

  EXPECT_EQ(c.uplink.urls, std::vector<std::string>{"mqtts://broker.example.com"});
  EXPECT_FALSE(c.uplink.insecure);
  EXPECT_EQ(c.uplink.ca_file, "");
  EXPECT_EQ(c.uplink.api_key_file, "");
  EXPECT_EQ(c.uplink.cert_file, "");
  EXPECT_EQ(c.uplink.key_file, "");
  EXPECT_EQ(c.uplink.client_id, "tagrelay-gw");
  EXPECT_EQ(c.uplink.topic_prefix, "tagrelay/v1");
  EXPECT_EQ(c.uplink.batch_max_readings, 500u);
  EXPECT_EQ(c.uplink.batch_linger, milliseconds(1000));
  EXPECT_EQ(c.uplink.max_inflight, 20);
  EXPECT_EQ(c.uplink.keepalive_s, 30);

  ASSERT_EQ(c.buses.size(), 1u);
  EXPECT_EQ(c.buses[0].name, "b");
  EXPECT_EQ(c.buses[0].type, "tcp");
  EXPECT_EQ(c.buses[0].host, "10.0.0.5");
  EXPECT_EQ(c.buses[0].port, 502);
  EXPECT_EQ(c.buses[0].timeout, milliseconds(500));

  ASSERT_EQ(c.devices.size(), 1u);
  const DeviceConfig& d = c.devices[0];
  EXPECT_EQ(d.id, "d");
  EXPECT_EQ(d.bus, "b");
  EXPECT_EQ(d.unit, 1);
  EXPECT_EQ(d.poll, milliseconds(1000));
  ASSERT_EQ(d.tags.size(), 1u);
  const modbus::TagSpec& t = d.tags[0];
  EXPECT_EQ(t.name, "t");
  EXPECT_EQ(t.table, modbus::Table::kHolding);
  EXPECT_EQ(t.address, 0);
  EXPECT_EQ(t.type, modbus::DataType::kUint16);
  EXPECT_EQ(t.order, modbus::WordOrder::kABCD);
  EXPECT_EQ(t.scale, 1.0);
  EXPECT_EQ(t.offset, 0.0);
  EXPECT_EQ(t.unit, "");
  EXPECT_EQ(t.deadband, 0.0);
}

TEST(ConfigTest, DigestIsTheFirst16HexDigitsOfTheSha256OfTheText) {
  const ConfigResult r = Parse(kMinimal);
  ASSERT_TRUE(Ok(r));
  // Computed independently: python3 -c 'import hashlib;
  // print(hashlib.sha256(TEXT).hexdigest()[:16])'
  EXPECT_EQ(r.config->digest, "02603f0fd0c7e332");

  // Any change to the file, even a comment, changes the digest.
  const ConfigResult changed = Parse(std::string(kMinimal) + "# a comment\n");
  ASSERT_TRUE(Ok(changed));
  EXPECT_NE(changed.config->digest, r.config->digest);
  EXPECT_EQ(changed.config->digest.size(), 16u);
}

TEST_F(ConfigWithFilesTest, CompleteConfigIsParsedIntoEverySection) {
  const std::string ca = WriteFile("ca.pem", "-----BEGIN CERTIFICATE-----\n", 0644);
  const std::string cert = WriteFile("client.pem", "-----BEGIN CERTIFICATE-----\n", 0644);
  const std::string key = WriteFile("client.key", "-----BEGIN PRIVATE KEY-----\n", 0600);
  const std::string api_key = WriteFile("gw.key", "  s3cret-gateway-key \n", 0600);
  const std::string text = R"([gateway]
id = "gw-plant1-01"
data_dir = "/srv/tagrelay/"

[store]
max_bytes = "64MiB"
sync = "full"
commit_rows = 250
commit_interval = "50ms"

[uplink]
url = ["mqtts://a.example.com", "mqtts://[2001:db8::1]:9883"]
ca_file = ")" + ca + R"("
api_key_file = ")" + api_key +
                           R"("
cert_file = ")" + cert + R"("
key_file = ")" + key + R"("
topic_prefix = "acme/telemetry"
batch_max_readings = 100
batch_linger = "250ms"
max_inflight = 5
keepalive = "1m"

[[bus]]
name = "plc-hall"
type = "tcp"
host = "192.168.1.20"
port = 1502
timeout = "2s"

[[bus]]
name = "plc-yard"
type = "tcp"
host = "plc-yard.local"

[[device]]
id = "meter-3"
bus = "plc-hall"
unit = 3
poll = "0.5s"

  [[device.tag]]
  name = "voltage_l1"
  table = "input"
  address = 100
  type = "float32"
  order = "ABCD"
  scale = 0.1
  offset = -2.5
  unit = "V"
  deadband = 0.5

  [[device.tag]]
  name = "status"
  address = 7

[[device]]
id = "pump_2"
bus = "plc-yard"
unit = 0
poll = "1m"

  [[device.tag]]
  name = "temp.inlet"
  type = "int16"
  address = 65535
)";
  const ConfigResult r = ParseConfig(text, "/etc/tagrelay/tagrelay.toml");
  ASSERT_TRUE(Ok(r));
  const Config& c = *r.config;
  EXPECT_EQ(c.path, "/etc/tagrelay/tagrelay.toml");
  EXPECT_EQ(c.digest.size(), 16u);
  EXPECT_TRUE(std::all_of(c.digest.begin(), c.digest.end(), [](char ch) {
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f');
  })) << c.digest;

  EXPECT_EQ(c.gateway.id, "gw-plant1-01");
  EXPECT_EQ(c.gateway.data_dir, "/srv/tagrelay");  // the trailing '/' is dropped
  EXPECT_EQ(c.StorePath(), "/srv/tagrelay/tagrelay.db");

  EXPECT_EQ(c.store.max_bytes, 64ull << 20);
  EXPECT_EQ(c.store.sync, store::SyncMode::kFull);
  EXPECT_EQ(c.store.commit_rows, 250u);
  EXPECT_EQ(c.store.commit_interval, milliseconds(50));

  EXPECT_EQ(c.uplink.urls,
            (std::vector<std::string>{"mqtts://a.example.com", "mqtts://[2001:db8::1]:9883"}));
  EXPECT_FALSE(c.uplink.insecure);
  EXPECT_EQ(c.uplink.ca_file, ca);
  EXPECT_EQ(c.uplink.api_key_file, api_key);
  EXPECT_EQ(c.uplink.cert_file, cert);
  EXPECT_EQ(c.uplink.key_file, key);
  EXPECT_EQ(c.uplink.client_id, "tagrelay-gw-plant1-01");
  EXPECT_EQ(c.uplink.topic_prefix, "acme/telemetry");
  EXPECT_EQ(c.uplink.batch_max_readings, 100u);
  EXPECT_EQ(c.uplink.batch_linger, milliseconds(250));
  EXPECT_EQ(c.uplink.max_inflight, 5);
  EXPECT_EQ(c.uplink.keepalive_s, 60);

  ASSERT_EQ(c.buses.size(), 2u);
  EXPECT_EQ(c.buses[0].name, "plc-hall");
  EXPECT_EQ(c.buses[0].type, "tcp");
  EXPECT_EQ(c.buses[0].host, "192.168.1.20");
  EXPECT_EQ(c.buses[0].port, 1502);
  EXPECT_EQ(c.buses[0].timeout, milliseconds(2000));
  EXPECT_EQ(c.buses[1].name, "plc-yard");
  EXPECT_EQ(c.buses[1].host, "plc-yard.local");
  EXPECT_EQ(c.buses[1].port, 502);
  EXPECT_EQ(c.buses[1].timeout, milliseconds(500));

  ASSERT_EQ(c.devices.size(), 2u);
  const DeviceConfig& meter = c.devices[0];
  EXPECT_EQ(meter.id, "meter-3");
  EXPECT_EQ(meter.bus, "plc-hall");
  EXPECT_EQ(meter.unit, 3);
  EXPECT_EQ(meter.poll, milliseconds(500));
  ASSERT_EQ(meter.tags.size(), 2u);
  const modbus::TagSpec& v = meter.tags[0];
  EXPECT_EQ(v.name, "voltage_l1");
  EXPECT_EQ(v.table, modbus::Table::kInput);
  EXPECT_EQ(v.address, 100);
  EXPECT_EQ(v.type, modbus::DataType::kFloat32);
  EXPECT_EQ(v.order, modbus::WordOrder::kABCD);
  EXPECT_EQ(v.scale, 0.1);
  EXPECT_EQ(v.offset, -2.5);
  EXPECT_EQ(v.unit, "V");
  EXPECT_EQ(v.deadband, 0.5);
  const modbus::TagSpec& s = meter.tags[1];
  EXPECT_EQ(s.name, "status");
  EXPECT_EQ(s.table, modbus::Table::kHolding);
  EXPECT_EQ(s.address, 7);
  EXPECT_EQ(s.type, modbus::DataType::kUint16);
  EXPECT_EQ(s.scale, 1.0);
  EXPECT_EQ(s.offset, 0.0);

  const DeviceConfig& pump = c.devices[1];
  EXPECT_EQ(pump.id, "pump_2");
  EXPECT_EQ(pump.bus, "plc-yard");
  EXPECT_EQ(pump.unit, 0);
  EXPECT_EQ(pump.poll, milliseconds(60000));
  ASSERT_EQ(pump.tags.size(), 1u);
  EXPECT_EQ(pump.tags[0].name, "temp.inlet");
  EXPECT_EQ(pump.tags[0].type, modbus::DataType::kInt16);
  EXPECT_EQ(pump.tags[0].address, 65535);  // one register: the last address is fine
}

TEST(ConfigTest, ExplicitClientIdReplacesTheDefault) {
  const ConfigResult r = Parse(R"([gateway]
id = "gw"
[uplink]
url = "mqtts://broker.example.com"
client_id = "my-client"
[[bus]]
name = "b"
type = "tcp"
host = "h"
[[device]]
id = "d"
bus = "b"
[[device.tag]]
name = "t"
address = 0
)");
  ASSERT_TRUE(Ok(r));
  EXPECT_EQ(r.config->uplink.client_id, "my-client");
}

TEST(ConfigTest, PlainMqttIsAllowedWithInsecure) {
  const ConfigResult r = Parse(R"([gateway]
id = "gw"
[uplink]
url = "mqtt://localhost:1884"
insecure = true
[[bus]]
name = "b"
type = "tcp"
host = "h"
[[device]]
id = "d"
bus = "b"
[[device.tag]]
name = "t"
address = 0
)");
  ASSERT_TRUE(Ok(r));
  EXPECT_TRUE(r.config->uplink.insecure);
  EXPECT_EQ(r.config->uplink.urls, std::vector<std::string>{"mqtt://localhost:1884"});
}

// ---------------------------------------------------------------------------
// Errors, one kind per test

TEST(ConfigErrorTest, TomlSyntaxError) {
  const ConfigResult r = Parse(R"([gateway]
id = "gw"
[uplink]
url = "mqtts://broker.example.com"
[[bus]]
name = "b"
type = "tcp"
host = "h"
port 502
)");  // ^ line 9: '=' is missing; toml++ points at the '5' it saw instead (column 6)
  ASSERT_TRUE(OnlyError(r, 9, 6, "TOML syntax: "));
  EXPECT_NE(r.errors[0].message.find("expected '='"), std::string::npos) << r.errors[0].message;
  EXPECT_EQ(r.errors[0].ToString().rfind("test.toml:9:6: error: TOML syntax: ", 0), 0u)
      << r.errors[0].ToString();
}

TEST(ConfigErrorTest, NonAsciiTextInStringsAndCommentsIsKept) {
  // "°C", "é" and a presentation form in string values of every kind, in a
  // quoted key and in comments; a byte order mark at the start.
  std::string text = "\xEF\xBB\xBF# Temp\xC3\xA9rature \xEF\xB9\xBF\n" + std::string(kMinimal) +
                     "unit = \"\xC2\xB0"
                     "C\"  # \xC2\xB0"
                     "C\n"
                     "description = '''\n\xC3\xA9t\xC3\xA9 \xEF\xB9\xBF'''\n";
  ConfigResult r = Parse(text);
  ASSERT_TRUE(Ok(r)) << Dump(r);
  EXPECT_EQ(r.config->devices[0].tags[0].unit,
            "\xC2\xB0"
            "C");
  // A multi-line basic string with quotes at its end and a continued line.
  r = Parse(std::string(kMinimal) + "unit = \"\"\"\xC2\xB0\\\n  x\xC2\xB0\"\"\"\"\n");
  ASSERT_TRUE(Ok(r)) << Dump(r);
  EXPECT_EQ(r.config->devices[0].tags[0].unit, "\xC2\xB0x\xC2\xB0\"");
  // A quoted key is a string too: the parser sees it and calls it unknown.
  r = Parse(std::string(kMinimal) + "\"\xC3\xA9\" = 1\n");
  ASSERT_EQ(r.errors.size(), 1u) << Dump(r);
  EXPECT_NE(r.errors[0].message.find("unknown key"), std::string::npos) << Dump(r);
}

TEST(ConfigErrorTest, NonAsciiTextWhereTheParserLooksForWhitespaceIsRefusedWithItsPlace) {
  // Outside strings and comments: after a bare key, as a bare value, after a
  // string value, in a table header. The column counts characters, not bytes.
  EXPECT_TRUE(OnlyError(Parse("[gateway]\nid\xC6\x92 = \"gw\"\n"), 2, 3,
                        "character U+0192 outside a string or a comment",
                        "put the text in quotes"));
  EXPECT_TRUE(OnlyError(Parse("[gateway]\nid = \"\xC3\xA9\" \xC3\xA9\n"), 2, 10,
                        "character U+00E9 outside a string or a comment"));
  EXPECT_TRUE(OnlyError(Parse("a = tr\xE3\x80\x81\n"), 1, 7, "character U+3001"));
  EXPECT_TRUE(
      OnlyError(Parse("a = [1, { b = \"x\" }, \xEF\xB9\xBF]\n"), 1, 22, "character U+FE7F"));
  EXPECT_TRUE(OnlyError(Parse("[t\xC3\xA9]\n"), 1, 3, "character U+00E9"));
  // In a multi-line basic string: right after a backslash, and first on a line
  // continued by a line-ending backslash (after its whitespace).
  EXPECT_TRUE(OnlyError(Parse("a = \"\"\"x\\\xC3\xA9\"\"\"\n"), 1, 10,
                        "after a backslash in a multi-line string", "ASCII character"));
  EXPECT_TRUE(OnlyError(Parse("a = \"\"\"x\\  \n\n   \xC3\xA9\"\"\"\n"), 3, 4,
                        "after a backslash in a multi-line string"));
  // Escaped quotes and backslashes do not end a string early.
  EXPECT_TRUE(Ok(Parse(std::string(kMinimal) + "unit = \"\\\"\xC3\xA9\\\\\"\n")));
  EXPECT_TRUE(Ok(Parse(std::string(kMinimal) + "unit = \"\"\"\\\\\xC3\xA9\\\"\"\"\"\n")));
  // Inside a bare value the parser reads on through quotes.
  EXPECT_TRUE(OnlyError(Parse("a = +1\"\"\"\xC3\xA9\"\"\"\n"), 1, 10, "character U+00E9"));
  EXPECT_TRUE(OnlyError(Parse("a = 1979-05-27 \"\xC3\xA9\"\n"), 1, 17, "character U+00E9"));
  // A closed string gives the rest of the line back to the parser.
  EXPECT_TRUE(OnlyError(Parse("a = \"\"\"x\"\"\"\"\" \xC3\xA9\n"), 1, 15, "character U+00E9"));
  EXPECT_TRUE(OnlyError(Parse("a = ''\xC3\xA9\n"), 1, 7, "character U+00E9"));
}

TEST(ConfigErrorTest, UnknownKeyWithDidYouMeanHint) {
  const ConfigResult r = Parse(R"([gateway]
id = "gw"
[uplink]
url = "mqtts://broker.example.com"
[[bus]]
name = "b"
type = "tcp"
host = "h"
[[device]]
id = "d"
bus = "b"
unti = 3 # <- line 12
[[device.tag]]
name = "t"
address = 0
)");
  ASSERT_TRUE(OnlyError(r, 12, 1, "unknown key 'unti' in [[device]]", "did you mean 'unit'?"));
  EXPECT_EQ(r.errors[0].ToString(),
            "test.toml:12:1: error: unknown key 'unti' in [[device]] (hint: did you mean 'unit'?)");
}

TEST(ConfigErrorTest, UnknownKeyInAnIndentedTagTable) {
  const ConfigResult r = Parse(R"([gateway]
id = "gw"
[uplink]
url = "mqtts://broker.example.com"
[[bus]]
name = "b"
type = "tcp"
host = "h"
[[device]]
id = "d"
bus = "b"
  [[device.tag]]
  name = "t"
  address = 0
  deadbnd = 0.5 # <- line 15
)");
  EXPECT_TRUE(OnlyError(r, 15, 3, "unknown key 'deadbnd' in [[device.tag]] of device 'd'",
                        "did you mean 'deadband'?"));
}

TEST(ConfigErrorTest, UnknownKeyFarFromEveryKeyPointsToTheDocs) {
  const ConfigResult r = Parse(R"([gateway]
id = "gw"
colour = "red" # <- line 3
[uplink]
url = "mqtts://broker.example.com"
[[bus]]
name = "b"
type = "tcp"
host = "h"
[[device]]
id = "d"
bus = "b"
[[device.tag]]
name = "t"
address = 0
)");
  EXPECT_TRUE(OnlyError(r, 3, 1, "unknown key 'colour' in [gateway]",
                        "the keys of [gateway] are listed in docs/configuration.md"));
}

TEST(ConfigErrorTest, DidYouMeanSuggestsTheClosestKey) {
  // "tabe" is 1 edit from "table" but 2 from "type" and "name".
  const ConfigResult r = Parse(R"([gateway]
id = "gw"
[uplink]
url = "mqtts://broker.example.com"
[[bus]]
name = "b"
type = "tcp"
host = "h"
[[device]]
id = "d"
bus = "b"
[[device.tag]]
name = "t"
address = 0
tabe = "input" # <- line 15
)");
  ASSERT_EQ(r.errors.size(), 1u) << Dump(r);
  EXPECT_EQ(r.errors[0].line, 15);
  EXPECT_EQ(r.errors[0].hint, "did you mean 'table'?");
}

TEST(ConfigErrorTest, UnknownArraySection) {
  const ConfigResult r = Parse(R"([gateway]
id = "gw"
[uplink]
url = "mqtts://broker.example.com"
[[bus]]
name = "b"
type = "tcp"
host = "h"
[[device]]
id = "d"
bus = "b"
[[device.tag]]
name = "t"
address = 0
[[alert]] # <- line 15; the key 'alert' starts at column 3
id = "overvoltage-l1"
)");
  EXPECT_TRUE(OnlyError(r, 15, 3, "unknown section 'alert'",
                        "[gateway], [store], [uplink], [status], [[bus]], [[device]], [[alarm]] "
                        "and [[counter]]"));
}

TEST(ConfigErrorTest, UnknownTableSection) {
  const ConfigResult r = Parse(R"([gateway]
id = "gw"
[metrics] # <- line 3; the key starts at column 2
port = 9100
[uplink]
url = "mqtts://broker.example.com"
[[bus]]
name = "b"
type = "tcp"
host = "h"
[[device]]
id = "d"
bus = "b"
[[device.tag]]
name = "t"
address = 0
)");
  EXPECT_TRUE(OnlyError(r, 3, 2, "unknown section 'metrics'"));
}

TEST(ConfigErrorTest, WrongTypeIsReportedAtTheValue) {
  const ConfigResult r = Parse(R"([gateway]
id = "gw"
[uplink]
url = "mqtts://broker.example.com"
[[bus]]
name = "b"
type = "tcp"
host = "h"
port = "502" # <- line 9
[[device]]
id = "d"
bus = "b"
[[device.tag]]
name = "t"
address = 0
)");
  EXPECT_TRUE(OnlyError(r, 9, 8, "[[bus]].port: expected an integer, got a string"));
}

TEST(ConfigErrorTest, WrongTypesOfEachKind) {
  const ConfigResult r = Parse(R"([gateway]
id = 7
[uplink]
url = "mqtts://broker.example.com"
insecure = "yes"
[[bus]]
name = "b"
type = "tcp"
host = "h"
[[device]]
id = "d"
bus = "b"
poll = 1000
[[device.tag]]
name = "t"
address = 0
scale = "x"
)");
  ASSERT_EQ(r.errors.size(), 4u) << Dump(r);
  EXPECT_FALSE(r.config.has_value());
  EXPECT_EQ(std::tie(r.errors[0].line, r.errors[0].column), std::make_tuple(2, 6));
  EXPECT_EQ(r.errors[0].message, "[gateway].id: expected a string, got an integer");
  EXPECT_EQ(std::tie(r.errors[1].line, r.errors[1].column), std::make_tuple(5, 12));
  EXPECT_EQ(r.errors[1].message, "[uplink].insecure: expected true or false, got a string");
  EXPECT_EQ(std::tie(r.errors[2].line, r.errors[2].column), std::make_tuple(13, 8));
  EXPECT_EQ(r.errors[2].message, "[[device]].poll: expected a string, got an integer");
  EXPECT_EQ(std::tie(r.errors[3].line, r.errors[3].column), std::make_tuple(17, 9));
  EXPECT_EQ(r.errors[3].message,
            "[[device.tag]] of device 'd'.scale: expected a number, got a string");
}

TEST(ConfigErrorTest, OutOfRangeIntegerIsRejectedNotClipped) {
  const ConfigResult r = Parse(R"([gateway]
id = "gw"
[uplink]
url = "mqtts://broker.example.com"
[[bus]]
name = "b"
type = "tcp"
host = "h"
[[device]]
id = "d"
bus = "b"
unit = 256 # <- line 12
[[device.tag]]
name = "t"
address = 0
)");
  EXPECT_TRUE(OnlyError(r, 12, 8, "[[device]].unit: 256 is out of range 0..255"));
}

TEST(ConfigErrorTest, OutOfRangeAtBothEnds) {
  const ConfigResult r = Parse(R"([gateway]
id = "gw"
[store]
commit_rows = 0
[uplink]
url = "mqtts://broker.example.com"
max_inflight = 1001
[[bus]]
name = "b"
type = "tcp"
host = "h"
port = 65536
[[device]]
id = "d"
bus = "b"
[[device.tag]]
name = "t"
address = -1
)");
  ASSERT_EQ(r.errors.size(), 4u) << Dump(r);
  EXPECT_EQ(r.errors[0].line, 4);
  EXPECT_EQ(r.errors[0].column, 15);
  EXPECT_EQ(r.errors[0].message, "[store].commit_rows: 0 is out of range 1..100000");
  EXPECT_EQ(r.errors[1].line, 7);
  EXPECT_EQ(r.errors[1].column, 16);
  EXPECT_EQ(r.errors[1].message, "[uplink].max_inflight: 1001 is out of range 1..1000");
  EXPECT_EQ(r.errors[2].line, 12);
  EXPECT_EQ(r.errors[2].column, 8);
  EXPECT_EQ(r.errors[2].message, "[[bus]].port: 65536 is out of range 1..65535");
  EXPECT_EQ(r.errors[3].line, 18);
  EXPECT_EQ(r.errors[3].column, 11);
  EXPECT_NE(r.errors[3].message.find("address: -1 is out of range 0..65535"), std::string::npos);
}

TEST(ConfigErrorTest, BadDuration) {
  const ConfigResult r = Parse(R"([gateway]
id = "gw"
[uplink]
url = "mqtts://broker.example.com"
[[bus]]
name = "b"
type = "tcp"
host = "h"
[[device]]
id = "d"
bus = "b"
poll = "1 sec" # <- line 12
[[device.tag]]
name = "t"
address = 0
)");
  EXPECT_TRUE(
      OnlyError(r, 12, 8, "[[device]].poll: '1 sec' is not a duration", "\"500ms\", \"1s\""));
}

TEST(ConfigErrorTest, DurationOutOfRange) {
  const ConfigResult r = Parse(R"([gateway]
id = "gw"
[uplink]
url = "mqtts://broker.example.com"
[[bus]]
name = "b"
type = "tcp"
host = "h"
timeout = "2m" # <- line 9
[[device]]
id = "d"
bus = "b"
[[device.tag]]
name = "t"
address = 0
)");
  EXPECT_TRUE(OnlyError(r, 9, 11, "[[bus]].timeout: '2m' is out of range 10ms..60s"));
}

TEST(ConfigErrorTest, BadSize) {
  const ConfigResult r = Parse(R"([gateway]
id = "gw"
[store]
max_bytes = "12XB" # <- line 4
[uplink]
url = "mqtts://broker.example.com"
[[bus]]
name = "b"
type = "tcp"
host = "h"
[[device]]
id = "d"
bus = "b"
[[device.tag]]
name = "t"
address = 0
)");
  EXPECT_TRUE(OnlyError(r, 4, 13, "[store].max_bytes: not a size", "\"64MiB\""));
}

TEST(ConfigErrorTest, SizeBelowTheMinimum) {
  const ConfigResult r = Parse(R"([gateway]
id = "gw"
[store]
max_bytes = "512KiB" # <- line 4
[uplink]
url = "mqtts://broker.example.com"
[[bus]]
name = "b"
type = "tcp"
host = "h"
[[device]]
id = "d"
bus = "b"
[[device.tag]]
name = "t"
address = 0
)");
  EXPECT_TRUE(
      OnlyError(r, 4, 13, "[store].max_bytes: 524288 bytes is below the minimum of 1048576"));
}

TEST(ConfigErrorTest, MissingRequiredKeyIsReportedAtTheTable) {
  const ConfigResult r = Parse(R"([gateway]
id = "gw"
[uplink]
url = "mqtts://broker.example.com"
[[bus]] # <- line 5: this bus has no host
name = "b"
type = "tcp"
[[device]]
id = "d"
bus = "b"
[[device.tag]]
name = "t"
address = 0
)");
  EXPECT_TRUE(OnlyError(r, 5, 1, "[[bus]]: missing required key 'host'"));
}

TEST(ConfigErrorTest, MissingRequiredKeyOfAnIndentedTable) {
  const ConfigResult r = Parse(R"([gateway]
id = "gw"
[uplink]
url = "mqtts://broker.example.com"
[[bus]]
name = "b"
type = "tcp"
host = "h"
[[device]]
id = "d"
bus = "b"
  [[device.tag]] # <- line 12: no address
  name = "t"
)");
  EXPECT_TRUE(OnlyError(r, 12, 3, "[[device.tag]] of device 'd': missing required key 'address'"));
}

TEST(ConfigErrorTest, MissingRequiredKeysOfEverySection) {
  const ConfigResult r = Parse(R"([gateway]
data_dir = "/srv/x"
[uplink]
topic_prefix = "x"
[[bus]]
type = "tcp"
host = "h"
[[device]]
id = "d"
bus = "b"
)");
  ASSERT_EQ(r.errors.size(), 5u) << Dump(r);
  EXPECT_EQ(r.errors[0].message, "[gateway]: missing required key 'id'");
  EXPECT_EQ(std::tie(r.errors[0].line, r.errors[0].column), std::make_tuple(1, 1));
  EXPECT_EQ(r.errors[1].message, "[uplink]: missing required key 'url'");
  EXPECT_EQ(std::tie(r.errors[1].line, r.errors[1].column), std::make_tuple(3, 1));
  EXPECT_EQ(r.errors[2].message, "[[bus]]: missing required key 'name'");
  EXPECT_EQ(std::tie(r.errors[2].line, r.errors[2].column), std::make_tuple(5, 1));
  // The device has no tags, and its bus "b" is not defined (the only bus has no name).
  EXPECT_EQ(r.errors[3].message, "[[device]]: missing required key 'tag'");
  EXPECT_EQ(std::tie(r.errors[3].line, r.errors[3].column), std::make_tuple(8, 1));
  EXPECT_EQ(r.errors[4].message, "device 'd' is on bus 'b', which is not defined");
  EXPECT_EQ(std::tie(r.errors[4].line, r.errors[4].column), std::make_tuple(10, 7));
}

TEST(ConfigErrorTest, MissingGatewayTable) {
  const ConfigResult r = Parse(R"([uplink]
url = "mqtts://broker.example.com"
[[bus]]
name = "b"
type = "tcp"
host = "h"
[[device]]
id = "d"
bus = "b"
[[device.tag]]
name = "t"
address = 0
)");
  // No table to point at: the error is at the start of the file.
  EXPECT_TRUE(OnlyError(r, 1, 1, "missing [gateway] table", "id = \"...\""));
}

TEST(ConfigErrorTest, DuplicateDeviceId) {
  const ConfigResult r = Parse(R"([gateway]
id = "gw"
[uplink]
url = "mqtts://broker.example.com"
[[bus]]
name = "b"
type = "tcp"
host = "h"
[[device]]
id = "d"
bus = "b"
[[device.tag]]
name = "t"
address = 0
[[device]] # <- line 15: the second device named "d"
id = "d"
bus = "b"
[[device.tag]]
name = "t"
address = 1
)");
  EXPECT_TRUE(OnlyError(r, 15, 1, "two devices have id 'd'"));
}

TEST(ConfigErrorTest, DuplicateTagName) {
  const ConfigResult r = Parse(R"([gateway]
id = "gw"
[uplink]
url = "mqtts://broker.example.com"
[[bus]]
name = "b"
type = "tcp"
host = "h"
[[device]]
id = "d"
bus = "b"
  [[device.tag]]
  name = "t"
  address = 0
  [[device.tag]] # <- line 15
  name = "t"
  address = 1
)");
  EXPECT_TRUE(OnlyError(r, 15, 3, "device 'd' has two tags named 't'"));
}

TEST(ConfigErrorTest, SameTagNameOnTwoDevicesIsFine) {
  const ConfigResult r = Parse(R"([gateway]
id = "gw"
[uplink]
url = "mqtts://broker.example.com"
[[bus]]
name = "b"
type = "tcp"
host = "h"
[[device]]
id = "d1"
bus = "b"
[[device.tag]]
name = "t"
address = 0
[[device]]
id = "d2"
bus = "b"
[[device.tag]]
name = "t"
address = 0
)");
  EXPECT_TRUE(Ok(r));
}

TEST(ConfigErrorTest, DuplicateBusName) {
  const ConfigResult r = Parse(R"([gateway]
id = "gw"
[uplink]
url = "mqtts://broker.example.com"
[[bus]]
name = "b"
type = "tcp"
host = "h1"
[[bus]] # <- line 9
name = "b"
type = "tcp"
host = "h2"
[[device]]
id = "d"
bus = "b"
[[device.tag]]
name = "t"
address = 0
)");
  EXPECT_TRUE(OnlyError(r, 9, 1, "two buses are named 'b'"));
}

TEST(ConfigErrorTest, DeviceOnAnUndefinedBus) {
  const ConfigResult r = Parse(R"([gateway]
id = "gw"
[uplink]
url = "mqtts://broker.example.com"
[[bus]]
name = "b"
type = "tcp"
host = "h"
[[bus]]
name = "a"
type = "tcp"
host = "h"
[[device]]
id = "d"
bus = "c" # <- line 15
[[device.tag]]
name = "t"
address = 0
)");
  EXPECT_TRUE(
      OnlyError(r, 15, 7, "device 'd' is on bus 'c', which is not defined", "defined buses: a, b"));
}

TEST(ConfigErrorTest, MqttWithoutTlsNeedsInsecure) {
  const ConfigResult r = Parse(R"([gateway]
id = "gw"
[uplink]
url = "mqtt://broker.example.com" # <- line 4
[[bus]]
name = "b"
type = "tcp"
host = "h"
[[device]]
id = "d"
bus = "b"
[[device.tag]]
name = "t"
address = 0
)");
  EXPECT_TRUE(
      OnlyError(r, 4, 7, "[uplink].url 'mqtt://broker.example.com' has no TLS", "insecure = true"));
}

TEST(ConfigErrorTest, BadBrokerUrlInAListIsReportedAtThatElement) {
  const ConfigResult r = Parse(R"([gateway]
id = "gw"
[uplink]
url = ["mqtts://a.example.com", "http://b.example.com"] # <- line 4, column 33
[[bus]]
name = "b"
type = "tcp"
host = "h"
[[device]]
id = "d"
bus = "b"
[[device.tag]]
name = "t"
address = 0
)");
  EXPECT_TRUE(OnlyError(
      r, 4, 33, "[uplink].url 'http://b.example.com': broker URL must start with mqtts://"));
}

TEST(ConfigErrorTest, BrokerUrlWithBadPort) {
  const ConfigResult r = Parse(R"([gateway]
id = "gw"
[uplink]
url = "mqtts://broker.example.com:99999" # <- line 4
[[bus]]
name = "b"
type = "tcp"
host = "h"
[[device]]
id = "d"
bus = "b"
[[device.tag]]
name = "t"
address = 0
)");
  EXPECT_TRUE(OnlyError(r, 4, 7, "port must be 1..65535"));
}

TEST(ConfigErrorTest, InvalidNameCharacters) {
  const ConfigResult r = Parse(R"([gateway]
id = "gw"
[uplink]
url = "mqtts://broker.example.com"
[[bus]]
name = "b"
type = "tcp"
host = "h"
[[device]]
id = "a/b" # <- line 10
bus = "b"
[[device.tag]]
name = "t"
address = 0
)");
  EXPECT_TRUE(OnlyError(r, 10, 6, "[[device]].id: 'a/b' is not a valid name", "MQTT topics"));
}

TEST(ConfigErrorTest, NamesThatWouldBreakTopics) {
  const std::string long_name(65, 'x');
  const ConfigResult r = Parse(R"([gateway]
id = "gw 1"
[uplink]
url = "mqtts://broker.example.com"
[[bus]]
name = "b+"
type = "tcp"
host = "h"
[[device]]
id = ")" + long_name + R"("
bus = "b"
[[device.tag]]
name = "$SYS"
address = 0
[[device.tag]]
name = ""
address = 1
)");
  // The bus has no valid name, so the device's bus "b" is not defined either.
  ASSERT_EQ(r.errors.size(), 6u) << Dump(r);
  EXPECT_EQ(r.errors[0].line, 2);
  EXPECT_NE(r.errors[0].message.find("'gw 1' is not a valid name"), std::string::npos);
  EXPECT_EQ(r.errors[1].line, 6);
  EXPECT_NE(r.errors[1].message.find("'b+' is not a valid name"), std::string::npos);
  EXPECT_EQ(r.errors[2].line, 10);
  EXPECT_NE(r.errors[2].message.find("'" + long_name + "' is not a valid name"), std::string::npos);
  EXPECT_EQ(r.errors[3].line, 11);
  EXPECT_NE(r.errors[3].message.find("is on bus 'b', which is not defined"), std::string::npos);
  EXPECT_EQ(r.errors[4].line, 13);
  EXPECT_NE(r.errors[4].message.find("'$SYS' is not a valid name"), std::string::npos);
  EXPECT_EQ(r.errors[5].line, 16);
  EXPECT_NE(r.errors[5].message.find("'' is not a valid name"), std::string::npos);
  // 64 characters is the longest name allowed.
  const std::string longest(64, 'x');
  std::string ok_text = kMinimal;
  ok_text.replace(ok_text.find("id = \"d\""), 8, "id = \"" + longest + "\"");
  const ConfigResult ok = Parse(ok_text);
  ASSERT_TRUE(Ok(ok));
  EXPECT_EQ(ok.config->devices[0].id, longest);
}

TEST(ConfigErrorTest, UnknownBusType) {
  const ConfigResult r = Parse(R"([gateway]
id = "gw"
[uplink]
url = "mqtts://broker.example.com"
[[bus]]
name = "b"
type = "canbus" # <- line 7
host = "h"
[[device]]
id = "d"
bus = "b"
[[device.tag]]
name = "t"
address = 0
)");
  EXPECT_TRUE(OnlyError(r, 7, 8, "[[bus]].type: 'canbus' is not a bus type"));
}

TEST(ConfigErrorTest, Float32AtTheLastAddressRunsPastTheEnd) {
  const ConfigResult r = Parse(R"([gateway]
id = "gw"
[uplink]
url = "mqtts://broker.example.com"
[[bus]]
name = "b"
type = "tcp"
host = "h"
[[device]]
id = "d"
bus = "b"
[[device.tag]]
name = "t"
type = "float32"
address = 65535 # <- line 15
[[device.tag]]
name = "u"
type = "float32"
address = 65534
)");
  EXPECT_TRUE(OnlyError(r, 15, 11, "a float32 at 65535 runs past the last register (65535)"));
}

TEST(ConfigErrorTest, ScaleZero) {
  const ConfigResult r = Parse(R"([gateway]
id = "gw"
[uplink]
url = "mqtts://broker.example.com"
[[bus]]
name = "b"
type = "tcp"
host = "h"
[[device]]
id = "d"
bus = "b"
[[device.tag]]
name = "t"
address = 0
scale = 0 # <- line 15
[[device.tag]]
name = "u"
address = 1
scale = 0.0 # <- line 19
)");
  ASSERT_EQ(r.errors.size(), 2u) << Dump(r);
  EXPECT_EQ(std::tie(r.errors[0].line, r.errors[0].column), std::make_tuple(15, 9));
  EXPECT_EQ(r.errors[0].message, "[[device.tag]] of device 'd'.scale: must not be 0");
  EXPECT_FALSE(r.errors[0].hint.empty());
  EXPECT_EQ(std::tie(r.errors[1].line, r.errors[1].column), std::make_tuple(19, 9));
  EXPECT_EQ(r.errors[1].message, "[[device.tag]] of device 'd'.scale: must not be 0");
}

TEST(ConfigErrorTest, BadChoicesAndValues) {
  const ConfigResult r = Parse(R"([gateway]
id = "gw"
data_dir = "relative/dir"
[store]
sync = "always"
[uplink]
url = "mqtts://broker.example.com"
topic_prefix = "a/#"
[[bus]]
name = "b"
type = "tcp"
host = "h"
[[device]]
id = "d"
bus = "b"
[[device.tag]]
name = "t"
address = 0
table = "coil"
type = "float64"
order = "CDAB"
deadband = -1.0
)");
  ASSERT_EQ(r.errors.size(), 6u) << Dump(r);
  EXPECT_EQ(r.errors[0].line, 3);
  EXPECT_EQ(r.errors[0].message, "[gateway].data_dir: must be an absolute path");
  EXPECT_EQ(r.errors[1].line, 5);
  EXPECT_EQ(r.errors[1].message, "[store].sync: 'always' is not one of: normal, full");
  EXPECT_EQ(r.errors[2].line, 8);
  EXPECT_EQ(r.errors[2].message, "[uplink].topic_prefix: 'a/#' is not a valid topic prefix");
  EXPECT_EQ(r.errors[3].line, 20);
  EXPECT_NE(r.errors[3].message.find("type: a coil holds one bit: its type is bool, not float64"),
            std::string::npos);
  EXPECT_EQ(r.errors[4].line, 21);
  EXPECT_NE(r.errors[4].message.find("order: does not apply to a coil"), std::string::npos);
  EXPECT_EQ(r.errors[5].line, 22);
  EXPECT_NE(r.errors[5].message.find("deadband: applies to numeric types only, not bool"),
            std::string::npos);
}

TEST(ConfigErrorTest, NonFiniteFloatsAndEmptyUrlList) {
  const ConfigResult r = Parse(R"([gateway]
id = "gw"
[uplink]
url = [] # <- line 4
[[bus]]
name = "b"
type = "tcp"
host = "h"
[[device]]
id = "d"
bus = "b"
[[device.tag]]
name = "t"
address = 0
scale = inf # <- line 15
offset = nan # <- line 16
)");
  ASSERT_EQ(r.errors.size(), 3u) << Dump(r);
  EXPECT_EQ(std::tie(r.errors[0].line, r.errors[0].column), std::make_tuple(4, 7));
  EXPECT_EQ(r.errors[0].message, "[uplink].url: expected a string or a non-empty list of strings");
  EXPECT_EQ(std::tie(r.errors[1].line, r.errors[1].column), std::make_tuple(15, 9));
  EXPECT_EQ(r.errors[1].message, "[[device.tag]] of device 'd'.scale: must be a finite number");
  EXPECT_EQ(std::tie(r.errors[2].line, r.errors[2].column), std::make_tuple(16, 10));
  EXPECT_EQ(r.errors[2].message, "[[device.tag]] of device 'd'.offset: must be a finite number");
}

TEST(ConfigErrorTest, KeepaliveIsNotSilentlyTruncatedToWholeSeconds) {
  // MQTT keepalive is whole seconds. "5500ms" is in range (5s..1h) but is not a
  // whole number of seconds: it must be refused, not quietly read as 5 s.
  const ConfigResult r = Parse(R"([gateway]
id = "gw"
[uplink]
url = "mqtts://broker.example.com"
keepalive = "5500ms" # <- line 5
[[bus]]
name = "b"
type = "tcp"
host = "h"
[[device]]
id = "d"
bus = "b"
[[device.tag]]
name = "t"
address = 0
)");
  ASSERT_EQ(r.errors.size(), 1u) << Dump(r);
  EXPECT_EQ(r.errors[0].line, 5);
  EXPECT_EQ(r.errors[0].column, 13);
}

TEST_F(ConfigWithFilesTest, DirectoryAsCaFileIsRefused) {
  const ConfigResult r = Parse(R"([gateway]
id = "gw"
[uplink]
url = "mqtts://broker.example.com"
ca_file = ")" + dir_ + R"(" # <- line 5
[[bus]]
name = "b"
type = "tcp"
host = "h"
[[device]]
id = "d"
bus = "b"
[[device.tag]]
name = "t"
address = 0
)");
  ASSERT_EQ(r.errors.size(), 1u) << Dump(r);
  EXPECT_EQ(r.errors[0].line, 5);
  EXPECT_EQ(r.errors[0].column, 11);
}

TEST_F(ConfigWithFilesTest, ApiKeyFileThatDoesNotExist) {
  const std::string missing = dir_ + "/missing.key";
  const ConfigResult r = Parse(R"([gateway]
id = "gw"
[uplink]
url = "mqtts://broker.example.com"
api_key_file = ")" + missing + R"(" # <- line 5
[[bus]]
name = "b"
type = "tcp"
host = "h"
[[device]]
id = "d"
bus = "b"
[[device.tag]]
name = "t"
address = 0
)");
  EXPECT_TRUE(OnlyError(r, 5, 16, "[uplink].api_key_file: key file " + missing + ": No such file"));
}

TEST_F(ConfigWithFilesTest, CertFileWithoutKeyFile) {
  const std::string cert = WriteFile("client.pem", "-----BEGIN CERTIFICATE-----\n", 0644);
  const ConfigResult r = Parse(R"([gateway]
id = "gw"
[uplink]
url = "mqtts://broker.example.com"
cert_file = ")" + cert + R"(" # <- line 5, the value starts at column 13
[[bus]]
name = "b"
type = "tcp"
host = "h"
[[device]]
id = "d"
bus = "b"
[[device.tag]]
name = "t"
address = 0
)");
  EXPECT_TRUE(
      OnlyError(r, 5, 13, "[uplink].cert_file: cert_file and key_file go together", "mutual TLS"));
}

TEST_F(ConfigWithFilesTest, KeyFileWithoutCertFile) {
  const std::string key = WriteFile("client.key", "-----BEGIN PRIVATE KEY-----\n", 0600);
  const ConfigResult r = Parse(R"([gateway]
id = "gw"
[uplink]
url = "mqtts://broker.example.com"
key_file = ")" + key + R"(" # <- line 5, the value starts at column 12
[[bus]]
name = "b"
type = "tcp"
host = "h"
[[device]]
id = "d"
bus = "b"
[[device.tag]]
name = "t"
address = 0
)");
  EXPECT_TRUE(OnlyError(r, 5, 12, "[uplink].key_file: cert_file and key_file go together"));
}

TEST_F(ConfigWithFilesTest, UnreadableCaFile) {
  const std::string missing = dir_ + "/no-such-ca.pem";
  const ConfigResult r = Parse(R"([gateway]
id = "gw"
[uplink]
url = "mqtts://broker.example.com"
ca_file = ")" + missing + R"(" # <- line 5
[[bus]]
name = "b"
type = "tcp"
host = "h"
[[device]]
id = "d"
bus = "b"
[[device.tag]]
name = "t"
address = 0
)");
  EXPECT_TRUE(OnlyError(r, 5, 11, "[uplink].ca_file: cannot read '" + missing + "'"));
}

TEST_F(ConfigWithFilesTest, ApiKeyFileReadableByOthersIsRefused) {
  const std::string key = WriteFile("gw.key", "k3y-that-must-not-leak\n", 0644);
  const ConfigResult r = Parse(R"([gateway]
id = "gw"
[uplink]
url = "mqtts://broker.example.com"
api_key_file = ")" + key + R"(" # <- line 5, the value starts at column 16
[[bus]]
name = "b"
type = "tcp"
host = "h"
[[device]]
id = "d"
bus = "b"
[[device.tag]]
name = "t"
address = 0
)");
  ASSERT_TRUE(OnlyError(r, 5, 16, "[uplink].api_key_file: key file " + key + " has mode 0644"));
  EXPECT_EQ(r.errors[0].ToString().find("k3y-that-must-not-leak"), std::string::npos);
}

TEST_F(ConfigWithFilesTest, ApiKeyFileWithMode0600IsAccepted) {
  const std::string key = WriteFile("gw.key", "k3y\n", 0600);
  const ConfigResult r = Parse(R"([gateway]
id = "gw"
[uplink]
url = "mqtts://broker.example.com"
api_key_file = ")" + key + R"("
[[bus]]
name = "b"
type = "tcp"
host = "h"
[[device]]
id = "d"
bus = "b"
[[device.tag]]
name = "t"
address = 0
)");
  ASSERT_TRUE(Ok(r));
  EXPECT_EQ(r.config->uplink.api_key_file, key);
}

TEST(ConfigErrorTest, NoDevicesAtAll) {
  const ConfigResult r = Parse(R"([gateway]
id = "gw"
[uplink]
url = "mqtts://broker.example.com"
[[bus]]
name = "b"
type = "tcp"
host = "h"
)");
  // Nothing to point at: the error is at the start of the file.
  EXPECT_TRUE(OnlyError(r, 1, 1, "no [[device]] is configured", "[[device.tag]]"));
}

TEST(ConfigErrorTest, DeviceWrittenAsAPlainTable) {
  const ConfigResult r = Parse(R"([gateway]
id = "gw"
[uplink]
url = "mqtts://broker.example.com"
[[bus]]
name = "b"
type = "tcp"
host = "h"
[device] # <- line 9
id = "d"
)");
  ASSERT_EQ(r.errors.size(), 2u) << Dump(r);
  EXPECT_EQ(std::tie(r.errors[0].line, r.errors[0].column), std::make_tuple(1, 1));
  EXPECT_EQ(r.errors[0].message, "no [[device]] is configured");
  EXPECT_EQ(std::tie(r.errors[1].line, r.errors[1].column), std::make_tuple(9, 1));
  EXPECT_EQ(r.errors[1].message, "device must be written as [[device]] tables");
}

TEST(ConfigErrorTest, EveryErrorIsReportedSortedByLineAndColumn) {
  // The parser checks sections in a fixed order (unknown sections, gateway,
  // store, uplink, buses, devices); the file has them in another order.
  const ConfigResult r = Parse(R"([[device]]
id = "d"
bus = "b"
unit = 256
[[device.tag]]
name = "t"
address = 0
[[bus]]
name = "b"
type = "tcp"
host = "h"
port = 0
[gateway]
id = "bad id"
[uplink]
url = ["mqtt://a", "http://b"]
[[alert]]
id = "x"
)");
  EXPECT_FALSE(r.config.has_value());
  ASSERT_EQ(r.errors.size(), 6u) << Dump(r);
  const std::vector<std::tuple<int, int, std::string>> expected = {
      {4, 8, "[[device]].unit: 256 is out of range 0..255"},
      {12, 8, "[[bus]].port: 0 is out of range 1..65535"},
      {14, 6, "[gateway].id: 'bad id' is not a valid name"},
      {16, 8, "[uplink].url 'mqtt://a' has no TLS"},
      {16, 20, "[uplink].url 'http://b': broker URL must start with mqtts://"},
      {17, 3, "unknown section 'alert'"},
  };
  for (size_t i = 0; i < expected.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(r.errors[i].file, kFile);
    EXPECT_EQ(r.errors[i].line, std::get<0>(expected[i]));
    EXPECT_EQ(r.errors[i].column, std::get<1>(expected[i]));
    EXPECT_EQ(r.errors[i].message.rfind(std::get<2>(expected[i]), 0), 0u) << r.errors[i].message;
  }
}

// ---------------------------------------------------------------------------
// LoadConfig, ConfigError::ToString

TEST_F(ConfigWithFilesTest, LoadConfigReadsTheFile) {
  const std::string path = WriteFile("tagrelay.toml", kMinimal, 0644);
  const ConfigResult loaded = LoadConfig(path);
  ASSERT_TRUE(Ok(loaded));
  EXPECT_EQ(loaded.config->path, path);
  EXPECT_EQ(loaded.config->digest, Parse(kMinimal).config->digest);
}

TEST_F(ConfigWithFilesTest, LoadConfigReadsAFileOfTheLargestSize) {
  // Read in pieces: all of a 4 MiB file, none of it lost or repeated.
  std::string text = kMinimal;
  text += "\n#";
  text.append((4u << 20) - text.size() - 1, 'x');
  text += "\n";
  ASSERT_EQ(text.size(), 4u << 20);
  const ConfigResult loaded = LoadConfig(WriteFile("big.toml", text, 0644));
  ASSERT_TRUE(Ok(loaded));
  EXPECT_EQ(loaded.config->digest, Parse(text).config->digest);
}

TEST_F(ConfigWithFilesTest, LoadConfigRefusesAFileLargerThan4MiB) {
  std::string text = kMinimal;
  text += "\n#";
  text.append((4u << 20) - text.size(), 'x');
  text += "\n";
  const std::string path = WriteFile("huge.toml", text, 0644);
  const ConfigResult r = LoadConfig(path);
  EXPECT_FALSE(r.config.has_value());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].ToString(),
            path + ": error: the file is larger than 4 MiB; is it a config file?");
}

TEST_F(ConfigWithFilesTest, LoadConfigOfAMissingFileHasNoPlace) {
  const std::string path = dir_ + "/missing.toml";
  const ConfigResult r = LoadConfig(path);
  EXPECT_FALSE(r.config.has_value());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].line, 0);
  EXPECT_EQ(r.errors[0].ToString().rfind(path + ": error: cannot read the file: ", 0), 0u)
      << r.errors[0].ToString();
}

TEST(ConfigErrorTest, ToStringFormats) {
  EXPECT_EQ((ConfigError{"a.toml", 3, 7, "bad thing", "do this"}).ToString(),
            "a.toml:3:7: error: bad thing (hint: do this)");
  EXPECT_EQ((ConfigError{"a.toml", 3, 7, "bad thing", ""}).ToString(),
            "a.toml:3:7: error: bad thing");
  EXPECT_EQ((ConfigError{"a.toml", 0, 0, "unreadable", ""}).ToString(),
            "a.toml: error: unreadable");
}

// ---------------------------------------------------------------------------
// ParseDuration, ParseByteSize

TEST(ParseDurationTest, NumberAndUnit) {
  EXPECT_EQ(ParseDuration("1s"), milliseconds(1000));
  EXPECT_EQ(ParseDuration("250ms"), milliseconds(250));
  EXPECT_EQ(ParseDuration("2m"), milliseconds(120000));
  EXPECT_EQ(ParseDuration("1h"), milliseconds(3600000));
  EXPECT_EQ(ParseDuration("0.5s"), milliseconds(500));
  EXPECT_EQ(ParseDuration("1.5m"), milliseconds(90000));
  EXPECT_EQ(ParseDuration("0ms"), milliseconds(0));
  EXPECT_EQ(ParseDuration("24h"), milliseconds(86400000));
}

TEST(ParseDurationTest, Rejects) {
  for (const char* bad : {"", "s", "1", "10 s", " 1s", "1s ", "1sec", "1S", "1d", "-1s", "+1s",
                          ".5s", "1.2.3s", "1e3ms", "0.5ms", "0.0001s", "99999999999999999999h"}) {
    EXPECT_FALSE(ParseDuration(bad).has_value()) << "'" << bad << "'";
  }
}

TEST(ParseDurationTest, WholeMillisecondsWrittenInSecondsAreAccepted) {
  EXPECT_EQ(ParseDuration("0.25s"), milliseconds(250));
  EXPECT_EQ(ParseDuration("1.1s"), milliseconds(1100));
  EXPECT_EQ(ParseDuration("1.005s"), milliseconds(1005));
  EXPECT_EQ(ParseDuration("1.015s"), milliseconds(1015));
}

TEST(ParseByteSizeTest, NumberAndUnit) {
  EXPECT_EQ(ParseByteSize("256MiB"), 256ull << 20);
  EXPECT_EQ(ParseByteSize("1GiB"), 1ull << 30);
  EXPECT_EQ(ParseByteSize("500KB"), 500000u);
  EXPECT_EQ(ParseByteSize("1048576"), 1048576u);
  EXPECT_EQ(ParseByteSize("10B"), 10u);
  EXPECT_EQ(ParseByteSize("4KiB"), 4096u);
  EXPECT_EQ(ParseByteSize("3MB"), 3000000u);
  EXPECT_EQ(ParseByteSize("2GB"), 2000000000u);
  EXPECT_EQ(ParseByteSize("0"), 0u);
  EXPECT_EQ(ParseByteSize("1048576GiB"), 1ull << 50);  // the largest size accepted
}

TEST(ParseByteSizeTest, Rejects) {
  for (const char* bad : {"", "MiB", "1.5MiB", "-1", "1 MiB", "1mib", "1TiB", "1K", "0x10",
                          "1048577GiB", "1234567890123456"}) {
    EXPECT_FALSE(ParseByteSize(bad).has_value()) << "'" << bad << "'";
  }
}

// ---------------------------------------------------------------------------
// The key reference

TEST(ConfigReferenceTest, DocumentsEveryKeyUnderItsSection) {
  const std::string md = ConfigReferenceMarkdown();
  // Walk the Markdown in the order of ConfigKeys(): each section's heading once,
  // then one row per key with its type, default and description.
  size_t pos = 0;
  std::string_view section;
  int sections = 0;
  for (const ConfigKey& k : ConfigKeys()) {
    SCOPED_TRACE(std::string(k.section) + "." + std::string(k.key));
    if (k.section != section) {
      section = k.section;
      ++sections;
      const bool array = section == "bus" || section == "device" || section == "device.tag" ||
                         section == "alarm" || section == "counter";
      // The [profile] table of a profile file has a note between heading and table.
      const std::string heading = "\n### " + std::string(array ? "[[" : "[") +
                                  std::string(section) + (array ? "]]" : "]") +
                                  (section == "profile" ? " of a profile file\n" : "\n");
      const size_t at = md.find(heading, pos);
      ASSERT_NE(at, std::string::npos) << heading;
      EXPECT_EQ(md.find(heading), at) << heading << " appears twice";
      pos = at + heading.size();
      if (section == "profile") pos = md.find("\n\n", pos + 1) + 1;
      const std::string table_head =
          "\n| key | type | default | meaning |\n| --- | --- | --- | --- |\n";
      ASSERT_EQ(md.compare(pos, table_head.size(), table_head), 0) << md.substr(pos, 80);
      pos += table_head.size();
    }
    std::string type_cell;  // a '|' inside a cell is escaped, or it would end the cell
    for (char c : k.type) {
      if (c == '|') type_cell += '\\';
      type_cell += c;
    }
    std::string row = "| `" + std::string(k.key) + "` | " + type_cell + " | ";
    if (k.default_value == "required") {
      row += "required";
    } else if (k.default_value.empty()) {
      row += "none";
    } else {
      row += "`" + std::string(k.default_value) + "`";
    }
    row += " | " + std::string(k.description) + " |\n";
    const size_t at = md.find(row, pos);
    ASSERT_NE(at, std::string::npos) << row;
    EXPECT_EQ(md.find("\n### ", pos), md.find("\n### ", at)) << "the row is under another heading";
    pos = at + row.size();
  }
  EXPECT_EQ(sections, 10);
  EXPECT_EQ(pos, md.size());
}

TEST(ConfigReferenceTest, EveryTableRowHasFourCells) {
  const std::string md = ConfigReferenceMarkdown();
  size_t rows = 0;
  size_t start = 0;
  while (start < md.size()) {
    size_t end = md.find('\n', start);
    if (end == std::string::npos) end = md.size();
    const std::string line = md.substr(start, end - start);
    start = end + 1;
    if (line.empty() || line[0] != '|') continue;
    int bars = 0;
    for (size_t i = 0; i < line.size(); ++i) {
      if (line[i] == '|' && (i == 0 || line[i - 1] != '\\')) ++bars;
    }
    EXPECT_EQ(bars, 5) << line;
    ++rows;
  }
  EXPECT_EQ(rows, ConfigKeys().size() + 2 * 10);  // a header and a rule per section
}

TEST(ConfigReferenceTest, EveryDocumentedKeyIsAccepted) {
  // The parser accepts exactly the documented keys: none of them is "unknown".
  // Keys that kMinimal already sets are skipped (TOML forbids setting one twice);
  // kMinimal parsing cleanly covers them.
  const std::string minimal = kMinimal;
  for (const ConfigKey& k : ConfigKeys()) {
    const std::string key(k.key);
    std::string text = minimal;
    std::string header;
    if (k.section == "gateway") header = "[gateway]\n";
    if (k.section == "uplink") header = "[uplink]\n";
    if (k.section == "bus") header = "[[bus]]\n";
    if (k.section == "device") header = "[[device]]\n";
    if (k.section == "device.tag") header = "[[device.tag]]\n";
    if (k.section == "store" || k.section == "status") {
      header = "[" + std::string(k.section) + "]\n";
      text.insert(text.find("[uplink]"), header);
    }
    if (k.section == "alarm" || k.section == "counter") {
      header = "[[" + std::string(k.section) + "]]\n";
      text += "\n" + header;
    }
    if (k.section == "profile") continue;  // keys of profile files: profile_test.cpp
    ASSERT_FALSE(header.empty()) << "unexpected section " << k.section;
    const size_t section_at = text.find(header);
    const size_t next = text.find("\n[", section_at + 1);
    const std::string body = text.substr(section_at, next - section_at);
    if (body.find("\n" + key + " = ") != std::string::npos) continue;
    if (key == "tag") continue;  // the [[device.tag]] tables of kMinimal

    text.insert(section_at + header.size(), key + " = 1\n");
    const ConfigResult r = Parse(text);
    for (const ConfigError& e : r.errors) {
      EXPECT_EQ(e.message.find("unknown key"), std::string::npos)
          << k.section << "." << key << ": " << e.ToString();
    }
  }
}

TEST(ConfigReferenceTest, DocsConfigurationMdIsInStepWithTheParser) {
  // docs/configuration.md holds the generated reference between two markers.
  const std::filesystem::path doc =
      std::filesystem::path(__FILE__).parent_path().parent_path().parent_path() / "docs" /
      "configuration.md";
  std::ifstream in(doc);
  ASSERT_TRUE(in) << "no " << doc << " next to the sources";
  std::string text;
  for (std::string line; std::getline(in, line);) text += line + "\n";
  const std::string begin = "<!-- BEGIN KEY REFERENCE -->\n";
  const std::string end = "<!-- END KEY REFERENCE -->";
  const size_t b = text.find(begin);
  const size_t e = text.find(end);
  ASSERT_NE(b, std::string::npos);
  ASSERT_NE(e, std::string::npos);
  ASSERT_LT(b, e);
  EXPECT_EQ(text.substr(b + begin.size(), e - b - begin.size()), ConfigReferenceMarkdown())
      << "regenerate the reference: tagrelay check-config --reference";
}

}  // namespace
}  // namespace tagrelay
