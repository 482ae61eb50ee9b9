// MosquittoClient: MqttClient on libmosquitto (MQTT 5), driven from the
// uplink thread's own poll loop so that it can also be woken by the store.
//
// Promise: each Connect() builds a fresh libmosquitto session (clean start),
// so nothing of an earlier session is resent behind the uplink's back: after a
// reconnect the uplink alone decides what to send again. TLS is 1.2 or newer
// with certificate and hostname verification always on.
//
// Threads: owned by the uplink thread; Wake() is safe from any thread.
#pragma once

#include "agent/uplink/mqtt_client.h"

struct mosquitto;
struct mqtt5__property;

namespace tagrelay::uplink {

class MosquittoClient final : public MqttClient {
 public:
  MosquittoClient();
  ~MosquittoClient() override;
  MosquittoClient(const MosquittoClient&) = delete;
  MosquittoClient& operator=(const MosquittoClient&) = delete;

  void SetCallbacks(MqttCallbacks callbacks) override { callbacks_ = std::move(callbacks); }
  Status Connect(const MqttSessionOptions& options) override;
  void Disconnect() override;
  Result<int> Publish(const std::string& topic, std::string_view payload, int qos, bool retain,
                      const std::vector<UserProperty>& properties) override;
  void Service(std::chrono::milliseconds timeout) override;
  void Wake() override;

 private:
  static void OnConnect(mosquitto*, void* self, int rc, int flags, const mqtt5__property* props);
  static void OnDisconnect(mosquitto*, void* self, int rc, const mqtt5__property* props);
  static void OnPublish(mosquitto*, void* self, int mid, int rc, const mqtt5__property* props);
  static void OnLog(mosquitto*, void* self, int level, const char* text);
  void Destroy();

  mosquitto* mosq_ = nullptr;
  MqttCallbacks callbacks_;
  int wake_fd_ = -1;
  bool session_lost_reported_ = false;
};

}  // namespace tagrelay::uplink
