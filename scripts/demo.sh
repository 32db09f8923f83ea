#!/usr/bin/env bash
# Starts rwkv-server on loopback, streams a completion and a two-turn session through rwkv-client,
# asks a chat through the OpenAI-compatible HTTP API with the OpenAI Python SDK, prints the
# server's metrics summary, then stops the server with SIGTERM (graceful drain).
set -euo pipefail
BUILD=$1 MODEL=$2 VOCAB=$3
LOG=$(mktemp -t rwkv-demo-XXXX.log)
"$BUILD/server/rwkv-server" --model "$MODEL" --vocab "$VOCAB" --host 127.0.0.1 --port 0 --metrics-port 0 \
  --http-port 0 --state-slots 16 >"$LOG" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; rm -f "$LOG"' EXIT
for _ in $(seq 600); do
  grep -q "msg=ready" "$LOG" && break
  kill -0 $SERVER 2>/dev/null || { cat "$LOG"; exit 1; }
  sleep 0.1
done
cat "$LOG"
echo
echo "NOTE: this demo model has RANDOM weights (made by tests/reference/make_fixtures.py --demo): its text is"
echo "fluent-looking nonsense. The pipeline is real; README.md, 'Serve a real model', runs an official checkpoint."
PORT=$(sed -n 's/.*msg="grpc listening" address=[0-9.]*:\([0-9]*\).*/\1/p' "$LOG")
MPORT=$(sed -n 's/.*msg="metrics listening" address=[0-9.]*:\([0-9]*\).*/\1/p' "$LOG")
HPORT=$(sed -n 's/.*msg="http listening" address=[0-9.]*:\([0-9]*\).*/\1/p' "$LOG")
CLIENT=("$BUILD/client/rwkv-client" --server "127.0.0.1:$PORT")

echo; echo "== rwkv-client info"
"${CLIENT[@]}" info
echo; echo "== rwkv-client generate (streamed)"
"${CLIENT[@]}" generate --prompt $'User: Tell me about RWKV.\n\nAssistant:' --max-tokens 80 --seed 42 --stop $'\n\n'
echo; echo "== a session: two turns, each sends only its new message"
"${CLIENT[@]}" session create --id demo
"${CLIENT[@]}" generate --session demo --prompt $'User: Hi!\n\nAssistant:' --max-tokens 24 --seed 1
"${CLIENT[@]}" generate --session demo --prompt $'\n\nUser: And then?\n\nAssistant:' --max-tokens 24 --seed 2
"${CLIENT[@]}" session get demo
echo; echo "== the OpenAI-compatible API (http://127.0.0.1:$HPORT/v1)"
if [ -x .tools/venv/bin/python ] && .tools/venv/bin/python -c "import openai" 2>/dev/null; then
  .tools/venv/bin/python - "$HPORT" <<'PY'
import sys
from openai import OpenAI
client = OpenAI(base_url=f"http://127.0.0.1:{sys.argv[1]}/v1", api_key="none")
model = client.models.list().data[0].id
print(f"model: {model}")
stream = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Tell me about RWKV."}],
                                        max_tokens=60, seed=7, stream=True, stream_options={"include_usage": True})
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        print(chunk.choices[0].delta.content, end="", flush=True)
    if chunk.usage:
        print(f"\n[usage: {chunk.usage.prompt_tokens} prompt, {chunk.usage.completion_tokens} completion tokens]")
PY
else
  echo "(the openai package is not in .tools/venv; the same request through curl)"
  curl -sS "http://127.0.0.1:$HPORT/v1/chat/completions" -H 'Content-Type: application/json' \
    -d '{"messages": [{"role": "user", "content": "Tell me about RWKV."}], "max_tokens": 60, "seed": 7}'
  echo
fi
echo; echo "== metrics (http://127.0.0.1:$MPORT/metrics)"
python3 - "$MPORT" <<'PY'
import re, sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics").read().decode()
for line in text.splitlines():
    if re.match(r"rwkv_(requests_total|generated_tokens_total|prompt_tokens_total|sessions|state_slots)", line):
        print("  " + line)
PY
echo; echo "== SIGTERM: drain and stop"
kill -TERM $SERVER
wait $SERVER
tail -n 2 "$LOG"
