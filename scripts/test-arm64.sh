#!/usr/bin/env bash
# Cross-compiles core/ (and the Phi-3 graph library) for aarch64 and runs the core tests -- the
# NEON kernels against their scalar twin, every codebook, the awkward shapes, batch 1 and the
# prefill tiles -- under qemu-user. Exit status: non-zero on any failure.
#
# Installs what is missing on the host (g++-aarch64-linux-gnu, qemu-user, cmake, ninja, pkg-config)
# with apt-get. The arm64 libraries (libtorch1.13 and what it needs at run time, libtorch-dev's
# headers, gtest, the -dev packages the top-level CMakeLists.txt asks for) are downloaded as
# Debian arm64 packages by a private apt state under the build folder (its own package lists and
# an empty dpkg status: nothing is installed on the host and `dpkg --add-architecture` is not
# needed) and unpacked with dpkg-deb -x into a sysroot. Everything stays under
# ${QINS_ARM64_DIR:-build-arm64}/ {apt/, sysroot/, build/}; a second run reuses the sysroot.
#
# Usage: scripts/test-arm64.sh   (QINS_ARM64_DIR: the build folder; QINS_JOBS: build jobs)
# The graph library is compiled for aarch64 too; its tests (which link most of models/) do not
# run under emulation yet.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
top=${QINS_ARM64_DIR:-$root/build-arm64}
sysroot=$top/sysroot
build=$top/build
[ $# -eq 0 ] || { echo "usage: scripts/test-arm64.sh (no arguments)" >&2; exit 2; }
t0=$(date +%s)
rm -f "$top/test_core.log"  # .ci/run reports this log: never a previous run's
phase_start=$t0
phase() {  # phase NAME: prints the time the previous phase took
  local now; now=$(date +%s)
  echo "test-arm64: [$1] $((now - phase_start)) s"
  phase_start=$now
}
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)

# --- 1. host tools ---------------------------------------------------------------------------
host_packages=(g++-aarch64-linux-gnu cmake ninja-build pkg-config)
command -v qemu-aarch64 >/dev/null || command -v qemu-aarch64-static >/dev/null || host_packages+=(qemu-user)
missing=()
for p in "${host_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "test-arm64: installing ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
qemu=$(command -v qemu-aarch64-static || command -v qemu-aarch64)
phase "host tools"

# --- 2. the arm64 sysroot ----------------------------------------------------------------------
# Resolved with their dependencies (what the loader needs to start a program linked to libtorch:
# libtorch_cpu.so names opencv, ffmpeg, protobuf, ... directly).
arm64_packages=(libtorch1.13 libopenblas0-pthread libgflags-dev libgoogle-glog-dev libprotobuf-dev
                libgtest-dev libzstd-dev libxxhash-dev libsentencepiece-dev nlohmann-json3-dev libcli11-dev
                libcurl4-openssl-dev libssl-dev libcpp-httplib-dev)
# Downloaded alone: libtorch-dev (headers, CMake files) would pull python3-dev, which nothing here uses.
arm64_nodeps=(libtorch-dev)
# Not unpacked: libc headers and link stubs come from the cross toolchain (a second copy in the
# sysroot's include dir would shadow them), and a GL driver nothing loads.
skip_re='^(libc6-dev|libc-dev-bin|linux-libc-dev|libcrypt-dev|libtirpc-dev|libnsl-dev|rpcsvc-proto|libllvm[0-9]+|libz3-4|libgl1-mesa-dri)_'
stamp_want="packages: ${arm64_packages[*]} | ${arm64_nodeps[*]} | skip: $skip_re"
if [ ! -f "$sysroot/.qins-sysroot" ] || [ "$(cat "$sysroot/.qins-sysroot")" != "$stamp_want" ]; then
  apt_dir=$top/apt
  rm -rf "$sysroot" "$apt_dir"
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$sysroot"
  : > "$apt_dir/status"
  apt_opts=(-o APT::Architecture=arm64 -o "APT::Architectures::=arm64"
            -o "Dir::State::status=$apt_dir/status" -o "Dir::State::lists=$apt_dir/lists"
            -o "Dir::Cache=$apt_dir/cache" -o Debug::NoLocking=1)
  # As root apt downloads as user _apt, who may not write under the build folder.
  [ "$(id -u)" -ne 0 ] || apt_opts+=(-o APT::Sandbox::User=root)
  echo "test-arm64: arm64 package lists into $apt_dir"
  apt-get "${apt_opts[@]}" update -q
  echo "test-arm64: downloading ${arm64_packages[*]} (+ dependencies) and ${arm64_nodeps[*]}"
  apt-get "${apt_opts[@]}" install --download-only -y -q --no-install-recommends "${arm64_packages[@]}" >/dev/null
  (cd "$apt_dir/cache/archives" && apt-get "${apt_opts[@]}" download -q "${arm64_nodeps[@]}")
  phase "arm64 packages downloaded"
  n=0
  for deb in "$apt_dir"/cache/archives/*.deb; do
    [[ "$(basename "$deb")" =~ $skip_re ]] && continue
    dpkg-deb -x "$deb" "$sysroot"
    n=$((n + 1))
  done
  # What update-alternatives would have made: libtorch needs libblas.so.3 / liblapack.so.3, and
  # OpenBLAS's libblas.so.3 needs libopenblas.so.0.
  libdir=$sysroot/usr/lib/aarch64-linux-gnu
  for l in libblas.so.3 liblapack.so.3 libopenblas.so.0; do
    [ -e "$libdir/$l" ] || ln -sf "openblas-pthread/$l" "$libdir/$l"
  done
  # The packages' own .deb files are not needed again.
  rm -rf "$apt_dir/cache"
  echo "$stamp_want" > "$sysroot/.qins-sysroot"
  echo "test-arm64: unpacked $n arm64 packages into $sysroot ($(du -sh "$sysroot" | cut -f1))"
  phase "sysroot unpacked"
fi

# --- 3. cross-build ------------------------------------------------------------------------------
# The toolchain file is read once per build tree (its *_INIT flags seed the cache): a changed
# toolchain file means a fresh configure.
tc_sum=$(sha256sum "$root/cmake/toolchain-aarch64.cmake" | cut -d' ' -f1)
if [ -f "$build/CMakeCache.txt" ] && [ "$(cat "$build/.qins-toolchain" 2>/dev/null)" != "$tc_sum" ]; then
  rm -rf "$build/CMakeCache.txt" "$build/CMakeFiles"
fi
mkdir -p "$build" && echo "$tc_sum" > "$build/.qins-toolchain"
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_TOOLCHAIN_FILE="$root/cmake/toolchain-aarch64.cmake" -DQINS_ARM64_SYSROOT="$sysroot" \
  -DQINS_BUILD_APP=OFF -DQINS_BUILD_BENCHMARKS=OFF -DQINS_BUILD_TESTS=ON "${launcher[@]}" >/dev/null
targets=(test_core qins_graph)
jobs=${QINS_JOBS:-$(nproc)}
cmake --build "$build" -j "$jobs" --target "${targets[@]}"
phase "cross-build (${targets[*]})"

# --- 4. run under qemu -----------------------------------------------------------------------------
readelf -h "$build/tests/core/test_core" | grep -q AArch64 || { echo "test-arm64: test_core is not an AArch64 binary" >&2; exit 1; }
echo "test-arm64: running under $qemu -L $sysroot ($("$qemu" --version | head -1))"
# One process per binary: under qemu each start (libtorch's static initialisers) costs ~15 s, so
# the binary runs all its tests at once rather than one ctest process per test.
export QT_QPA_PLATFORM=offscreen
run_tests() {  # run_tests BINARY: all its tests under qemu, output kept for the checks below
  local log=$top/$(basename "$1").log
  local rc=0
  "$qemu" -L "$sysroot" "$1" 2>&1 | tee "$log" || rc=$?
  ((rc == 0)) || { echo "test-arm64: $(basename "$1") FAILED under qemu (exit $rc)" >&2; exit 1; }
}
run_tests "$build/tests/core/test_core"
# The kernel tests iterate available_kernel_isas(): the NEON path must be there and chosen (this
# test passes, not skips, only on an aarch64 build whose CPU runs NEON).
grep -q '^\[       OK \] Kernels.NeonIsAvailableAndDefaultOnArm64' "$top/test_core.log" ||
  { echo "test-arm64: the NEON kernel path was not available and active under qemu" >&2; exit 1; }
summary=$(grep -E '^\[  PASSED  \] [0-9]+ tests?' "$top/test_core.log")
echo "test-arm64: test_core under qemu-aarch64: $summary (neon and scalar kernel paths)"
phase "tests under qemu"
echo "test-arm64: all arm64 tests passed in $(( $(date +%s) - t0 )) s"
