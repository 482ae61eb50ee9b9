// Micro benchmarks of the per-reading hot paths: decoding registers and
// encoding telemetry batches.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "agent/uplink/telemetry.h"
#include "drivers/modbus/codec.h"

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

}  // namespace
}  // namespace tagrelay
