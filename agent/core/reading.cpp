#include "agent/core/reading.h"

namespace tagrelay {

std::string_view QualityName(Quality q) {
  switch (q) {
    case Quality::kGood: return "good";
    case Quality::kBad: return "bad";
    case Quality::kUncertain: return "uncertain";
  }
  return "bad";
}

}  // namespace tagrelay
