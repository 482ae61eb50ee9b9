#include "drivers/modbus/probe.h"

#include <charconv>
#include <cstdio>
#include <vector>

#include "drivers/modbus/codec.h"
#include "drivers/modbus/request_plan.h"

namespace tagrelay::modbus {
namespace {

Status ReadOnce(ModbusTransport& t, int unit, const ReadRequest& r, int retries,
                std::vector<uint16_t>* regs, std::vector<uint8_t>* bits) {
  regs->assign(kMaxRegistersPerRead, 0);
  bits->assign(kMaxBitsPerRead, 0);
  Status s;
  for (int a = 0; a <= retries; ++a) {
    if (!t.connected()) {
      s = t.Connect();
      if (!s.ok()) return s;
    }
    s = ReadTable(t, unit, r.table, r.address, r.count, regs->data(), bits->data());
    if (s.ok() || s.message().starts_with("exception:")) return s;
  }
  return s;
}

std::string Pad(std::string s, size_t width) {
  if (s.size() < width) s.resize(width, ' ');
  return s + " ";
}

std::string Where(const TagSpec& tag) {
  std::string w = std::string(TableName(tag.table)) + " " + std::to_string(tag.address) + " (" +
                  FormatRegisterNumber(tag.table, tag.address) + ")";
  if (tag.type == DataType::kBit) w += " bit " + std::to_string(tag.bit);
  return w;
}

std::string Shape(const TagSpec& tag) {
  std::string s(DataTypeName(tag.type));
  if (tag.type == DataType::kString) s += "[" + std::to_string(tag.length) + "]";
  if (!IsBitTable(tag.table) && (ElementCount(tag) > 1 || tag.order != WordOrder::kABCD)) {
    s += " ";
    s += WordOrderName(tag.order, ElementCount(tag) == 4 ? 8 : 4);
  }
  return s;
}

std::string Raw(const TagSpec& tag, const uint16_t* regs, const uint8_t* bits) {
  if (IsBitTable(tag.table)) return bits[0] ? "1" : "0";
  std::string out;
  for (uint16_t i = 0; i < ElementCount(tag); ++i) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "%s0x%04X", i == 0 ? "" : " ", regs[i]);
    out += hex;
  }
  return out;
}

// Reads the tags of `r` (falling back to one request per tag if the device
// refuses the whole request) and appends a line per tag.
void ProbeRequest(ModbusTransport& t, int unit, const std::vector<TagSpec>& tags,
                  const ReadRequest& r, int retries, ProbeReport* report) {
  std::vector<uint16_t> regs;
  std::vector<uint8_t> bits;
  const Status s = ReadOnce(t, unit, r, retries, &regs, &bits);
  if (s.message() == "exception:2" && r.tags.size() > 1) {
    for (size_t i : r.tags) {
      const ReadRequest one{r.table, tags[i].address, ElementCount(tags[i]), {i}};
      ProbeRequest(t, unit, tags, one, retries, report);
    }
    return;
  }
  for (size_t i : r.tags) {
    const TagSpec& tag = tags[i];
    std::string line = "  " + (tag.name.empty() ? "" : Pad(tag.name, 20)) + Pad(Where(tag), 24) +
                       Pad(Shape(tag), 16);
    if (!s.ok()) {
      ++report->failures;
      const std::string detail = t.last_error();
      line += "error: " + s.message() + (detail.empty() ? "" : " (" + detail + ")");
    } else {
      const size_t off = tag.address - r.address;
      line += Pad(Raw(tag, regs.data() + off, bits.data() + off), 20);
      Result<Value> v =
          IsBitTable(tag.table)
              ? Result<Value>(DecodeBitValue(bits[off]))
              : DecodeTag(tag, std::span<const uint16_t>(regs.data() + off, ElementCount(tag)));
      if (v.ok()) {
        line += "= " + FormatValue(*v) + (tag.unit.empty() ? "" : " " + tag.unit);
      } else {
        ++report->failures;
        line += "error: " + v.status().message();
      }
    }
    report->text += line + "\n";
  }
}

}  // namespace

std::string FormatValue(const Value& v) {
  if (const auto* b = std::get_if<bool>(&v)) return *b ? "true" : "false";
  if (const auto* i = std::get_if<int64_t>(&v)) return std::to_string(*i);
  if (const auto* u = std::get_if<uint64_t>(&v)) return std::to_string(*u);
  if (const auto* d = std::get_if<double>(&v)) {
    char buf[32];
    const auto r = std::to_chars(buf, buf + sizeof buf, *d);
    return std::string(buf, r.ptr);
  }
  if (const auto* s = std::get_if<std::string>(&v)) return "\"" + *s + "\"";
  return "(none)";
}

ProbeReport ProbeDevice(ModbusTransport& transport, const DeviceSpec& device,
                        const std::string& tag, int retries) {
  ProbeReport report;
  report.text =
      device.id + " on " + transport.Describe() + ", unit " + std::to_string(device.unit_id) + "\n";
  std::vector<size_t> subset;
  for (size_t i = 0; i < device.tags.size(); ++i) {
    if (tag.empty() || device.tags[i].name == tag) subset.push_back(i);
  }
  for (const ReadRequest& r : PlanRequests(device.tags, subset, device.limits)) {
    ProbeRequest(transport, device.unit_id, device.tags, r, retries, &report);
  }
  return report;
}

ProbeReport ProbeRange(ModbusTransport& transport, int unit, const TagSpec& shape, int count,
                       int retries) {
  std::vector<TagSpec> tags;
  const uint16_t step = ElementCount(shape);
  for (int i = 0; i < count; ++i) {
    const uint32_t address = uint32_t{shape.address} + uint32_t{step} * static_cast<uint32_t>(i);
    if (address + step - 1 > 65535) break;
    TagSpec t = shape;
    t.address = static_cast<uint16_t>(address);
    t.name.clear();
    tags.push_back(std::move(t));
  }
  ProbeReport report;
  report.text = transport.Describe() + ", unit " + std::to_string(unit) + "\n";
  for (const ReadRequest& r : PlanRequests(tags)) {
    ProbeRequest(transport, unit, tags, r, retries, &report);
  }
  return report;
}

}  // namespace tagrelay::modbus
