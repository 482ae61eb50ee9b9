#include "agent/uplink/broker_url.h"

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
