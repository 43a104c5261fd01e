// ctxvars/version.hpp — the library's version, as macros usable in #if.
//
//   CTXVARS_VERSION_MAJOR, CTXVARS_VERSION_MINOR, CTXVARS_VERSION_PATCH
//   CTXVARS_VERSION         MAJOR * 10000 + MINOR * 100 + PATCH (0.1.0 is 100)
//   CTXVARS_VERSION_STRING  "MAJOR.MINOR.PATCH"
//
// The numbers are those of project(ctxvars VERSION ...) in CMakeLists.txt:
// configuring fails if the two disagree (cmake/ctxvarsVersion.cmake), and
// tests/packaging/version_test.cpp checks them against the build's and the
// installed package's version.
#pragma once

#define CTXVARS_VERSION_MAJOR 0
#define CTXVARS_VERSION_MINOR 1
#define CTXVARS_VERSION_PATCH 0

#define CTXVARS_VERSION \
  (CTXVARS_VERSION_MAJOR * 10000 + CTXVARS_VERSION_MINOR * 100 + CTXVARS_VERSION_PATCH)

#define CTXVARS_DETAIL_STRINGIZE2(x) #x
#define CTXVARS_DETAIL_STRINGIZE(x) CTXVARS_DETAIL_STRINGIZE2(x)
#define CTXVARS_VERSION_STRING                      \
  CTXVARS_DETAIL_STRINGIZE(CTXVARS_VERSION_MAJOR) "." \
  CTXVARS_DETAIL_STRINGIZE(CTXVARS_VERSION_MINOR) "." \
  CTXVARS_DETAIL_STRINGIZE(CTXVARS_VERSION_PATCH)
