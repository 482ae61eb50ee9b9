// MqttClient: the seam between the uplink's logic and an MQTT library.
//
// Promise: one session at a time. Connect() starts a session; its outcome
// arrives later through on_connect (reason 0 = accepted) or on_disconnect,
// whose text then says why in words an operator can act on (a TLS
// verification failure names what failed: CA, host name, expiry, version). Once connected,
// Publish() queues a message and returns its message id; the broker's answer
// to a QoS 1 publish arrives through on_publish with the MQTT 5 reason code
// (< 0x80: accepted; >= 0x80: not delivered). A lost session is reported once
// through on_disconnect; after it no callback of that session fires again.
// Callbacks run only inside Service(), on the caller's thread.
//
// Threads: owned by the uplink thread. Wake() alone is safe from any thread.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/core/status.h"

namespace tagrelay::uplink {

struct UserProperty {
  std::string key;
  std::string value;
};

enum class MqttVersion { kV5, kV311 };

struct MqttSessionOptions {
  MqttVersion version = MqttVersion::kV5;  // 3.1.1 has no reason codes and no user properties
  std::string host;
  uint16_t port = 8883;
  bool tls = true;
  std::string ca_file;    // empty: the system's CA certificates
  std::string cert_file;  // mutual TLS, optional
  std::string key_file;
  std::string client_id;
  std::string username;
  std::string password;  // the API key; never logged
  int keepalive_s = 30;
  int max_inflight = 20;
  std::string will_topic;  // empty: no Will
  std::string will_payload;
};

struct MqttCallbacks {
  std::function<void(int reason, std::string_view text)> on_connect;
  std::function<void(std::string_view why)> on_disconnect;
  std::function<void(int mid, int reason)> on_publish;
};

class MqttClient {
 public:
  virtual ~MqttClient() = default;

  virtual void SetCallbacks(MqttCallbacks callbacks) = 0;
  virtual Status Connect(const MqttSessionOptions& options) = 0;
  // Ends the session (without a Will); on_disconnect does not fire for it.
  virtual void Disconnect() = 0;
  virtual Result<int> Publish(const std::string& topic, std::string_view payload, int qos,
                              bool retain, const std::vector<UserProperty>& properties) = 0;
  // Waits up to `timeout` for network activity or Wake(), then runs callbacks.
  virtual void Service(std::chrono::milliseconds timeout) = 0;
  virtual void Wake() = 0;
};

}  // namespace tagrelay::uplink
