#include "drivers/modbus/types.h"

namespace tagrelay::modbus {

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
    case DataType::kInt16: return "int16";
    case DataType::kUint16: return "uint16";
    case DataType::kFloat32: return "float32";
  }
  return "?";
}

std::string_view WordOrderName(WordOrder o) {
  switch (o) {
    case WordOrder::kABCD: return "ABCD";
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
  for (DataType t : {DataType::kInt16, DataType::kUint16, DataType::kFloat32}) {
    if (s == DataTypeName(t)) return t;
  }
  return std::nullopt;
}

std::optional<WordOrder> ParseWordOrder(std::string_view s) {
  if (s == "ABCD") return WordOrder::kABCD;
  return std::nullopt;
}

uint16_t RegisterCount(DataType t) {
  switch (t) {
    case DataType::kInt16:
    case DataType::kUint16: return 1;
    case DataType::kFloat32: return 2;
  }
  return 1;
}

}  // namespace tagrelay::modbus
