#!/usr/bin/env bash
# make_models.sh SHARED CACHE PYTHON - recreate the synthetic reference models of SHARED/ref/arch
# into CACHE/<case>.gguf with SHARED/tools/synth_gguf.py, checking each file's sha256 against the
# reference. Missing tools or data mean those tests skip (they say so); a sha256 mismatch is an error.
set -euo pipefail
shared=${1:-../shared}
cache=${2:-build/cache}
python=${3:-/usr/bin/python3}

if [ ! -d "$shared/ref/arch" ] || [ ! -f "$shared/tools/synth_gguf.py" ]; then
    echo "models: skipped: $shared/ref/arch or synth_gguf.py is absent"
    exit 0
fi
if ! "$python" -c 'import numpy' 2>/dev/null; then
    echo "models: skipped: $python has no numpy (apt-get install python3-numpy)"
    exit 0
fi
mkdir -p "$cache"
for ref in "$shared"/ref/arch/*.json; do
    name=$(basename "$ref" .json)
    out="$cache/$name.gguf"
    read -r sha args < <("$python" - "$ref" "$shared" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(d["sha256"], d["synth_args"].replace("../shared/", sys.argv[2].rstrip("/") + "/"))
PY
)
    if [ -f "$out" ] && [ "$(sha256sum "$out" | cut -d' ' -f1)" = "$sha" ]; then continue; fi
    # shellcheck disable=SC2086 # args is a list of words
    "$python" "$shared/tools/synth_gguf.py" $args -o "$out.tmp" >/dev/null
    got=$(sha256sum "$out.tmp" | cut -d' ' -f1)
    if [ "$got" != "$sha" ]; then
        rm -f "$out.tmp"
        echo "models: $name: sha256 $got differs from the reference $sha (generator or numpy differs)" >&2
        exit 1
    fi
    mv "$out.tmp" "$out"
    echo "models: made $out"
done
