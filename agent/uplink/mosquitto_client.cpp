#include "agent/uplink/mosquitto_client.h"

#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <string>

#include "agent/core/log.h"

namespace tagrelay::uplink {
namespace {

void InitLibraryOnce() {
  static std::once_flag once;
  std::call_once(once, [] { mosquitto_lib_init(); });
}

std::string MosqError(int rc) {
  if (rc == MOSQ_ERR_ERRNO) return std::strerror(errno);
  return mosquitto_strerror(rc);
}

}  // namespace

MosquittoClient::MosquittoClient() {
  InitLibraryOnce();
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

MosquittoClient::~MosquittoClient() {
  Destroy();
  if (wake_fd_ >= 0) close(wake_fd_);
}

void MosquittoClient::Destroy() {
  if (mosq_ != nullptr) {
    mosquitto_destroy(mosq_);
    mosq_ = nullptr;
  }
}

void MosquittoClient::OnConnect(mosquitto*, void* self, int rc, int, const mqtt5__property*) {
  auto* c = static_cast<MosquittoClient*>(self);
  if (c->callbacks_.on_connect) c->callbacks_.on_connect(rc, mosquitto_reason_string(rc));
}

void MosquittoClient::OnDisconnect(mosquitto*, void* self, int rc, const mqtt5__property*) {
  auto* c = static_cast<MosquittoClient*>(self);
  if (c->session_lost_reported_) return;
  c->session_lost_reported_ = true;
  if (c->callbacks_.on_disconnect) {
    c->callbacks_.on_disconnect(rc == 0 ? std::string("closed") : MosqError(rc));
  }
}

void MosquittoClient::OnPublish(mosquitto*, void* self, int mid, int rc, const mqtt5__property*) {
  auto* c = static_cast<MosquittoClient*>(self);
  if (c->callbacks_.on_publish) c->callbacks_.on_publish(mid, rc);
}

void MosquittoClient::OnLog(mosquitto*, void*, int level, const char* text) {
  if (level == MOSQ_LOG_ERR) Log(LogLevel::kWarning, "mqtt", text);
}

Status MosquittoClient::Connect(const MqttSessionOptions& o) {
  Destroy();
  session_lost_reported_ = false;
  mosq_ = mosquitto_new(o.client_id.c_str(), /*clean_session=*/true, this);
  if (mosq_ == nullptr)
    return Status::Internal("mosquitto_new: " + std::string(std::strerror(errno)));
  mosquitto_int_option(mosq_, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
  mosquitto_int_option(mosq_, MOSQ_OPT_SEND_MAXIMUM, o.max_inflight);
  mosquitto_connect_v5_callback_set(mosq_, &OnConnect);
  mosquitto_disconnect_v5_callback_set(mosq_, &OnDisconnect);
  mosquitto_publish_v5_callback_set(mosq_, &OnPublish);
  mosquitto_log_callback_set(mosq_, &OnLog);

  int rc = MOSQ_ERR_SUCCESS;
  if (!o.username.empty()) {
    rc = mosquitto_username_pw_set(mosq_, o.username.c_str(),
                                   o.password.empty() ? nullptr : o.password.c_str());
    if (rc != MOSQ_ERR_SUCCESS) return Status::InvalidArgument("MQTT username: " + MosqError(rc));
  }
  if (o.tls) {
    rc = mosquitto_tls_set(mosq_, o.ca_file.empty() ? nullptr : o.ca_file.c_str(), nullptr,
                           o.cert_file.empty() ? nullptr : o.cert_file.c_str(),
                           o.key_file.empty() ? nullptr : o.key_file.c_str(), nullptr);
    if (rc != MOSQ_ERR_SUCCESS) return Status::InvalidArgument("TLS files: " + MosqError(rc));
    rc = mosquitto_tls_opts_set(mosq_, /*SSL_VERIFY_PEER*/ 1, "tlsv1.2", nullptr);
    if (rc != MOSQ_ERR_SUCCESS) return Status::InvalidArgument("TLS options: " + MosqError(rc));
    mosquitto_tls_insecure_set(mosq_, false);  // hostname verification stays on
  }
  if (!o.will_topic.empty()) {
    rc = mosquitto_will_set_v5(mosq_, o.will_topic.c_str(), static_cast<int>(o.will_payload.size()),
                               o.will_payload.data(), 1, true, nullptr);
    if (rc != MOSQ_ERR_SUCCESS) return Status::InvalidArgument("MQTT will: " + MosqError(rc));
  }
  rc = mosquitto_connect_bind_v5(mosq_, o.host.c_str(), o.port, o.keepalive_s, nullptr, nullptr);
  if (rc != MOSQ_ERR_SUCCESS) {
    std::string why = MosqError(rc);
    Destroy();
    return Status::Unavailable(why);
  }
  return Status::Ok();
}

void MosquittoClient::Disconnect() {
  if (mosq_ == nullptr) return;
  session_lost_reported_ = true;  // a disconnect we asked for is not a lost session
  mosquitto_disconnect_v5(mosq_, MQTT_RC_NORMAL_DISCONNECTION, nullptr);
  // Let the DISCONNECT packet go out before the socket closes.
  for (int i = 0; i < 10 && mosquitto_want_write(mosq_) && mosquitto_socket(mosq_) >= 0; ++i) {
    if (mosquitto_loop_write(mosq_, 1) != MOSQ_ERR_SUCCESS) break;
  }
  Destroy();
}

Result<int> MosquittoClient::Publish(const std::string& topic, std::string_view payload, int qos,
                                     bool retain, const std::vector<UserProperty>& properties) {
  if (mosq_ == nullptr) return Status::Unavailable("not connected");
  mosquitto_property* props = nullptr;
  for (const UserProperty& p : properties) {
    int rc = mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, p.key.c_str(),
                                                p.value.c_str());
    if (rc != MOSQ_ERR_SUCCESS) {
      mosquitto_property_free_all(&props);
      return Status::Internal("MQTT property: " + MosqError(rc));
    }
  }
  int mid = 0;
  const int rc = mosquitto_publish_v5(mosq_, &mid, topic.c_str(), static_cast<int>(payload.size()),
                                      payload.data(), qos, retain, props);
  mosquitto_property_free_all(&props);
  if (rc != MOSQ_ERR_SUCCESS) return Status::Unavailable("publish: " + MosqError(rc));
  return mid;
}

void MosquittoClient::Service(std::chrono::milliseconds timeout) {
  pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {-1, 0, 0}};
  nfds_t n = 1;
  const int sock = mosq_ != nullptr ? mosquitto_socket(mosq_) : -1;
  if (sock >= 0) {
    fds[1] = {sock, static_cast<short>(POLLIN | (mosquitto_want_write(mosq_) ? POLLOUT : 0)), 0};
    n = 2;
  }
  const int ms = static_cast<int>(std::max<int64_t>(0, timeout.count()));
  const int ready = poll(fds, n, ms);
  if (ready < 0 && errno != EINTR) {
    Log(LogLevel::kError, "mqtt", std::string("poll: ") + std::strerror(errno));
  }
  if (ready > 0 && (fds[0].revents & POLLIN)) {
    eventfd_t value;
    (void)eventfd_read(wake_fd_, &value);
  }
  if (mosq_ == nullptr || sock < 0) return;
  if (ready > 0 && (fds[1].revents & (POLLIN | POLLERR | POLLHUP))) {
    mosquitto_loop_read(mosq_, 1);
  }
  if (mosq_ != nullptr && mosquitto_socket(mosq_) >= 0 && mosquitto_want_write(mosq_)) {
    mosquitto_loop_write(mosq_, 1);
  }
  if (mosq_ != nullptr && mosquitto_socket(mosq_) >= 0) {
    mosquitto_loop_misc(mosq_);
  } else if (!session_lost_reported_) {
    OnDisconnect(mosq_, this, MOSQ_ERR_CONN_LOST, nullptr);
  }
}

void MosquittoClient::Wake() {
  if (wake_fd_ >= 0) (void)eventfd_write(wake_fd_, 1);
}

}  // namespace tagrelay::uplink
