#include "agent/rules/rules.h"

#include <charconv>
#include <cmath>

namespace tagrelay::rules {

std::string_view AlarmKindName(AlarmKind k) {
  switch (k) {
    case AlarmKind::kHigh: return "high";
    case AlarmKind::kLow: return "low";
    case AlarmKind::kHighHigh: return "high_high";
    case AlarmKind::kLowLow: return "low_low";
    case AlarmKind::kEquals: return "equals";
    case AlarmKind::kRate: return "rate";
    case AlarmKind::kStale: return "stale";
    case AlarmKind::kCommLoss: return "comm_loss";
  }
  return "high";
}

std::optional<AlarmKind> ParseAlarmKind(std::string_view s) {
  for (AlarmKind k :
       {AlarmKind::kHigh, AlarmKind::kLow, AlarmKind::kHighHigh, AlarmKind::kLowLow,
        AlarmKind::kEquals, AlarmKind::kRate, AlarmKind::kStale, AlarmKind::kCommLoss}) {
    if (s == AlarmKindName(k)) return k;
  }
  return std::nullopt;
}

bool IsLevel(AlarmKind k) {
  return k == AlarmKind::kHigh || k == AlarmKind::kLow || k == AlarmKind::kHighHigh ||
         k == AlarmKind::kLowLow;
}

bool IsUpper(AlarmKind k) { return k == AlarmKind::kHigh || k == AlarmKind::kHighHigh; }

std::string_view ComparisonName(Comparison c) {
  switch (c) {
    case Comparison::kGreater: return ">";
    case Comparison::kGreaterEqual: return ">=";
    case Comparison::kLess: return "<";
    case Comparison::kLessEqual: return "<=";
    case Comparison::kEqual: return "==";
    case Comparison::kNotEqual: return "!=";
  }
  return ">";
}

bool Compare(double v, Comparison c, double t) {
  switch (c) {
    case Comparison::kGreater: return v > t;
    case Comparison::kGreaterEqual: return v >= t;
    case Comparison::kLess: return v < t;
    case Comparison::kLessEqual: return v <= t;
    case Comparison::kEqual: return v == t;
    case Comparison::kNotEqual: return v != t;
  }
  return false;
}

std::optional<RunningCondition> ParseRunningCondition(std::string_view text, std::string* error) {
  auto skip = [&](size_t i) {
    while (i < text.size() && text[i] == ' ') ++i;
    return i;
  };
  size_t i = skip(0);
  const size_t tag_begin = i;
  while (i < text.size() && (std::isalnum(static_cast<unsigned char>(text[i])) || text[i] == '_' ||
                             text[i] == '.' || text[i] == '-')) {
    ++i;
  }
  RunningCondition out{std::string(text.substr(tag_begin, i - tag_begin)), Comparison::kGreater, 0};
  if (out.tag.empty()) {
    *error = "expected a tag name first";
    return std::nullopt;
  }
  i = skip(i);
  bool found = false;
  for (Comparison c : {Comparison::kGreaterEqual, Comparison::kLessEqual, Comparison::kEqual,
                       Comparison::kNotEqual, Comparison::kGreater, Comparison::kLess}) {
    const std::string_view op = ComparisonName(c);
    if (text.substr(i, op.size()) == op) {
      out.op = c;
      i += op.size();
      found = true;
      break;
    }
  }
  if (!found) {
    *error = "expected one of > >= < <= == != after the tag";
    return std::nullopt;
  }
  i = skip(i);
  const std::string number(text.substr(i));
  char* end = nullptr;
  out.threshold = std::strtod(number.c_str(), &end);
  if (number.empty() || end == number.c_str() ||
      std::string_view(end).find_first_not_of(' ') != std::string_view::npos ||
      !std::isfinite(out.threshold)) {
    *error = "expected a number after the comparison";
    return std::nullopt;
  }
  return out;
}

std::string UnknownPlaceholder(std::string_view message) {
  static constexpr std::string_view kKnown[] = {"value", "unit", "limit", "tag", "device", "alarm"};
  for (size_t open = message.find('{'); open != std::string_view::npos;
       open = message.find('{', open + 1)) {
    const size_t close = message.find('}', open);
    if (close == std::string_view::npos) return std::string(message.substr(open));
    const std::string_view name = message.substr(open + 1, close - open - 1);
    bool known = false;
    for (std::string_view k : kKnown) known = known || name == k;
    if (!known) return "{" + std::string(name) + "}";
  }
  return {};
}

}  // namespace tagrelay::rules
