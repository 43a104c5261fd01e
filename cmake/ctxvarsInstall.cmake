# Install rules: the library, its headers, the CMake package (ctxvarsConfig.cmake with
# the components asio and boost_asio) and the pkg-config files.
#
# Install components (cmake --install <build> --component <name>):
#   core        libctxvars, every header, ctxvarsConfig*.cmake, ctxvars-targets.cmake,
#               ctxvars.pc
#   asio        ctxvars-asio-targets.cmake (ctxvars::asio), ctxvars-asio.pc
#   boost_asio  ctxvars-boost_asio-targets.cmake (ctxvars::boost_asio), ctxvars-boost_asio.pc
# A plain `cmake --install` installs them all. An adapter is installed when its target
# exists, i.e. when its Asio was found at configure time.
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

# ---- CMake package -------------------------------------------------------------------
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/ctxvarsConfig.cmake.in ${PROJECT_BINARY_DIR}/ctxvarsConfig.cmake
                              INSTALL_DESTINATION ${CTXVARS_INSTALL_CMAKEDIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/ctxvarsConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/ctxvarsConfig.cmake ${PROJECT_BINARY_DIR}/ctxvarsConfigVersion.cmake
        DESTINATION ${CTXVARS_INSTALL_CMAKEDIR} COMPONENT core)
