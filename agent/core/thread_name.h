// Thread names: each worker names its thread after what it does ("poll rs485-1",
// "store writer", "uplink", "status"), so that ps -L, top -H, gdb and a core
// dump tell the threads apart.
//
// Promise: NameThisThread() sets the calling thread's name, cut to the 15
// bytes Linux keeps; failure is harmless and ignored.
//
// Threads: names the calling thread only.
#pragma once

#include <string_view>

namespace tagrelay {

void NameThisThread(std::string_view name);

}  // namespace tagrelay
