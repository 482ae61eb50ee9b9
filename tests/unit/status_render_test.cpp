// The renderings of a status snapshot and the HTTP routing in front of them.
#include "agent/status/status_render.h"

#include <gtest/gtest.h>

#include <string>

#include "agent/status/status_http.h"

namespace tagrelay::status {
namespace {

StatusSnapshot Sample() {
  StatusSnapshot s;
  s.gateway = "gw-1";
  s.version = "0.1.0";
  s.config_digest = "0123456789abcdef";
  s.state = "running";
  s.taken_ms = 1'763'800'100'000;
  s.uptime_ms = 3'723'000;
  DeviceStatus ok;
  ok.id = "meter-3";
  ok.bus = "rs485-1";
  ok.link = "ok";
  ok.last_good_age_ms = 400;
  ok.poll_rate = 1.0;
  ok.polls = 11520;
  ok.timeouts = 2;
  ok.backlog = 12;
  DeviceStatus down;
  down.id = "vfd <1>";
  down.bus = "rs485-1";
  down.link = "down";
  down.polls = 7;
  down.timeouts = 21;
  down.failed_requests = 21;
  down.lost = 5;
  s.devices = {ok, down};
  s.store.max_bytes = 256u << 20;
  s.store.db_bytes = 12u << 20;
  s.store.readings = 40210;
  s.store.evicted = 5;
  s.store.backlog_known = true;
  s.store.backlog_readings = 12;
  s.store.oldest_unsent_age_ms = 4000;
  s.uplink.connected = true;
  s.uplink.brokers = {"mqtts://cloud.example.com:8883"};
  s.uplink.batches_sent = 1520;
  s.workers = {{"poller rs485-1", 10, false}, {"uplink", 200'000, true}};
  return s;
}

TEST(StatusRenderTest, FormatsAgesAndSizes) {
  EXPECT_EQ(FormatAge(std::nullopt), "-");
  EXPECT_EQ(FormatAge(400), "0.4s");
  EXPECT_EQ(FormatAge(12'000), "12s");
  EXPECT_EQ(FormatAge(312'000), "5m12s");
  EXPECT_EQ(FormatAge(3 * 3'600'000 + 120'000), "3h02m");
  EXPECT_EQ(FormatAge(2 * 86'400'000 + 4 * 3'600'000), "2d04h");
  EXPECT_EQ(FormatBytes(512), "512 B");
  EXPECT_EQ(FormatBytes(256u << 20), "256.0 MiB");
}

TEST(StatusRenderTest, TextTableHasEveryDeviceAndTheSummary) {
  const std::string t = RenderText(Sample());
  EXPECT_NE(t.find("gateway gw-1  running, up 1h02m"), std::string::npos) << t;
  EXPECT_NE(t.find("12 readings unsent (oldest 4.0s)"), std::string::npos) << t;
  EXPECT_NE(t.find("5 evicted unsent"), std::string::npos) << t;
  EXPECT_NE(t.find("meter-3  rs485-1  ok    0.4s       1.00    11520"), std::string::npos) << t;
  EXPECT_NE(t.find("vfd <1>  rs485-1  down  -          0.00    7"), std::string::npos) << t;
  EXPECT_NE(t.find("alarms  none active"), std::string::npos) << t;
  EXPECT_NE(t.find("STALLED: uplink"), std::string::npos) << t;
}

TEST(StatusRenderTest, JsonCarriesEveryField) {
  StatusSnapshot s = Sample();
  s.alarms.push_back(ActiveAlarm{"hv", "meter-3", "voltage_l1", "major", "L1 \"high\"", 0});
  const std::string j = RenderJson(s);
  EXPECT_NE(j.find(R"("gateway":"gw-1")"), std::string::npos) << j;
  EXPECT_NE(j.find(R"("devices_ok":1)"), std::string::npos) << j;
  EXPECT_NE(j.find(R"({"id":"meter-3","bus":"rs485-1","link":"ok","last_good_age_ms":400,)"),
            std::string::npos)
      << j;
  EXPECT_NE(j.find(R"("link":"down","last_good_age_ms":null)"), std::string::npos) << j;
  EXPECT_NE(j.find(R"("oldest_unsent_age_ms":4000)"), std::string::npos) << j;
  EXPECT_NE(j.find(R"("message":"L1 \"high\"")"), std::string::npos) << j;
  EXPECT_NE(j.find(R"({"name":"uplink","idle_ms":200000,"stalled":true})"), std::string::npos) << j;
}

TEST(StatusRenderTest, PrometheusExposition) {
  StatusSnapshot s = Sample();
  s.devices[1].id = "odd\"name\\";
  const std::string m = RenderPrometheus(s);
  EXPECT_NE(m.find("# TYPE tagrelay_device_timeouts_total counter\n"
                   "tagrelay_device_timeouts_total{device=\"meter-3\"} 2\n"
                   "tagrelay_device_timeouts_total{device=\"odd\\\"name\\\\\"} 21\n"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("tagrelay_device_link{device=\"meter-3\",bus=\"rs485-1\",state=\"ok\"} 1\n"),
            std::string::npos);
  EXPECT_NE(m.find("tagrelay_device_last_good_age_seconds{device=\"meter-3\"} 0.4\n"),
            std::string::npos);
  EXPECT_EQ(m.find("tagrelay_device_last_good_age_seconds{device=\"odd"), std::string::npos)
      << "no series before the first good reading";
  EXPECT_NE(m.find("tagrelay_backlog_oldest_age_seconds 4\n"), std::string::npos);
  EXPECT_NE(m.find("tagrelay_store_evicted_readings_total 5\n"), std::string::npos);
  EXPECT_NE(m.find("tagrelay_alarms_active 0\n"), std::string::npos);
  EXPECT_NE(m.find("tagrelay_worker_stalled{worker=\"uplink\"} 1\n"), std::string::npos);
  // Every line is a comment or "name{labels} value".
  size_t pos = 0;
  while (pos < m.size()) {
    const size_t eol = m.find('\n', pos);
    ASSERT_NE(eol, std::string::npos);
    const std::string line = m.substr(pos, eol - pos);
    if (line[0] != '#') {
      EXPECT_TRUE(line.starts_with("tagrelay_")) << line;
      EXPECT_NE(line.rfind(' '), std::string::npos) << line;
    }
    pos = eol + 1;
  }
}

TEST(StatusRenderTest, HtmlEscapesNamesAndShowsEveryDevice) {
  const std::string h = RenderHtml(Sample());
  EXPECT_NE(h.find("data-device=\"meter-3\" data-link=\"ok\""), std::string::npos);
  EXPECT_NE(h.find("<td>vfd &lt;1&gt;</td>"), std::string::npos);
  EXPECT_EQ(h.find("vfd <1>"), std::string::npos);
  EXPECT_NE(h.find("Devices (1 of 2 ok)"), std::string::npos);
  EXPECT_NE(h.find("No active alarms."), std::string::npos);
  EXPECT_EQ(h.find("<script"), std::string::npos);
}

TEST(StatusHttpTest, ParsesRequestHeads) {
  HttpRequest r;
  EXPECT_EQ(ParseRequestHead("GET /metrics HTTP/1.1\r\nHost: x\r\n", &r), HeadState::kIncomplete);
  EXPECT_EQ(ParseRequestHead("GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n", &r),
            HeadState::kComplete);
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.path, "/metrics");
  EXPECT_EQ(ParseRequestHead("GET /\n\n", &r), HeadState::kBad);
  EXPECT_EQ(ParseRequestHead("get / HTTP/1.1\r\n\r\n", &r), HeadState::kBad);
  EXPECT_EQ(ParseRequestHead(std::string(kMaxRequestHead, 'a'), &r), HeadState::kBad);
}

TEST(StatusHttpTest, RoutesAndRefusesWrites) {
  const StatusSnapshot s = Sample();
  HttpResponse r = Route({"GET", "/metrics"}, &s);
  EXPECT_EQ(r.code, 200);
  EXPECT_EQ(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(Route({"GET", "/status.json"}, &s).content_type, "application/json");
  EXPECT_EQ(Route({"GET", "/"}, &s).content_type, "text/html; charset=utf-8");
  EXPECT_EQ(Route({"GET", "/nope"}, &s).code, 404);
  EXPECT_EQ(Route({"POST", "/"}, &s).code, 405);
  EXPECT_EQ(Route({"GET", "/"}, nullptr).code, 503);
  HttpResponse head = Route({"HEAD", "/status.txt"}, &s);
  const std::string wire = head.Serialize();
  EXPECT_TRUE(wire.starts_with("HTTP/1.1 200 OK\r\n")) << wire;
  EXPECT_NE(wire.find("Content-Length: " + std::to_string(head.body.size())), std::string::npos);
  EXPECT_TRUE(wire.ends_with("\r\n\r\n")) << "HEAD has no body";
}

}  // namespace
}  // namespace tagrelay::status
