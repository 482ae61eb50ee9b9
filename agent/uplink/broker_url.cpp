#include "agent/uplink/broker_url.h"

#include <algorithm>
#include <cctype>
#include <charconv>

namespace tagrelay::uplink {

Result<BrokerUrl> BrokerUrl::Parse(std::string_view url) {
  BrokerUrl out;
  std::string_view rest;
  if (url.starts_with("mqtts://")) {
    out.tls = true;
    out.port = 8883;
    rest = url.substr(8);
  } else if (url.starts_with("mqtt://")) {
    out.tls = false;
    out.port = 1883;
    rest = url.substr(7);
  } else {
    return Status::InvalidArgument(
        "broker URL must start with mqtts:// (or mqtt:// with insecure = true)");
  }
  std::string_view host, port;
  if (rest.starts_with("[")) {
    const size_t close = rest.find(']');
    if (close == std::string_view::npos)
      return Status::InvalidArgument("unclosed '[' in IPv6 host");
    host = rest.substr(1, close - 1);
    rest = rest.substr(close + 1);
    if (!rest.empty()) {
      if (rest[0] != ':') return Status::InvalidArgument("expected ':port' after ']'");
      port = rest.substr(1);
    }
  } else {
    const size_t colon = rest.find(':');
    host = rest.substr(0, colon);
    if (colon != std::string_view::npos) port = rest.substr(colon + 1);
  }
  if (host.empty()) return Status::InvalidArgument("broker URL has no host");
  if (host.find_first_of("/?#@ ") != std::string_view::npos) {
    return Status::InvalidArgument("broker URL: unexpected character in host '" +
                                   std::string(host) + "' (a path, user or query is not allowed)");
  }
  // A host name or IPv4 address: letters, digits, '.', '-', '_'. An IPv6
  // address (in brackets): hex digits, '.' and at least one ':', then maybe a
  // %zone of letters and digits.
  const bool ipv6 = url.find('[') != std::string_view::npos;
  auto name_char = [](unsigned char c) {
    return std::isalnum(c) || c == '.' || c == '-' || c == '_';
  };
  bool ok = true;
  if (ipv6) {
    const size_t pct = host.find('%');
    const std::string_view addr = host.substr(0, pct);
    const std::string_view zone =
        pct == std::string_view::npos ? std::string_view() : host.substr(pct + 1);
    ok = addr.find(':') != std::string_view::npos &&
         std::all_of(addr.begin(), addr.end(),
                     [](char ch) {
                       const auto c = static_cast<unsigned char>(ch);
                       return std::isxdigit(c) || c == ':' || c == '.';
                     }) &&
         (pct == std::string_view::npos ||
          (!zone.empty() && std::all_of(zone.begin(), zone.end(), [&](char ch) {
            return name_char(static_cast<unsigned char>(ch));
          })));
  } else {
    ok = std::all_of(host.begin(), host.end(),
                     [&](char ch) { return name_char(static_cast<unsigned char>(ch)); });
  }
  if (!ok) {
    return Status::InvalidArgument("broker URL: '" + std::string(host) + "' is not a host name" +
                                   (ipv6 ? " or IPv6 address" : " or address"));
  }
  if (!port.empty() || (rest.find(':') != std::string_view::npos)) {
    int p = 0;
    auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (ec != std::errc() || ptr != port.data() + port.size() || p < 1 || p > 65535) {
      return Status::InvalidArgument("broker URL: port must be 1..65535, got '" +
                                     std::string(port) + "'");
    }
    out.port = static_cast<uint16_t>(p);
  }
  out.host = std::string(host);
  return out;
}

std::string BrokerUrl::ToString() const {
  const bool v6 = host.find(':') != std::string::npos;
  return std::string(tls ? "mqtts://" : "mqtt://") + (v6 ? "[" + host + "]" : host) + ":" +
         std::to_string(port);
}

}  // namespace tagrelay::uplink
