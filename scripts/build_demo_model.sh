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

# Model and schedule (docs/demo-model.md says how they were chosen): 2.95 M parameters, a
# 52-minute budget on the shared 2-core machine. Without --steps the cosine schedule follows
# wall time, so a rerun sees a different number of steps (not bit-reproducible; a run with
# --steps is). --threads 1: on the loaded machine two intra-op threads were 4x slower (measured).
"$qins" train --corpus build/corpus -o "$out" \
  --hidden 192 --layers 4 --heads 3 --kv-heads 3 --intermediate 512 --vocab 3000 \
  --seq 256 --batch 8 --lr 3e-3 --warmup 50 --minutes 52 --seed 1 \
  --checkpoint-every 100 --eval-every 100 --eval-rows 24 --final-eval-rows 400 --log-every 10 \
  --dtype bf16 --threads 1

# The checkpoint (weights + optimizer state, f32) is for resuming only; it is not committed.
rm -f "$out/checkpoint.pt"
py=python3; python3 -c "import matplotlib" 2>/dev/null || py=/usr/bin/python3  # Debian's python3-matplotlib
"$py" scripts/plot_loss.py --log "$out/train_log.csv" --out docs/images/demo-loss.png || true
