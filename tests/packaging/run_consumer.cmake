# ctest driver: configure, build and run the consumer project.
# -DMODE=find_package|subdirectory -DSRC= -DBIN= -DPREFIX= -DCXX= -DGEN=
file(REMOVE_RECURSE ${BIN})
execute_process(COMMAND ${CMAKE_COMMAND} -S ${SRC}/tests/packaging/consumer -B ${BIN} -G ${GEN}
                        -DCMAKE_CXX_COMPILER=${CXX} -DCTXVARS_MODE=${MODE} -DCTXVARS_SOURCE_DIR=${SRC}
                        -DCMAKE_PREFIX_PATH=${PREFIX} -DCMAKE_BUILD_TYPE=Release
                RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "configure failed")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${BIN} RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "build failed")
endif()
foreach(exe consumer consumer_asio)
  execute_process(COMMAND ${BIN}/${exe} RESULT_VARIABLE rc)
  if(rc)
    message(FATAL_ERROR "${exe} failed")
  endif()
endforeach()
