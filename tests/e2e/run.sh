#!/usr/bin/env bash
# run.sh PENSIEVE SHARED CACHE PYTHON - real clients end to end: the npm Anthropic SDK (sdk.test.mjs), the npm
# OpenAI SDK (openai.test.mjs) and the Claude Code CLI (claude.test.mjs) against `pensieve serve` with a 32k
# context, on a free 127.0.0.1 port. The model is synthetic (SHARED/tools/synth_gguf.py, made into CACHE once) and
# rewritten by hi_model.py so that it answers "Hello from pensieve!" and ends its turn. A second server (4k
# context, SHARED's Qwen2.5 chat template, so Hermes tool-call parsing) serves hi_model.py --tool-call's model,
# which answers every prompt with a <tool_call>, for the OpenAI SDK's tool-call tests (PENSIEVE_TOOL_URL). A third
# (32k, the same template, 2 slots) serves hi_model.py --tool-loop's model for Claude Code's tool loop
# (PENSIEVE_LOOP_URL): it calls Bash, and answers once the tool's result is in its prompt.
# Expects node_modules (`make e2e` runs `npm ci` first). Skips (exit 0) without node/npm or SHARED. Bounded: the
# servers run under `timeout`, the tests under `timeout`, each Claude Code run under its own; the servers are
# stopped by PID on any exit.
set -uo pipefail
bin=${1:-build/pensieve}
shared=${2:-../shared}
cache=${3:-build/cache}
python=${4:-/usr/bin/python3}
here=$(cd "$(dirname "$0")" && pwd)

skip() { echo "e2e: skipped: $*"; exit 0; }
command -v node >/dev/null && command -v npm >/dev/null || skip "node/npm absent (scripts/deps.sh installs them)"
tmpl="$shared/templates/Qwen-Qwen2.5-7B-Instruct.jinja"
[ -f "$shared/tools/synth_gguf.py" ] && [ -f "$shared/vocab/ggml-vocab-llama-spm.gguf" ] && [ -f "$tmpl" ] ||
    skip "$shared is absent"
[ -d "$here/node_modules/@anthropic-ai/sdk" ] && [ -d "$here/node_modules/openai" ] || { echo "e2e: FAIL: $here/node_modules is missing: run npm ci there (make e2e does)"; exit 1; }
[ -x "$bin" ] || { echo "e2e: FAIL: no server binary $bin"; exit 1; }

# the model: 2 small layers, but a 32768-token context, so Claude Code's first request fits
mkdir -p "$cache" || exit 1
base="$cache/e2e-32k.gguf"
model="$cache/e2e-32k-hi.gguf"
if [ ! -f "$base" ]; then
    "$python" "$shared/tools/synth_gguf.py" --arch llama --dim 64 --layers 2 --heads 4 --kv-heads 2 --ff 128 \
        --ctx 32768 --type q8_0 --seed 9 --vocab "$shared/vocab/ggml-vocab-llama-spm.gguf" -o "$base.tmp" &&
        mv "$base.tmp" "$base" || { echo "e2e: FAIL: synth_gguf.py"; exit 1; }
fi
if [ ! -f "$model" ] || [ "$model" -ot "$base" ] || [ "$model" -ot "$here/hi_model.py" ]; then
    "$python" "$here/hi_model.py" "$base" "$model.tmp" && mv "$model.tmp" "$model" ||
        { echo "e2e: FAIL: hi_model.py"; exit 1; }
fi
toolmodel="$cache/e2e-32k-toolcall.gguf"
if [ ! -f "$toolmodel" ] || [ "$toolmodel" -ot "$base" ] || [ "$toolmodel" -ot "$here/hi_model.py" ]; then
    "$python" "$here/hi_model.py" --tool-call "$base" "$toolmodel.tmp" && mv "$toolmodel.tmp" "$toolmodel" ||
        { echo "e2e: FAIL: hi_model.py --tool-call"; exit 1; }
fi

loopmodel="$cache/e2e-32k-toolloop.gguf"
if [ ! -f "$loopmodel" ] || [ "$loopmodel" -ot "$base" ] || [ "$loopmodel" -ot "$here/hi_model.py" ]; then
    "$python" "$here/hi_model.py" --tool-loop "$base" "$loopmodel.tmp" && mv "$loopmodel.tmp" "$loopmodel" ||
        { echo "e2e: FAIL: hi_model.py --tool-loop"; exit 1; }
fi

# Claude Code's postinstall puts the native binary in place; run it if it was skipped (npm ci --ignore-scripts)
if ! "$here/node_modules/.bin/claude" --version >/dev/null 2>&1; then
    (cd "$here/node_modules/@anthropic-ai/claude-code" && node install.cjs) >/dev/null 2>&1
    "$here/node_modules/.bin/claude" --version >/dev/null 2>&1 || { echo "e2e: FAIL: claude does not run"; exit 1; }
fi

tmp=$(mktemp -d)
tpids=() # the `timeout`s around the servers
pids=()  # the servers themselves
npid=""
cleanup() {
    [ -n "$npid" ] && kill "$npid" 2>/dev/null # `timeout` passes the signal on to the test runner
    for p in "${pids[@]}" "${tpids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

key="e2e-$RANDOM$RANDOM"
# start_server NAME ARGS...: pensieve serve ARGS on a free port, logging to $tmp/NAME.log; sets $port once /health
# answers 200, or prints the log and exits 1
start_server() {
    local name=$1 tpid pid="" ok=0
    shift
    port=""
    timeout 1500 "$bin" serve --port 0 --parallel 1 --api-key "$key" --pid-file "$tmp/$name.pid" "$@" \
        >"$tmp/$name.log" 2>&1 &
    tpid=$!
    tpids+=("$tpid")
    for _ in $(seq 1 300); do
        [ -z "$port" ] && port=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$tmp/$name.log" 2>/dev/null | grep -o '[0-9]*$')
        if [ -z "$pid" ]; then pid=$(cat "$tmp/$name.pid" 2>/dev/null) && [ -n "$pid" ] && pids+=("$pid"); fi # the server, not `timeout`
        if [ -n "$port" ] && [ -n "$pid" ] &&
            [ "$(curl -s -m 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health")" = 200 ]; then ok=1; break; fi
        kill -0 "$tpid" 2>/dev/null || break
        sleep 0.1
    done
    if [ $ok -ne 1 ]; then echo "e2e: FAIL: the $name server did not start"; cat "$tmp/$name.log"; exit 1; fi
}
start_server tool -m "$toolmodel" --ctx-size 4096 --alias pensieve-e2e-tool --chat-template "$tmpl"
tport=$port
start_server loop -m "$loopmodel" --ctx-size 32768 --alias pensieve-e2e-loop --chat-template "$tmpl" --parallel 2
lport=$port
start_server main -m "$model" --ctx-size 32768 --alias pensieve-e2e
echo "e2e: $(node --version), pensieve on http://127.0.0.1:$port (ctx 32768, 1 slot), tool-call model on :$tport," \
    "tool-loop model on :$lport"

abs_bin=$(realpath "$bin") && abs_loopmodel=$(realpath "$loopmodel") && abs_tmpl=$(realpath "$tmpl") || exit 1
cd "$here" || exit 1
PENSIEVE_URL="http://127.0.0.1:$port" PENSIEVE_KEY="$key" PENSIEVE_MODEL_NAME=pensieve-e2e \
    PENSIEVE_TOOL_URL="http://127.0.0.1:$tport" PENSIEVE_TOOL_MODEL_NAME=pensieve-e2e-tool \
    PENSIEVE_LOOP_URL="http://127.0.0.1:$lport" PENSIEVE_BIN="$abs_bin" PENSIEVE_LOOP_MODEL="$abs_loopmodel" \
    PENSIEVE_TEMPLATE="$abs_tmpl" \
    timeout 1200 node --test sdk.test.mjs openai.test.mjs claude.test.mjs &
npid=$!
wait "$npid" # in the background so that a signal runs the trap at once
rc=$?
npid=""

# time to first token as the server measured it, per request
curl -s -m 5 "http://127.0.0.1:$port/metrics" |
    awk '/^pensieve_time_to_first_token_seconds_(sum|count)/ { v[$1] = $2 }
         END { n = v["pensieve_time_to_first_token_seconds_count"]; s = v["pensieve_time_to_first_token_seconds_sum"];
               if (n) printf "e2e: %d generations, mean time to first token %.2f s\n", n, s / n }'
src=0
for i in "${!pids[@]}"; do
    kill -TERM "${pids[$i]}" 2>/dev/null
    wait "${tpids[$i]}" || src=$?
done
pids=()
tpids=()
if [ $rc -ne 0 ]; then
    echo "e2e: FAILED (server logs follow)"
    tail -50 "$tmp/main.log"
    echo "--- tool-call server"
    tail -20 "$tmp/tool.log"
    echo "--- tool-loop server"
    tail -20 "$tmp/loop.log"
    exit 1
fi
if [ $src -ne 0 ]; then
    echo "e2e: FAIL: server exit status $src after SIGTERM"
    tail -20 "$tmp/main.log" "$tmp/tool.log" "$tmp/loop.log"
    exit 1
fi
echo "e2e: all passed"
