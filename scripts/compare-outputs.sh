#!/usr/bin/env bash
# Behaviour check across a refactor: runs two builds of `qins` on the same inputs and compares
# what they produce — greedy replies (token ids) on the demo model and a fixture model, the same
# from their .qins conversions, the bytes `qins convert` writes for the demo model, the fixture
# folder's files, and `qins inspect --json`.
# Usage: scripts/compare-outputs.sh OLD_QINS NEW_QINS [WORK_DIR]
# Exit status 0 when everything that must match does. (The fixture's tokenizer.model differs from
# run to run — SentencePiece training is not byte-deterministic — so it and what embeds it are
# compared by content where it matters: greedy ids.)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
old=$1 new=$2 work=${3:-$(mktemp -d)}
run() {  # run QINS OUT
  local q=$1 o=$2
  rm -rf "$o"; mkdir -p "$o"
  "$q" fixture "$o/fix" > /dev/null
  (cd "$o" && find fix -type f ! -name tokenizer.model | sort | xargs sha256sum) > "$o/fixture.sha"
  for m in "$root/models/demo" "$o/fix"; do
    for p in "What does ephemeral mean?" "Define the word lantern."; do
      "$q" generate "$m" --prompt "$p" --temperature 0 --max-tokens 48 --ids >> "$o/greedy.txt" 2>&1
    done
  done
  "$q" convert "$root/models/demo" -o "$o/demo.qins" > /dev/null
  "$q" convert "$o/fix" -o "$o/fix.qins" --codebook inverse > /dev/null
  for m in "$o/demo.qins" "$o/fix.qins"; do
    "$q" generate "$m" --prompt "What does ephemeral mean?" --temperature 0 --max-tokens 48 --ids >> "$o/greedy_qins.txt" 2>&1
    "$q" generate "$m" --prompt "The cat" --raw --temperature 0 --max-tokens 32 --ids >> "$o/greedy_qins.txt" 2>&1
  done
  "$q" inspect "$o/demo.qins" --json | grep -v '"path"' > "$o/inspect.json"
}
run "$old" "$work/old"
run "$new" "$work/new"
status=0
check() {
  if cmp -s "$work/old/$1" "$work/new/$1"; then echo "same: $2"; else echo "DIFFERENT: $2 ($work/{old,new}/$1)"; status=1; fi
}
check greedy.txt "greedy replies (demo model, fixture folder)"
check greedy_qins.txt "greedy replies from the converted .qins files"
check demo.qins "qins convert models/demo: the file's bytes"
check inspect.json "qins inspect --json of the converted demo model"
check fixture.sha "qins fixture: every file but tokenizer.model"
exit $status
