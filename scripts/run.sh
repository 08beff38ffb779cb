#!/usr/bin/env bash
# Builds QINS Chat (installing what is missing) and starts it on the built-in model:
# the desktop app when a display is available, otherwise the terminal chat.
# Usage: scripts/run.sh [--cli] [MODEL]     (MODEL: a .qins file or a Hugging Face folder)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${QINS_BUILD_DIR:-$root/build}
cli=0
if [ "${1:-}" = "--cli" ]; then cli=1; shift; fi
"$root/scripts/setup.sh" >&2

model=${1:-${QINS_MODEL:-}}
if [ -z "$model" ]; then
  if [ -f "$root/models/demo/config.json" ]; then
    model="$root/models/demo"
  else
    # No trained model in this checkout: a tiny random-weight Phi-3 (it chats, but nonsense).
    model="$build/fixture-model"
    [ -f "$model/config.json" ] || "$build/app/cli/qins" fixture "$model" >&2
  fi
fi

if [ "$cli" -eq 0 ] && [ -x "$build/app/gui/qins-chat" ] && { [ -n "${DISPLAY:-}" ] || [ -n "${WAYLAND_DISPLAY:-}" ]; }; then
  exec "$build/app/gui/qins-chat" "$model"
fi
# Folders are quantized to QINS codes at load (projective), as the app does; .qins files load as they are.
exec "$build/app/cli/qins" chat "$model" --weights projective
