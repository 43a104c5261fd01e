# ctest driver: configure, build and run the consumer project (consumer/).
#   -DMODE=find_package|subdirectory -DCOMPONENTS="core asio ..." -DAVAILABLE="core asio ..."
#   (components: core asio boost_asio fmt spdlog http grpc)
#   -DSRC=<ctxvars source> -DBIN=<scratch build dir> -DPREFIX=<install prefix> -DCXX= -DGEN=
# Prints "SKIPPED:" (ctest's SKIP_REGULAR_EXPRESSION) when a component asked for was not
# configured in this ctxvars build (its Asio or other dependency was not found).
cmake_minimum_required(VERSION 3.21)
separate_arguments(COMPONENTS)
separate_arguments(AVAILABLE)
if(NOT COMPONENTS)
  message("SKIPPED: none of the components asked for was configured in this ctxvars build")
  return()
endif()
foreach(c IN LISTS COMPONENTS)
  if(NOT c IN_LIST AVAILABLE)
    message("SKIPPED: this ctxvars build has no ctxvars::${c} (its dependency was not found at configure time)")
    return()
  endif()
endforeach()

file(REMOVE_RECURSE ${BIN})
execute_process(COMMAND ${CMAKE_COMMAND} -S ${SRC}/tests/packaging/consumer -B ${BIN} -G ${GEN}
                        -DCMAKE_CXX_COMPILER=${CXX} -DCTXVARS_MODE=${MODE} -DCTXVARS_SOURCE_DIR=${SRC}
                        "-DCTXVARS_COMPONENTS=${COMPONENTS}" -DCMAKE_PREFIX_PATH=${PREFIX}
                        -DCMAKE_FIND_PACKAGE_NO_PACKAGE_REGISTRY=ON
                RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "consumer (${MODE}: ${COMPONENTS}): configure failed")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${BIN} RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "consumer (${MODE}: ${COMPONENTS}): build failed")
endif()
foreach(c IN LISTS COMPONENTS)
  if(c STREQUAL "core")
    set(exe consumer)
  else()
    set(exe consumer_${c})
  endif()
  execute_process(COMMAND ${BIN}/${exe} RESULT_VARIABLE rc)
  if(rc)
    message(FATAL_ERROR "${exe} failed (${rc})")
  endif()
endforeach()
file(REMOVE_RECURSE ${BIN})
