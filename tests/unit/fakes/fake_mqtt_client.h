// FakeMqttClient: a scripted MqttClient for uplink tests. It never touches the
// network: the test decides when CONNACKs and PUBACKs arrive, with which
// reason codes, and when the connection drops. Events are delivered in the
// next Service() call, in the order the test queued them, as a real client
// would deliver them from its event loop.
//
// Threads: single-threaded, like the uplink thread it stands in for.
#pragma once

#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "agent/uplink/mqtt_client.h"

namespace tagrelay::uplink {

class FakeMqttClient final : public MqttClient {
 public:
  struct Published {
    int mid = 0;
    std::string topic;
    std::string payload;
    int qos = 0;
    bool retain = false;
    std::vector<UserProperty> properties;
  };

  // Script
  bool refuse_connect = false;  // Connect() itself fails (e.g. connection refused)
  bool auto_connack = true;     // answer each Connect() with a CONNACK at the next Service()
  int connack_reason = 0;       // reason code of that CONNACK

  // Observations
  std::vector<Published> published;
  std::vector<MqttSessionOptions> connects;
  int disconnects = 0;
  bool connected = false;

  void SetCallbacks(MqttCallbacks callbacks) override { cb_ = std::move(callbacks); }

  Status Connect(const MqttSessionOptions& options) override {
    connects.push_back(options);
    if (refuse_connect) return Status::Unavailable("connection refused");
    ++session_;
    if (auto_connack) {
      const int reason = connack_reason;
      Queue([this, reason] {
        connected = reason == 0;
        if (cb_.on_connect) cb_.on_connect(reason, reason == 0 ? "Success" : "Not authorized");
      });
    }
    return Status::Ok();
  }

  void Disconnect() override {
    ++disconnects;
    connected = false;
    ++session_;  // events of the old session are dropped
    events_.clear();
  }

  Result<int> Publish(const std::string& topic, std::string_view payload, int qos, bool retain,
                      const std::vector<UserProperty>& properties) override {
    if (!connected) return Status::Unavailable("not connected");
    Published p{next_mid_++, topic, std::string(payload), qos, retain, properties};
    published.push_back(p);
    unacked_.push_back(p.mid);
    return p.mid;
  }

  void Service(std::chrono::milliseconds) override {
    std::deque<std::function<void()>> now;
    now.swap(events_);
    for (auto& e : now) e();
  }

  void Wake() override {}

  // --- test controls ---
  void Ack(int mid, int reason = 0) {
    std::erase(unacked_, mid);
    Queue([this, mid, reason] {
      if (cb_.on_publish) cb_.on_publish(mid, reason);
    });
  }
  void AckAll(int reason = 0) {
    for (int mid : std::vector<int>(unacked_)) Ack(mid, reason);
  }
  void Drop(std::string why = "connection reset") {
    unacked_.clear();
    Queue([this, why] {
      connected = false;
      if (cb_.on_disconnect) cb_.on_disconnect(why);
    });
  }
  const std::vector<int>& unacked() const { return unacked_; }

  // Published telemetry only (not the status messages).
  std::vector<Published> Telemetry() const {
    std::vector<Published> out;
    for (const auto& p : published) {
      if (p.topic.ends_with("/telemetry")) out.push_back(p);
    }
    return out;
  }

 private:
  void Queue(std::function<void()> f) {
    const int session = session_;
    events_.push_back([this, session, f = std::move(f)] {
      if (session == session_) f();
    });
  }

  MqttCallbacks cb_;
  std::deque<std::function<void()>> events_;
  std::vector<int> unacked_;
  int next_mid_ = 1;
  int session_ = 0;
};

}  // namespace tagrelay::uplink
