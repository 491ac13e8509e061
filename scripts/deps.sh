#!/usr/bin/env bash
# deps.sh - install what pensieve needs to build and test on Debian 12, skipping what is there.
set -euo pipefail
pkgs=(build-essential clang pkg-config check libjansson-dev libpcre2-dev libevent-dev python3 python3-numpy curl)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node and npm for the end-to-end tests (tests/e2e): Debian's, only where none is on PATH (a newer node, e.g.
# NodeSource's, which bundles npm, is kept as it is)
if ! command -v node >/dev/null; then missing+=(nodejs npm)
elif ! command -v npm >/dev/null; then missing+=(npm); fi
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
