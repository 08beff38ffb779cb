#!/usr/bin/env bash
# Builds everything (installing what is missing) and runs every test. Exit status: non-zero on any failure.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${QINS_BUILD_DIR:-$root/build}
"$root/scripts/setup.sh" "$@"
export QT_QPA_PLATFORM=${QT_QPA_PLATFORM:-offscreen}
start=$(date +%s)
ctest --test-dir "$build" --output-on-failure -j "${QINS_TEST_JOBS:-2}" --timeout 900
echo "test.sh: all tests passed in $(( $(date +%s) - start )) s"
