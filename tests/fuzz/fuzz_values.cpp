// The small parsers of config values, alarm rules and broker URLs: durations,
// sizes, running conditions, message placeholders, mqtt(s):// URLs.
#include <cstdint>
#include <string>

#include "agent/config.h"
#include "agent/rules/rules.h"
#include "agent/uplink/broker_url.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tagrelay;
  const std::string_view s(reinterpret_cast<const char*>(data), size);
  if (auto d = ParseDuration(s); d && d->count() < 0) fuzz::Fail("a negative duration");
  (void)ParseByteSize(s);
  std::string error;
  if (auto c = rules::ParseRunningCondition(s, &error)) {
    if (c->tag.empty()) fuzz::Fail("a running condition without a tag");
  } else if (error.empty()) {
    fuzz::Fail("a refused running condition without a reason");
  }
  (void)rules::UnknownPlaceholder(s);
  Result<uplink::BrokerUrl> url = uplink::BrokerUrl::Parse(s);
  if (url.ok()) {
    if (url->host.empty() || url->port == 0) fuzz::Fail("a broker URL without host or port");
    Result<uplink::BrokerUrl> again = uplink::BrokerUrl::Parse(url->ToString());
    if (!again.ok() || again->host != url->host || again->port != url->port ||
        again->tls != url->tls) {
      fuzz::Fail("a broker URL that does not survive ToString");
    }
  }
  return 0;
}
