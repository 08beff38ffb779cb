#!/usr/bin/env bash
# Installs the Debian 12 packages QINS Chat needs (only those missing), makes sure OpenBLAS
# backs libblas.so.3, then configures and builds into build/ (override with QINS_BUILD_DIR).
# Usage: scripts/setup.sh [extra cmake -D options...]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${QINS_BUILD_DIR:-$root/build}

packages=(
  build-essential cmake ninja-build pkg-config git
  libtorch-dev libopenblas0-pthread libopenblas-dev
  libsentencepiece-dev sentencepiece libzstd-dev libxxhash-dev nlohmann-json3-dev libcli11-dev
  libcurl4-openssl-dev libssl-dev libcpp-httplib-dev curl
  libgtest-dev libgmock-dev libbenchmark-dev
  qt6-base-dev qt6-declarative-dev qt6-tools-dev libgl-dev libqt6sql6-sqlite
  qml6-module-qtquick qml6-module-qtquick-controls qml6-module-qtquick-layouts
  qml6-module-qtquick-window qml6-module-qtquick-templates qml6-module-qtqml-workerscript
  qml6-module-qtquick-dialogs qml6-module-qtcore qml6-module-qt-labs-settings
  wordnet-base
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Debian's libtorch calls the generic libblas.so.3; the reference BLAS is ~15x slower than OpenBLAS.
blas_link=$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 2>/dev/null || true)
if [[ "$blas_link" != *openblas* ]]; then
  openblas=$(ls /usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3 2>/dev/null || true)
  if [ -n "$openblas" ]; then
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" update-alternatives --set libblas.so.3-x86_64-linux-gnu "$openblas"
    blas_link=$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3)
  fi
fi
if [[ "$blas_link" == *openblas* ]]; then
  echo "setup: libblas.so.3 -> $blas_link (OpenBLAS)"
else
  echo "setup: WARNING: libblas.so.3 -> $blas_link is not OpenBLAS; matrix products will be slow" >&2
fi

jobs=${QINS_JOBS:-$(nproc)}
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@"
cmake --build "$build" -j "$jobs"
