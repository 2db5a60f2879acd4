# Cross-compile for arm64 (aarch64) Linux on a Debian amd64 host with
# gcc-aarch64-linux-gnu and the arm64 -dev packages installed through
# multiarch (dpkg --add-architecture arm64): `sh cmake/bootstrap.sh arm64`.
#
#   cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
#
# Test programs run under qemu-user (CMAKE_CROSSCOMPILING_EMULATOR), so
# ctest works without binfmt_misc.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(FDN_TRIPLE aarch64-linux-gnu)

set(CMAKE_C_COMPILER ${FDN_TRIPLE}-gcc)

# The target's headers and libraries: the cross toolchain's own root and the
# multiarch directories the :arm64 packages install into.
set(CMAKE_FIND_ROOT_PATH /usr/${FDN_TRIPLE} /usr/lib/${FDN_TRIPLE})
set(CMAKE_LIBRARY_ARCHITECTURE ${FDN_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# pkg-config answers for the target: only its .pc files, paths unchanged
# (multiarch files live under /usr, not under a sysroot).
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/${FDN_TRIPLE}/pkgconfig:/usr/share/pkgconfig)
set(ENV{PKG_CONFIG_PATH} "")
set(ENV{PKG_CONFIG_SYSROOT_DIR} "")

# Run target programs (ctest, try_run) under qemu user-mode emulation with
# the target's dynamic loader and libraries.
find_program(FDN_QEMU NAMES qemu-aarch64 qemu-aarch64-static)
if(FDN_QEMU)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${FDN_QEMU} -L /usr/${FDN_TRIPLE})
endif()
