// MosquittoClient: MqttClient on libmosquitto (MQTT 5, or 3.1.1 if asked),
// driven from the uplink thread's own poll loop so that it can also be woken
// by the store.
//
// Promise: each Connect() builds a fresh libmosquitto session (clean start),
// so nothing of an earlier session is resent behind the uplink's back: after a
// reconnect the uplink alone decides what to send again. TLS is set up here,
// not left to libmosquitto's defaults: TLS 1.2 or newer only, the broker's
// certificate verified against ca_file (or the system's CAs) and its host name
// (or IP address) checked, always. A failed handshake is reported through
// on_disconnect with what failed (unknown CA, host name, expired, TLS version)
// and a hint, never as a bare "TLS error".
//
// Threads: owned by the uplink thread; Wake() is safe from any thread.
#pragma once

#include <cstdint>

#include "agent/uplink/mqtt_client.h"

struct mosquitto;
struct mqtt5__property;
struct ssl_ctx_st;
struct x509_store_ctx_st;

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

  // Bytes the sessions' sockets sent and the peer acknowledged, over the current
  // session and those that ended with Disconnect() (a lost connection's count
  // is gone with its socket): MQTT packets with their TLS records, as TCP
  // carries them. For measurements.
  uint64_t BytesSent() const { return bytes_sent_closed_ + SocketBytesSent(); }

 private:
  static void OnConnect(mosquitto*, void* self, int rc, int flags, const mqtt5__property* props);
  static void OnDisconnect(mosquitto*, void* self, int rc, const mqtt5__property* props);
  static void OnPublish(mosquitto*, void* self, int mid, int rc, const mqtt5__property* props);
  static void OnLog(mosquitto*, void* self, int level, const char* text);
  static int OnVerify(int preverify_ok, x509_store_ctx_st* store);
  Result<ssl_ctx_st*> MakeTlsContext(const MqttSessionOptions& o);
  std::string DescribeLoss(int rc) const;
  uint64_t SocketBytesSent() const;  // of the current session's socket; 0 without one
  void Destroy();

  mosquitto* mosq_ = nullptr;
  MqttCallbacks callbacks_;
  MqttVersion version_ = MqttVersion::kV5;
  int wake_fd_ = -1;
  bool session_lost_reported_ = false;
  bool connack_seen_ = false;
  std::string host_;         // the broker's host as configured, for messages and verification
  std::string endpoint_;     // host:port
  std::string tls_failure_;  // the first certificate verification failure of this session
  std::string tls_errors_;   // OpenSSL errors libmosquitto logged during this session
  uint64_t bytes_sent_closed_ = 0;  // by the sockets of the sessions that are gone
  uint64_t sampled_before_disconnect_ = 0;
};

}  // namespace tagrelay::uplink
