#!/usr/bin/env bash
# kernels.sh [SHARED] [TYPES...] - prompt and generation speed on TinyLlama-1.1B-shaped models.
# Makes random-weight models of the real shape with ../shared/tools/synth_gguf.py (cached in build/bench),
# runs `pensieve bench -p 128 -n 32` (the llama-bench anchors of issue 4) at 1 and 2 threads, and the
# scalar twins on Q4_0 (-p 16 -n 8: they are slow) as the baseline of the same invocation.
# Prints a markdown table.
set -euo pipefail
shared=${1:-../shared}
shift || true
types=${*:-q4_0 q8_0 q4_k_m q5_k f16 bf16}
bin=${PENSIEVE:-build/pensieve}
mkdir -p build/bench
for t in $types; do
    f=build/bench/tinyllama-1.1b-$t.gguf
    [ -f "$f" ] || /usr/bin/python3 "$shared/tools/synth_gguf.py" --preset tinyllama-1.1b --type "$t" \
        --vocab "$shared/vocab/ggml-vocab-llama-spm.gguf" -o "$f" >/dev/null
done
fmt='
import json, sys
t, th = sys.argv[1:3]
r = json.load(sys.stdin)
pp, tg = r[0], r[1]
lim = tg["bandwidth_limit_ts"]
cells = [t, pp["kernels"], th, pp["test"], "%.1f ± %.1f" % (pp["avg_ts"], pp["stddev_ts"]), tg["test"],
         "%.1f ± %.1f" % (tg["avg_ts"], tg["stddev_ts"]), "%.1f" % lim, "%.0f%%" % (100 * tg["avg_ts"] / lim) if lim else "-",
         "%.0f" % (tg["model_size"] / 2**20)]
print("| " + " | ".join(cells) + " |")
'
row() { # row TYPE THREADS P N
    "$bin" bench -m "build/bench/tinyllama-1.1b-$1.gguf" -p "$3" -n "$4" -r 2 -t "$2" --json | python3 -c "$fmt" "$1" "$2"
}
echo "| type | kernels | threads | test | tok/s | test | tok/s | bandwidth limit tok/s | tg / limit | MiB |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for t in $types; do
    for th in 1 2; do row "$t" "$th" 128 32; done
done
PV_KERNELS=scalar row q4_0 2 16 8
