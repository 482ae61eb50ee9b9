# Cross build for Debian armhf (ARMv7, hard float): Moxa UC-series and similar.
#   cmake -B build-armhf -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/armhf.cmake
set(CMAKE_SYSTEM_PROCESSOR arm)
set(TAGRELAY_TRIPLET arm-linux-gnueabihf)
set(TAGRELAY_QEMU /usr/bin/qemu-arm-static)
# GCC notes on ARM that the passing of some aggregates differs from GCC < 7.1;
# everything on the target is built with GCC 12, so the notes only bury real
# warnings.
set(CMAKE_CXX_FLAGS_INIT "-Wno-psabi")
include(${CMAKE_CURRENT_LIST_DIR}/cross-debian.cmake)
