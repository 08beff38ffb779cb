#!/usr/bin/env bash
# Builds every libFuzzer target (clang, ASan) and starts each on its seed corpus (fuzz/seeds/) for
# a few seconds, so a target that cannot start, or a seed that crashes, is a red build. Not a
# fuzzing campaign: docs/file-format.md "Fuzzing" says how to run one.
# Usage: scripts/test-fuzz.sh   (QINS_FUZZ_SECONDS per target, default 10; QINS_FUZZ_BUILD_DIR)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${QINS_FUZZ_BUILD_DIR:-$root/build-fuzz}
seconds=${QINS_FUZZ_SECONDS:-10}

missing=()
for p in clang libclang-rt-14-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "test-fuzz: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

targets=()
for src in "$root"/fuzz/fuzz_*.cpp; do targets+=("$(basename "$src" .cpp)"); done
CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DQINS_BUILD_APP=OFF -DQINS_BUILD_TESTS=OFF -DQINS_BUILD_BENCHMARKS=OFF -DQINS_BUILD_FUZZERS=ON > /dev/null
cmake --build "$build" -j "${QINS_JOBS:-$(nproc)}" --target "${targets[@]}" > "$build/build.log" || { tail -40 "$build/build.log"; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0 failed=0
for t in "${targets[@]}"; do
  seeds="$root/fuzz/seeds/${t#fuzz_}"
  corpus="$work/$t"
  mkdir -p "$corpus"
  [ -d "$seeds" ] && cp "$seeds"/* "$corpus"/
  # -detect_leaks=0: libtorch and SentencePiece keep process-lifetime allocations.
  if (cd "$work" && ASAN_OPTIONS=detect_leaks=0 "$build/fuzz/$t" "$corpus" -max_total_time="$seconds" \
        -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 > "$work/$t.log" 2>&1); then
    echo "test-fuzz: $t ran $(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/$t.log" | grep -o '[0-9]*$') inputs from $(ls "$seeds" 2>/dev/null | wc -l) seeds: ok"
    passed=$((passed + 1))
  else
    echo "test-fuzz: $t FAILED"; tail -40 "$work/$t.log"
    failed=$((failed + 1))
  fi
done
echo "fuzz: $passed passed, $failed failed" | tee "$build/summary.log"
[ "$failed" -eq 0 ]
