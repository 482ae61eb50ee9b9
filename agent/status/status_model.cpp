#include "agent/status/status_model.h"

#include <algorithm>

namespace tagrelay::status {

size_t StatusSnapshot::DevicesOk() const {
  return static_cast<size_t>(std::count_if(devices.begin(), devices.end(),
                                           [](const DeviceStatus& d) { return d.link == "ok"; }));
}

}  // namespace tagrelay::status
