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

# FDN_TARGET_EXTRA_ROOT: a directory holding target packages unpacked
# without dpkg (dpkg-deb -x), for -dev packages that cannot be installed
# beside the host's through multiarch (libcriterion-dev:arm64 needs
# libnanomsg5:arm64, which conflicts with libnanomsg5:amd64).  Its .pc
# files name their own prefix; its libraries are found at run time through
# the emulator's LD_LIBRARY_PATH.
set(FDN_TARGET_EXTRA_ROOT "" CACHE PATH "unpacked target packages (see cmake/bootstrap.sh arm64)")
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES FDN_TARGET_EXTRA_ROOT)
set(FDN_TARGET_LIBDIRS /usr/lib/${FDN_TRIPLE})
if(FDN_TARGET_EXTRA_ROOT)
  set(FDN_TARGET_LIBDIRS ${FDN_TARGET_EXTRA_ROOT}/usr/lib/${FDN_TRIPLE} ${FDN_TARGET_LIBDIRS})
  list(APPEND CMAKE_FIND_ROOT_PATH ${FDN_TARGET_EXTRA_ROOT})
endif()

# pkg-config answers for the target: only its .pc files, paths unchanged
# (multiarch files live under /usr, not under a sysroot).
set(FDN_PC_LIBDIR "")
foreach(d ${FDN_TARGET_LIBDIRS})
  string(APPEND FDN_PC_LIBDIR "${d}/pkgconfig:")
endforeach()
set(ENV{PKG_CONFIG_LIBDIR} "${FDN_PC_LIBDIR}/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")
set(ENV{PKG_CONFIG_SYSROOT_DIR} "")

# Run target programs (ctest, try_run) under qemu user-mode emulation.  With
# the multiarch C library installed (libc6:arm64, /lib/ld-linux-aarch64.so.1)
# the programs run on it as they would on an arm64 Debian: no -L.  -L
# /usr/aarch64-linux-gnu (libc6-arm64-cross) only without it: with both, the
# cross ld.so finds the multiarch libc.so.6 first (ld.so.cache), a
# different build of glibc, and threads and fork then hang.
find_program(FDN_QEMU NAMES qemu-aarch64 qemu-aarch64-static)
if(FDN_QEMU)
  if(EXISTS /lib/ld-linux-aarch64.so.1)
    set(CMAKE_CROSSCOMPILING_EMULATOR ${FDN_QEMU})
  else()
    set(CMAKE_CROSSCOMPILING_EMULATOR ${FDN_QEMU} -L /usr/${FDN_TRIPLE})
  endif()
  if(FDN_TARGET_EXTRA_ROOT)
    list(APPEND CMAKE_CROSSCOMPILING_EMULATOR
      -E LD_LIBRARY_PATH=${FDN_TARGET_EXTRA_ROOT}/usr/lib/${FDN_TRIPLE})
  endif()
endif()
