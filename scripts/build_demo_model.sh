#!/usr/bin/env bash
# Rebuilds the built-in demo model (models/demo/) exactly as committed: the WordNet chat corpus,
# then `qins train` with the settings below. docs/demo-model.md records the run's time and numbers.
# Usage: scripts/build_demo_model.sh [out_dir (default models/demo)]
# Needs: wordnet-base (scripts/setup.sh), a build with the CLI (build/app/cli/qins).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
out=${1:-models/demo}
qins=${QINS_BIN:-build/app/cli/qins}
[ -x "$qins" ] || { echo "build_demo_model: $qins not found; build it first (cmake --build build --target qins)" >&2; exit 1; }

python3 scripts/build_corpus.py --out build/corpus --seed 1234

# Model and schedule (see docs/demo-model.md for how they were chosen): ~4 M parameters,
# 1-hour budget on a shared 2-core machine. --minutes stops the run; --steps lays out the
# cosine schedule (deterministic given --seed).
"$qins" train --corpus build/corpus -o "$out" \
  --hidden 256 --layers 4 --heads 4 --kv-heads 4 --intermediate 688 --vocab 4000 \
  --seq 256 --batch 16 --lr 3e-3 --warmup 200 --steps 1000 --minutes 55 --seed 1 \
  --checkpoint-every 100 --eval-every 100 --dtype bf16

# The checkpoint (weights + optimizer state, f32) is for resuming only; it is not committed.
rm -f "$out/checkpoint.pt"
python3 scripts/plot_loss.py --log "$out/train_log.csv" --out docs/images/demo-loss.png || true
