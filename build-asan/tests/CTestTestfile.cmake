# CMake generated Testfile for 
# Source directory: /work/main/tests
# Build directory: /work/main/build-asan/tests
# 
# This file includes the relevant testing commands required for 
# testing this directory and lists subdirectories to be tested as well.
add_test(test_errors "/work/main/build-asan/tests/test_errors" "-j2" "--short-filename")
set_tests_properties(test_errors PROPERTIES  LABELS "unit" TIMEOUT "600" _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;9;add_test;/work/main/tests/CMakeLists.txt;13;fdn_test;/work/main/tests/CMakeLists.txt;0;")
add_test(test_segment "/work/main/build-asan/tests/test_segment" "-j2" "--short-filename")
set_tests_properties(test_segment PROPERTIES  LABELS "unit" TIMEOUT "600" _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;9;add_test;/work/main/tests/CMakeLists.txt;14;fdn_test;/work/main/tests/CMakeLists.txt;0;")
add_test(test_table "/work/main/build-asan/tests/test_table" "-j2" "--short-filename")
set_tests_properties(test_table PROPERTIES  LABELS "unit" TIMEOUT "600" _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;9;add_test;/work/main/tests/CMakeLists.txt;15;fdn_test;/work/main/tests/CMakeLists.txt;0;")
add_test(test_corrupt "/work/main/build-asan/tests/test_corrupt" "-j2" "--short-filename")
set_tests_properties(test_corrupt PROPERTIES  LABELS "unit" TIMEOUT "600" _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;9;add_test;/work/main/tests/CMakeLists.txt;16;fdn_test;/work/main/tests/CMakeLists.txt;0;")
add_test(test_multiproc "/work/main/build-asan/tests/test_multiproc" "-j2" "--short-filename")
set_tests_properties(test_multiproc PROPERTIES  LABELS "multiproc" TIMEOUT "600" _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;9;add_test;/work/main/tests/CMakeLists.txt;17;fdn_test;/work/main/tests/CMakeLists.txt;0;")
add_test(test_rcu "/work/main/build-asan/tests/test_rcu" "-j2" "--short-filename")
set_tests_properties(test_rcu PROPERTIES  LABELS "multiproc" TIMEOUT "600" _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;9;add_test;/work/main/tests/CMakeLists.txt;18;fdn_test;/work/main/tests/CMakeLists.txt;0;")
add_test(test_crash "/work/main/build-asan/tests/test_crash" "-j2" "--short-filename")
set_tests_properties(test_crash PROPERTIES  LABELS "multiproc" TIMEOUT "600" _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;9;add_test;/work/main/tests/CMakeLists.txt;19;fdn_test;/work/main/tests/CMakeLists.txt;0;")
