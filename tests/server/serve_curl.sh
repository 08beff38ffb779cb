#!/usr/bin/env bash
# `qins serve` as a process, driven by curl: /health while loading and when ready, a chat request
# without and with streaming (curl -N, checked event by event), an error body, and SIGTERM while a
# stream runs: the stream still ends with [DONE] and the process exits 0.
# Usage: serve_curl.sh PATH/TO/qins
set -euo pipefail
qins=$1
work=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "serve_curl: FAIL: $*" >&2
  echo "--- qins serve log:" >&2
  cat "$work/serve.log" >&2 || true
  exit 1
}

"$qins" fixture "$work/model" >/dev/null
"$qins" serve "$work/model" --port 0 2>"$work/serve.log" &
pid=$!

port=
for _ in $(seq 1 600); do
  port=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9][0-9]*\).*|\1|p' "$work/serve.log")
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || fail "no 'listening on' line"
base=http://127.0.0.1:$port

ready=
for _ in $(seq 1 1200); do
  code=$(curl -s -o /dev/null -w '%{http_code}' "$base/health" || true)
  case "$code" in
    200) ready=1; break ;;
    503) ;;  # loading
    *) fail "/health answered '$code'" ;;
  esac
  sleep 0.1
done
[ -n "$ready" ] || fail "the server never became ready"

# Not streamed.
curl -sS -f "$base/v1/chat/completions" -H 'Content-Type: application/json' \
  -d '{"messages":[{"role":"user","content":"Hello"}],"temperature":0,"max_tokens":12}' >"$work/chat.json" ||
  fail "chat request"
# Streamed, read as it comes (-N).
curl -sS -f -N "$base/v1/chat/completions" -H 'Content-Type: application/json' -D "$work/stream.headers" \
  -d '{"messages":[{"role":"user","content":"Hello"}],"temperature":0,"max_tokens":12,"stream":true,"stream_options":{"include_usage":true}}' \
  >"$work/stream.txt" || fail "streamed chat request"
# An error body.
code=$(curl -sS -o "$work/error.json" -w '%{http_code}' "$base/v1/chat/completions" -H 'Content-Type: application/json' \
  -d '{"messages":"oops"}')
[ "$code" = 400 ] || fail "malformed request answered $code"

python3 - "$work" <<'EOF' || fail "response check"
import json, sys
work = sys.argv[1]
chat = json.load(open(f"{work}/chat.json"))
assert chat["object"] == "chat.completion", chat
text = chat["choices"][0]["message"]["content"]
assert chat["usage"]["completion_tokens"] > 0, chat
headers = open(f"{work}/stream.headers").read().lower()
assert "content-type: text/event-stream" in headers, headers
raw = open(f"{work}/stream.txt").read()
events = raw.split("\n\n")
assert events[-1] == "", "stream does not end with a blank line"
events = events[:-1]
assert all(e.startswith("data: ") for e in events), events
payloads = [e[len("data: "):] for e in events]
assert payloads[-1] == "[DONE]", payloads[-1]
chunks = [json.loads(p) for p in payloads[:-1]]
assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
assert streamed == text, (streamed, text)
assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == chat["usage"]["completion_tokens"]
err = json.load(open(f"{work}/error.json"))["error"]
assert err["param"] == "messages" and err["type"] == "invalid_request_error", err
print("serve_curl: responses ok")
EOF

# SIGTERM while a long stream runs: it is finished (drained), then the process exits 0.
curl -sS -N "$base/v1/completions" -H 'Content-Type: application/json' \
  -d '{"prompt":"the cat sat on the mat","temperature":0,"max_tokens":3000,"stream":true,"stream_options":{"include_usage":true}}' \
  >"$work/long.txt" &
curl_pid=$!
for _ in $(seq 1 600); do
  grep -q '^data: ' "$work/long.txt" 2>/dev/null && break
  sleep 0.05
done
grep -q '^data: ' "$work/long.txt" || fail "the long stream never started"
grep -q '^data: \[DONE\]' "$work/long.txt" && echo "serve_curl: note: the long stream ended before SIGTERM"
kill -TERM "$pid"
wait "$curl_pid" || fail "the long stream's curl failed"
status=0
wait "$pid" || status=$?
pid=
[ "$status" = 0 ] || fail "qins serve exited with $status after SIGTERM"
tail -c 200 "$work/long.txt" | grep -q '^data: \[DONE\]' || fail "the stream in flight was cut by SIGTERM"
python3 - "$work/long.txt" <<'EOF' || fail "drained stream check"
import json, sys
events = [e[len("data: "):] for e in open(sys.argv[1]).read().split("\n\n") if e]
usage = json.loads(events[-2])["usage"]
finish = [json.loads(e)["choices"][0]["finish_reason"] for e in events[:-2]][-1]
assert finish in ("length", "stop"), finish
print(f"serve_curl: drained stream ok ({usage['completion_tokens']} tokens, finish {finish})")
EOF
grep -q "qins serve: stopped after" "$work/serve.log" || fail "no shutdown line"
echo "serve_curl: ok"
