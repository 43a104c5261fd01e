# Runs at install time (install(CODE) from cmake/ctxvarsInstall.cmake): writes
# CTXVARS_PC_NAME.pc from its template for the prefix actually installed to, then
# installs it (DESTDIR honoured, listed in install_manifest.txt).
# In: CTXVARS_PC_TEMPLATE, CTXVARS_PC_OUT, CTXVARS_PC_DIR, CTXVARS_PC_LIBDIR,
#     CTXVARS_PC_INCLUDEDIR (relative to the prefix, or absolute), PROJECT_VERSION,
#     PROJECT_DESCRIPTION and the template's own variables.
set(CTXVARS_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
foreach(_kind LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CTXVARS_PC_${_kind}}")
    set(CTXVARS_PC_${_kind}_VALUE "${CTXVARS_PC_${_kind}}")
  else()
    set(CTXVARS_PC_${_kind}_VALUE "\${prefix}/${CTXVARS_PC_${_kind}}")
  endif()
endforeach()
configure_file("${CTXVARS_PC_TEMPLATE}" "${CTXVARS_PC_OUT}" @ONLY)
if(IS_ABSOLUTE "${CTXVARS_PC_DIR}")
  set(_dest "${CTXVARS_PC_DIR}")
else()
  set(_dest "${CMAKE_INSTALL_PREFIX}/${CTXVARS_PC_DIR}")
endif()
file(INSTALL DESTINATION "${_dest}" TYPE FILE FILES "${CTXVARS_PC_OUT}")
