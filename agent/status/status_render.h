// The renderings of a StatusSnapshot: JSON (`tagrelay status --json`,
// /status.json), a text table (`tagrelay status`), Prometheus text exposition
// format 0.0.4 (/metrics) and a self-contained HTML page (/).
//
// Promise: pure functions of the snapshot. The JSON is valid whatever the
// names hold; the HTML escapes every name and needs no script nor any other
// resource; Prometheus label values are escaped as the format requires.
//
// Threads: pure; any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "agent/status/status_model.h"

namespace tagrelay::status {

std::string RenderJson(const StatusSnapshot& s);
std::string RenderText(const StatusSnapshot& s);
std::string RenderPrometheus(const StatusSnapshot& s);
std::string RenderHtml(const StatusSnapshot& s);

// "0.4s", "12s", "5m12s", "3h02m", "2d04h"; "-" for none.
std::string FormatAge(std::optional<int64_t> ms);
// "512 B", "12.3 KiB", "256.0 MiB".
std::string FormatBytes(uint64_t bytes);

}  // namespace tagrelay::status
