# Cross build for Debian armhf (ARMv7, hard float): Moxa UC-series and similar.
#   cmake -B build-armhf -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/armhf.cmake
set(CMAKE_SYSTEM_PROCESSOR arm)
set(TAGRELAY_TRIPLET arm-linux-gnueabihf)
set(TAGRELAY_QEMU /usr/bin/qemu-arm-static)
include(${CMAKE_CURRENT_LIST_DIR}/cross-debian.cmake)
