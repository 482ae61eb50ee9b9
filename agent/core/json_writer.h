// JsonWriter: appends compact JSON to a string, for payloads and status output.
//
// Promise: the output is valid JSON (RFC 8259) whatever the input: commas are
// placed for the caller, strings are escaped, invalid UTF-8 becomes U+FFFD,
// numbers are written in the shortest form that reads back to the same double,
// and a NaN or infinity (which JSON cannot hold) is written as null.
// REQUIRES: calls are balanced (every Begin has its End) and Key() is called
// before each value inside an object.
//
// Threads: one writer per thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "agent/core/reading.h"

namespace tagrelay {

class JsonWriter {
 public:
  explicit JsonWriter(std::string* out) : out_(out) {}

  JsonWriter& BeginObject();
  JsonWriter& EndObject();
  JsonWriter& BeginArray();
  JsonWriter& EndArray();
  JsonWriter& Key(std::string_view key);

  JsonWriter& String(std::string_view s);
  JsonWriter& Int(int64_t v);
  JsonWriter& Uint(uint64_t v);
  JsonWriter& Double(double v);
  JsonWriter& Bool(bool v);
  JsonWriter& Null();

 private:
  void BeforeValue();

  std::string* out_;
  std::vector<bool> first_;  // per open container: nothing written in it yet
  bool after_key_ = false;
};

// Appends `s` as a quoted, escaped JSON string.
void AppendJsonString(std::string* out, std::string_view s);

// Writes `v` (finite) at `first`, which has room for 32 characters, in the
// shortest form that reads back to the same double, exactly as
// std::to_chars(first, last, v) does; returns the end.
char* FormatDouble(double v, char* first);

// Writes a reading's value: null (no value), true/false, an integer, a number
// or a string.
void WriteValue(JsonWriter& w, const Value& v);

}  // namespace tagrelay
