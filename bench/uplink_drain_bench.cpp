// Backlog drain benchmark: how fast the uplink empties a store full of
// undelivered readings into a local TLS broker, against the ceiling of a raw
// libmosquitto QoS 1 publish loop with the same payload size and inflight
// window, measured in the same run. Also reports the bytes on the wire per
// reading (TCP payload: MQTT packets inside their TLS records), and the raw
// loop's own CPU time per reading (its thread's, not wall time) at the drain's
// batch size and at the steady load's (--steady-batch readings a message).
//
// bench/uplink_bench.py starts the broker (TLS, password) and runs this program;
// run by hand:
//   tagrelay_uplink_bench --host localhost --port 8883 --ca-file ca.pem
//       --user gw --key-file gw.key --dir /tmp/x [--readings 200000] [--rounds 3]
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "agent/core/clock.h"
#include "agent/core/log.h"
#include "agent/uplink/key_file.h"
#include "agent/uplink/mosquitto_client.h"
#include "agent/uplink/uplink.h"
#include "bench/thread_cpu.h"
#include "store/outbox_reader.h"
#include "store/ring_store.h"
#include "store/store_writer.h"

namespace tagrelay {
namespace {

using bench::ThreadCpuSeconds;

using Clock = std::chrono::steady_clock;

struct Args {
  std::string host = "localhost";
  int port = 8883;
  std::string ca_file;
  std::string user;
  std::string key_file;
  std::string dir;
  int64_t readings = 200000;
  int rounds = 3;
  int inflight = 20;
  size_t batch = 500;
  size_t steady_batch = 100;  // readings a message at the steady load (100 tags a device)
};

[[noreturn]] void Die(const std::string& why) {
  std::fprintf(stderr, "uplink bench: %s\n", why.c_str());
  std::exit(2);
}

struct DrainResult {
  double seconds = 0;
  uint64_t payload_bytes = 0;
  uint64_t batches = 0;
  uint64_t wire_bytes = 0;
};

// Fills a fresh store with `n` readings of one device, like a long outage would.
void FillStore(const std::string& path, int64_t n) {
  std::filesystem::remove(path);
  std::filesystem::remove(path + "-wal");
  std::filesystem::remove(path + "-shm");
  store::StoreOptions o;
  o.path = path;
  auto ring = store::RingStore::Open(o);
  if (!ring.ok()) Die(ring.status().ToString());
  static const char* kTags[] = {"voltage_l1", "voltage_l2", "voltage_l3", "current_l1",
                                "energy_total"};
  const int64_t t0 = 1763800000000;
  for (int64_t done = 0; done < n;) {
    store::SequencedBatch b{"meter-3", done + 1, {}};
    for (int i = 0; i < 1000 && done < n; ++i, ++done) {
      b.readings.push_back(Reading::Good(kTags[done % 5], t0 + (done / 5) * 1000,
                                         230.0 + static_cast<double>(done % 97) / 10));
    }
    Status s = (*ring)->WriteGroup({store::WriteItem(std::move(b))});
    if (!s.ok()) Die(s.ToString());
  }
}

DrainResult Drain(const Args& a, const std::string& db) {
  FillStore(db, a.readings);
  store::StoreOptions so;
  so.path = db;
  auto ring = store::RingStore::Open(so);
  if (!ring.ok()) Die(ring.status().ToString());
  auto reader = store::OutboxReader::Open(db);
  if (!reader.ok()) Die(reader.status().ToString());
  store::StoreWriter writer(std::move(ring).value(), so);

  uplink::UplinkOptions o;
  o.brokers.push_back(
      *uplink::BrokerUrl::Parse("mqtts://" + a.host + ":" + std::to_string(a.port)));
  o.ca_file = a.ca_file;
  o.api_key_file = a.key_file;
  o.gateway = a.user;
  o.client_id = "bench-drain";
  o.batch_max_readings = a.batch;
  o.max_inflight = a.inflight;
  auto client = std::make_unique<uplink::MosquittoClient>();
  uplink::MosquittoClient* mqtt = client.get();
  uplink::Uplink up(
      o, std::move(client), std::move(reader).value(),
      [&writer](store::StoreItem&& item) { writer.Submit(std::move(item)); }, RealClock());
  writer.SetCommitListener([&up](const store::CommitNews& news) { up.NotifyNewData(news); });
  writer.Start();
  up.Start();
  // Timed from the connection on, as the raw loop is: the TLS handshake is
  // not part of the drain.
  const auto connecting = Clock::now();
  while (!up.counters().connected.load()) {
    if (Clock::now() - connecting > std::chrono::seconds(30)) Die("no connection in 30 s");
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  const auto start = Clock::now();
  while (up.counters().readings_acked.load() < static_cast<uint64_t>(a.readings)) {
    if (Clock::now() - start > std::chrono::minutes(5)) Die("drain did not finish in 5 minutes");
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  DrainResult r;
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  r.payload_bytes = up.counters().payload_bytes_sent.load();
  r.batches = up.counters().batches_sent.load();
  up.Stop();
  writer.Stop();
  r.wire_bytes = mqtt->BytesSent();
  if (up.counters().readings_sent.load() != static_cast<uint64_t>(a.readings)) {
    Die("resends during the drain: the measurement is not clean");
  }
  return r;
}

// The ceiling: libmosquitto alone publishing `count` QoS 1 messages of
// `size` bytes with at most `inflight` unacknowledged, over the same TLS.
struct RawState {
  int acked = 0;
  bool connected = false;
  bool failed = false;
};

struct RawResult {
  double seconds = 0;
  double cpu_seconds = 0;  // of the publishing thread, which also runs the network loop
};

RawResult RawLoop(const Args& a, const std::string& password, size_t size, int count) {
  RawState st;
  mosquitto* m = mosquitto_new("bench-raw", true, &st);
  mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
  mosquitto_int_option(m, MOSQ_OPT_SEND_MAXIMUM, a.inflight);
  mosquitto_username_pw_set(m, a.user.c_str(), password.c_str());
  if (mosquitto_tls_set(m, a.ca_file.c_str(), nullptr, nullptr, nullptr, nullptr) != 0 ||
      mosquitto_tls_opts_set(m, 1, "tlsv1.2", nullptr) != 0) {
    Die("raw: TLS setup");
  }
  mosquitto_connect_v5_callback_set(
      m, [](mosquitto*, void* p, int rc, int, const mosquitto_property*) {
        auto* s = static_cast<RawState*>(p);
        s->connected = rc == 0;
        s->failed = rc != 0;
      });
  mosquitto_publish_v5_callback_set(
      m, [](mosquitto*, void* p, int, int rc, const mosquitto_property*) {
        auto* s = static_cast<RawState*>(p);
        if (rc >= 0x80) s->failed = true;
        ++s->acked;
      });
  if (mosquitto_connect(m, a.host.c_str(), a.port, 30) != MOSQ_ERR_SUCCESS) Die("raw: connect");
  while (!st.connected && !st.failed) mosquitto_loop(m, 100, 1);
  if (st.failed) Die("raw: connection refused");
  const std::string payload(size, 'x');
  const std::string topic = "tagrelay/v1/" + a.user + "/raw/telemetry";
  int sent = 0;
  const auto start = Clock::now();
  const double cpu_start = ThreadCpuSeconds();
  while (st.acked < count) {
    while (sent < count && sent - st.acked < a.inflight) {
      if (mosquitto_publish(m, nullptr, topic.c_str(), static_cast<int>(size), payload.data(), 1,
                            false) != MOSQ_ERR_SUCCESS) {
        Die("raw: publish");
      }
      ++sent;
    }
    if (mosquitto_loop(m, 100, 64) != MOSQ_ERR_SUCCESS) Die("raw: connection lost");
    if (st.failed) Die("raw: refused by the broker");
  }
  RawResult r;
  r.cpu_seconds = ThreadCpuSeconds() - cpu_start;
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  mosquitto_disconnect(m);
  mosquitto_destroy(m);
  return r;
}

// The raw loop's cost at one batch size, per round.
struct RawCost {
  std::vector<double> cpu_us_per_message, mb_s, messages_s;
  size_t size = 0;

  void Add(const RawResult& r, size_t bytes, int count) {
    size = bytes;
    cpu_us_per_message.push_back(r.cpu_seconds * 1e6 / count);
    mb_s.push_back(static_cast<double>(bytes) * count / r.seconds / 1e6);
    messages_s.push_back(count / r.seconds);
  }
};

// Where the drain's time goes, measured on the same store: the uplink's reading
// and encoding alone, and the store writer's marking of acknowledged rows alone.
void Breakdown(const Args& a, const std::string& db) {
  FillStore(db, a.readings);
  auto reader = store::OutboxReader::Open(db);
  if (!reader.ok()) Die(reader.status().ToString());
  std::vector<store::StoredChunk> rows;
  std::string payload;
  double fetch_s = 0, encode_s = 0;
  for (int64_t seq = 1; seq <= a.readings; seq += static_cast<int64_t>(a.batch)) {
    rows.clear();
    const auto t0 = Clock::now();
    Status s = reader->FetchChunks(1, seq, seq + static_cast<int64_t>(a.batch) - 1, a.batch, rows);
    const auto t1 = Clock::now();
    if (!s.ok() || rows.empty()) Die("breakdown: fetch " + s.ToString());
    uplink::EncodeTelemetryChunks({a.user, "meter-3", true}, rows, reader->tag_names(), 256 * 1024,
                                  &payload);
    fetch_s += std::chrono::duration<double>(t1 - t0).count();
    encode_s += std::chrono::duration<double>(Clock::now() - t1).count();
  }
  store::StoreOptions so;
  so.path = db;
  auto ring = store::RingStore::Open(so);
  if (!ring.ok()) Die(ring.status().ToString());
  const auto t0 = Clock::now();
  std::vector<store::WriteItem> group;
  for (int64_t seq = 1; seq <= a.readings; seq += static_cast<int64_t>(a.batch)) {
    group.push_back(store::DeliveryAck{"meter-3", seq, seq + static_cast<int64_t>(a.batch) - 1});
    if (group.size() == 100) {
      if (!(*ring)->WriteGroup(group).ok()) Die("breakdown: mark delivered");
      group.clear();
    }
  }
  if (!group.empty() && !(*ring)->WriteGroup(group).ok()) Die("breakdown: mark delivered");
  const double mark_s = std::chrono::duration<double>(Clock::now() - t0).count();
  const double n = static_cast<double>(a.readings);
  std::printf(
      "per reading, alone: fetch %.3f us, encode %.3f us (uplink thread); "
      "mark delivered %.3f us (store writer thread)\n",
      fetch_s / n * 1e6, encode_s / n * 1e6, mark_s / n * 1e6);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int Main(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--host")
      a.host = v;
    else if (k == "--port")
      a.port = std::atoi(v.c_str());
    else if (k == "--ca-file")
      a.ca_file = v;
    else if (k == "--user")
      a.user = v;
    else if (k == "--key-file")
      a.key_file = v;
    else if (k == "--dir")
      a.dir = v;
    else if (k == "--readings")
      a.readings = std::atoll(v.c_str());
    else if (k == "--rounds")
      a.rounds = std::atoi(v.c_str());
    else if (k == "--inflight")
      a.inflight = std::atoi(v.c_str());
    else if (k == "--steady-batch")
      a.steady_batch = static_cast<size_t>(std::atoll(v.c_str()));
    else
      Die("unknown option " + k);
  }
  if (a.ca_file.empty() || a.user.empty() || a.key_file.empty() || a.dir.empty()) {
    Die("needs --ca-file, --user, --key-file and --dir");
  }
  if (a.steady_batch < 1) Die("--steady-batch: at least 1");
  SetLogSink(
      [](const LogEvent& e) {
        if (e.level >= LogLevel::kWarning)
          std::fprintf(stderr, "%.*s\n", int(e.message.size()), e.message.data());
      },
      LogLevel::kWarning);
  mosquitto_lib_init();
  auto password = uplink::ReadKeyFile(a.key_file);
  if (!password.ok()) Die(password.status().ToString());
  const std::string db = a.dir + "/bench.db";

  std::vector<double> drain_mbs, raw_mbs, wire_per_reading, payload_per_reading;
  RawCost drain_cost, steady_cost;
  // Enough messages at the steady load's size for a stable CPU figure, yet short.
  const int steady_count =
      static_cast<int>(std::max<int64_t>(a.readings / static_cast<int64_t>(a.steady_batch), 20000));
  for (int round = 0; round < a.rounds; ++round) {
    const DrainResult d = Drain(a, db);
    const size_t size = d.payload_bytes / d.batches;
    const RawResult raw = RawLoop(a, *password, size, static_cast<int>(d.batches));
    const double raw_s = raw.seconds;
    drain_cost.Add(raw, size, static_cast<int>(d.batches));
    // The steady load's message: its readings at this drain's payload bytes per reading.
    const size_t steady_size = static_cast<size_t>(
        static_cast<double>(a.steady_batch * d.payload_bytes) / static_cast<double>(a.readings) +
        0.5);
    steady_cost.Add(RawLoop(a, *password, steady_size, steady_count), steady_size, steady_count);
    drain_mbs.push_back(static_cast<double>(d.payload_bytes) / d.seconds / 1e6);
    raw_mbs.push_back(static_cast<double>(size * d.batches) / raw_s / 1e6);
    wire_per_reading.push_back(static_cast<double>(d.wire_bytes) / static_cast<double>(a.readings));
    payload_per_reading.push_back(static_cast<double>(d.payload_bytes) /
                                  static_cast<double>(a.readings));
    std::printf("round %d: drain %.1f MB/s (%.2f s, %llu batches of %zu bytes), raw %.1f MB/s\n",
                round + 1, drain_mbs.back(), d.seconds, static_cast<unsigned long long>(d.batches),
                size, raw_mbs.back());
  }
  const double ratio = Median(drain_mbs) / Median(raw_mbs);
  std::printf("readings: %lld per drain, batch %zu, inflight %d, TLS to %s:%d\n",
              static_cast<long long>(a.readings), a.batch, a.inflight, a.host.c_str(), a.port);
  std::printf("backlog drain: %.1f MB/s (median of %d), %.0f readings/s\n", Median(drain_mbs),
              a.rounds, Median(drain_mbs) * 1e6 / Median(payload_per_reading));
  std::printf("raw libmosquitto QoS 1 ceiling: %.1f MB/s (median)\n", Median(raw_mbs));
  std::printf("ratio: %.0f%% of the ceiling (goal: at least 60%%)\n", ratio * 100);
  std::printf("bytes per reading: %.1f payload, %.1f on the wire (TCP payload, TLS + MQTT)\n",
              Median(payload_per_reading), Median(wire_per_reading));
  const auto print_cost = [&](const char* which, size_t batch, const RawCost& c) {
    const double us = Median(c.cpu_us_per_message);
    std::printf(
        "raw libmosquitto QoS 1 CPU, %s batches of %zu readings (%zu bytes): %.4f us per reading, "
        "%.2f us per message (publishing thread, PUBACKs included, median of %d); %.0f "
        "messages/s, %.1f MB/s\n",
        which, batch, c.size, us / static_cast<double>(batch), us, a.rounds, Median(c.messages_s),
        Median(c.mb_s));
  };
  print_cost("drain", a.batch, drain_cost);
  print_cost("steady-load", a.steady_batch, steady_cost);
  Breakdown(a, db);
  mosquitto_lib_cleanup();
  return ratio >= 0.6 ? 0 : 3;
}

}  // namespace
}  // namespace tagrelay

int main(int argc, char** argv) { return tagrelay::Main(argc, argv); }
