// Store vocabulary shared by the writer and its readers.
//
// Threads: plain values.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <variant>

#include "agent/core/reading.h"

namespace tagrelay::store {

enum class SyncMode { kNormal, kFull };

struct StoreOptions {
  std::string path;                   // the database file
  uint64_t max_bytes = 256ull << 20;  // the ring's bound on disk
  SyncMode sync = SyncMode::kNormal;  // kFull: every commit survives power loss
  size_t commit_rows = 1000;          // group commit after this many rows ...
  std::chrono::milliseconds commit_interval{
      200};                      // ... or this long after the first, whichever first
  size_t queue_capacity = 1024;  // batches waiting for the writer
};

// "The broker acknowledged readings seq_first..seq_last of `device`."
struct DeliveryAck {
  std::string device;
  int64_t seq_first = 0;
  int64_t seq_last = 0;
};

// What the writer thread consumes, in arrival order.
using StoreItem = std::variant<ReadingBatch, DeliveryAck>;

// A reading as stored, with the sequence number the store gave it.
struct StoredReading {
  int64_t seq = 0;
  std::string tag;
  int64_t ts_ms = 0;
  Value value;
  Quality quality = Quality::kGood;
  std::string error;
};

}  // namespace tagrelay::store
