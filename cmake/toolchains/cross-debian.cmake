# Shared part of the toolchain files of this directory: a cross build on Debian
# with its cross compilers (crossbuild-essential-<arch>) and the multiarch -dev
# packages of the target architecture (scripts/setup-cross installs both).
# The including file sets TAGRELAY_TRIPLET and TAGRELAY_QEMU first.
#
# The libraries and headers of the target live in the host's own tree, in the
# multiarch directories /usr/lib/<triplet> and /usr/include/<triplet>, which the
# cross compilers search. Programs (tests, check-config) run under qemu-user.

set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_C_COMPILER ${TAGRELAY_TRIPLET}-gcc)
set(CMAKE_CXX_COMPILER ${TAGRELAY_TRIPLET}-g++)
set(CMAKE_LIBRARY_ARCHITECTURE ${TAGRELAY_TRIPLET})

# Libraries, headers and package configs of the target only; build tools from
# the host.
set(CMAKE_FIND_ROOT_PATH /usr/${TAGRELAY_TRIPLET} /)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
# With / among the roots, a library of the build machine in /usr/lib would
# still be found: only the multiarch directory of the target is searched.
set(CMAKE_IGNORE_PATH /usr/lib/x86_64-linux-gnu /lib/x86_64-linux-gnu)

# pkgconf:<arch> provides <triplet>-pkg-config, which reads the target's .pc
# files in /usr/lib/<triplet>/pkgconfig.
set(PKG_CONFIG_EXECUTABLE /usr/bin/${TAGRELAY_TRIPLET}-pkg-config CACHE FILEPATH "pkg-config of the target")

# ctest and gtest_discover_tests run the target's programs under qemu-user,
# with / as the guest's root: its dynamic loader is then the one of the
# multiarch libc6:<arch>, the same build as the libc that the libraries are
# found with. (The cross toolchain's copy under /usr/<triplet> is an older
# build of glibc; its loader with the newer libc crashes at thread creation.)
set(CMAKE_CROSSCOMPILING_EMULATOR ${TAGRELAY_QEMU} -L /)
