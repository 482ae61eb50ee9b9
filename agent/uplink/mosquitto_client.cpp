#include "agent/uplink/mosquitto_client.h"

#include <arpa/inet.h>
#include <linux/tcp.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <netinet/in.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <string>

#include "agent/core/log.h"

namespace tagrelay::uplink {
namespace {

// PUBACKs arrive in bursts; reading them in one go saves a poll per ack.
constexpr int kMaxPacketsPerRead = 64;

void InitLibraryOnce() {
  static std::once_flag once;
  std::call_once(once, [] { mosquitto_lib_init(); });
}

std::string MosqError(int rc) {
  if (rc == MOSQ_ERR_ERRNO) return std::strerror(errno);
  return mosquitto_strerror(rc);
}

std::string AsnTime(const ASN1_TIME* t) {
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio == nullptr) return "?";
  ASN1_TIME_print(bio, t);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(n > 0 ? n : 0));
  BIO_free(bio);
  return out;
}

bool IsIpLiteral(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

// What a certificate verification error means for the operator of a gateway.
std::string DescribeVerifyError(int err, X509_STORE_CTX* store, const std::string& host) {
  const std::string what = X509_verify_cert_error_string(err);
  X509* cert = X509_STORE_CTX_get_current_cert(store);
  switch (err) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
      return "the broker's certificate is not signed by a CA this gateway trusts (" + what +
             "); check that ca_file holds the CA that issued the broker's certificate";
    case X509_V_ERR_CERT_HAS_EXPIRED:
      return "the broker's certificate has expired (not after " +
             (cert != nullptr ? AsnTime(X509_get0_notAfter(cert)) : std::string("?")) +
             "); renew it on the broker, or check this box's clock";
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return "the broker's certificate is not valid yet (not before " +
             (cert != nullptr ? AsnTime(X509_get0_notBefore(cert)) : std::string("?")) +
             "); check this box's clock";
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
      return "the broker's certificate is not issued for '" + host +
             "' (host name verification); use the name the certificate was issued for in "
             "uplink.url";
    default: return "certificate verification failed: " + what;
  }
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
    bytes_sent_closed_ += std::max(SocketBytesSent(), sampled_before_disconnect_);
    sampled_before_disconnect_ = 0;
    mosquitto_destroy(mosq_);
    mosq_ = nullptr;
  }
}

void MosquittoClient::OnConnect(mosquitto*, void* self, int rc, int, const mqtt5__property*) {
  auto* c = static_cast<MosquittoClient*>(self);
  c->connack_seen_ = true;
  // MQTT 3.1.1 has its own CONNACK codes (1..5); MQTT 5 reason codes start at 0x80.
  const char* text = c->version_ == MqttVersion::kV311 ? mosquitto_connack_string(rc)
                                                       : mosquitto_reason_string(rc);
  if (c->callbacks_.on_connect) c->callbacks_.on_connect(rc, text);
}

void MosquittoClient::OnDisconnect(mosquitto*, void* self, int rc, const mqtt5__property*) {
  auto* c = static_cast<MosquittoClient*>(self);
  if (c->session_lost_reported_) return;
  c->session_lost_reported_ = true;
  if (c->callbacks_.on_disconnect) c->callbacks_.on_disconnect(c->DescribeLoss(rc));
}

std::string MosquittoClient::DescribeLoss(int rc) const {
  if (!connack_seen_ && !tls_failure_.empty()) {
    return "TLS handshake with " + endpoint_ + " failed: " + tls_failure_;
  }
  if (!connack_seen_ && !tls_errors_.empty()) {
    const bool version = tls_errors_.find("unsupported protocol") != std::string::npos ||
                         tls_errors_.find("protocol version") != std::string::npos ||
                         tls_errors_.find("wrong version number") != std::string::npos;
    if (version) {
      return "TLS handshake with " + endpoint_ +
             " failed: the broker offers no TLS 1.2 or newer, which this gateway requires (" +
             tls_errors_ + ")";
    }
    return "TLS handshake with " + endpoint_ + " failed: " + tls_errors_;
  }
  if (rc == 0) return "closed by the broker";
  return MosqError(rc);
}

void MosquittoClient::OnPublish(mosquitto*, void* self, int mid, int rc, const mqtt5__property*) {
  auto* c = static_cast<MosquittoClient*>(self);
  if (c->callbacks_.on_publish) c->callbacks_.on_publish(mid, rc);
}

void MosquittoClient::OnLog(mosquitto*, void* self, int level, const char* text) {
  if (level != MOSQ_LOG_ERR) return;
  auto* c = static_cast<MosquittoClient*>(self);
  const std::string_view t(text);
  if (t.starts_with("OpenSSL Error")) {
    // "OpenSSL Error[0]: error:0A000086:SSL routines::certificate verify failed": keep
    // the reason, which DescribeLoss() puts into the one line the operator reads.
    const size_t colon = t.rfind(':');
    const std::string_view reason = colon == std::string_view::npos ? t : t.substr(colon + 1);
    if (c->tls_errors_.size() < 512) {
      if (!c->tls_errors_.empty()) c->tls_errors_ += "; ";
      c->tls_errors_ += reason;
    }
    return;
  }
  Log(LogLevel::kWarning, "mqtt", text);
}

int MosquittoClient::OnVerify(int preverify_ok, X509_STORE_CTX* store) {
  if (preverify_ok == 1) return 1;
  auto* ssl =
      static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  auto* self = ssl != nullptr
                   ? static_cast<MosquittoClient*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)))
                   : nullptr;
  if (self != nullptr && self->tls_failure_.empty()) {
    self->tls_failure_ = DescribeVerifyError(X509_STORE_CTX_get_error(store), store, self->host_);
  }
  return 0;
}

Result<SSL_CTX*> MosquittoClient::MakeTlsContext(const MqttSessionOptions& o) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == nullptr) return Status::Internal("TLS: cannot create a context");
  auto fail = [ctx](std::string why) {
    SSL_CTX_free(ctx);
    return Status::InvalidArgument(std::move(why));
  };
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1)
    return fail("TLS: cannot require 1.2");
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  if (!o.ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx, o.ca_file.c_str(), nullptr) != 1) {
      return fail("TLS: cannot load CA certificates from ca_file " + o.ca_file);
    }
  } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
    return fail("TLS: cannot load the system's CA certificates");
  }
  X509_VERIFY_PARAM* param = SSL_CTX_get0_param(ctx);
  X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  const int named = IsIpLiteral(o.host) ? X509_VERIFY_PARAM_set1_ip_asc(param, o.host.c_str())
                                        : X509_VERIFY_PARAM_set1_host(param, o.host.c_str(), 0);
  if (named != 1) return fail("TLS: cannot verify against host '" + o.host + "'");
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, &OnVerify);
  SSL_CTX_set_app_data(ctx, this);
  if (!o.cert_file.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx, o.cert_file.c_str()) != 1) {
      return fail("TLS: cannot load the client certificate cert_file " + o.cert_file);
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, o.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
      return fail("TLS: cannot load the client key key_file " + o.key_file);
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
      return fail("TLS: key_file " + o.key_file + " is not the key of cert_file " + o.cert_file);
    }
  }
  ERR_clear_error();
  return ctx;
}

Status MosquittoClient::Connect(const MqttSessionOptions& o) {
  Destroy();
  session_lost_reported_ = false;
  connack_seen_ = false;
  tls_failure_.clear();
  tls_errors_.clear();
  version_ = o.version;
  host_ = o.host;
  endpoint_ = o.host + ":" + std::to_string(o.port);
  mosq_ = mosquitto_new(o.client_id.c_str(), /*clean_session=*/true, this);
  if (mosq_ == nullptr)
    return Status::Internal("mosquitto_new: " + std::string(std::strerror(errno)));
  mosquitto_int_option(mosq_, MOSQ_OPT_PROTOCOL_VERSION,
                       o.version == MqttVersion::kV311 ? MQTT_PROTOCOL_V311 : MQTT_PROTOCOL_V5);
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
    Result<SSL_CTX*> ctx = MakeTlsContext(o);
    if (!ctx.ok()) {
      Destroy();
      return ctx.status();
    }
    // libmosquitto takes its own reference and frees it with the session; its
    // defaults (which would not check the host name of an IP or set the minimum
    // version this way) stay off.
    rc = mosquitto_void_option(mosq_, MOSQ_OPT_SSL_CTX, *ctx);
    SSL_CTX_free(*ctx);
    if (rc == MOSQ_ERR_SUCCESS) rc = mosquitto_int_option(mosq_, MOSQ_OPT_SSL_CTX_WITH_DEFAULTS, 0);
    if (rc != MOSQ_ERR_SUCCESS) {
      Destroy();
      return Status::Internal("TLS context: " + MosqError(rc));
    }
  }
  if (!o.will_topic.empty()) {
    rc = mosquitto_will_set_v5(mosq_, o.will_topic.c_str(), static_cast<int>(o.will_payload.size()),
                               o.will_payload.data(), 1, true, nullptr);
    if (rc != MOSQ_ERR_SUCCESS) return Status::InvalidArgument("MQTT will: " + MosqError(rc));
  }
  rc = mosquitto_connect_bind_v5(mosq_, o.host.c_str(), o.port, o.keepalive_s, nullptr, nullptr);
  if (rc != MOSQ_ERR_SUCCESS) {
    std::string why = rc == MOSQ_ERR_TLS || !tls_errors_.empty() ? DescribeLoss(rc) : MosqError(rc);
    Destroy();
    return Status::Unavailable(why);
  }
  return Status::Ok();
}

void MosquittoClient::Disconnect() {
  if (mosq_ == nullptr) return;
  session_lost_reported_ = true;  // a disconnect we asked for is not a lost session
  sampled_before_disconnect_ = SocketBytesSent();  // the socket may be gone below
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
  if (version_ == MqttVersion::kV311 && !properties.empty()) {
    return Status::InvalidArgument("MQTT 3.1.1 cannot carry user properties (signatures)");
  }
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
    mosquitto_loop_read(mosq_, kMaxPacketsPerRead);
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

uint64_t MosquittoClient::SocketBytesSent() const {
  const int sock = mosq_ != nullptr ? mosquitto_socket(mosq_) : -1;
  if (sock < 0) return 0;
  tcp_info info{};
  socklen_t len = sizeof info;
  if (getsockopt(sock, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) return 0;
  return info.tcpi_bytes_acked;
}

}  // namespace tagrelay::uplink
