// Status and Result<T>: how every module reports failure across its boundary.
//
// Promise: a Status is either ok or carries a code and a human-readable message
// that already names the context ("modbus plc-hall: connect 10.0.0.5:502: ...").
// Adapters convert a library's error (errno, SQLite code, MOSQ_ERR_*) into a
// Status once, where the call is made; no exception crosses a module boundary.
//
// Threads: plain values; safe to move between threads, not to share mutably.
#pragma once

#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace tagrelay {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,  // bad input: config, a frame, a file
  kNotFound,
  kIOError,  // disk, socket
  kTimeout,
  kDeviceError,        // the device answered with an error (Modbus exception, bad frame)
  kCorruption,         // data on disk does not make sense
  kUnavailable,        // a peer is not reachable now; retrying may help
  kResourceExhausted,  // a bound was hit (disk full, queue full)
  kCancelled,          // stop was requested
  kInternal,
};

std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // ok
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return {}; }
  static Status InvalidArgument(std::string m) {
    return {StatusCode::kInvalidArgument, std::move(m)};
  }
  static Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
  static Status IOError(std::string m) { return {StatusCode::kIOError, std::move(m)}; }
  static Status Timeout(std::string m) { return {StatusCode::kTimeout, std::move(m)}; }
  static Status DeviceError(std::string m) { return {StatusCode::kDeviceError, std::move(m)}; }
  static Status Corruption(std::string m) { return {StatusCode::kCorruption, std::move(m)}; }
  static Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
  static Status ResourceExhausted(std::string m) {
    return {StatusCode::kResourceExhausted, std::move(m)};
  }
  static Status Cancelled(std::string m) { return {StatusCode::kCancelled, std::move(m)}; }
  static Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // "IOError: open /var/lib/tagrelay/tagrelay.db: permission denied"
  std::string ToString() const;

  // Returns a copy whose message is prefixed with `context` and ": ".
  Status WithContext(std::string_view context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// Either a value or a non-ok Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    assert(!std::get<Status>(v_).ok() && "Result needs a value or an error");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }

  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace tagrelay

// Returns early from the enclosing function with the error of `expr`.
#define TR_RETURN_IF_ERROR(expr)             \
  do {                                       \
    ::tagrelay::Status tr_status_ = (expr);  \
    if (!tr_status_.ok()) return tr_status_; \
  } while (0)
