// Tests of drivers/modbus/libmodbus_transport.h on the wire: the real
// transport (libmodbus underneath) against a peer that scripts every reply
// byte for byte, in TCP framing and in RTU framing over TCP. The waits here
// are the transport's real response timeouts (I/O, not logic), kept short.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <chrono>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "drivers/modbus/libmodbus_transport.h"
#include "drivers/modbus/low_fd.h"
#include "fakes/scripted_peer.h"

namespace tagrelay::modbus {
namespace {

using std::chrono::milliseconds;
using Step = ScriptedPeer::Step;

class TransportTest : public ::testing::TestWithParam<Framing> {
 protected:
  TransportTest() : peer_(GetParam()) {
    EndpointSpec spec;
    spec.name = "test";
    spec.type = GetParam() == Framing::kTcp ? BusType::kTcp : BusType::kRtuOverTcp;
    spec.host = "127.0.0.1";
    spec.port = peer_.port();
    spec.timeout = milliseconds(100);
    transport_ = std::make_unique<LibmodbusTransport>(spec);
    EXPECT_TRUE(transport_->Connect().ok()) << transport_->last_error();
  }

  Status Read(uint16_t address, uint16_t count, std::vector<uint16_t>* out, int unit = 7) {
    out->assign(count, 0);
    return transport_->ReadRegisters(unit, Table::kHolding, address, count, out->data());
  }
  // A read must either fail or return exactly the peer's registers.
  void ExpectGood(uint16_t address, uint16_t count) {
    std::vector<uint16_t> regs;
    const Status s = Read(address, count, &regs);
    ASSERT_TRUE(s.ok()) << s.ToString() << " " << transport_->last_error();
    for (uint16_t i = 0; i < count; ++i) EXPECT_EQ(regs[i], peer_.Register(address + i));
  }
  std::string ErrorOf(const std::function<std::vector<Step>(const ReadFrame&)>& reply) {
    peer_.Script(reply);
    std::vector<uint16_t> regs;
    const Status s = Read(10, 4, &regs);
    return s.ok() ? "ok" : s.message();
  }

  ScriptedPeer peer_;
  std::unique_ptr<LibmodbusTransport> transport_;
};

INSTANTIATE_TEST_SUITE_P(Framings, TransportTest, ::testing::Values(Framing::kTcp, Framing::kRtu),
                         [](const auto& param_info) {
                           return param_info.param == Framing::kTcp ? "Tcp" : "RtuOverTcp";
                         });

TEST_P(TransportTest, ReadsRegistersAndBits) {
  ExpectGood(0, 1);
  ExpectGood(3, 125);
  std::vector<uint8_t> bits(19);
  ASSERT_TRUE(transport_->ReadBits(7, Table::kCoil, 20, 19, bits.data()).ok());
  for (uint16_t i = 0; i < 19; ++i) EXPECT_EQ(bits[i], peer_.Register(20 + i) & 1) << i;
}

TEST_P(TransportTest, AnExceptionReplyGivesItsCode) {
  EXPECT_EQ(ErrorOf([&](const ReadFrame& r) {
              return std::vector<Step>{{{}, peer_.Frame(r, ScriptedPeer::ExceptionPdu(r, 2))}};
            }),
            "exception:2");
  EXPECT_EQ(transport_->last_error(), "illegal data address");
  ExpectGood(10, 4);
}

TEST_P(TransportTest, EveryExceptionCodeIsReportedWithItsCodeAndName) {
  const std::map<int, std::string> names = {{1, "illegal function"},
                                            {2, "illegal data address"},
                                            {3, "illegal data value"},
                                            {4, "server device failure"},
                                            {5, "acknowledge"},
                                            {6, "server device busy"},
                                            {8, "memory parity error"},
                                            {10, "gateway path unavailable"},
                                            {11, "gateway target device failed to respond"},
                                            {42, "exception 42"}};
  for (const auto& [code, name] : names) {
    SCOPED_TRACE(code);
    EXPECT_EQ(
        ErrorOf([&](const ReadFrame& r) {
          return std::vector<Step>{
              {{}, peer_.Frame(r, ScriptedPeer::ExceptionPdu(r, static_cast<uint8_t>(code)))}};
        }),
        "exception:" + std::to_string(code));
    EXPECT_EQ(transport_->last_error(), name);
    ExpectGood(10, 4);
  }
}

TEST_P(TransportTest, GarbledRepliesAreNeverTakenForGoodOnes) {
  // Random bytes where the reply belongs: as long as the good reply, shorter
  // and longer. None may come out as registers.
  std::mt19937 rng(20261122);
  for (int i = 0; i < 60; ++i) {
    SCOPED_TRACE(i);
    peer_.Script([&](const ReadFrame& r) {
      std::vector<uint8_t> bytes(peer_.Good(r).size() + static_cast<size_t>(i % 5) - 2);
      for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng());
      return std::vector<Step>{{{}, bytes}};
    });
    std::vector<uint16_t> regs;
    const Status s = Read(10, 4, &regs);
    EXPECT_FALSE(s.ok()) << "garbage read as registers";
    // After whatever went wrong, the transport reads good replies again.
    if (!transport_->connected()) {
      ASSERT_TRUE(transport_->Connect().ok());
    }
    ExpectGood(10, 4);
  }
}

TEST_P(TransportTest, AResetInMidFrameIsAnIoErrorAndTheNextConnectionReads) {
  peer_.Script([&](const ReadFrame& r) {
    std::vector<uint8_t> bytes = peer_.Good(r);
    bytes.resize(bytes.size() / 2);
    return std::vector<Step>{{{}, bytes}};
  });
  peer_.HangUpAfterNext();
  std::vector<uint16_t> regs;
  const Status s = Read(10, 4, &regs);
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(s.message() == "io" || s.message() == "timeout") << s.ToString();
  if (!transport_->connected() || s.message() == "timeout") {
    transport_->Close();
    ASSERT_TRUE(transport_->Connect().ok());
  }
  ExpectGood(10, 4);
  EXPECT_EQ(peer_.connections(), 2);
}

TEST_P(TransportTest, WrongUnitIdOrFunctionCodeIsABadFrame) {
  EXPECT_EQ(ErrorOf([&](const ReadFrame& r) {
              std::vector<uint8_t> pdu = peer_.GoodPdu(r);
              pdu[0] = 9;  // another unit
              return std::vector<Step>{{{}, peer_.Frame(r, pdu)}};
            }),
            "bad-frame");
  ExpectGood(10, 4);
  EXPECT_EQ(ErrorOf([&](const ReadFrame& r) {
              std::vector<uint8_t> pdu = peer_.GoodPdu(r);
              pdu[1] = 4;  // input registers, not holding
              return std::vector<Step>{{{}, peer_.Frame(r, pdu)}};
            }),
            "bad-frame");
  ExpectGood(10, 4);
}

TEST_P(TransportTest, AShortOrLongFrameIsABadFrame) {
  // A well-formed reply with fewer registers than asked for.
  EXPECT_EQ(ErrorOf([&](const ReadFrame& r) {
              ReadFrame fewer = r;
              fewer.count = 3;
              return std::vector<Step>{{{}, peer_.Frame(r, peer_.GoodPdu(fewer))}};
            }),
            "bad-frame");
  ExpectGood(10, 4);
  // More registers than asked for.
  EXPECT_EQ(ErrorOf([&](const ReadFrame& r) {
              ReadFrame more = r;
              more.count = 5;
              return std::vector<Step>{{{}, peer_.Frame(r, peer_.GoodPdu(more))}};
            }),
            "bad-frame");
  ExpectGood(10, 4);
  // The good reply with junk after it, in the same segment.
  EXPECT_EQ(ErrorOf([&](const ReadFrame& r) {
              std::vector<uint8_t> bytes = peer_.Good(r);
              if (GetParam() == Framing::kTcp) bytes[5] += 3;  // MBAP length counts the junk
              bytes.insert(bytes.end(), {0xAA, 0xBB, 0xCC});
              return std::vector<Step>{{{}, bytes}};
            }),
            "bad-frame");
  ExpectGood(10, 4);
}

TEST_P(TransportTest, ATruncatedFrameTimesOutWithinTheTimeout) {
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(ErrorOf([&](const ReadFrame& r) {
              std::vector<uint8_t> bytes = peer_.Good(r);
              bytes.resize(bytes.size() - 3);
              return std::vector<Step>{{{}, bytes}};
            }),
            "timeout");
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(180));
  ExpectGood(10, 4);
}

TEST_P(TransportTest, ATrickleNeverHoldsThePollerPastTheTimeout) {
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(ErrorOf([&](const ReadFrame& r) {
              std::vector<Step> steps;
              for (uint8_t b : peer_.Good(r)) steps.push_back(Step{milliseconds(20), {b}});
              return steps;
            }),
            "timeout");
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(180));
}

TEST_P(TransportTest, ALateReplyIsNeverTakenForTheNextOne) {
  // The first reply comes after the timeout, while the next request waits.
  for (uint16_t i = 20; i < 24; ++i) peer_.SetRegister(i, static_cast<uint16_t>(7000 + i));
  peer_.Script([&](const ReadFrame& r) {
    return std::vector<Step>{{milliseconds(150), peer_.Good(r)}};
  });
  std::vector<uint16_t> regs;
  EXPECT_EQ(Read(10, 4, &regs).message(), "timeout");
  peer_.Script([&](const ReadFrame& r) {
    return std::vector<Step>{{milliseconds(10), peer_.Good(r)}};
  });
  // Other registers of the same shape: RTU replies do not name the address,
  // so only the transport's care tells the two answers apart.
  const Status s = Read(20, 4, &regs);
  ASSERT_TRUE(s.ok()) << s.ToString() << " " << transport_->last_error();
  for (uint16_t i = 0; i < 4; ++i) EXPECT_EQ(regs[i], 7020 + i) << "never the late reply's values";
  ExpectGood(10, 4);
}

TEST(TcpFramingTest, ALateReplyToTheSameRequestIsSkippedByItsTransactionId) {
  ScriptedPeer peer(Framing::kTcp);
  EndpointSpec spec;
  spec.host = "127.0.0.1";
  spec.port = peer.port();
  spec.timeout = milliseconds(100);
  LibmodbusTransport t(spec);
  ASSERT_TRUE(t.Connect().ok());
  peer.Script([&](const ReadFrame& r) {
    return std::vector<Step>{{milliseconds(150), peer.Good(r)}};
  });
  std::vector<uint16_t> regs(4);
  EXPECT_EQ(t.ReadRegisters(1, Table::kHolding, 10, 4, regs.data()).message(), "timeout");
  for (uint16_t i = 10; i < 14; ++i) peer.SetRegister(i, static_cast<uint16_t>(5000 + i));
  peer.Script([&](const ReadFrame& r) {
    return std::vector<Step>{{milliseconds(10), peer.Good(r)}};
  });
  ASSERT_TRUE(t.ReadRegisters(1, Table::kHolding, 10, 4, regs.data()).ok()) << t.last_error();
  for (uint16_t i = 0; i < 4; ++i) EXPECT_EQ(regs[i], 5010 + i) << "never the old values";
}

// A dotted IPv4 address skips the resolver (every other test connects so); a name goes through it.
TEST(TcpFramingTest, AHostNameIsResolved) {
  ScriptedPeer peer(Framing::kTcp);
  EndpointSpec spec;
  spec.host = "localhost";
  spec.port = peer.port();
  spec.timeout = milliseconds(500);
  LibmodbusTransport t(spec);
  ASSERT_TRUE(t.Connect().ok()) << t.last_error();
  peer.SetRegister(3, 4242);
  peer.Script([&](const ReadFrame& r) { return std::vector<Step>{{{}, peer.Good(r)}}; });
  std::vector<uint16_t> regs(1);
  ASSERT_TRUE(t.ReadRegisters(1, Table::kHolding, 3, 1, regs.data()).ok()) << t.last_error();
  EXPECT_EQ(regs[0], 4242);
  EXPECT_EQ(peer.connections(), 1);
}

TEST_P(TransportTest, AClosedConnectionIsAnIoErrorAndReconnects) {
  peer_.Script([&](const ReadFrame&) { return std::vector<Step>{}; });
  peer_.HangUpAfterNext();
  std::vector<uint16_t> regs;
  const Status s = Read(10, 4, &regs);
  EXPECT_EQ(s.message(), "io") << s.ToString();
  EXPECT_FALSE(transport_->connected());
  EXPECT_EQ(Read(10, 4, &regs).message(), "not-connected");
  ASSERT_TRUE(transport_->Connect().ok());
  ExpectGood(10, 4);
  EXPECT_EQ(peer_.connections(), 2);
}

TEST(RtuFramingTest, ACrcErrorIsReportedAsCrc) {
  ScriptedPeer peer(Framing::kRtu);
  EndpointSpec spec;
  spec.type = BusType::kRtuOverTcp;
  spec.host = "127.0.0.1";
  spec.port = peer.port();
  spec.timeout = milliseconds(100);
  LibmodbusTransport t(spec);
  ASSERT_TRUE(t.Connect().ok());
  peer.Script([&](const ReadFrame& r) {
    std::vector<uint8_t> bytes = peer.Good(r);
    bytes.back() ^= 0x5A;
    return std::vector<Step>{{{}, bytes}};
  });
  std::vector<uint16_t> regs(2);
  EXPECT_EQ(t.ReadRegisters(7, Table::kHolding, 0, 2, regs.data()).message(), "crc");
  ASSERT_TRUE(t.ReadRegisters(7, Table::kHolding, 0, 2, regs.data()).ok());
  EXPECT_EQ(regs[0], peer.Register(0));
}

TEST(TcpFramingTest, ThreeTimeoutsInARowReopenTheConnection) {
  ScriptedPeer peer(Framing::kTcp);
  EndpointSpec spec;
  spec.host = "127.0.0.1";
  spec.port = peer.port();
  spec.timeout = milliseconds(30);
  LibmodbusTransport t(spec);
  ASSERT_TRUE(t.Connect().ok());
  std::vector<uint16_t> regs(1);
  for (int i = 0; i < 3; ++i) {
    peer.Script([](const ReadFrame&) { return std::vector<Step>{}; });
    EXPECT_EQ(t.ReadRegisters(1, Table::kHolding, 0, 1, regs.data()).message(), "timeout");
    EXPECT_EQ(t.connected(), i < 2);
  }
}

// libmodbus 3.1.6 waits with select(); a descriptor of 1024 or more in an
// fd_set aborts a fortified build. With more than 1024 files open, the
// transport must still read, on a descriptor below 1024.
TEST(LowDescriptorsTest, ReadsWithMoreThan1024FilesOpen) {
  rlimit lim{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &lim), 0);
  if (lim.rlim_max < 1300) GTEST_SKIP() << "the hard limit of open files is below 1300";
  const rlimit saved = lim;
  lim.rlim_cur = std::min<rlim_t>(lim.rlim_max, 4096);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &lim), 0);

  ASSERT_TRUE(LowDescriptors::Instance().Reserve(2).ok());
  ScriptedPeer peer(Framing::kTcp);
  std::vector<int> filler;
  for (;;) {
    const int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    filler.push_back(fd);
    if (fd >= 1100) break;
  }
  {
    EndpointSpec spec;
    spec.host = "127.0.0.1";
    spec.port = peer.port();
    spec.timeout = milliseconds(500);
    LibmodbusTransport t(spec);
    ASSERT_TRUE(t.Connect().ok()) << t.last_error();
    EXPECT_EQ(LowDescriptors::Instance().in_use(), 1u) << "the socket moved onto a reserved slot";
    std::vector<uint16_t> regs(5);
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(t.ReadRegisters(1, Table::kHolding, 0, 5, regs.data()).ok()) << t.last_error();
      EXPECT_EQ(regs[4], peer.Register(4));
    }
    t.Close();
    EXPECT_EQ(LowDescriptors::Instance().in_use(), 0u) << "the slot is a placeholder again";
  }
  for (int fd : filler) close(fd);
  setrlimit(RLIMIT_NOFILE, &saved);
}

}  // namespace
}  // namespace tagrelay::modbus
