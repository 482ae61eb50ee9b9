// The status pages over HTTP/1.1: request parsing and routing, as pure
// functions, for StatusServer and its tests.
//
// Routes (GET only; HEAD gets the headers):
//   /             the HTML page        /metrics       Prometheus text format
//   /status.json  the JSON snapshot    /status.txt    the text table
//
// Promise: a request head is at most kMaxRequestHead bytes; anything else is
// answered 400, 404 or 405 with a short text body. Every answer closes the
// connection.
//
// Threads: pure; any thread.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "agent/status/status_model.h"

namespace tagrelay::status {

inline constexpr size_t kMaxRequestHead = 8192;

struct HttpRequest {
  std::string method;
  std::string path;  // without the query string
};

enum class HeadState { kIncomplete, kComplete, kBad };

// Parses the request head in `data` (the bytes received so far).
HeadState ParseRequestHead(std::string_view data, HttpRequest* request);

struct HttpResponse {
  int code = 200;
  std::string content_type;
  std::string body;
  bool head_only = false;

  // The whole response: status line, headers, body.
  std::string Serialize() const;
};

// The answer to `request` given the latest snapshot (nullptr: none yet).
HttpResponse Route(const HttpRequest& request, const StatusSnapshot* snapshot);
HttpResponse BadRequest();

}  // namespace tagrelay::status
