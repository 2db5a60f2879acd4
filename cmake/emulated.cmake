# Where tests find the programs they run: the built programs themselves,
# or, in a cross build with an emulator (cmake/aarch64-linux-gnu.cmake),
# small sh wrappers in ${PROJECT_BINARY_DIR}/qemu-bin that run them under
# the emulator.  A target program cannot exec another one directly there:
# without binfmt_misc the kernel does not know the foreign binary, so the
# reaper ($FOUNDATION_REAPERD), the tools of the shell tests (BIN_DIR) and
# the tests' child programs are named by their wrappers.
#
#   FDN_EMULATED      the emulator's name (qemu-aarch64), "" when native;
#                     tests get it as $FOUNDATION_TEST_EMULATED and skip,
#                     with the reason printed, what it cannot run
#   FDN_RUN_DIR       the directory holding foundation-ctl, -inspect,
#                     -reaperd and -demo as the tests should run them
#   fdn_run_path(VAR TARGET)  the path a test should exec for TARGET
#   FDN_TEST_ENV      environment entries every test gets
#   fdn_test_env(TEST [VAR=VALUE...])  set TEST's ENVIRONMENT to FDN_TEST_ENV
#                     and the entries given
set(FDN_EMULATED "")
set(FDN_TEST_ENV "")
if(CMAKE_CROSSCOMPILING AND CMAKE_CROSSCOMPILING_EMULATOR)
  if(CMAKE_VERSION VERSION_LESS 3.20)
    message(FATAL_ERROR "the emulated tests need CMake 3.20 (file(GENERATE ... FILE_PERMISSIONS))")
  endif()
  list(GET CMAKE_CROSSCOMPILING_EMULATOR 0 fdn_emu0)
  get_filename_component(FDN_EMULATED ${fdn_emu0} NAME)
  set(FDN_RUN_DIR ${PROJECT_BINARY_DIR}/qemu-bin)
  set(FDN_TEST_ENV "FOUNDATION_TEST_EMULATED=${FDN_EMULATED}")
  set(fdn_emu_cmd "")
  foreach(a ${CMAKE_CROSSCOMPILING_EMULATOR})
    string(APPEND fdn_emu_cmd "'${a}' ")
  endforeach()
  # One wrapper per program, and qemu-run PROGRAM ARGS... for programs
  # built outside CMake (tests/readme_example.sh).
  foreach(t foundation-ctl foundation-inspect foundation-reaperd foundation-demo trace_child
      reexec_child)
    file(GENERATE OUTPUT ${FDN_RUN_DIR}/${t}
      CONTENT "#!/bin/sh\nexec ${fdn_emu_cmd}'$<TARGET_FILE:${t}>' \"$@\"\n"
      FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE
      WORLD_READ WORLD_EXECUTE)
  endforeach()
  file(GENERATE OUTPUT ${FDN_RUN_DIR}/qemu-run
    CONTENT "#!/bin/sh\nexec ${fdn_emu_cmd}\"$@\"\n"
    FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE
    WORLD_READ WORLD_EXECUTE)
  function(fdn_run_path var target)
    set(${var} ${FDN_RUN_DIR}/${target} PARENT_SCOPE)
  endfunction()
else()
  set(FDN_RUN_DIR $<TARGET_FILE_DIR:foundation-ctl>)
  function(fdn_run_path var target)
    set(${var} $<TARGET_FILE:${target}> PARENT_SCOPE)
  endfunction()
endif()

function(fdn_test_env test)
  set(env ${FDN_TEST_ENV} ${ARGN})
  if(env)
    set_tests_properties(${test} PROPERTIES ENVIRONMENT "${env}")
  endif()
endfunction()
