// Tests of the uplink's configuration keys (agent/config.h): MQTT version,
// byte bounds, backlog rate, reconnect backoff and the devices' key files.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <string>

#include "agent/config.h"
#include "fakes/temp_dir.h"

namespace tagrelay {
namespace {

using std::chrono::milliseconds;

class UplinkConfigTest : public ::testing::Test {
 protected:
  std::string KeyFile(const std::string& name, mode_t mode) {
    const std::string path = dir_.File(name);
    std::ofstream(path) << "device-secret\n";
    chmod(path.c_str(), mode);
    return path;
  }

  // A valid config with `uplink` appended to [uplink] and `device` to the [[device]].
  ConfigResult Parse(const std::string& uplink, const std::string& device = "") {
    const std::string text = "[gateway]\nid = \"gw\"\n[uplink]\nurl = \"mqtts://b.example\"\n" +
                             uplink +
                             "\n[[bus]]\nname = \"b\"\ntype = \"tcp\"\nhost = \"10.0.0.5\"\n"
                             "[[device]]\nid = \"d\"\nbus = \"b\"\n" +
                             device + "\n[[device.tag]]\nname = \"t\"\naddress = 0\n";
    return ParseConfig(text, "test.toml");
  }

  static std::string Errors(const ConfigResult& r) {
    std::string out;
    for (const ConfigError& e : r.errors) out += e.ToString() + "\n";
    return out;
  }

  TempDir dir_;
};

TEST_F(UplinkConfigTest, Defaults) {
  const ConfigResult r = Parse("");
  ASSERT_TRUE(r.config) << Errors(r);
  const UplinkConfig& u = r.config->uplink;
  EXPECT_EQ(u.mqtt_version, uplink::MqttVersion::kV5);
  EXPECT_EQ(u.batch_max_bytes, 256u * 1024);
  EXPECT_EQ(u.backlog_rate, 0u);
  EXPECT_EQ(u.reconnect_min, milliseconds(500));
  EXPECT_EQ(u.reconnect_max, milliseconds(30000));
  EXPECT_EQ(r.config->devices[0].api_key_file, "");
}

TEST_F(UplinkConfigTest, EveryKeySet) {
  const std::string key = KeyFile("d.key", 0600);
  const ConfigResult r = Parse(
      "mqtt_version = \"5\"\nbatch_max_bytes = \"64KiB\"\nbacklog_rate = \"16KiB\"\n"
      "reconnect_min = \"200ms\"\nreconnect_max = \"10s\"\n",
      "api_key_file = \"" + key + "\"\n");
  ASSERT_TRUE(r.config) << Errors(r);
  const UplinkConfig& u = r.config->uplink;
  EXPECT_EQ(u.batch_max_bytes, 64u * 1024);
  EXPECT_EQ(u.backlog_rate, 16u * 1024);
  EXPECT_EQ(u.reconnect_min, milliseconds(200));
  EXPECT_EQ(u.reconnect_max, milliseconds(10000));
  EXPECT_EQ(r.config->devices[0].api_key_file, key);
}

TEST_F(UplinkConfigTest, Mqtt311IsSelectableButCannotCarrySignatures) {
  const ConfigResult plain = Parse("mqtt_version = \"3.1.1\"\n");
  ASSERT_TRUE(plain.config) << Errors(plain);
  EXPECT_EQ(plain.config->uplink.mqtt_version, uplink::MqttVersion::kV311);

  const std::string key = KeyFile("d.key", 0600);
  const ConfigResult r = Parse("mqtt_version = \"3.1.1\"\n", "api_key_file = \"" + key + "\"\n");
  ASSERT_FALSE(r.config);
  ASSERT_EQ(r.errors.size(), 1u) << Errors(r);
  EXPECT_EQ(r.errors[0].line, 14);
  EXPECT_NE(r.errors[0].message.find("MQTT 3.1.1 cannot carry signatures"), std::string::npos);

  const ConfigResult bad = Parse("mqtt_version = \"4\"\n");
  ASSERT_EQ(bad.errors.size(), 1u) << Errors(bad);
  EXPECT_EQ(bad.errors[0].message, "[uplink].mqtt_version: '4' is not one of: 5, 3.1.1");
}

TEST_F(UplinkConfigTest, ADeviceKeyFileOthersCanReadIsRefusedWithoutShowingTheKey) {
  const std::string key = KeyFile("d.key", 0640);
  const ConfigResult r = Parse("", "api_key_file = \"" + key + "\"\n");
  ASSERT_FALSE(r.config);
  ASSERT_EQ(r.errors.size(), 1u) << Errors(r);
  EXPECT_EQ(r.errors[0].line, 13);
  EXPECT_NE(r.errors[0].message.find("[[device]].api_key_file: key file " + key + " has mode 0640"),
            std::string::npos)
      << r.errors[0].message;
  EXPECT_EQ(Errors(r).find("device-secret"), std::string::npos);
}

TEST_F(UplinkConfigTest, OutOfRangeValuesAreErrors) {
  EXPECT_NE(Errors(Parse("batch_max_bytes = 100\n")).find("below the minimum of 1024"),
            std::string::npos);
  EXPECT_NE(Errors(Parse("batch_max_bytes = \"17MiB\"\n")).find("above the maximum of 16MiB"),
            std::string::npos);
  EXPECT_NE(Errors(Parse("backlog_rate = \"fast\"\n")).find("[uplink].backlog_rate: not a size"),
            std::string::npos);
  EXPECT_NE(Errors(Parse("reconnect_min = \"5s\"\nreconnect_max = \"1s\"\n"))
                .find("[uplink].reconnect_max: must not be below reconnect_min"),
            std::string::npos);
  EXPECT_NE(Errors(Parse("reconnect_min = \"10ms\"\n")).find("out of range 100ms..60s"),
            std::string::npos);
}

TEST_F(UplinkConfigTest, AReconnectMinAboveTheDefaultMaxRaisesTheMax) {
  const ConfigResult r = Parse("reconnect_min = \"45s\"\n");
  ASSERT_TRUE(r.config) << Errors(r);
  EXPECT_EQ(r.config->uplink.reconnect_max, milliseconds(45000));
}

}  // namespace
}  // namespace tagrelay
