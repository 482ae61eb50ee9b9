// Reading: one acquired value of one tag, the unit of data that flows from a
// poller through the store to the uplink.
//
// Promise: a reading with quality kBad carries no value (std::monostate) and
// says why in `error` ("timeout", "exception:2", ...); a good reading always
// carries a value. `ts_ms` is the acquisition time (Unix ms, UTC) and is kept
// unchanged all the way to the cloud.
//
// Threads: plain values; they are moved between threads, never shared.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace tagrelay {

enum class Quality : uint8_t { kGood = 0, kBad = 1, kUncertain = 2 };

std::string_view QualityName(Quality q);

// The value of a reading. Integers keep their exact width; floats are doubles.
using Value = std::variant<std::monostate, bool, int64_t, uint64_t, double, std::string>;

struct Reading {
  std::string tag;
  int64_t ts_ms = 0;
  Value value;
  Quality quality = Quality::kGood;
  std::string error;  // empty unless quality is not good

  static Reading Good(std::string tag, int64_t ts_ms, Value v) {
    return Reading{std::move(tag), ts_ms, std::move(v), Quality::kGood, {}};
  }
  static Reading Bad(std::string tag, int64_t ts_ms, std::string error) {
    return Reading{std::move(tag), ts_ms, std::monostate{}, Quality::kBad, std::move(error)};
  }
};

// The readings of one device from one poll cycle.
struct ReadingBatch {
  std::string device;
  std::vector<Reading> readings;
};

}  // namespace tagrelay
