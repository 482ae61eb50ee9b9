// Modbus vocabulary: register tables, data types, byte orders, register
// numbers, and the specs of tags, devices and endpoints that a poller works
// from.
//
// Promise: addresses are 0-based protocol addresses, exactly what goes on the
// wire. The specs are plain values (a device's tags an immutable list that its
// copies share), checked by the agent's config validation before a poller sees
// them (ValidateTag() and ValidateDevice() hold the rules that the config and
// the probe command share).
//
// Threads: plain values; a TagList may be read and copied from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/core/shared_list.h"

namespace tagrelay::modbus {

enum class Table : uint8_t { kCoil, kDiscrete, kInput, kHolding };

enum class DataType : uint8_t {
  kBool,  // a coil or discrete input; on a register table: the register is not 0
  kBit,   // one bit of a register (TagSpec::bit)
  kInt16,
  kUint16,
  kInt32,
  kUint32,
  kInt64,
  kUint64,
  kFloat32,
  kFloat64,
  kString,  // TagSpec::length bytes, two per register
};

// Byte order of a register value, named by where the value's bytes appear on
// the wire, A being the most significant: ABCD is big-endian (the Modbus
// default), CDAB has the words (registers) swapped, BADC the bytes within each
// register, DCBA is little-endian. For 8-byte values the same four orders are
// also spelled ABCDEFGH, GHEFCDAB, BADCFEHG and HGFEDCBA.
enum class WordOrder : uint8_t { kABCD, kCDAB, kBADC, kDCBA };

// Whether an order reverses the registers and/or swaps the two bytes of each.
inline bool SwapsWords(WordOrder o) { return o == WordOrder::kCDAB || o == WordOrder::kDCBA; }
inline bool SwapsBytes(WordOrder o) { return o == WordOrder::kBADC || o == WordOrder::kDCBA; }

std::string_view TableName(Table t);
std::string_view DataTypeName(DataType t);
// The 4-letter name; with `bytes` == 8, the 8-letter spelling.
std::string_view WordOrderName(WordOrder o, int bytes = 4);
std::optional<Table> ParseTable(std::string_view s);
std::optional<DataType> ParseDataType(std::string_view s);
// Accepts the 4-letter names and the 8-letter spellings; `*eight` tells which.
std::optional<WordOrder> ParseWordOrder(std::string_view s, bool* eight = nullptr);

inline bool IsBitTable(Table t) { return t == Table::kCoil || t == Table::kDiscrete; }

// The highest number of registers / bits one read request may ask for (Modbus spec).
inline constexpr uint16_t kMaxRegistersPerRead = 125;
inline constexpr uint16_t kMaxBitsPerRead = 2000;

// A register number as device manuals write it: a table digit and a 1-based
// number, 5 digits ("40001": holding address 0, up to 9999) or 6 digits
// ("400001", up to 65536). Table digits: 0 coil, 1 discrete, 3 input, 4 holding.
// The digit count is significant, so "010001" (coil 10001) and "10001"
// (discrete 1) differ; anything else (4 or 7 digits, table digit 2, number 0)
// is rejected, never guessed.
struct RegisterNumber {
  Table table;
  uint16_t address;
};
std::optional<RegisterNumber> ParseRegisterNumber(std::string_view digits);
// "40001" for holding address 0; the 6-digit form when the address needs it.
std::string FormatRegisterNumber(Table table, uint16_t address);

struct TagSpec {
  std::string name;
  Table table = Table::kHolding;
  uint16_t address = 0;
  DataType type = DataType::kUint16;
  WordOrder order = WordOrder::kABCD;
  uint8_t bit = 0;      // kBit: 0 = least significant bit of the register
  uint16_t length = 0;  // kString: bytes (characters)
  double scale = 1.0;
  double offset = 0.0;
  std::string unit;
  // Report by exception: skip a good value closer than this to the last sent.
  double deadband = 0.0;
  // Poll interval of this tag; 0 = the device's.
  std::chrono::milliseconds poll{0};
};

// A device's tags, immutable and shared (agent/core/shared_list.h): the agent's config, the
// device's poller and the uplink's birth of the device read one list instead of a copy each.
using TagList = SharedList<TagSpec>;

// Registers (or bits, in a coil/discrete table) that the tag occupies.
uint16_t ElementCount(const TagSpec& tag);
// Registers a value of fixed-size type `t` occupies (strings: 0, see ElementCount).
uint16_t RegisterCount(DataType t);
// Whether scale, offset and deadband apply to the type (numbers only).
bool IsNumeric(DataType t);

// Limits of the request planner for one device. A device that cannot answer
// the Modbus maximum of 125 registers per read gets a lower max_registers.
struct PlanLimits {
  uint16_t max_registers = kMaxRegistersPerRead;  // 1..125
  uint16_t max_bits = kMaxBitsPerRead;            // 1..2000
  uint16_t max_gap = 0;                           // unused registers bridged, at most
  uint16_t max_bit_gap = 0;                       // unused coils/inputs bridged, at most
};

struct DeviceSpec {
  std::string id;
  int unit_id = 1;
  std::chrono::milliseconds poll{1000};
  TagList tags;
  PlanLimits limits;
};

// Returns "" if the tag is well formed (type fits the table, bit in range,
// string length set, order allowed for the type, address range, size within
// `limits`), else what is wrong, in a sentence for the user; `key` (if given)
// gets the config key at fault ("type", "bit", "length", "order", "address").
std::string ValidateTag(const TagSpec& tag, const PlanLimits& limits, std::string* key = nullptr);

enum class BusType { kTcp, kRtu, kRtuOverTcp };
std::string_view BusTypeName(BusType t);

enum class Parity { kNone, kEven, kOdd };
enum class RtsMode { kNone, kUp, kDown };

struct SerialSpec {
  std::string device;  // "/dev/ttyS1"
  int baud = 19200;
  Parity parity = Parity::kEven;
  int data_bits = 8;
  int stop_bits = 1;
  bool rs485 = false;            // set the port's RS-485 mode (TIOCSRS485)
  RtsMode rts = RtsMode::kNone;  // drive RTS for the transceiver's direction
};

// Baud rates a serial line accepts (those termios has a constant for).
bool IsSupportedBaud(int baud);

// One Modbus endpoint: a TCP device or gateway, or a serial line.
struct EndpointSpec {
  std::string name;  // the bus name from the config
  BusType type = BusType::kTcp;
  std::string host;  // tcp, rtu-over-tcp
  uint16_t port = 502;
  SerialSpec serial;                           // rtu
  std::chrono::milliseconds timeout{500};      // response timeout of one request
  std::chrono::milliseconds byte_timeout{50};  // longest silence inside one reply
  int retries = 1;  // further attempts after a timeout, CRC error or bad frame
  std::chrono::milliseconds backoff_max{30000};  // cap of the reconnect and device backoff
};

// The silence that ends an RTU frame: 3.5 characters of 11 bits, and 1750 us
// above 19200 baud, as the Modbus serial line specification fixes it.
std::chrono::microseconds InterFrameDelay(int baud);
// Time one character of 11 bits takes on the wire.
std::chrono::nanoseconds CharacterTime(int baud);

}  // namespace tagrelay::modbus
