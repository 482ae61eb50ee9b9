// Per-device batch signatures (docs/protocol.md, "Signatures").
//
// Promise: Sign() returns base64(HMAC-SHA256(key, topic + "\n" + payload)),
// the value of the `sig` user property; KeyId() returns the `kid` user
// property: the first 16 hex digits of SHA-256(key), so that a receiver can
// pick the right key of a device (two may be active during a rotation) while
// the key itself never leaves the gateway. Neither result reveals the key.
//
// Threads: pure functions, safe from any thread.
#pragma once

#include <string>
#include <string_view>

namespace tagrelay::uplink {

std::string KeyId(std::string_view key);
std::string Sign(std::string_view key, std::string_view topic, std::string_view payload);

// Overwrites `secret` with zeros and empties it, so that a key does not linger in
// freed memory.
void Wipe(std::string& secret);

}  // namespace tagrelay::uplink
