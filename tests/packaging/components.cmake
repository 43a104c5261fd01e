# ctest driver: find_package(ctxvars CONFIG ... COMPONENTS ...) against real installations,
# configure-only (probe/). Checks that asking for a component that is not there fails with
# a message naming the component and its Debian package, and that what can be found is.
#   -DPREFIX=<full install> -DCORE_PREFIX=<install of component core only>
#   -DBUILD_DIR=<the ctxvars build installed> (for partial installs made here)
#   -DAVAILABLE="core asio ..." -DIGNORE="<asio include dir>|<boost include dir>"
#   -DSPDLOG_DIR=<spdlog's package dir, as found by the build> -DSRC= -DBIN= -DCXX= -DGEN=
cmake_minimum_required(VERSION 3.21)
separate_arguments(AVAILABLE)
string(REPLACE "|" ";" IGNORE "${IGNORE}")
file(REMOVE_RECURSE ${BIN})
set(failures 0)

# probe(<name> <prefix> <expected: ok|fail> "<find_package args>" [-D...] MATCH <regex>... [NOMATCH <regex>...])
function(probe name prefix expected args)
  cmake_parse_arguments(P "" "" "DEFS;MATCH;NOMATCH" ${ARGN})
  execute_process(COMMAND ${CMAKE_COMMAND} -S ${SRC}/tests/packaging/probe -B ${BIN}/${name} -G ${GEN}
                          -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_PREFIX_PATH=${prefix}
                          -DCMAKE_FIND_PACKAGE_NO_PACKAGE_REGISTRY=ON "-DPROBE_ARGS=${args}" ${P_DEFS}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  string(REGEX REPLACE "[ \n]+" " " flat "${out}")   # CMake wraps long messages
  set(ok TRUE)
  if((expected STREQUAL "ok" AND rc) OR (expected STREQUAL "fail" AND NOT rc))
    set(ok FALSE)
    message("${name}: expected configure to ${expected}, exit code ${rc}")
  endif()
  foreach(re IN LISTS P_MATCH)
    if(NOT flat MATCHES "${re}")
      set(ok FALSE)
      message("${name}: output lacks /${re}/")
    endif()
  endforeach()
  foreach(re IN LISTS P_NOMATCH)
    if(flat MATCHES "${re}")
      set(ok FALSE)
      message("${name}: output has /${re}/")
    endif()
  endforeach()
  if(ok)
    message(STATUS "ok   ${name}")
  else()
    message("---- ${name}: find_package(ctxvars CONFIG ${args}) output:\n${out}----")
    math(EXPR f "${failures} + 1")
    set(failures ${f} PARENT_SCOPE)
  endif()
endfunction()

# The probes every component gets, adapter or integration: installed without its
# files (cmake --install --component core) or built without it at all, asked for
# as a required and as an optional component. Sets `intro` (the regex of the
# component's description in messages) in the caller, and passes `failures` on.
function(probe_not_installed c what debian)
  set(intro "component \"${c}\" \\(ctxvars::${c}, for ${what}, Debian package ${debian}\\)")
  if(c IN_LIST AVAILABLE)
    set(why "--component ${c}\\)")
  else()
    set(why "this ctxvars was built without ${what}")
  endif()
  probe(${c}-not-installed ${CORE_PREFIX} fail "REQUIRED COMPONENTS ${c}"
        MATCH "${intro} is not installed" "${why}" "ctxvars_FOUND to FALSE")
  probe(${c}-optional-not-installed ${CORE_PREFIX} ok "REQUIRED OPTIONAL_COMPONENTS ${c}"
        MATCH "probe: has ctxvars::ctxvars" "probe: no ctxvars::${c}" "optional ${intro} is not installed")
  set(intro "${intro}" PARENT_SCOPE)
  set(failures "${failures}" PARENT_SCOPE)
endfunction()

foreach(c asio boost_asio)
  if(c STREQUAL "asio")
    set(debian "libasio-dev")
    set(what "standalone Asio")
    set(header "asio.hpp")
  else()
    set(debian "libboost1\\.81-dev")
    set(what "Boost\\.Asio")
    set(header "boost/asio.hpp")
  endif()
  probe_not_installed(${c} "${what}" "${debian}")
  if(NOT c IN_LIST AVAILABLE)
    message(STATUS "skip ${c}: this build has no ctxvars::${c}")
    continue()
  endif()
  # Installed, and found: only what is asked for is loaded.
  probe(${c}-found ${PREFIX} ok "REQUIRED COMPONENTS ${c}"
        MATCH "probe: has ctxvars::ctxvars" "probe: has ctxvars::${c}")
  # The consumer's own copy of the headers, given by hand, is the one used.
  string(TOUPPER "${c}" C)
  file(WRITE ${BIN}/own-${c}/${header} "")
  file(WRITE ${BIN}/own-${c}/boost/version.hpp "#define BOOST_VERSION 108100\n")
  probe(${c}-own-headers ${PREFIX} ok "REQUIRED COMPONENTS ${c}" DEFS -DCTXVARS_${C}_INCLUDE_DIR=${BIN}/own-${c}
        MATCH "probe: ctxvars::${c} includes [^ ]*${BIN}/own-${c}")
  # Installed, but the consumer's machine lacks the adapter's Asio.
  probe(${c}-headers-missing ${PREFIX} fail "REQUIRED COMPONENTS ${c}"
        DEFS "-DCMAKE_IGNORE_PATH=${IGNORE}" -DCMAKE_DISABLE_FIND_PACKAGE_Boost=ON
        MATCH "${intro} needs <${header}>, which was not found" "Install ${debian}")
endforeach()
if("asio" IN_LIST AVAILABLE AND "boost_asio" IN_LIST AVAILABLE)
  probe(asio-then-all ${PREFIX} ok "REQUIRED COMPONENTS asio" DEFS "-DPROBE_ARGS2=REQUIRED COMPONENTS asio boost_asio"
        MATCH "probe: has ctxvars::asio" "probe: has ctxvars::boost_asio" "ctxvars_FOUND=1")
endif()
if("boost_asio" IN_LIST AVAILABLE)
  # A Boost too old for the adapter: 1.79 has coroutines but neither
  # boost::asio::deferred nor the associator hook (the minimum is 1.80 everywhere).
  file(WRITE ${BIN}/old-boost/boost/asio.hpp "")
  file(WRITE ${BIN}/old-boost/boost/version.hpp "#define BOOST_VERSION 107900\n")
  probe(boost_asio-too-old ${PREFIX} fail "REQUIRED COMPONENTS boost_asio"
        DEFS -DCTXVARS_BOOST_ASIO_INCLUDE_DIR=${BIN}/old-boost
        MATCH "component \"boost_asio\" .* needs Boost 1\\.80 or later; .*BOOST_VERSION 107900")
endif()

# ---- integrations: fmt spdlog http grpc (each finds its dependency's CMake package) ----
# c;what;debian;package;version wording (regexes)
set(integrations
    "fmt|\\{fmt\\}|libfmt-dev|fmt|"
    "spdlog|spdlog|libspdlog-dev|spdlog|"
    "http|HTTP with Boost\\.Beast|libboost1\\.81-dev|Boost| 1\\.81 or later"
    "grpc|gRPC|libgrpc\\+\\+-dev|gRPC|")
foreach(row IN LISTS integrations)
  string(REPLACE "|" ";" row "${row}")
  list(GET row 0 c)
  list(GET row 1 what)
  list(GET row 2 debian)
  list(GET row 3 package)
  list(LENGTH row n)
  set(version "")
  if(n GREATER 4)
    list(GET row 4 version)
  endif()
  probe_not_installed(${c} "${what}" "${debian}")
  if(NOT c IN_LIST AVAILABLE)
    message(STATUS "skip ${c}: this build has no ctxvars::${c}")
    continue()
  endif()
  # Installed, and found: only what is asked for (and what it needs) is loaded.
  set(others asio boost_asio fmt spdlog http grpc)
  list(REMOVE_ITEM others ${c})
  if(c STREQUAL "spdlog")
    list(REMOVE_ITEM others fmt)
  endif()
  list(TRANSFORM others PREPEND "probe: has ctxvars::" OUTPUT_VARIABLE not_loaded)
  probe(${c}-found ${PREFIX} ok "REQUIRED COMPONENTS ${c}"
        MATCH "probe: has ctxvars::ctxvars" "probe: has ctxvars::${c}" "ctxvars_FOUND=1" NOMATCH ${not_loaded})
  # Installed, but the consumer's machine lacks the dependency: a clean failure naming it,
  # or, for an optional component, no target and a status line.
  set(need "${intro} needs ${package}${version} \\(its CMake package, ${package}Config\\.cmake\\), which was not found\\. Install ${debian}, or set ${package}_DIR")
  probe(${c}-dependency-missing ${PREFIX} fail "REQUIRED COMPONENTS ${c}" DEFS -DCMAKE_DISABLE_FIND_PACKAGE_${package}=ON
        MATCH "${need}" "ctxvars_FOUND to FALSE")
  probe(${c}-optional-dependency-missing ${PREFIX} ok "REQUIRED OPTIONAL_COMPONENTS ${c}"
        DEFS -DCMAKE_DISABLE_FIND_PACKAGE_${package}=ON
        MATCH "probe: ctxvars_FOUND=1" "probe: no ctxvars::${c}" "optional ${need}")
endforeach()
if("spdlog" IN_LIST AVAILABLE)
  # spdlog builds on ctxvars::fmt: without {fmt}, the message says so.
  probe(spdlog-fmt-missing ${PREFIX} fail "REQUIRED COMPONENTS spdlog" DEFS -DCMAKE_DISABLE_FIND_PACKAGE_fmt=ON
        MATCH "component \"spdlog\" .* needs ctxvars::fmt: component \"fmt\" .* needs fmt \\(its CMake package, fmtConfig\\.cmake\\), which was not found\\. Install libfmt-dev"
              "ctxvars_FOUND to FALSE")
  # The package really gone (not just disabled): the directory it was found in at build
  # time, recorded as a hint, is ignored like any other.
  if(SPDLOG_DIR)
    # Debian merges /lib into /usr/lib: the package is reachable by both spellings.
    string(REGEX REPLACE "^/usr/" "/" gone "${SPDLOG_DIR}")
    set(gone "${gone}|/usr${gone}")
    probe(spdlog-package-gone ${PREFIX} fail "REQUIRED COMPONENTS spdlog" DEFS "-DPROBE_IGNORE_PATH=${gone}"
          MATCH "component \"spdlog\" .* needs spdlog \\(its CMake package" "Install libspdlog-dev")
  endif()
  # Installed with --component spdlog but without --component fmt.
  set(partial ${BIN}/spdlog-only)
  foreach(comp core spdlog)
    execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${partial} --component ${comp}
                    RESULT_VARIABLE rc OUTPUT_QUIET)
    if(rc)
      message(FATAL_ERROR "cmake --install ${BUILD_DIR} --component ${comp} failed")
    endif()
  endforeach()
  probe(spdlog-without-fmt-installed ${partial} fail "REQUIRED COMPONENTS spdlog"
        MATCH "component \"spdlog\" .* needs ctxvars::fmt: component \"fmt\" .* is not installed: .*ctxvars-fmt-targets\\.cmake is missing \\(install it with cmake --install <ctxvars build dir> --component fmt\\)")
  probe(spdlog-optional-without-fmt-installed ${partial} ok "REQUIRED OPTIONAL_COMPONENTS spdlog"
        MATCH "probe: ctxvars_FOUND=1" "probe: no ctxvars::spdlog" "probe: no ctxvars::fmt")
endif()
# Loaded twice (as two subprojects would): the second find_package defines nothing again.
set(twice "")
foreach(c fmt spdlog http grpc)
  if(c IN_LIST AVAILABLE)
    list(APPEND twice ${c})
  endif()
endforeach()
if(twice)
  string(JOIN " " twice_args ${twice})
  list(TRANSFORM twice PREPEND "probe: has ctxvars::" OUTPUT_VARIABLE twice_match)
  list(GET twice 0 first)
  probe(integrations-twice ${PREFIX} ok "REQUIRED COMPONENTS ${first}" DEFS "-DPROBE_ARGS2=REQUIRED COMPONENTS ${twice_args}"
        MATCH ${twice_match} "ctxvars_FOUND=1")
endif()
probe(unknown-component ${PREFIX} fail "REQUIRED COMPONENTS asio_typo"
      MATCH "ctxvars has no component \"asio_typo\" \\(it has: asio, boost_asio, fmt, spdlog, http, grpc\\)")
set(expect_all "probe: has ctxvars::ctxvars")
foreach(c IN LISTS AVAILABLE)
  if(NOT c STREQUAL "core")
    list(APPEND expect_all "probe: has ctxvars::${c}")
  endif()
endforeach()
probe(no-components ${PREFIX} ok "REQUIRED" MATCH ${expect_all})

# A ctxvars built on a machine without either Asio, {fmt}, spdlog, Boost or gRPC: the
# adapters and integrations were never installed.
set(noasio ${BIN}/noasio)
execute_process(COMMAND ${CMAKE_COMMAND} -S ${SRC} -B ${noasio}/build -G ${GEN} -DCMAKE_CXX_COMPILER=${CXX}
                        -DCTXVARS_BUILD_TESTS=OFF -DCTXVARS_BUILD_EXAMPLES=OFF -DCTXVARS_BUILD_BENCHMARKS=OFF
                        -DCTXVARS_INSTALL=ON -DCMAKE_BUILD_TYPE=Debug
                        "-DCMAKE_IGNORE_PATH=${IGNORE}" -DCMAKE_DISABLE_FIND_PACKAGE_Boost=ON
                        -DCMAKE_DISABLE_FIND_PACKAGE_fmt=ON -DCMAKE_DISABLE_FIND_PACKAGE_spdlog=ON
                        -DCMAKE_DISABLE_FIND_PACKAGE_gRPC=ON
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT rc)
  execute_process(COMMAND ${CMAKE_COMMAND} --build ${noasio}/build RESULT_VARIABLE rc OUTPUT_VARIABLE out2 ERROR_VARIABLE out2)
  string(APPEND out "${out2}")
endif()
if(NOT rc)
  execute_process(COMMAND ${CMAKE_COMMAND} --install ${noasio}/build --prefix ${noasio}/prefix
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out2 ERROR_VARIABLE out2)
  string(APPEND out "${out2}")
endif()
if(rc)
  message(FATAL_ERROR "building ctxvars without Asio failed:\n${out}")
endif()
probe(built-without-adapters ${noasio}/prefix ok "REQUIRED"
      MATCH "probe: has ctxvars::ctxvars" "probe: no ctxvars::asio" "probe: no ctxvars::boost_asio"
            "probe: no ctxvars::fmt" "probe: no ctxvars::spdlog" "probe: no ctxvars::http" "probe: no ctxvars::grpc")
probe(spdlog-built-without ${noasio}/prefix fail "REQUIRED COMPONENTS spdlog"
      MATCH "component \"spdlog\" \\(ctxvars::spdlog, for spdlog, Debian package libspdlog-dev\\) is not installed: this ctxvars was built without spdlog \\(the CMake package of spdlog was not found\\)\\. Install libspdlog-dev, then configure, build and install ctxvars again\\.")
probe(http-grpc-built-without ${noasio}/prefix fail "REQUIRED COMPONENTS http grpc fmt"
      MATCH "component \"http\" .* is not installed: this ctxvars was built without HTTP with Boost\\.Beast \\(the CMake package of Boost 1\\.81 was not found\\)"
            "component \"grpc\" \\(ctxvars::grpc, for gRPC, Debian package libgrpc\\+\\+-dev\\) is not installed: this ctxvars was built without gRPC"
            "component \"fmt\" .* is not installed: this ctxvars was built without \\{fmt\\}")
probe(asio-built-without ${noasio}/prefix fail "REQUIRED COMPONENTS asio"
      MATCH "component \"asio\" \\(ctxvars::asio, for standalone Asio, Debian package libasio-dev\\) is not installed: this ctxvars was built without standalone Asio \\(<asio.hpp> was not found\\)\\. Install libasio-dev, then configure, build and install ctxvars again\\.")
probe(boost_asio-built-without ${noasio}/prefix fail "REQUIRED COMPONENTS asio boost_asio"
      MATCH "component \"asio\" .*is not installed" "component \"boost_asio\" \\(ctxvars::boost_asio, for Boost\\.Asio, Debian package libboost1\\.81-dev\\) is not installed: this ctxvars was built without Boost\\.Asio")

if(failures)
  message(FATAL_ERROR "${failures} find_package probe(s) failed")
endif()
file(REMOVE_RECURSE ${BIN})
