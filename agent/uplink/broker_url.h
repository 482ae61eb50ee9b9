// BrokerUrl: a parsed broker address, mqtt://host[:port] or mqtts://host[:port].
//
// Promise: Parse() accepts exactly those two schemes, an optional port (1..65535;
// default 1883 for mqtt, 8883 for mqtts), IPv6 hosts in brackets, and nothing
// after the port; anything else is an InvalidArgument that says what is wrong.
//
// Threads: plain value.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "agent/core/status.h"

namespace tagrelay::uplink {

struct BrokerUrl {
  bool tls = true;
  std::string host;
  uint16_t port = 8883;

  static Result<BrokerUrl> Parse(std::string_view url);
  std::string ToString() const;
};

}  // namespace tagrelay::uplink
