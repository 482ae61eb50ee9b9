// WriterObserver: code that runs in the store writer thread on every reading,
// such as local alarm rules and maintenance counters. Running there, it sees
// every reading exactly once, in order, and needs no locks; what it produces
// (records for the event streams, state to keep) is stored in the same
// transaction as the readings it came from.
//
// Threads: every method is called on the store writer thread only.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "agent/core/clock.h"
#include "store/types.h"

namespace tagrelay::store {

class WriterObserver {
 public:
  virtual ~WriterObserver() = default;

  // Once, before the first reading: the state kept by earlier runs (key -> value).
  virtual void Restore(const std::map<std::string, std::string>& state) = 0;

  // A device's poll, as the writer numbered it. Appends records to `out`.
  virtual void OnReadings(const SequencedBatch& batch, std::vector<NewEvent>& out) = 0;

  // Regularly (every tick_interval()), for what depends on time alone: delays,
  // stale values, lost links, periodic snapshots. Appends records to `out`.
  virtual void OnTick(std::vector<NewEvent>& out) = 0;

  // Moves the state that changed since the last call into `out`.
  virtual void TakeState(std::vector<StateUpdate>& out) = 0;

  virtual std::chrono::milliseconds tick_interval() const { return std::chrono::milliseconds(250); }
};

}  // namespace tagrelay::store
