#!/bin/sh
# Installs polarisd's build and test dependencies from Debian packages.
# Idempotent: installs only what is missing; needs root (or sudo) only then.
set -eu
PKGS="build-essential pkg-config liblua5.4-dev lua5.4 lua-cjson lua-cjson-dev libev-dev
zlib1g-dev libdeflate-dev libjemalloc-dev lua-busted lua-socket lua-dkjson valgrind libsodium-dev lua-check tar gzip systemd locales libseccomp-dev procps"
# `deps.sh bench` adds what make bench needs beyond the tests: gnuplot draws
# bench/results.png
[ "${1:-}" = bench ] && PKGS="$PKGS gnuplot-nox"
# `deps.sh fuzz`: clang with its libFuzzer runtime
[ "${1:-}" = fuzz ] && PKGS="$PKGS clang libclang-rt-14-dev"
missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
