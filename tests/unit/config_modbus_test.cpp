// Tests of the Modbus part of agent/config.cpp: bus types, serial settings,
// register numbers, data types, byte orders and their errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "agent/config.h"

namespace tagrelay {
namespace {

using std::chrono::milliseconds;

constexpr const char* kFile = "modbus.toml";
constexpr const char* kHead = R"([gateway]
id = "gw"
[uplink]
url = "mqtts://broker.example.com"
)";

std::string Dump(const ConfigResult& r) {
  std::string out;
  for (const ConfigError& e : r.errors) out += "\n  " + e.ToString();
  return out.empty() ? " (no errors)" : out;
}

// Parses kHead + `body`; the body's first line is line 5.
ConfigResult Parse(const std::string& body) { return ParseConfig(kHead + body, kFile); }

// Exactly one error, on `line` (of the whole file), containing `text`.
::testing::AssertionResult OneError(const ConfigResult& r, int line, std::string_view text) {
  if (r.errors.size() != 1 || r.errors[0].line != line ||
      r.errors[0].message.find(text) == std::string::npos) {
    return ::testing::AssertionFailure()
           << "expected one error on line " << line << " with '" << text << "', got" << Dump(r);
  }
  return ::testing::AssertionSuccess();
}

const char* kTcpBus = R"([[bus]]
name = "b"
type = "tcp"
host = "h"
)";

// A device on bus "b" with one tag whose keys are `tag` (the tag's keys start
// on line 13 when kTcpBus comes first).
std::string Device(const std::string& tag, const std::string& device_keys = "") {
  return std::string(R"([[device]]
id = "d"
bus = "b"
)") + device_keys +
         "[[device.tag]]\nname = \"t\"\n" + tag;
}

TEST(ConfigModbusTest, SerialBusWithEverySetting) {
  const ConfigResult r = Parse(R"([[bus]]
name = "line1"
type = "rtu"
port = "/dev/ttyUSB0"
baud = 9600
parity = "none"
data_bits = 8
stop_bits = 2
rs485 = true
rts = "up"
timeout = "200ms"
retries = 2
backoff_max = "1m"
[[device]]
id = "meter"
bus = "line1"
unit = 247
max_registers = 60
max_gap = 4
[[device.tag]]
name = "v"
register = 30001
type = "float32"
order = "CDAB"
)");
  ASSERT_TRUE(r.errors.empty()) << Dump(r);
  const BusConfig& b = r.config->buses[0];
  EXPECT_EQ(b.type, "rtu");
  EXPECT_EQ(b.serial.device, "/dev/ttyUSB0");
  EXPECT_EQ(b.serial.baud, 9600);
  EXPECT_EQ(b.serial.parity, modbus::Parity::kNone);
  EXPECT_EQ(b.serial.stop_bits, 2);
  EXPECT_TRUE(b.serial.rs485);
  EXPECT_EQ(b.serial.rts, modbus::RtsMode::kUp);
  EXPECT_EQ(b.timeout, milliseconds(200));
  EXPECT_EQ(b.retries, 2);
  EXPECT_EQ(b.backoff_max, milliseconds(60000));
  const modbus::EndpointSpec e = b.Endpoint();
  EXPECT_EQ(e.type, modbus::BusType::kRtu);
  EXPECT_EQ(e.serial.device, "/dev/ttyUSB0");
  const modbus::DeviceSpec d = r.config->devices[0].Spec();
  EXPECT_EQ(d.unit_id, 247);
  EXPECT_EQ(d.limits.max_registers, 60);
  EXPECT_EQ(d.limits.max_gap, 4);
  ASSERT_EQ(d.tags.size(), 1u);
  EXPECT_EQ(d.tags[0].table, modbus::Table::kInput);
  EXPECT_EQ(d.tags[0].address, 0);
  EXPECT_EQ(d.tags[0].order, modbus::WordOrder::kCDAB);
  EXPECT_EQ(&d.tags[0], &r.config->devices[0].tags[0]) << "the poller's spec shares the tags";
  EXPECT_EQ(r.config->devices[0].tag_descriptions.size(), 0u) << "no tag has a description";
}

TEST(ConfigModbusTest, RtuOverTcpBus) {
  const ConfigResult r = Parse(R"([[bus]]
name = "b"
type = "rtu-over-tcp"
host = "10.1.1.9"
port = 4001
)" + Device("address = 3\n"));
  ASSERT_TRUE(r.errors.empty()) << Dump(r);
  EXPECT_EQ(r.config->buses[0].Endpoint().type, modbus::BusType::kRtuOverTcp);
  EXPECT_EQ(r.config->buses[0].Endpoint().port, 4001);
}

TEST(ConfigModbusTest, EveryTypeAndTable) {
  const ConfigResult r = Parse(std::string(kTcpBus) + R"([[device]]
id = "d"
bus = "b"
[[device.tag]]
name = "run"
table = "coil"
address = 3
[[device.tag]]
name = "alarm"
register = "100017"
[[device.tag]]
name = "flag"
address = 9
type = "bit"
bit = 15
[[device.tag]]
name = "energy"
address = 10
type = "uint64"
order = "GHEFCDAB"
scale = 0.001
[[device.tag]]
name = "model"
address = 20
type = "string"
length = 12
order = "BADC"
[[device.tag]]
name = "fast"
register = "00002"
poll = "100ms"
[[device.tag]]
name = "d64"
address = 30
type = "float64"
order = "DCBA"
)");
  ASSERT_TRUE(r.errors.empty()) << Dump(r);
  const auto& t = r.config->devices[0].tags;
  EXPECT_EQ(t[0].table, modbus::Table::kCoil);
  EXPECT_EQ(t[0].type, modbus::DataType::kBool) << "the default type of a coil";
  EXPECT_EQ(t[1].table, modbus::Table::kDiscrete);
  EXPECT_EQ(t[1].address, 16);
  EXPECT_EQ(t[2].type, modbus::DataType::kBit);
  EXPECT_EQ(t[2].bit, 15);
  EXPECT_EQ(t[3].type, modbus::DataType::kUint64);
  EXPECT_EQ(t[3].order, modbus::WordOrder::kCDAB);
  EXPECT_EQ(t[4].length, 12);
  EXPECT_EQ(t[4].order, modbus::WordOrder::kBADC);
  EXPECT_EQ(t[5].table, modbus::Table::kCoil);
  EXPECT_EQ(t[5].address, 1);
  EXPECT_EQ(t[5].poll, milliseconds(100));
  EXPECT_EQ(t[6].order, modbus::WordOrder::kDCBA);
}

TEST(ConfigModbusTest, SerialBusErrors) {
  EXPECT_TRUE(OneError(Parse(R"([[bus]]
name = "b"
type = "rtu"
port = 502
)" + Device("address = 0\n")),
                       8, "port: a serial bus's port is the path of its device"));
  EXPECT_TRUE(OneError(Parse(R"([[bus]]
name = "b"
type = "rtu"
port = "/dev/ttyS0"
host = "x"
)" + Device("address = 0\n")),
                       9, "host: applies to tcp and rtu-over-tcp buses"));
  EXPECT_TRUE(OneError(Parse(R"([[bus]]
name = "b"
type = "rtu"
port = "/dev/ttyS0"
baud = 12345
)" + Device("address = 0\n")),
                       9, "baud: 12345 is not a standard baud rate"));
  EXPECT_TRUE(
      OneError(Parse(std::string(kTcpBus) + "parity = \"even\"\n" + Device("address = 0\n")), 9,
               "parity: applies to rtu buses only"));
  EXPECT_TRUE(OneError(Parse(R"([[bus]]
name = "b"
type = "rtu"
port = "/dev/ttyS0"
)" + Device("address = 0\n", "unit = 0\n")),
                       12, "unit 0 cannot answer on rtu bus 'b'"));
  EXPECT_TRUE(OneError(Parse(std::string(kTcpBus) + "retries = 9\n" + Device("address = 0\n")), 9,
                       "retries: 9 is out of range 0..5"));
}

TEST(ConfigModbusTest, TagErrors) {
  // The error names the line of the key `key`, which must be in `tag`.
  const auto tag_error = [](const std::string& tag, std::string_view text,
                            const std::string& device_keys = "") {
    const std::string key(text.substr(0, text.find(':')));
    const size_t at = tag.find(key + " =");
    const int line =
        14 + static_cast<int>(
                 std::count(device_keys.begin(), device_keys.end(), '\n') +
                 std::count(tag.begin(), tag.begin() + static_cast<std::ptrdiff_t>(at), '\n'));
    return OneError(Parse(std::string(kTcpBus) + Device(tag, device_keys)), line, text);
  };
  EXPECT_TRUE(tag_error("register = 40001\naddress = 0\n",
                        "register: give either address (with table) or register"));
  EXPECT_TRUE(tag_error("register = 40001\ntable = \"input\"\n",
                        "register: register 40001 is in the holding table, but table = \"input\""));
  EXPECT_TRUE(tag_error("register = 1\n", "register: '1' is not a register number"));
  EXPECT_TRUE(tag_error("address = 0\ntype = \"int32\"\norder = \"ABCDEFGH\"\n",
                        "order: 'ABCDEFGH' is an 8-byte order; a int32 takes"));
  EXPECT_TRUE(tag_error("address = 0\ntype = \"uint16\"\nbit = 3\n",
                        "bit: applies to type = \"bit\" only"));
  EXPECT_TRUE(tag_error("address = 0\ntype = \"bool\"\nscale = 2.0\n",
                        "scale: applies to numeric types only, not bool"));
  EXPECT_TRUE(tag_error("address = 0\ntype = \"string\"\nlength = 20\n",
                        "length: a string of 10 registers does not fit in one read of 8",
                        "max_registers = 8\n"));
  EXPECT_TRUE(tag_error("address = 0\ntype = \"string\"\nlength = 4\norder = \"CDAB\"\n",
                        "order: a string's order is ABCD"));
  EXPECT_TRUE(tag_error("address = 65534\ntype = \"float64\"\n",
                        "address: a float64 at 65534 runs past the last register"));
  EXPECT_TRUE(tag_error("address = 0\norder = \"ABDC\"\n", "order: 'ABDC' is not a byte order"));
}

TEST(ConfigModbusTest, MissingBitAndLength) {
  ConfigResult r = Parse(std::string(kTcpBus) + Device("address = 0\ntype = \"bit\"\n"));
  ASSERT_EQ(r.errors.size(), 1u) << Dump(r);
  EXPECT_NE(r.errors[0].message.find("missing required key 'bit'"), std::string::npos);
  r = Parse(std::string(kTcpBus) + Device("address = 0\ntype = \"string\"\n"));
  ASSERT_EQ(r.errors.size(), 1u) << Dump(r);
  EXPECT_NE(r.errors[0].message.find("missing required key 'length'"), std::string::npos);
}

}  // namespace
}  // namespace tagrelay
