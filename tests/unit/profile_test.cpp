// Device profiles: every shipped profile (etc/profiles) loads and plans, with
// the register map of its maker's manual; a device takes a profile's tags,
// overrides some, picks some; profile errors carry the profile file's place.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>

#include "agent/config.h"
#include "drivers/modbus/request_plan.h"
#include "fakes/temp_dir.h"

namespace tagrelay {
namespace {

const std::string kProfiles = TAGRELAY_PROFILES_DIR;

std::string Config(const std::string& device_lines, const std::string& dirs = kProfiles) {
  return "[gateway]\nid = \"gw\"\nprofile_dirs = [\"" + dirs +
         "\"]\n[uplink]\nurl = \"mqtts://broker.example.com\"\n[[bus]]\nname = \"b\"\ntype = "
         "\"tcp\"\nhost = \"10.0.0.5\"\n[[device]]\nid = \"d\"\nbus = \"b\"\n" +
         device_lines;
}

std::string Dump(const ConfigResult& r) {
  std::string out;
  for (const ConfigError& e : r.errors) out += "\n  " + e.ToString();
  return out;
}

const modbus::TagSpec* FindTag(const DeviceConfig& d, const std::string& name) {
  for (const modbus::TagSpec& t : d.tags) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

std::vector<std::string> ShippedProfiles() {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(kProfiles)) {
    if (e.path().extension() == ".toml") names.push_back(e.path().stem().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

TEST(ProfileTest, EveryShippedProfileLoadsAndPlans) {
  const std::vector<std::string> names = ShippedProfiles();
  ASSERT_GE(names.size(), 4u);
  for (const std::string& name : names) {
    SCOPED_TRACE(name);
    ConfigResult r = ParseConfig(Config("profile = \"" + name + "\"\n"), "test.toml");
    ASSERT_TRUE(r.config.has_value()) << Dump(r);
    const DeviceConfig& d = r.config->devices[0];
    EXPECT_EQ(d.profile, name);
    ASSERT_GE(d.tags.size(), 10u);
    ASSERT_EQ(d.tag_descriptions.size(), d.tags.size());
    std::vector<size_t> all(d.tags.size());
    for (size_t i = 0; i < all.size(); ++i) all[i] = i;
    const std::vector<modbus::ReadRequest> plan = modbus::PlanRequests(d.tags, all, d.limits);
    ASSERT_FALSE(plan.empty());
    EXPECT_LT(plan.size(), d.tags.size()) << "adjacent registers are read together";
    size_t covered = 0;
    for (const modbus::ReadRequest& req : plan) {
      EXPECT_LE(req.count, d.limits.max_registers);
      covered += req.tags.size();
    }
    EXPECT_EQ(covered, d.tags.size()) << "every tag is read by exactly one request";
    for (size_t i = 0; i < d.tags.size(); ++i) {
      EXPECT_FALSE(d.tag_descriptions[i].empty()) << d.tags[i].name;
      EXPECT_EQ(modbus::ValidateTag(d.tags[i], d.limits), "") << d.tags[i].name;
    }
  }
}

TEST(ProfileTest, EastronSdm630MatchesTheManual) {
  ConfigResult r = ParseConfig(Config("profile = \"eastron-sdm630\"\n"), "test.toml");
  ASSERT_TRUE(r.config.has_value()) << Dump(r);
  const DeviceConfig& d = r.config->devices[0];
  EXPECT_EQ(d.limits.max_registers, 80);
  const struct {
    const char* name;
    uint16_t address;
    const char* unit;
  } expected[] = {{"voltage_l1", 0x0000, "V"},      {"current_l1", 0x0006, "A"},
                  {"power_total", 0x0034, "W"},     {"frequency", 0x0046, "Hz"},
                  {"energy_import", 0x0048, "kWh"}, {"voltage_l1_l2", 0x00C8, "V"},
                  {"energy_total", 0x0156, "kWh"}};
  for (const auto& e : expected) {
    const modbus::TagSpec* t = FindTag(d, e.name);
    ASSERT_NE(t, nullptr) << e.name;
    EXPECT_EQ(t->table, modbus::Table::kInput) << e.name;
    EXPECT_EQ(t->address, e.address) << e.name;
    EXPECT_EQ(t->type, modbus::DataType::kFloat32) << e.name;
    EXPECT_EQ(t->order, modbus::WordOrder::kABCD) << e.name;
    EXPECT_EQ(t->unit, e.unit) << e.name;
  }
}

TEST(ProfileTest, SchneiderRegistersAreOneBasedInTheManual) {
  ConfigResult r = ParseConfig(Config("profile = \"schneider-pm5000\"\n"), "test.toml");
  ASSERT_TRUE(r.config.has_value()) << Dump(r);
  const modbus::TagSpec* current = FindTag(r.config->devices[0], "current_a");
  ASSERT_NE(current, nullptr);
  EXPECT_EQ(current->table, modbus::Table::kHolding);
  EXPECT_EQ(current->address, 2999);  // register 3000 of the register list
  const modbus::TagSpec* energy = FindTag(r.config->devices[0], "active_energy_delivered");
  ASSERT_NE(energy, nullptr);
  EXPECT_EQ(energy->address, 2699);

  r = ParseConfig(Config("profile = \"schneider-atv320\"\n"), "test.toml");
  ASSERT_TRUE(r.config.has_value()) << Dump(r);
  const modbus::TagSpec* freq = FindTag(r.config->devices[0], "output_frequency");
  ASSERT_NE(freq, nullptr);
  EXPECT_EQ(freq->address, 3202);  // RFR's logical address is the wire address
  EXPECT_EQ(freq->type, modbus::DataType::kInt16);
  EXPECT_DOUBLE_EQ(freq->scale, 0.1);
}

TEST(ProfileTest, DeviceTagsAddToAndReplaceProfileTags) {
  ConfigResult r = ParseConfig(Config(R"(profile = "eastron-sdm120"
profile_tags = ["voltage", "energy_import"]
[[device.tag]]
name = "energy_import"
register = "30073"
type = "float32"
deadband = 0.5
description = "Imported energy, by exception"
[[device.tag]]
name = "extra"
address = 7
)"),
                               "test.toml");
  ASSERT_TRUE(r.config.has_value()) << Dump(r);
  const DeviceConfig& d = r.config->devices[0];
  ASSERT_EQ(d.tags.size(), 3u);
  EXPECT_EQ(d.tags[0].name, "voltage");
  EXPECT_EQ(d.tag_descriptions[0], "Line to neutral voltage");
  EXPECT_EQ(d.tags[1].name, "energy_import");  // the profile's place, the device's definition
  EXPECT_DOUBLE_EQ(d.tags[1].deadband, 0.5);
  EXPECT_EQ(d.tag_descriptions[1], "Imported energy, by exception");
  EXPECT_EQ(d.tags[2].name, "extra");
  EXPECT_EQ(d.tag_descriptions[2], "");
}

TEST(ProfileTest, UnknownProfileNamesWhatThereIs) {
  ConfigResult r = ParseConfig(Config("profile = \"eastron-sdm999\"\n"), "test.toml");
  ASSERT_FALSE(r.config.has_value());
  ASSERT_EQ(r.errors.size(), 1u) << Dump(r);
  EXPECT_EQ(r.errors[0].line, 13);
  EXPECT_NE(r.errors[0].message.find("no profile 'eastron-sdm999' in " + kProfiles),
            std::string::npos);
  EXPECT_NE(r.errors[0].hint.find("eastron-sdm630"), std::string::npos);

  r = ParseConfig(Config("profile = \"eastron-sdm630\"\nprofile_tags = [\"voltage\"]\n"),
                  "test.toml");
  ASSERT_EQ(r.errors.size(), 1u) << Dump(r);
  EXPECT_NE(r.errors[0].message.find("has no tag 'voltage'"), std::string::npos);
  EXPECT_NE(r.errors[0].hint.find("voltage_l1"), std::string::npos);
}

TEST(ProfileTest, ErrorsInAProfileCarryItsFileAndLine) {
  TempDir dir;
  std::ofstream(dir.File("broken.toml")) << "[profile]\n"
                                            "description = \"a broken profile\"\n"
                                            "[[tag]]\n"
                                            "name = \"t\"\n"
                                            "address = 0\n"
                                            "type = \"float33\"\n";
  ConfigResult r = ParseConfig(Config("profile = \"broken\"\n", dir.path()), "test.toml");
  ASSERT_FALSE(r.config.has_value());
  ASSERT_EQ(r.errors.size(), 2u) << Dump(r);
  // The config's own error first (the device's profile key), then the profile's.
  EXPECT_EQ(r.errors[0].file, "test.toml");
  EXPECT_NE(r.errors[0].message.find("is not valid"), std::string::npos);
  EXPECT_EQ(r.errors[1].file, dir.File("broken.toml"));
  EXPECT_EQ(r.errors[1].line, 6);
  EXPECT_NE(r.errors[1].message.find("'float33' is not one of"), std::string::npos);
}

TEST(ProfileTest, AProfileByPathAndItsLimits) {
  TempDir dir;
  std::ofstream(dir.File("small.toml"))
      << "[profile]\n"
         "description = \"a device that reads 4 at most\"\n"
         "max_registers = 4\n"
         "[[tag]]\nname = \"a\"\naddress = 0\ntype = \"float32\"\n"
         "[[tag]]\nname = \"b\"\naddress = 2\ntype = \"float32\"\n"
         "[[tag]]\nname = \"c\"\naddress = 4\ntype = \"float32\"\n";
  ConfigResult r = ParseConfig(Config("profile = \"small.toml\"\n"), dir.File("tagrelay.toml"));
  ASSERT_TRUE(r.config.has_value()) << Dump(r);
  EXPECT_EQ(r.config->devices[0].limits.max_registers, 4);
  r = ParseConfig(Config("profile = \"small.toml\"\nmax_registers = 2\n"),
                  dir.File("tagrelay.toml"));
  ASSERT_TRUE(r.config.has_value()) << Dump(r);
  EXPECT_EQ(r.config->devices[0].limits.max_registers, 2);  // the device's own limit wins
}

TEST(ProfileTest, EveryDocumentedProfileKeyIsAccepted) {
  TempDir dir;
  for (const ConfigKey& k : ConfigKeys()) {
    if (k.section != "profile" || k.key == "description") continue;
    std::ofstream(dir.File("p.toml")) << "[profile]\ndescription = \"d\"\n"
                                      << k.key << " = 1\n[[tag]]\nname = \"t\"\naddress = 0\n";
    const ConfigResult r = ParseConfig(Config("profile = \"p\"\n", dir.path()), "test.toml");
    for (const ConfigError& e : r.errors) {
      EXPECT_EQ(e.message.find("unknown key"), std::string::npos) << k.key << ": " << e.ToString();
    }
  }
}

TEST(StatusConfigTest, ListenAndSocket) {
  const std::string base = Config("[[device.tag]]\nname = \"t\"\naddress = 0\n");
  ConfigResult r = ParseConfig(base, "test.toml");
  ASSERT_TRUE(r.config.has_value()) << Dump(r);
  EXPECT_EQ(r.config->status.listen, "127.0.0.1:9470");
  EXPECT_EQ(r.config->status.socket, "/run/tagrelay/status.sock");

  r = ParseConfig(base + "[status]\nlisten = \"[::1]:8080\"\nsocket = \"\"\n", "test.toml");
  ASSERT_TRUE(r.config.has_value()) << Dump(r);
  EXPECT_EQ(r.config->status.listen, "[::1]:8080");
  EXPECT_EQ(r.config->status.socket, "");

  r = ParseConfig(base + "[status]\nlisten = \"localhost:80\"\nsocket = \"status.sock\"\n",
                  "test.toml");
  ASSERT_EQ(r.errors.size(), 2u) << Dump(r);
  EXPECT_EQ(r.errors[0].line, 17);
  EXPECT_NE(r.errors[0].message.find("'localhost:80' is not an address and port"),
            std::string::npos);
  EXPECT_EQ(r.errors[1].line, 18);
  EXPECT_NE(r.errors[1].message.find("absolute path"), std::string::npos);
}

}  // namespace
}  // namespace tagrelay
