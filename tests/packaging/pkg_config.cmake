# ctest driver: builds each consumer (consumer/<component>_main.cpp) with nothing but the
# compiler and pkg-config over the installed ctxvars.pc / ctxvars-<component>.pc, as a
# Makefile would, and runs it.
#   -DPKG_CONFIG= -DPCDIR=<installed pkgconfig dir> -DVERSION= -DAVAILABLE="core asio ..."
#   -DCOMPONENTS="core ..." (default: AVAILABLE) -DSRC= -DBIN= -DCXX=
# Prints "SKIPPED:" when a component asked for was not configured in this ctxvars build.
cmake_minimum_required(VERSION 3.21)
if(NOT PKG_CONFIG)
  message("SKIPPED: pkg-config not found (Debian package pkg-config)")
  return()
endif()
separate_arguments(AVAILABLE)
if(NOT DEFINED COMPONENTS)
  set(COMPONENTS ${AVAILABLE})
endif()
separate_arguments(COMPONENTS)
foreach(c IN LISTS COMPONENTS)
  if(NOT c IN_LIST AVAILABLE)
    message("SKIPPED: this ctxvars build has no ctxvars::${c} (its dependency was not found at configure time)")
    return()
  endif()
endforeach()
file(REMOVE_RECURSE ${BIN})
file(MAKE_DIRECTORY ${BIN})
# ctxvars's .pc files only from the installation: PKG_CONFIG_LIBDIR replaces the search
# path, with the installed directory first and then the system's own (where the .pc files
# of fmt, spdlog and grpc++, which the integrations' files require, are).
execute_process(COMMAND ${PKG_CONFIG} --variable pc_path pkg-config OUTPUT_VARIABLE syspath
                OUTPUT_STRIP_TRAILING_WHITESPACE)
set(pc ${CMAKE_COMMAND} -E env "PKG_CONFIG_LIBDIR=${PCDIR}:${syspath}" PKG_CONFIG_PATH= ${PKG_CONFIG})
foreach(c IN LISTS COMPONENTS)
  if(c STREQUAL "core")
    set(module ctxvars)
    set(exe ${BIN}/consumer)
  else()
    set(module ctxvars-${c})
    set(exe ${BIN}/consumer_${c})
  endif()
  execute_process(COMMAND ${pc} --exact-version=${VERSION} ${module} RESULT_VARIABLE rc)
  if(rc)
    message(FATAL_ERROR "pkg-config: ${module} ${VERSION} not found in ${PCDIR}")
  endif()
  execute_process(COMMAND ${pc} --cflags --libs ${module} RESULT_VARIABLE rc OUTPUT_VARIABLE flags
                  OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(rc)
    message(FATAL_ERROR "pkg-config --cflags --libs ${module} failed")
  endif()
  message(STATUS "${module}: ${flags}")
  separate_arguments(flags UNIX_COMMAND "${flags}")
  execute_process(COMMAND ${CXX} -std=c++20 ${SRC}/tests/packaging/consumer/${c}_main.cpp -o ${exe} ${flags}
                  RESULT_VARIABLE rc)
  if(rc)
    message(FATAL_ERROR "${CXX} -std=c++20 ${c}_main.cpp $(pkg-config --cflags --libs ${module}) failed")
  endif()
  execute_process(COMMAND ${exe} RESULT_VARIABLE rc)
  if(rc)
    message(FATAL_ERROR "${exe} failed (${rc})")
  endif()
endforeach()
file(REMOVE_RECURSE ${BIN})
