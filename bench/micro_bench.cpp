// Micro benchmarks of the per-reading hot paths: decoding registers, planning
// a device's requests, encoding telemetry batches and signing them.
// (Store insert and ack: bench/store_bench.cpp and bench/uplink_drain_bench.cpp.)
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <vector>

#include "agent/uplink/signing.h"
#include "agent/uplink/telemetry.h"
#include "drivers/modbus/codec.h"
#include "drivers/modbus/request_plan.h"

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

void BM_EncodeTelemetryBatch(benchmark::State& state) {
  std::vector<store::StoredReading> rows;
  for (int64_t i = 0; i < state.range(0); ++i) {
    rows.push_back(store::StoredReading{i + 1,
                                        "voltage_l" + std::to_string(i % 3),
                                        1763800000000 + i,
                                        230.0 + static_cast<double>(i % 100) / 10,
                                        Quality::kGood,
                                        {}});
  }
  size_t bytes = 0;
  for (auto _ : state) {
    std::string payload = uplink::EncodeTelemetry({"gw-plant1-01", "meter-3", false}, rows);
    bytes += payload.size();
    benchmark::DoNotOptimize(payload);
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
}
BENCHMARK(BM_EncodeTelemetryBatch)->Arg(1)->Arg(500);

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
  std::vector<store::StoredReading> rows;
  for (int64_t i = 0; i < state.range(0); ++i) {
    rows.push_back(store::StoredReading{i + 1,
                                        "t" + std::to_string(i % 100),
                                        1763800000000 + i / 100 * 1000,
                                        static_cast<double>(i),
                                        Quality::kGood,
                                        {}});
  }
  const std::string key = "0123456789abcdef0123456789abcdef";
  const std::string topic = "tagrelay/v1/gw-bench/dev-000/telemetry";
  for (auto _ : state) {
    std::string payload = uplink::EncodeTelemetry({"gw-bench", "dev-000", false}, rows);
    std::string sig = uplink::Sign(key, topic, payload);
    benchmark::DoNotOptimize(sig);
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_EncodeAndSignBatch)->Arg(100)->Arg(500);

}  // namespace
}  // namespace tagrelay
