# CMake generated Testfile for 
# Source directory: /work/main/bench
# Build directory: /work/main/build-asan/bench
# 
# This file includes the relevant testing commands required for 
# testing this directory and lists subdirectories to be tested as well.
add_test(bench_quick "/work/main/build-asan/bench/fdn-bench" "--quick")
set_tests_properties(bench_quick PROPERTIES  LABELS "bench" _BACKTRACE_TRIPLES "/work/main/bench/CMakeLists.txt;22;add_test;/work/main/bench/CMakeLists.txt;0;")
