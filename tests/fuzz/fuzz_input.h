// FuzzInput: takes typed values off the front of a fuzzer's byte string, so
// that one input drives several choices; when the bytes run out it yields
// zeros.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace tagrelay::fuzz {

class FuzzInput {
 public:
  FuzzInput(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  template <typename T>
  T Take() {
    T v{};
    const size_t n = std::min(sizeof(T), size_);
    std::memcpy(&v, data_, n);
    data_ += n;
    size_ -= n;
    return v;
  }
  // The rest of the input.
  std::string_view Rest() const { return {reinterpret_cast<const char*>(data_), size_}; }
  size_t left() const { return size_; }

 private:
  const uint8_t* data_;
  size_t size_;
};

// Stops the fuzzer on a broken promise, with the reason.
[[noreturn]] void Fail(const char* what);

}  // namespace tagrelay::fuzz
