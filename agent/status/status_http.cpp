#include "agent/status/status_http.h"

#include "agent/status/status_render.h"

namespace tagrelay::status {
namespace {

std::string_view Reason(int code) {
  switch (code) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 503: return "Service Unavailable";
  }
  return "Error";
}

HttpResponse Text(int code, std::string body) {
  return HttpResponse{code, "text/plain; charset=utf-8", std::move(body), false};
}

bool Token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < 'A' || c > 'Z') return false;
  }
  return true;
}

}  // namespace

HeadState ParseRequestHead(std::string_view data, HttpRequest* request) {
  const size_t end = data.find("\r\n\r\n");
  if (end == std::string_view::npos) {
    // A bare LF ending is accepted too, as many tools send it.
    const size_t lf = data.find("\n\n");
    if (lf == std::string_view::npos) {
      return data.size() >= kMaxRequestHead ? HeadState::kBad : HeadState::kIncomplete;
    }
  }
  const size_t eol = data.find_first_of("\r\n");
  const std::string_view line = data.substr(0, eol);
  const size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos) return HeadState::kBad;
  const size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return HeadState::kBad;
  const std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (!Token(method) || target.empty() || target.front() != '/' || !version.starts_with("HTTP/1."))
    return HeadState::kBad;
  const size_t q = target.find_first_of("?#");
  if (q != std::string_view::npos) target = target.substr(0, q);
  request->method = std::string(method);
  request->path = std::string(target);
  return HeadState::kComplete;
}

std::string HttpResponse::Serialize() const {
  std::string out = "HTTP/1.1 " + std::to_string(code) + " " + std::string(Reason(code)) + "\r\n";
  out += "Content-Type: " + content_type + "\r\n";
  out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  out += "Cache-Control: no-store\r\n";
  out += "X-Content-Type-Options: nosniff\r\n";
  if (code == 405) out += "Allow: GET, HEAD\r\n";
  out += "Connection: close\r\n\r\n";
  if (!head_only) out += body;
  return out;
}

HttpResponse BadRequest() { return Text(400, "bad request\n"); }

HttpResponse Route(const HttpRequest& request, const StatusSnapshot* snapshot) {
  if (request.method != "GET" && request.method != "HEAD") {
    return Text(405, "the status pages are read only: GET or HEAD\n");
  }
  HttpResponse r;
  const std::string& p = request.path;
  if (p != "/" && p != "/index.html" && p != "/metrics" && p != "/status.json" &&
      p != "/status.txt") {
    r = Text(404, "not found; see /, /metrics, /status.json or /status.txt\n");
  } else if (snapshot == nullptr) {
    r = Text(503, "starting\n");
  } else if (p == "/metrics") {
    r = HttpResponse{200, "text/plain; version=0.0.4; charset=utf-8", RenderPrometheus(*snapshot),
                     false};
  } else if (p == "/status.json") {
    r = HttpResponse{200, "application/json", RenderJson(*snapshot), false};
  } else if (p == "/status.txt") {
    r = Text(200, RenderText(*snapshot));
  } else {
    r = HttpResponse{200, "text/html; charset=utf-8", RenderHtml(*snapshot), false};
  }
  r.head_only = request.method == "HEAD";
  return r;
}

}  // namespace tagrelay::status
