#!/usr/bin/env bash
# Builds core/, models/ (and the other libraries) and the qins command line with clang, the
# compiler macOS uses, warnings on (cmake/QinsWarnings.cmake: -Wall -Wextra) and turned into
# errors (CMAKE_COMPILE_WARNING_AS_ERROR; third-party headers are system includes, so only our
# code counts). No Qt app, tests or benchmarks: this is the compile check; the tests run in the
# g++ build (scripts/test.sh). Installs clang and libomp-dev if missing. Build folder:
# ${QINS_CLANG_BUILD_DIR:-build-clang}. Exit status: non-zero on any warning or error.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${QINS_CLANG_BUILD_DIR:-$root/build-clang}
start=$(date +%s)
missing=()
for p in clang libomp-dev cmake ninja-build pkg-config; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "test-clang: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_COMPILE_WARNING_AS_ERROR=ON \
  -DQINS_BUILD_APP=OFF -DQINS_BUILD_TESTS=OFF -DQINS_BUILD_BENCHMARKS=OFF "${launcher[@]}" >/dev/null
cmake --build "$build" -j "${QINS_JOBS:-$(nproc)}"
"$build/app/cli/qins" --help >/dev/null
echo "test-clang: $("$build/app/cli/qins" --version 2>/dev/null || echo qins) built with $(clang++ --version | head -1), -Wall -Wextra -Werror, in $(( $(date +%s) - start )) s"
