// FakePriorityOutbox: an in-memory PriorityOutbox holding alarm events and
// counter snapshots per device, with delivered flags, for uplink tests.
//
// Threads: single-threaded, like the uplink thread it serves.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "agent/uplink/priority_outbox.h"

namespace tagrelay::uplink {

class FakePriorityOutbox final : public PriorityOutbox {
 public:
  struct Delivery {
    Stream stream;
    std::string device;
    int64_t first;
    int64_t last;
  };

  // Appends an alarm event to `device` with the next sequence number; returns it.
  int64_t AddAlarm(const std::string& device, AlarmEvent e) {
    auto& list = alarms_[device];
    e.seq = static_cast<int64_t>(list.size()) + 1;
    list.push_back({std::move(e), false});
    return static_cast<int64_t>(list.size());
  }
  int64_t AddCounter(const std::string& device, CounterSnapshot c) {
    auto& list = counters_[device];
    c.seq = static_cast<int64_t>(list.size()) + 1;
    list.push_back({std::move(c), false});
    return static_cast<int64_t>(list.size());
  }

  std::vector<Delivery> deliveries;

  Result<std::vector<StreamBacklog>> Streams() override {
    std::vector<StreamBacklog> out;
    Collect(alarms_, Stream::kAlarms, out);
    Collect(counters_, Stream::kCounters, out);
    return out;
  }
  Status FetchAlarms(const std::string& device, int64_t from, int64_t to, size_t limit,
                     std::vector<AlarmEvent>& out) override {
    Fetch(alarms_, device, from, to, limit, out);
    return Status::Ok();
  }
  Status FetchCounters(const std::string& device, int64_t from, int64_t to, size_t limit,
                       std::vector<CounterSnapshot>& out) override {
    Fetch(counters_, device, from, to, limit, out);
    return Status::Ok();
  }
  void Delivered(Stream stream, const std::string& device, int64_t first, int64_t last) override {
    deliveries.push_back({stream, device, first, last});
    if (stream == Stream::kAlarms) Mark(alarms_[device], first, last);
    if (stream == Stream::kCounters) Mark(counters_[device], first, last);
  }

 private:
  template <typename T>
  using Table = std::map<std::string, std::vector<std::pair<T, bool>>>;

  template <typename T>
  static void Collect(const Table<T>& t, Stream s, std::vector<StreamBacklog>& out) {
    for (const auto& [device, list] : t) {
      StreamBacklog b{device, s, 0, static_cast<int64_t>(list.size())};
      for (const auto& [rec, delivered] : list) {
        if (!delivered) {
          b.first_undelivered = rec.seq;
          break;
        }
      }
      out.push_back(b);
    }
  }
  template <typename T>
  static void Fetch(Table<T>& t, const std::string& device, int64_t from, int64_t to, size_t limit,
                    std::vector<T>& out) {
    for (const auto& [rec, delivered] : t[device]) {
      if (out.size() >= limit) break;
      if (!delivered && rec.seq >= from && rec.seq <= to) out.push_back(rec);
    }
  }
  template <typename T>
  static void Mark(std::vector<std::pair<T, bool>>& list, int64_t first, int64_t last) {
    for (auto& [rec, delivered] : list) {
      if (rec.seq >= first && rec.seq <= last) delivered = true;
    }
  }

  Table<AlarmEvent> alarms_;
  Table<CounterSnapshot> counters_;
};

}  // namespace tagrelay::uplink
