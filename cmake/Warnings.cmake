set(TAGRELAY_WARNINGS
  -Wall -Wextra -Werror
  -Wshadow -Wnon-virtual-dtor -Wold-style-cast -Wcast-align -Woverloaded-virtual
  -Wnull-dereference -Wimplicit-fallthrough -Wformat=2)
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  # GCC 12 reports std::variant and std::optional members as "maybe
  # uninitialized" at -O2 when they are not (GCC bug 105562 and kin); clang's
  # flow-sensitive -Wsometimes-uninitialized stays on in clang builds.
  list(APPEND TAGRELAY_WARNINGS -Wno-maybe-uninitialized)
endif()
if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  list(APPEND TAGRELAY_WARNINGS -Wthread-safety)
endif()
