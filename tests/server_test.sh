#!/usr/bin/env bash
# server_test.sh PENSIEVE SHARED - the server over real HTTP on 127.0.0.1: endpoints (Anthropic and OpenAI), errors, auth,
# streaming, disconnects, the queue bound under load, hostile bodies (fuzz_server.py), memory (VmRSS/VmHWM), shutdown.
# Bounded: every server runs under `timeout`, every client call has a timeout, servers are stopped by PID.
set -uo pipefail
bin=${1:-build/pensieve}
shared=${2:-../shared}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
if [ ! -f "$shared/models/stories260K.gguf" ]; then
    echo "skipped: $shared/models is absent"; echo "server: 0 passed, 0 failed"; exit 0
fi

# start NAME ARGS...: starts a server on a free port; sets $port and $pid
start() {
    local name=$1; shift
    timeout 600 "$bin" serve --port 0 --pid-file "$tmp/$name.pid" "$@" >"$tmp/$name.log" 2>&1 &
    tpid=$!
    pids+=("$tpid")
    pid=""
    port=""
    for _ in $(seq 1 100); do
        port=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$tmp/$name.log" 2>/dev/null | grep -o '[0-9]*$')
        pid=$(cat "$tmp/$name.pid" 2>/dev/null) # the server itself, not `timeout`
        [ -n "$port" ] && [ -n "$pid" ] &&
            [ "$(curl -s -m 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health")" = 200 ] && pids+=("$pid") && return 0
        sleep 0.1
    done
    pids+=("$pid")
    echo "FAIL: server $name did not start"; cat "$tmp/$name.log"; return 1
}

m="$shared/models/stories260K.gguf"
fail=0
start main -m "$m" --parallel 2 --queue 4 --api-key sekrit --ctx-size 256 --alias tiny || exit 1
python3 "$here/server_test.py" basic "$port" "$pid" || fail=1
python3 "$here/server_test.py" openai "$port" "$pid" || fail=1
python3 "$here/server_test.py" load "$port" "$pid" || fail=1
# pensieve status / stop
if PENSIEVE_PORT=$port "$bin" status | grep -q '"status":"ok"'; then echo "ok: pensieve status"; else echo "FAIL: pensieve status"; fail=1; fi
"$bin" stop --port "$port" --pid-file "$tmp/main.pid" >/dev/null
wait "$tpid"; rc=$? # the `timeout` wrapper passes the server's exit status on
if [ $rc -eq 0 ]; then echo "ok: pensieve stop -> exit 0"; else echo "FAIL: server exit status $rc after stop"; fail=1; fi

# hostile bodies of every endpoint, mutated at random (fixed seed), with a template that renders tools
start fuzz -m "$m" --chat-template "$shared/templates/Qwen-Qwen2.5-7B-Instruct.jinja" --parallel 2 --queue 16 \
    --api-key sekrit --ctx-size 256 || exit 1
python3 "$here/fuzz_server.py" "$port" "$pid" 10000 120 1 || { fail=1; tail -n 20 "$tmp/fuzz.log"; }
kill -TERM "$pid"; wait "$tpid"

# memory on a bigger model: sequential flat, 4 concurrent inside the KV budget, back to idle after
# (skipped under sanitizers: ASan's quarantine keeps freed memory resident by design)
if [ "${PV_SAN:-}" = 1 ]; then echo "skipped: memory checks under SAN=1"; else
    start mem -m "$shared/models/tinyllama-v0-q4_0.gguf" --parallel 4 --ctx-size 2048 --api-key sekrit || exit 1
    python3 "$here/server_test.py" memory "$port" "$pid" || fail=1
    kill -TERM "$pid"; wait "$tpid"
fi

# memory gate: a critical tier above all memory refuses new work with 503 + x-memory-status
start gate -m "$m" --mem-critical 100000000 || exit 1
python3 "$here/server_test.py" gate "$port" "$pid" || fail=1
kill -TERM "$pid"; wait "$tpid"

# graceful shutdown: a running stream finishes after SIGTERM, then exit 0
start grace -m "$m" --ctx-size 512 --grace 20 || exit 1
python3 "$here/server_test.py" grace "$port" "$pid" || fail=1
wait "$tpid"; rc=$?
if [ $rc -eq 0 ]; then echo "ok: SIGTERM -> exit 0"; else echo "FAIL: exit $rc after SIGTERM"; fail=1; fi

# chat templates on a Qwen2-shaped model: its vocabulary's ChatML template (no tools: they go in as system text),
# the Qwen 2.5 template (renders tools itself), and one that raises or loops; a template that does not parse
qm="$(dirname "$bin")/cache/qwen-tiny.gguf"
mkdir -p "$(dirname "$qm")"
[ -f "$qm" ] || /usr/bin/python3 "$shared/tools/synth_gguf.py" --arch qwen2 --dim 64 --layers 2 --heads 4 --kv-heads 2 \
    --ff 128 --ctx 2048 --type q8_0 --seed 3 --vocab "$shared/vocab/ggml-vocab-qwen2.gguf" -o "$qm" >/dev/null
export PV_BIN=$bin PV_MODEL=$qm
start tpl -m "$qm" --ctx-size 2048 --api-key sekrit || exit 1
python3 "$here/server_test.py" template "$port" "$pid" || fail=1
kill -TERM "$pid"; wait "$tpid"
q25="$shared/templates/Qwen-Qwen2.5-7B-Instruct.jinja"
start tpl25 -m "$qm" --ctx-size 2048 --api-key sekrit --chat-template "$q25" || exit 1
PV_TEMPLATE=$q25 python3 "$here/server_test.py" template-tools "$port" "$pid" || fail=1
python3 "$here/server_test.py" constrain "$port" "$pid" || fail=1
kill -TERM "$pid"; wait "$tpid"
# templates that render less: Gemma-2's takes no system text (the tools block opens the first user message),
# DeepSeek-R1's renders calls and results its own way but not the tools (only those are flattened)
for t in gemma:google-gemma-2-2b-it deepseek:deepseek-ai-DeepSeek-R1-Distill-Qwen-32B; do
    tf="$shared/templates/${t#*:}.jinja"
    start "tpl-${t%%:*}" -m "$qm" --ctx-size 2048 --api-key sekrit --chat-template "$tf" || exit 1
    PV_TEMPLATE=$tf python3 "$here/server_test.py" "template-${t%%:*}" "$port" "$pid" || fail=1
    kill -TERM "$pid"; wait "$tpid"
done
cat >"$tmp/raise.jinja" <<'JINJA'
{%- for m in messages %}{% if m.content == 'boom' %}{{ raise_exception('boom: this template refuses') }}{% endif %}
{%- if m.content == 'loop' %}{% for i in range(100000000) %}{% endfor %}{% endif %}
{{- '<|im_start|>' + m.role + '\n' + m.content + '<|im_end|>\n' }}{% endfor %}
{%- if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}
JINJA
start raise -m "$qm" --ctx-size 2048 --api-key sekrit --chat-template "$tmp/raise.jinja" || exit 1
python3 "$here/server_test.py" template-raise "$port" "$pid" || fail=1
kill -TERM "$pid"; wait "$tpid"
printf '{%% if %%}' >"$tmp/bad.jinja"
if timeout 20 "$bin" serve -m "$qm" --port 0 --chat-template "$tmp/bad.jinja" >"$tmp/bad.log" 2>&1; then
    echo "FAIL: a --chat-template that does not parse was accepted"; fail=1
else grep -q "bad.jinja" "$tmp/bad.log" && echo "ok: a --chat-template that does not parse fails at start" || { echo "FAIL: message"; cat "$tmp/bad.log"; fail=1; }; fi

# every reference chat-template case (../shared/templates/cases) through POST /apply-template, one server per template
timeout 900 python3 "$here/template_cases.py" "$bin" "$shared" || fail=1

# keep-alive pings while a long prompt is processed (a model slow enough for a few seconds of prefill)
pm="$(dirname "$bin")/cache/ping-256x4.gguf"
[ -f "$pm" ] || /usr/bin/python3 "$shared/tools/synth_gguf.py" --arch llama --dim 256 --layers 4 --heads 8 --kv-heads 2 \
    --ff 768 --ctx 8192 --type q8_0 --seed 9 --vocab "$shared/vocab/ggml-vocab-llama-spm.gguf" -o "$pm" >/dev/null
start ping -m "$pm" --ctx-size 8192 --parallel 1 --threads 1 --ping-interval 1 || exit 1
python3 "$here/server_test.py" ping "$port" "$pid" || fail=1
kill -TERM "$pid"; wait "$tpid"

# the prefix cache shared: 4 concurrent streams with a common ~1,500-token prefix hold and compute it once
start share -m "$pm" --ctx-size 2048 --parallel 4 || exit 1
python3 "$here/server_test.py" share "$port" "$pid" || fail=1
kill -TERM "$pid"; wait "$tpid"

# --cache-dir: the prefix cache survives a clean restart; the restored blocks give the greedy text of a server
# without them; a damaged cache file is ignored with one warning
kvd="$tmp/kvcache"
export PV_STATE="$tmp/persist.txt"
start persist1 -m "$m" --ctx-size 512 --api-key sekrit --cache-dir "$kvd" || exit 1
PV_PHASE=first python3 "$here/server_test.py" persist "$port" "$pid" || fail=1
kill -TERM "$pid"; wait "$tpid"; rc=$?
[ $rc -eq 0 ] || { echo "FAIL: exit $rc after saving the cache"; fail=1; }
grep -q "prefix cache: [1-9][0-9]* blocks saved to $kvd/" "$tmp/persist1.log" && echo "ok: the cache is saved at shutdown" ||
    { echo "FAIL: no cache saved"; cat "$tmp/persist1.log"; fail=1; }
start persist2 -m "$m" --ctx-size 512 --api-key sekrit --cache-dir "$kvd" || exit 1
PV_PHASE=restarted python3 "$here/server_test.py" persist "$port" "$pid" || fail=1
kill -TERM "$pid"; wait "$tpid"
grep -q "prefix cache: [1-9][0-9]* blocks loaded" "$tmp/persist2.log" && echo "ok: the cache is loaded at start-up" ||
    { echo "FAIL: no cache loaded"; cat "$tmp/persist2.log"; fail=1; }
start persist3 -m "$m" --ctx-size 512 --api-key sekrit || exit 1
PV_PHASE=plain python3 "$here/server_test.py" persist "$port" "$pid" || fail=1
kill -TERM "$pid"; wait "$tpid"
for f in "$kvd"/*.kvcache; do head -c 5000 "$f" >"$f.cut" && mv "$f.cut" "$f"; done
start persist4 -m "$m" --ctx-size 512 --api-key sekrit --cache-dir "$kvd" || exit 1
PV_PHASE=damaged python3 "$here/server_test.py" persist "$port" "$pid" || fail=1
kill -TERM "$pid"; wait "$tpid"
[ "$(grep -c 'warning: prefix cache not loaded: .*truncated' "$tmp/persist4.log")" = 1 ] &&
    echo "ok: a truncated cache file is ignored with one warning" || { echo "FAIL: damaged cache"; cat "$tmp/persist4.log"; fail=1; }

# the serve bench (bench/serve_bench.py) runs and reports: the mix of concurrent clients, and the scaling rounds
# (1 client against 2, alternated; every run's prompts its own, so nothing comes from the prefix cache)
sb() { timeout 300 python3 "$here/../bench/serve_bench.py" -m "$m" --bin "$bin" --ctx-size 256 --max-tokens 8 \
    --prompt-words 5,20 --json "$@" 2>"$tmp/sb.err" | tail -n 1; }
sb --clients 2 | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(not (d["errors"] == 0 and
    d["requests"] == 4 and d["aggregate_gen_tps"] > 0 and d["peak_rss_bytes"] > 0))' &&
    echo "ok: serve bench, concurrent clients" || { echo "FAIL: serve bench mix"; cat "$tmp/sb.err"; fail=1; }
sb --scenario scaling --clients 2 --rounds 2 | python3 -c 'import json,sys; d=json.load(sys.stdin); r=d["rounds"]
sys.exit(not (d["errors"] == 0 and len(r) == 2 and all(x["ratio"] > 0 and x["cached_prompt_tokens"] == 0 for x in r)
    and d["ratio_median"] > 0))' &&
    echo "ok: serve bench, 1 client against 2 in alternated rounds" || { echo "FAIL: serve bench scaling"; cat "$tmp/sb.err"; fail=1; }

# no key on a public address is refused
if timeout 20 "$bin" serve -m "$m" --host 0.0.0.0 --port 0 >"$tmp/pub.log" 2>&1; then
    echo "FAIL: public bind without a key"; fail=1
else grep -q "without an API key" "$tmp/pub.log" && echo "ok: public bind without a key refused" || { echo "FAIL: message"; fail=1; }; fi

[ $fail -eq 0 ] && echo "server: all passed" || echo "server: FAILED"
exit $fail
