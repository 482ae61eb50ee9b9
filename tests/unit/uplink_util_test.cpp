// Tests of agent/uplink/broker_url.h and agent/uplink/key_file.h.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "agent/uplink/broker_url.h"
#include "agent/uplink/key_file.h"

namespace tagrelay::uplink {
namespace {

// ---------------------------------------------------------------------------
// BrokerUrl

BrokerUrl ParseOk(std::string_view url) {
  Result<BrokerUrl> r = BrokerUrl::Parse(url);
  EXPECT_TRUE(r.ok()) << url << ": " << r.status().ToString();
  return r.ok() ? *r : BrokerUrl{};
}

TEST(BrokerUrlTest, SchemesAndDefaultPorts) {
  const BrokerUrl tls = ParseOk("mqtts://broker.example.com");
  EXPECT_TRUE(tls.tls);
  EXPECT_EQ(tls.host, "broker.example.com");
  EXPECT_EQ(tls.port, 8883);

  const BrokerUrl plain = ParseOk("mqtt://localhost");
  EXPECT_FALSE(plain.tls);
  EXPECT_EQ(plain.host, "localhost");
  EXPECT_EQ(plain.port, 1883);
}

TEST(BrokerUrlTest, ExplicitPort) {
  const BrokerUrl a = ParseOk("mqtts://10.0.0.1:9883");
  EXPECT_TRUE(a.tls);
  EXPECT_EQ(a.host, "10.0.0.1");
  EXPECT_EQ(a.port, 9883);
  const BrokerUrl b = ParseOk("mqtt://h:1");
  EXPECT_EQ(b.port, 1);
  const BrokerUrl c = ParseOk("mqtt://h:65535");
  EXPECT_EQ(c.port, 65535);
  EXPECT_FALSE(c.tls);
}

TEST(BrokerUrlTest, Ipv6InBrackets) {
  const BrokerUrl a = ParseOk("mqtts://[::1]:8884");
  EXPECT_EQ(a.host, "::1");
  EXPECT_EQ(a.port, 8884);
  const BrokerUrl b = ParseOk("mqtt://[2001:db8::17]");
  EXPECT_EQ(b.host, "2001:db8::17");
  EXPECT_EQ(b.port, 1883);
  EXPECT_FALSE(b.tls);
}

TEST(BrokerUrlTest, ToStringRoundTrips) {
  EXPECT_EQ(ParseOk("mqtts://broker.example.com").ToString(), "mqtts://broker.example.com:8883");
  EXPECT_EQ(ParseOk("mqtt://h:1884").ToString(), "mqtt://h:1884");
  EXPECT_EQ(ParseOk("mqtts://[::1]").ToString(), "mqtts://[::1]:8883");
  for (const char* url : {"mqtts://a.b:1", "mqtt://[fe80::1]:2000", "mqtts://x:65535"}) {
    const BrokerUrl first = ParseOk(url);
    const BrokerUrl again = ParseOk(first.ToString());
    EXPECT_EQ(again.tls, first.tls) << url;
    EXPECT_EQ(again.host, first.host) << url;
    EXPECT_EQ(again.port, first.port) << url;
  }
}

// Succeeds if `url` is refused with InvalidArgument and a message containing `what`.
::testing::AssertionResult Refused(std::string_view url, std::string_view what) {
  Result<BrokerUrl> r = BrokerUrl::Parse(url);
  if (r.ok())
    return ::testing::AssertionFailure() << url << " was accepted as host '" << r->host << "'";
  if (r.status().code() != StatusCode::kInvalidArgument ||
      r.status().message().find(what) == std::string::npos) {
    return ::testing::AssertionFailure() << url << ": expected InvalidArgument with '" << what
                                         << "', got " << r.status().ToString();
  }
  return ::testing::AssertionSuccess();
}

TEST(BrokerUrlTest, OtherSchemesAreRefused) {
  EXPECT_TRUE(Refused("http://broker", "must start with mqtts://"));
  EXPECT_TRUE(Refused("ws://broker", "must start with mqtts://"));
  EXPECT_TRUE(Refused("broker.example.com:8883", "must start with mqtts://"));
  EXPECT_TRUE(Refused("mqtts:/broker", "must start with mqtts://"));
  EXPECT_TRUE(Refused("", "must start with mqtts://"));
}

TEST(BrokerUrlTest, BadPortIsRefused) {
  EXPECT_TRUE(Refused("mqtts://h:0", "port must be 1..65535, got '0'"));
  EXPECT_TRUE(Refused("mqtts://h:65536", "port must be 1..65535, got '65536'"));
  EXPECT_TRUE(Refused("mqtts://h:99999999999", "port must be 1..65535"));
  EXPECT_TRUE(Refused("mqtts://h:-1", "port must be 1..65535"));
  EXPECT_TRUE(Refused("mqtts://h:abc", "port must be 1..65535, got 'abc'"));
  EXPECT_TRUE(Refused("mqtts://h:88a", "port must be 1..65535, got '88a'"));
  EXPECT_TRUE(Refused("mqtts://h:", "port must be 1..65535, got ''"));
  EXPECT_TRUE(Refused("mqtts://[::1]:", "port must be 1..65535"));
  EXPECT_TRUE(Refused("mqtts://[::1]:0", "port must be 1..65535"));
  EXPECT_TRUE(Refused("mqtts://h:1:2", "port must be 1..65535"));
}

TEST(BrokerUrlTest, MissingHostIsRefused) {
  EXPECT_TRUE(Refused("mqtts://", "no host"));
  EXPECT_TRUE(Refused("mqtt://:1883", "no host"));
  EXPECT_TRUE(Refused("mqtts://[]:8883", "no host"));
  EXPECT_TRUE(Refused("mqtts://::1", "no host"));  // IPv6 needs brackets
}

TEST(BrokerUrlTest, BadIpv6BracketsAreRefused) {
  EXPECT_TRUE(Refused("mqtts://[::1", "unclosed '['"));
  EXPECT_TRUE(Refused("mqtts://[::1]8883", "expected ':port' after ']'"));
}

TEST(BrokerUrlTest, HostsThatAreNotNamesOrAddressesAreRefused) {
  // Found by fuzzing: these parsed, then did not survive ToString().
  for (const char* url : {"mqtt://[[]:0126", "mqtt://[%%%a%]:5", "mqtt://[[\x02\xf7]",
                          "mqtts://bro\x01ker", "mqtts://[zz::1]", "mqtts://[1234]"}) {
    EXPECT_FALSE(BrokerUrl::Parse(url).ok()) << url;
  }
  Result<BrokerUrl> zoned = BrokerUrl::Parse("mqtts://[fe80::1%eth0]:8883");
  ASSERT_TRUE(zoned.ok()) << zoned.status().ToString();
  EXPECT_EQ(zoned->host, "fe80::1%eth0");
  Result<BrokerUrl> again = BrokerUrl::Parse(zoned->ToString());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->host, zoned->host);
  EXPECT_TRUE(BrokerUrl::Parse("mqtts://broker_1.example-site.com").ok());
}

TEST(BrokerUrlTest, PathUserAndQueryAreRefused) {
  EXPECT_TRUE(Refused("mqtts://broker/mqtt", "a path, user or query is not allowed"));
  EXPECT_TRUE(Refused("mqtts://broker/", "a path, user or query is not allowed"));
  EXPECT_TRUE(Refused("mqtts://user@broker", "a path, user or query is not allowed"));
  EXPECT_TRUE(Refused("mqtts://broker?x=1", "a path, user or query is not allowed"));
  EXPECT_TRUE(Refused("mqtts://broker#frag", "a path, user or query is not allowed"));
  EXPECT_TRUE(Refused("mqtts://bro ker", "a path, user or query is not allowed"));
  EXPECT_TRUE(Refused("mqtts://[::1/64]", "a path, user or query is not allowed"));
  // After a port, a path is rejected as part of the port.
  EXPECT_TRUE(Refused("mqtts://broker:8883/mqtt", "port must be 1..65535"));
  EXPECT_TRUE(Refused("mqtts://[::1]:8883/x", "port must be 1..65535"));
}

// ---------------------------------------------------------------------------
// ReadKeyFile

class KeyFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "tagrelay_keyfile_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  std::string Write(const std::string& name, const std::string& content, mode_t mode) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path, std::ios::binary) << content;
    EXPECT_EQ(chmod(path.c_str(), mode), 0);
    return path;
  }

  std::string dir_;
};

TEST_F(KeyFileTest, OneLineKeyIsTrimmed) {
  const std::string path = Write("gw.key", "  \tk3y-ABC_123+/=\r\n\n", 0600);
  Result<std::string> key = ReadKeyFile(path);
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  EXPECT_EQ(*key, "k3y-ABC_123+/=");
}

TEST_F(KeyFileTest, KeyWithoutNewlineAndStricterModes) {
  for (mode_t mode : {0600, 0400}) {
    const std::string path = Write("gw-" + std::to_string(mode) + ".key", "secret", mode);
    Result<std::string> key = ReadKeyFile(path);
    ASSERT_TRUE(key.ok()) << std::oct << mode << ": " << key.status().ToString();
    EXPECT_EQ(*key, "secret");
  }
}

TEST_F(KeyFileTest, ReadableByOthersIsRefusedWithoutShowingTheKey) {
  const std::string secret = "very-secret-key-value";
  const std::string path = Write("gw.key", secret + "\n", 0644);
  Result<std::string> key = ReadKeyFile(path);
  ASSERT_FALSE(key.ok());
  EXPECT_EQ(key.status().code(), StatusCode::kInvalidArgument);
  const std::string& message = key.status().message();
  EXPECT_NE(message.find(path), std::string::npos) << message;
  EXPECT_NE(message.find("0644"), std::string::npos) << message;
  EXPECT_NE(message.find("chmod 600"), std::string::npos) << message;
  EXPECT_EQ(message.find(secret), std::string::npos) << message;
  EXPECT_EQ(key.status().ToString().find(secret), std::string::npos);
}

TEST_F(KeyFileTest, GroupReadableOrWritableIsRefused) {
  for (mode_t mode : {0640, 0604, 0620, 0602, 0660}) {
    const std::string path = Write("gw-" + std::to_string(mode) + ".key", "secret\n", mode);
    Result<std::string> key = ReadKeyFile(path);
    EXPECT_FALSE(key.ok()) << std::oct << mode;
  }
}

TEST_F(KeyFileTest, EmptyFileIsRefused) {
  for (const char* content : {"", "   \n\t\r\n"}) {
    const std::string path = Write("gw.key", content, 0600);
    Result<std::string> key = ReadKeyFile(path);
    ASSERT_FALSE(key.ok());
    EXPECT_EQ(key.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(key.status().message(), "key file " + path + " is empty");
  }
}

TEST_F(KeyFileTest, TwoLinesAreRefusedWithoutShowingThem) {
  for (const char* content :
       {"first-line\nsecond-line\n", "first-line\r\nsecond-line", "first-line\rsecond-line"}) {
    const std::string path = Write("gw.key", content, 0600);
    Result<std::string> key = ReadKeyFile(path);
    ASSERT_FALSE(key.ok()) << content;
    EXPECT_EQ(key.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(key.status().message(), "key file " + path + " holds more than one line");
    EXPECT_EQ(key.status().message().find("first-line"), std::string::npos);
    EXPECT_EQ(key.status().message().find("second-line"), std::string::npos);
  }
}

TEST_F(KeyFileTest, MissingFileIsNamed) {
  const std::string path = dir_ + "/no-such.key";
  Result<std::string> key = ReadKeyFile(path);
  ASSERT_FALSE(key.ok());
  EXPECT_NE(key.status().message().find(path), std::string::npos) << key.status().message();
  EXPECT_NE(key.status().message().find("No such file"), std::string::npos)
      << key.status().message();
}

TEST_F(KeyFileTest, DirectoryIsRefused) {
  ASSERT_EQ(chmod(dir_.c_str(), 0700), 0);
  Result<std::string> key = ReadKeyFile(dir_);
  ASSERT_FALSE(key.ok());
  EXPECT_EQ(key.status().message(), "key file " + dir_ + ": not a regular file");
}

TEST_F(KeyFileTest, SymlinkIsNotFollowed) {
  const std::string target = Write("real.key", "secret\n", 0600);
  const std::string link = dir_ + "/link.key";
  ASSERT_EQ(symlink(target.c_str(), link.c_str()), 0);
  Result<std::string> key = ReadKeyFile(link);
  ASSERT_FALSE(key.ok());
  EXPECT_NE(key.status().message().find(link), std::string::npos) << key.status().message();
  EXPECT_EQ(key.status().message().find("secret"), std::string::npos);
}

TEST_F(KeyFileTest, OversizedFileIsRefused) {
  const std::string path = Write("gw.key", std::string(4097, 'k'), 0600);
  Result<std::string> key = ReadKeyFile(path);
  ASSERT_FALSE(key.ok());
  EXPECT_EQ(key.status().message(), "key file " + path + ": longer than 4096 bytes");
  EXPECT_EQ(key.status().message().find("kkkk"), std::string::npos);

  const std::string max = Write("max.key", std::string(4096, 'k'), 0600);
  Result<std::string> ok = ReadKeyFile(max);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->size(), 4096u);
}

}  // namespace
}  // namespace tagrelay::uplink
