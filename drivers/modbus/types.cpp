#include "drivers/modbus/types.h"

#include <array>

namespace tagrelay::modbus {
namespace {

constexpr std::array<DataType, 11> kAllTypes = {
    DataType::kBool,    DataType::kBit,     DataType::kInt16, DataType::kUint16,
    DataType::kInt32,   DataType::kUint32,  DataType::kInt64, DataType::kUint64,
    DataType::kFloat32, DataType::kFloat64, DataType::kString};

constexpr std::array<WordOrder, 4> kAllOrders = {WordOrder::kABCD, WordOrder::kCDAB,
                                                 WordOrder::kBADC, WordOrder::kDCBA};

}  // namespace

std::string_view TableName(Table t) {
  switch (t) {
    case Table::kCoil: return "coil";
    case Table::kDiscrete: return "discrete";
    case Table::kInput: return "input";
    case Table::kHolding: return "holding";
  }
  return "?";
}

std::string_view DataTypeName(DataType t) {
  switch (t) {
    case DataType::kBool: return "bool";
    case DataType::kBit: return "bit";
    case DataType::kInt16: return "int16";
    case DataType::kUint16: return "uint16";
    case DataType::kInt32: return "int32";
    case DataType::kUint32: return "uint32";
    case DataType::kInt64: return "int64";
    case DataType::kUint64: return "uint64";
    case DataType::kFloat32: return "float32";
    case DataType::kFloat64: return "float64";
    case DataType::kString: return "string";
  }
  return "?";
}

std::string_view WordOrderName(WordOrder o, int bytes) {
  const bool eight = bytes == 8;
  switch (o) {
    case WordOrder::kABCD: return eight ? "ABCDEFGH" : "ABCD";
    case WordOrder::kCDAB: return eight ? "GHEFCDAB" : "CDAB";
    case WordOrder::kBADC: return eight ? "BADCFEHG" : "BADC";
    case WordOrder::kDCBA: return eight ? "HGFEDCBA" : "DCBA";
  }
  return "?";
}

std::optional<Table> ParseTable(std::string_view s) {
  for (Table t : {Table::kCoil, Table::kDiscrete, Table::kInput, Table::kHolding}) {
    if (s == TableName(t)) return t;
  }
  return std::nullopt;
}

std::optional<DataType> ParseDataType(std::string_view s) {
  for (DataType t : kAllTypes) {
    if (s == DataTypeName(t)) return t;
  }
  return std::nullopt;
}

std::optional<WordOrder> ParseWordOrder(std::string_view s, bool* eight) {
  for (WordOrder o : kAllOrders) {
    for (int bytes : {4, 8}) {
      if (s == WordOrderName(o, bytes)) {
        if (eight != nullptr) *eight = bytes == 8;
        return o;
      }
    }
  }
  return std::nullopt;
}

std::optional<RegisterNumber> ParseRegisterNumber(std::string_view digits) {
  if (digits.size() != 5 && digits.size() != 6) return std::nullopt;
  uint32_t number = 0;
  for (size_t i = 1; i < digits.size(); ++i) {
    if (digits[i] < '0' || digits[i] > '9') return std::nullopt;
    number = number * 10 + static_cast<uint32_t>(digits[i] - '0');
  }
  const uint32_t max = digits.size() == 5 ? 9999 : 65536;
  if (number < 1 || number > max) return std::nullopt;
  Table table;
  switch (digits[0]) {
    case '0': table = Table::kCoil; break;
    case '1': table = Table::kDiscrete; break;
    case '3': table = Table::kInput; break;
    case '4': table = Table::kHolding; break;
    default: return std::nullopt;
  }
  return RegisterNumber{table, static_cast<uint16_t>(number - 1)};
}

std::string FormatRegisterNumber(Table table, uint16_t address) {
  char digit = '4';
  switch (table) {
    case Table::kCoil: digit = '0'; break;
    case Table::kDiscrete: digit = '1'; break;
    case Table::kInput: digit = '3'; break;
    case Table::kHolding: digit = '4'; break;
  }
  const uint32_t number = uint32_t{address} + 1;
  std::string n = std::to_string(number);
  const size_t width = number <= 9999 ? 4 : 5;
  return std::string(1, digit) + std::string(width - n.size(), '0') + n;
}

uint16_t RegisterCount(DataType t) {
  switch (t) {
    case DataType::kBool:
    case DataType::kBit:
    case DataType::kInt16:
    case DataType::kUint16: return 1;
    case DataType::kInt32:
    case DataType::kUint32:
    case DataType::kFloat32: return 2;
    case DataType::kInt64:
    case DataType::kUint64:
    case DataType::kFloat64: return 4;
    case DataType::kString: return 0;
  }
  return 1;
}

uint16_t ElementCount(const TagSpec& tag) {
  if (IsBitTable(tag.table)) return 1;
  if (tag.type == DataType::kString) return static_cast<uint16_t>((tag.length + 1) / 2);
  return RegisterCount(tag.type);
}

bool IsNumeric(DataType t) {
  return t != DataType::kBool && t != DataType::kBit && t != DataType::kString;
}

std::string ValidateTag(const TagSpec& tag, const PlanLimits& limits, std::string* key) {
  std::string unused;
  std::string& at = key != nullptr ? *key : unused;
  const std::string type(DataTypeName(tag.type));
  at = "type";
  if (IsBitTable(tag.table) && tag.type != DataType::kBool) {
    return "a " + std::string(TableName(tag.table)) + " is one bit: its type is bool, not " + type;
  }
  at = "bit";
  if (tag.type == DataType::kBit && tag.bit > 15) {
    return "bit " + std::to_string(tag.bit) + " is not in a 16-bit register (0..15)";
  }
  if (tag.type == DataType::kString) {
    at = "length";
    if (tag.length == 0) return "a string needs its length in bytes (length = N)";
    at = "order";
    if (SwapsWords(tag.order)) {
      return "a string's order is ABCD (first character in the high byte) or BADC";
    }
  }
  at = tag.type == DataType::kString ? "length" : "address";
  const uint32_t count = ElementCount(tag);
  const uint32_t max = IsBitTable(tag.table) ? limits.max_bits : limits.max_registers;
  if (count > max) {
    return "a " + type + " of " + std::to_string(count) +
           " registers does not fit in one read of " + std::to_string(max);
  }
  at = "address";
  if (uint32_t{tag.address} + count - 1 > 65535) {
    return "a " + type + " at " + std::to_string(tag.address) +
           " runs past the last register (65535)";
  }
  return {};
}

std::string_view BusTypeName(BusType t) {
  switch (t) {
    case BusType::kTcp: return "tcp";
    case BusType::kRtu: return "rtu";
    case BusType::kRtuOverTcp: return "rtu-over-tcp";
  }
  return "?";
}

bool IsSupportedBaud(int baud) {
  for (int b : {110,     300,     600,     1200,    2400,    4800,    9600,    19200,
                38400,   57600,   115200,  230400,  460800,  500000,  576000,  921600,
                1000000, 1152000, 1500000, 2000000, 2500000, 3000000, 3500000, 4000000}) {
    if (b == baud) return true;
  }
  return false;
}

std::chrono::nanoseconds CharacterTime(int baud) {
  return std::chrono::nanoseconds(11'000'000'000LL / baud);
}

std::chrono::microseconds InterFrameDelay(int baud) {
  if (baud > 19200) return std::chrono::microseconds(1750);
  return std::chrono::microseconds(38'500'000LL / baud + 1);  // 3.5 * 11 bits, rounded up
}

}  // namespace tagrelay::modbus
