# Cross-compiling for aarch64 Linux (arm64) from x86-64 Debian with g++-aarch64-linux-gnu.
# The arm64 libraries (libtorch, its dependencies, the -dev packages) are Debian arm64 packages
# unpacked with dpkg-deb -x into QINS_ARM64_SYSROOT (scripts/test-arm64.sh makes it). C library,
# libstdc++ and libgomp headers and link stubs come from the cross toolchain itself
# (/usr/aarch64-linux-gnu), so the sysroot holds no libc headers and no --sysroot is passed.
# Tests run under qemu-user (CMAKE_CROSSCOMPILING_EMULATOR): gtest discovery and ctest both use it.
#
#   cmake -S . -B build-arm64/build -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-aarch64.cmake \
#         -DQINS_ARM64_SYSROOT=$PWD/build-arm64/sysroot ...
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(QINS_ARM64_TRIPLE aarch64-linux-gnu)
set(CMAKE_C_COMPILER ${QINS_ARM64_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${QINS_ARM64_TRIPLE}-g++)

if(NOT QINS_ARM64_SYSROOT AND DEFINED ENV{QINS_ARM64_SYSROOT})
  set(QINS_ARM64_SYSROOT "$ENV{QINS_ARM64_SYSROOT}")
endif()
if(NOT QINS_ARM64_SYSROOT OR NOT IS_DIRECTORY "${QINS_ARM64_SYSROOT}/usr/lib/${QINS_ARM64_TRIPLE}")
  message(FATAL_ERROR "QINS_ARM64_SYSROOT must name the unpacked arm64 packages (scripts/test-arm64.sh makes it)")
endif()
# try_compile projects re-read this file: pass the sysroot on to them.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES QINS_ARM64_SYSROOT)

set(CMAKE_FIND_ROOT_PATH "${QINS_ARM64_SYSROOT}")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
set(CMAKE_LIBRARY_ARCHITECTURE ${QINS_ARM64_TRIPLE})

# libtorch's own dependencies (opencv, ffmpeg, ...) are found through -rpath-link at link time;
# at run time qemu's -L prefix maps /usr/lib/... inside the guest to the sysroot.
# (Some Debian arm64 libraries live in /usr/lib itself: gloo, armadillo, ogdi, hdf4-alt.)
set(_qins_libdirs "${QINS_ARM64_SYSROOT}/usr/lib/${QINS_ARM64_TRIPLE}"
                  "${QINS_ARM64_SYSROOT}/lib/${QINS_ARM64_TRIPLE}"
                  "${QINS_ARM64_SYSROOT}/usr/lib" "${QINS_ARM64_SYSROOT}/lib")
string(REPLACE ";" ":" _qins_rpath_link "${_qins_libdirs}")
set(CMAKE_EXE_LINKER_FLAGS_INIT "-Wl,-rpath-link,${_qins_rpath_link}")
set(CMAKE_SHARED_LINKER_FLAGS_INIT "-Wl,-rpath-link,${_qins_rpath_link}")

# pkg-config: the sysroot's .pc files only, paths prefixed with the sysroot.
set(ENV{PKG_CONFIG_LIBDIR}
    "${QINS_ARM64_SYSROOT}/usr/lib/${QINS_ARM64_TRIPLE}/pkgconfig:${QINS_ARM64_SYSROOT}/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_SYSROOT_DIR} "${QINS_ARM64_SYSROOT}")
set(ENV{PKG_CONFIG_PATH} "")

find_program(QINS_QEMU_AARCH64 NAMES qemu-aarch64-static qemu-aarch64)
if(QINS_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR "${QINS_QEMU_AARCH64};-L;${QINS_ARM64_SYSROOT}")
endif()
