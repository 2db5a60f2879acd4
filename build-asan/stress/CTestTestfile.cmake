# CMake generated Testfile for 
# Source directory: /work/main/stress
# Build directory: /work/main/build-asan/stress
# 
# This file includes the relevant testing commands required for 
# testing this directory and lists subdirectories to be tested as well.
