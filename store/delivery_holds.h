// DeliveryHolds: the readings the uplink has taken out of the store and not yet
// settled: rows fetched and waiting to be batched, and batches awaiting the
// broker's ack. The ring evicts held chunks only when it cannot make room
// otherwise, so that a reading on its way to the cloud is not reported lost
// while it is being delivered.
//
// Protocol:
// - The uplink fetches under Exclusion(), then Hold()s the ranges it fetched
//   before letting go of it. The ring evicts under Exclusion() too, so every
//   eviction either sees a fetch's holds or ran before the fetch's snapshot.
// - An acked range stays held until the writer has committed its ack
//   (RingStore releases it then): between the two it is delivered but still
//   looks undelivered in the store.
// - Everything else the uplink drops (a refused batch, a session's unacked
//   batches and fetched rows) it releases itself.
//
// Threads: shared by the uplink thread and the store writer thread; every
// method is thread safe.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "agent/core/mutex.h"

namespace tagrelay::store {

struct HeldRange {
  std::string device;
  int64_t first = 0;
  int64_t last = 0;
};

class DeliveryHolds {
 public:
  // Held for as long as a fetch and its Hold() calls, or an eviction, take.
  class TR_SCOPED_CAPABILITY Exclusion {
   public:
    explicit Exclusion(DeliveryHolds& holds) TR_ACQUIRE(holds.exclusion_) : mu_(&holds.exclusion_) {
      mu_->Lock();
    }
    ~Exclusion() TR_RELEASE() { mu_->Unlock(); }
    Exclusion(const Exclusion&) = delete;
    Exclusion& operator=(const Exclusion&) = delete;

   private:
    Mutex* mu_;
  };

  // Adds first..last of `device` to the held seqs (a union: holding twice is
  // holding once).
  void Hold(const std::string& device, int64_t first, int64_t last) TR_EXCLUDES(mu_);
  // Removes first..last of `device` from the held seqs, whoever held them.
  void Release(const std::string& device, int64_t first, int64_t last) TR_EXCLUDES(mu_);
  // The held ranges, disjoint and in order per device.
  std::vector<HeldRange> Held() const TR_EXCLUDES(mu_);
  // How many seqs are held (for tests and status).
  int64_t HeldCount() const TR_EXCLUDES(mu_);

 private:
  Mutex exclusion_;
  mutable Mutex mu_;
  // device -> first -> last, disjoint and not adjacent.
  std::map<std::string, std::map<int64_t, int64_t>> held_ TR_GUARDED_BY(mu_);
};

}  // namespace tagrelay::store
