// Modbus vocabulary: register tables, data types, word orders, and the specs of
// tags, devices and endpoints that a poller works from.
//
// Promise: addresses are 0-based protocol addresses, exactly what goes on the
// wire. The specs are plain values, checked by the agent's config validation
// before a poller sees them.
//
// Threads: plain values.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tagrelay::modbus {

enum class Table { kCoil, kDiscrete, kInput, kHolding };
enum class DataType { kInt16, kUint16, kFloat32 };
// Byte order of a multi-register value, written as the order in which the bytes
// A (most significant) .. D (least significant) appear on the wire.
enum class WordOrder { kABCD };

std::string_view TableName(Table t);
std::string_view DataTypeName(DataType t);
std::string_view WordOrderName(WordOrder o);
std::optional<Table> ParseTable(std::string_view s);
std::optional<DataType> ParseDataType(std::string_view s);
std::optional<WordOrder> ParseWordOrder(std::string_view s);

// Number of 16-bit registers a value of type `t` occupies.
uint16_t RegisterCount(DataType t);

// The highest number of registers one read request may ask for (Modbus spec).
inline constexpr uint16_t kMaxRegistersPerRead = 125;

struct TagSpec {
  std::string name;
  Table table = Table::kHolding;
  uint16_t address = 0;
  DataType type = DataType::kUint16;
  WordOrder order = WordOrder::kABCD;
  double scale = 1.0;
  double offset = 0.0;
  std::string unit;
  double deadband =
      0.0;  // report by exception: skip a good value closer than this to the last sent
};

struct DeviceSpec {
  std::string id;
  int unit_id = 1;
  std::chrono::milliseconds poll{1000};
  std::vector<TagSpec> tags;
};

struct TcpEndpointSpec {
  std::string name;  // the bus name from the config
  std::string host;
  uint16_t port = 502;
  std::chrono::milliseconds timeout{500};
};

}  // namespace tagrelay::modbus
