// Micro benchmarks of the per-reading hot paths: decoding registers, planning
// a device's requests, encoding telemetry batches and signing them, evaluating
// alarm rules. (Store insert and ack: bench/store_bench.cpp and
// bench/uplink_drain_bench.cpp.)
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "agent/core/clock.h"
#include "agent/core/json_writer.h"
#include "agent/core/log.h"
#include "agent/rules/engine.h"
#include "agent/uplink/signing.h"
#include "agent/uplink/telemetry.h"
#include "drivers/modbus/codec.h"
#include "drivers/modbus/request_plan.h"
#include "store/chunk_codec.h"

namespace tagrelay {
namespace {

void BM_DecodeFloat32(benchmark::State& state) {
  modbus::TagSpec tag;
  tag.type = modbus::DataType::kFloat32;
  const uint16_t regs[2] = {0x4366, 0x8000};
  for (auto _ : state) {
    Result<Value> v = modbus::DecodeTag(tag, regs);
    benchmark::DoNotOptimize(v);
  }
}
BENCHMARK(BM_DecodeFloat32);

void BM_DecodeScaledInt16(benchmark::State& state) {
  modbus::TagSpec tag;
  tag.type = modbus::DataType::kInt16;
  tag.scale = 0.1;
  const uint16_t regs[1] = {217};
  for (auto _ : state) {
    Result<Value> v = modbus::DecodeTag(tag, regs);
    benchmark::DoNotOptimize(v);
  }
}
BENCHMARK(BM_DecodeScaledInt16);

// Readings as the store keeps them (chunks of at most 250, store/types.h),
// with the names of their tags, for the uplink's encoder.
struct StoredBatch {
  std::vector<store::StoredChunk> chunks;
  store::TagNames names;
};

StoredBatch MakeStoredBatch(int64_t n, int tags, int64_t ts_step_every, bool decimals) {
  StoredBatch b;
  for (int t = 0; t < tags; ++t) b.names.Add(t + 1, "voltage_l" + std::to_string(t));
  for (int64_t first = 0; first < n; first += 250) {
    std::vector<Reading> readings;
    std::vector<int64_t> ids;
    for (int64_t i = first; i < std::min(n, first + 250); ++i) {
      const double v =
          decimals ? 230.0 + static_cast<double>(i % 100) / 10 : static_cast<double>(i);
      readings.push_back(Reading::Good("", 1763800000000 + i / ts_step_every * 1000, v));
      ids.push_back(i % tags + 1);
    }
    store::StoredChunk c{first + 1, static_cast<int64_t>(readings.size()), {}};
    store::EncodeChunk(readings, ids, &c.data);
    b.chunks.push_back(std::move(c));
  }
  return b;
}

// What the uplink does per telemetry batch: the JSON straight from the stored chunks.
void BM_EncodeTelemetryBatch(benchmark::State& state) {
  const StoredBatch b = MakeStoredBatch(state.range(0), 3, 1, true);
  size_t bytes = 0;
  std::string payload;
  for (auto _ : state) {
    uplink::EncodeTelemetryChunks({"gw-plant1-01", "meter-3", false}, b.chunks, b.names,
                                  uplink::kUnbounded, &payload);
    bytes += payload.size();
    benchmark::DoNotOptimize(payload);
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
}
BENCHMARK(BM_EncodeTelemetryBatch)->Arg(1)->Arg(500);

// A meter's backlog as bench/uplink_drain_bench.cpp stores it: 5 tags polled
// once a second (one timestamp per poll of 5), values with one decimal, in
// chunks of 250; one batch of 500 readings per iteration.
StoredBatch MakeMeterBacklog(int64_t n) {
  StoredBatch b;
  static const char* kTags[] = {"voltage_l1", "voltage_l2", "voltage_l3", "current_l1",
                                "energy_total"};
  for (int t = 0; t < 5; ++t) b.names.Add(t + 1, kTags[t]);
  for (int64_t first = 0; first < n; first += 250) {
    std::vector<Reading> readings;
    std::vector<int64_t> ids;
    for (int64_t i = first; i < std::min(n, first + 250); ++i) {
      readings.push_back(Reading::Good("", 1763800000000 + i / 5 * 1000,
                                       230.0 + static_cast<double>(i % 97) / 10));
      ids.push_back(i % 5 + 1);
    }
    store::StoredChunk c{first + 1, static_cast<int64_t>(readings.size()), {}};
    store::EncodeChunk(readings, ids, &c.data);
    b.chunks.push_back(std::move(c));
  }
  return b;
}

void BM_EncodeTelemetryChunks(benchmark::State& state) {
  const StoredBatch b = MakeMeterBacklog(state.range(0));
  std::string payload;
  for (auto _ : state) {
    uplink::EncodeTelemetryChunks({"gw-plant1-01", "meter-3", true}, b.chunks, b.names, 256 * 1024,
                                  &payload);
    benchmark::DoNotOptimize(payload);
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_EncodeTelemetryChunks)->Arg(500);

// The walk the outbox reader makes over every chunk it fetches (and the
// encoder again): the chunk cursor alone, on the same backlog.
void BM_ChunkCursorWalk(benchmark::State& state) {
  const StoredBatch b = MakeMeterBacklog(state.range(0));
  for (auto _ : state) {
    double sum = 0;
    for (const store::StoredChunk& c : b.chunks) {
      store::ChunkCursor in(c.data, c.count);
      store::ChunkItem item;
      while (in.Next(&item)) sum += item.d + static_cast<double>(item.tag_id);
      if (!in.status().ok()) state.SkipWithError("corrupt");
    }
    benchmark::DoNotOptimize(sum);
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_ChunkCursorWalk)->Arg(500);

// The number formatting alone: meter values with one decimal.
void BM_FormatDouble(benchmark::State& state) {
  std::vector<double> values;
  for (int i = 0; i < 97; ++i) values.push_back(230.0 + static_cast<double>(i) / 10);
  char buf[32];
  for (auto _ : state) {
    for (double v : values) {
      char* end = FormatDouble(v, buf);
      benchmark::DoNotOptimize(end);
      benchmark::ClobberMemory();
    }
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(values.size()));
}
BENCHMARK(BM_FormatDouble);

// The benchmark fleet's device (N uint16 holding registers) and a scattered
// map (every third register, mixed types): one plan per configuration load.
void BM_PlanRequests(benchmark::State& state) {
  const bool scattered = state.range(1) != 0;
  std::vector<modbus::TagSpec> tags;
  for (int64_t i = 0; i < state.range(0); ++i) {
    modbus::TagSpec t;
    t.name = "t" + std::to_string(i);
    t.address = static_cast<uint16_t>(scattered ? i * 3 : i);
    t.type = scattered && i % 2 ? modbus::DataType::kFloat32 : modbus::DataType::kUint16;
    tags.push_back(t);
  }
  for (auto _ : state) {
    auto plan = modbus::PlanRequests(tags);
    benchmark::DoNotOptimize(plan);
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_PlanRequests)->Args({100, 0})->Args({100, 1});

// What the uplink does per batch of a device with a key: encode, then sign.
void BM_EncodeAndSignBatch(benchmark::State& state) {
  const StoredBatch b = MakeStoredBatch(state.range(0), 100, 100, false);
  const std::string key = "0123456789abcdef0123456789abcdef";
  const std::string topic = "tagrelay/v1/gw-bench/dev-000/telemetry";
  std::string payload;
  for (auto _ : state) {
    uplink::EncodeTelemetryChunks({"gw-bench", "dev-000", false}, b.chunks, b.names,
                                  uplink::kUnbounded, &payload);
    std::string sig = uplink::Sign(key, topic, payload);
    benchmark::DoNotOptimize(sig);
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_EncodeAndSignBatch)->Arg(100)->Arg(500);

// Alarm rule evaluation: 1,000 rules (100 devices x 10 tags, a high alarm with a
// deadband on every tag, a tenth of them with an on_delay) fed one poll of every
// device per iteration, values wandering across the limits.
void BM_AlarmRules1000(benchmark::State& state) {
  std::vector<rules::AlarmRule> alarms;
  for (int d = 0; d < 100; ++d) {
    for (int t = 0; t < 10; ++t) {
      rules::AlarmRule r;
      r.id = "a" + std::to_string(d) + "-" + std::to_string(t);
      r.device = "device-" + std::to_string(d);
      r.tag = "tag-" + std::to_string(t);
      r.kind = rules::AlarmKind::kHigh;
      r.limit = 250;
      r.deadband = 2;
      if (t == 0) r.on_delay = std::chrono::milliseconds(5000);
      r.message = "{alarm}: {value} {unit}";
      alarms.push_back(std::move(r));
    }
  }
  // The engine logs every alarm it raises or clears: formatted, then dropped
  // here (a service sends them to the journal).
  SetLogSink([](const LogEvent&) {}, LogLevel::kInfo);
  FakeClock clock;
  rules::AlarmEngine engine(std::move(alarms), {}, clock, [](const std::string&) { return false; });
  engine.Restore({});
  std::vector<store::SequencedBatch> polls;
  for (int d = 0; d < 100; ++d) {
    store::SequencedBatch b{"device-" + std::to_string(d), 1, {}};
    for (int t = 0; t < 10; ++t)
      b.readings.push_back(Reading::Good("tag-" + std::to_string(t), 0, 0.0));
    polls.push_back(std::move(b));
  }
  std::vector<store::NewEvent> out;
  std::vector<store::StateUpdate> state_out;
  int64_t step = 0;
  for (auto _ : state) {
    ++step;
    for (store::SequencedBatch& b : polls) {
      for (size_t t = 0; t < b.readings.size(); ++t) {
        b.readings[t].ts_ms = step * 1000;
        b.readings[t].value =
            240.0 + static_cast<double>((step * 7 + static_cast<int64_t>(t) * 3) % 25);
      }
      engine.OnReadings(b, out);
    }
    out.clear();
    engine.TakeState(state_out);
    state_out.clear();
  }
  state.SetItemsProcessed(static_cast<int64_t>(engine.evaluations()));
  state.counters["evaluations_per_second"] =
      benchmark::Counter(static_cast<double>(engine.evaluations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_AlarmRules1000);

}  // namespace
}  // namespace tagrelay
