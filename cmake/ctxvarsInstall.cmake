# Install rules: the library, its headers, the CMake package (ctxvarsConfig.cmake with
# the components asio, boost_asio, fmt, spdlog, http and grpc) and the pkg-config files.
#
# Install components (cmake --install <build> --component <name>):
#   core        libctxvars, every header, ctxvarsConfig*.cmake, ctxvars-targets.cmake,
#               ctxvars.pc
#   asio        ctxvars-asio-targets.cmake (ctxvars::asio), ctxvars-asio.pc
#   boost_asio  ctxvars-boost_asio-targets.cmake (ctxvars::boost_asio), ctxvars-boost_asio.pc
#   fmt         ctxvars-fmt-targets.cmake (ctxvars::fmt), ctxvars-fmt.pc
#   spdlog      ctxvars-spdlog-targets.cmake (ctxvars::spdlog), ctxvars-spdlog.pc (needs fmt)
#   http        ctxvars-http-targets.cmake (ctxvars::http), ctxvars-http.pc
#   grpc        ctxvars-grpc-targets.cmake (ctxvars::grpc), ctxvars-grpc.pc
# A plain `cmake --install` installs them all. An adapter or integration is installed when
# its target exists, i.e. when its dependency was found at configure time.
#
# Adapters are header-only and need their Asio's headers on the consumer's side. The
# include directory found here is recorded in ctxvarsConfig.cmake as a hint; the consumer
# re-finds the header there or in its own search paths (CTXVARS_ASIO_INCLUDE_DIR,
# CTXVARS_BOOST_ASIO_INCLUDE_DIR override), so an installed package never points at a
# directory that is gone.

set(CTXVARS_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/ctxvars"
    CACHE STRING "Where ctxvarsConfig.cmake goes, relative to the install prefix")
set(CTXVARS_INSTALL_PKGCONFIGDIR "${CMAKE_INSTALL_LIBDIR}/pkgconfig"
    CACHE STRING "Where ctxvars.pc goes, relative to the install prefix")
mark_as_advanced(CTXVARS_INSTALL_CMAKEDIR CTXVARS_INSTALL_PKGCONFIGDIR)

# ---- core -----------------------------------------------------------------------
install(TARGETS ctxvars EXPORT ctxvars-targets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT core
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT core NAMELINK_COMPONENT core
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT core
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
# The shared core (built with CTXVARS_WITH_PYTHON): the Python module and C++
# extensions called from Python link this one copy of the core's state.
if(TARGET ctxvars_shared)
  install(TARGETS ctxvars_shared EXPORT ctxvars-targets
          LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT core NAMELINK_COMPONENT core
          RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT core)
endif()
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/ctxvars DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT core)
install(EXPORT ctxvars-targets NAMESPACE ctxvars:: FILE ctxvars-targets.cmake
        DESTINATION ${CTXVARS_INSTALL_CMAKEDIR} COMPONENT core)

# pkg-config files are written at install time, so that their prefix is the one
# installed to (cmake --install --prefix) and DESTDIR is honoured.
function(_ctxvars_install_pc name component)
  set(_args "")
  foreach(_var IN LISTS ARGN)
    string(APPEND _args "set(${_var} [==[${${_var}}]==])\n")
  endforeach()
  install(CODE "${_args}
set(CTXVARS_PC_NAME [==[${name}]==])
set(CTXVARS_PC_TEMPLATE [==[${PROJECT_SOURCE_DIR}/cmake/${name}.pc.in]==])
set(CTXVARS_PC_OUT [==[${PROJECT_BINARY_DIR}/pkgconfig/${name}.pc]==])
set(CTXVARS_PC_DIR [==[${CTXVARS_INSTALL_PKGCONFIGDIR}]==])
set(CTXVARS_PC_LIBDIR [==[${CMAKE_INSTALL_LIBDIR}]==])
set(CTXVARS_PC_INCLUDEDIR [==[${CMAKE_INSTALL_INCLUDEDIR}]==])
set(PROJECT_VERSION [==[${PROJECT_VERSION}]==])
set(PROJECT_DESCRIPTION [==[${PROJECT_DESCRIPTION}]==])
include([==[${PROJECT_SOURCE_DIR}/cmake/ctxvarsPkgConfig.cmake]==])
" COMPONENT ${component})
endfunction()
_ctxvars_install_pc(ctxvars core)

# ---- adapters ----------------------------------------------------------------------
# _ctxvars_adapter_flags(<target> <PREFIX>) sets CTXVARS_<PREFIX>_HINT (the dependency's
# include directories seen here) and CTXVARS_<PREFIX>_CFLAGS (the target's usage
# requirements, spelled for pkg-config; implicit directories such as /usr/include left out).
macro(_ctxvars_adapter_flags target prefix)
  set(CTXVARS_${prefix}_HINT "")
  set(CTXVARS_${prefix}_CFLAGS "")
  get_target_property(_dirs ${target} INTERFACE_INCLUDE_DIRECTORIES)
  foreach(_dir IN LISTS _dirs)
    if(_dir MATCHES "^\\$<BUILD_INTERFACE:(.*)>$")
      set(_dir "${CMAKE_MATCH_1}")
    endif()
    if(_dir MATCHES "\\$<" OR _dir STREQUAL "${PROJECT_SOURCE_DIR}/include" OR NOT IS_ABSOLUTE "${_dir}")
      continue()
    endif()
    list(APPEND CTXVARS_${prefix}_HINT "${_dir}")
    if(NOT _dir IN_LIST CMAKE_CXX_IMPLICIT_INCLUDE_DIRECTORIES)
      string(APPEND CTXVARS_${prefix}_CFLAGS " -I${_dir}")
    endif()
  endforeach()
  get_target_property(_defs ${target} INTERFACE_COMPILE_DEFINITIONS)
  foreach(_def IN LISTS _defs)
    if(NOT _def STREQUAL "" AND NOT _def MATCHES "\\$<" AND NOT _def MATCHES "-NOTFOUND$")
      string(APPEND CTXVARS_${prefix}_CFLAGS " -D${_def}")
    endif()
  endforeach()
endmacro()

# _ctxvars_adapter_install(<component> <target> <PREFIX>) installs <target> as
# ctxvars::<component> in its own export set and install component, with its .pc file.
set(CTXVARS_INSTALLED_COMPONENTS "")
macro(_ctxvars_adapter_install component target prefix)
  string(STRIP "${CTXVARS_${prefix}_CFLAGS}" CTXVARS_${prefix}_CFLAGS)
  install(TARGETS ${target} EXPORT ctxvars-${component}-targets
          INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
  install(EXPORT ctxvars-${component}-targets NAMESPACE ctxvars:: FILE ctxvars-${component}-targets.cmake
          DESTINATION ${CTXVARS_INSTALL_CMAKEDIR} COMPONENT ${component})
  _ctxvars_install_pc(ctxvars-${component} ${component} CTXVARS_${prefix}_CFLAGS)
  list(APPEND CTXVARS_INSTALLED_COMPONENTS ${component})
endmacro()

if(TARGET ctxvars_asio)
  _ctxvars_adapter_flags(ctxvars_asio ASIO)
  _ctxvars_adapter_install(asio ctxvars_asio ASIO)
endif()

# Boost.Asio: the adapter either carries Boost's include directory itself or links
# Boost's own imported target (Boost::headers / Boost::boost); in the second case the
# consumer's ctxvarsConfig.cmake finds Boost's CMake package first.
set(CTXVARS_BOOST_ASIO_FIND_BOOST OFF)
set(CTXVARS_BOOST_DIR_HINT "")
if(TARGET ctxvars_boost_asio)
  _ctxvars_adapter_flags(ctxvars_boost_asio BOOST_ASIO)
  get_target_property(_libs ctxvars_boost_asio INTERFACE_LINK_LIBRARIES)
  if(_libs MATCHES "Boost::")
    set(CTXVARS_BOOST_ASIO_FIND_BOOST ON)
    if(Boost_DIR)
      set(CTXVARS_BOOST_DIR_HINT "${Boost_DIR}")
    endif()
    foreach(_lib IN ITEMS Boost::headers Boost::boost)
      if(TARGET ${_lib} AND NOT CTXVARS_BOOST_ASIO_HINT)
        get_target_property(_dirs ${_lib} INTERFACE_INCLUDE_DIRECTORIES)
        foreach(_dir IN LISTS _dirs)
          list(APPEND CTXVARS_BOOST_ASIO_HINT "${_dir}")
          if(NOT _dir IN_LIST CMAKE_CXX_IMPLICIT_INCLUDE_DIRECTORIES)
            string(APPEND CTXVARS_BOOST_ASIO_CFLAGS " -I${_dir}")
          endif()
        endforeach()
      endif()
    endforeach()
  endif()
  _ctxvars_adapter_install(boost_asio ctxvars_boost_asio BOOST_ASIO)
endif()

# ---- integrations: ctxvars::fmt, ::spdlog, ::http, ::grpc ------------------------------
# Header-only too; each links its dependency's own imported target (fmt::fmt,
# spdlog::spdlog, Boost::headers, gRPC::grpc++), so the consumer's ctxvarsConfig.cmake
# finds that package again before loading the component (hint: the directory it was found
# in here, CTXVARS_<C>_DIR_HINT). Their .pc files name the dependency's .pc in Requires
# (fmt, spdlog, grpc++; Boost has none: its include directory goes in Cflags).
foreach(_c IN ITEMS fmt spdlog http grpc)
  string(TOUPPER "${_c}" _C)
  set(CTXVARS_${_C}_DIR_HINT "")
endforeach()
if(TARGET ctxvars_fmt)
  _ctxvars_adapter_flags(ctxvars_fmt FMT)
  set(CTXVARS_FMT_DIR_HINT "${fmt_DIR}")
  _ctxvars_adapter_install(fmt ctxvars_fmt FMT)
endif()
if(TARGET ctxvars_spdlog)
  _ctxvars_adapter_flags(ctxvars_spdlog SPDLOG)
  set(CTXVARS_SPDLOG_DIR_HINT "${spdlog_DIR}")
  _ctxvars_adapter_install(spdlog ctxvars_spdlog SPDLOG)
endif()
if(TARGET ctxvars_http)
  _ctxvars_adapter_flags(ctxvars_http HTTP)
  set(CTXVARS_HTTP_DIR_HINT "${Boost_DIR}")
  if(TARGET Boost::headers)
    get_target_property(_dirs Boost::headers INTERFACE_INCLUDE_DIRECTORIES)
    foreach(_dir IN LISTS _dirs)
      if(_dir AND NOT _dir IN_LIST CMAKE_CXX_IMPLICIT_INCLUDE_DIRECTORIES)
        string(APPEND CTXVARS_HTTP_CFLAGS " -I${_dir}")
      endif()
    endforeach()
  endif()
  _ctxvars_adapter_install(http ctxvars_http HTTP)
endif()
if(TARGET ctxvars_grpc)
  _ctxvars_adapter_flags(ctxvars_grpc GRPC)
  set(CTXVARS_GRPC_DIR_HINT "${gRPC_DIR}")
  _ctxvars_adapter_install(grpc ctxvars_grpc GRPC)
endif()

# ---- CMake package -------------------------------------------------------------------
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/ctxvarsConfig.cmake.in ${PROJECT_BINARY_DIR}/ctxvarsConfig.cmake
                              INSTALL_DESTINATION ${CTXVARS_INSTALL_CMAKEDIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/ctxvarsConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/ctxvarsConfig.cmake ${PROJECT_BINARY_DIR}/ctxvarsConfigVersion.cmake
        DESTINATION ${CTXVARS_INSTALL_CMAKEDIR} COMPONENT core)
