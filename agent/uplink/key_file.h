// API key files: one line of text, surrounding whitespace ignored, readable by
// the owner only (mode 0600 or stricter), as ssh does for private keys.
//
// Promise: ReadKeyFile() returns the key or an error that names the file and
// what is wrong with it, never the key itself.
//
// Threads: any.
#pragma once

#include <string>

#include "agent/core/status.h"

namespace tagrelay::uplink {

Result<std::string> ReadKeyFile(const std::string& path);

}  // namespace tagrelay::uplink
