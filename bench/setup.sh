#!/usr/bin/env bash
# bench/setup.sh — installs what bench/run.sh needs and builds it, on Debian/Ubuntu:
# nginx (the origin), wrk (plain-HTTP load), openssl and curl (test CA, smoke checks),
# util-linux (taskset), valgrind (bench/callgrind.sh), then the proxy in release mode, the
# load client in bench/loadgen and the hudsucker peer proxy in bench/hudsucker-peer (its own
# package, hudsucker 0.25 from crates.io; a few minutes on two cores; NO_PEER=1 skips it and
# run.sh then prints no hudsucker column).
# Run it once from a fresh clone; it needs root (or sudo) for apt-get.
set -euo pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$BENCH")

SUDO=()
[[ $(id -u) == 0 ]] || SUDO=(sudo)
PACKAGES=(nginx-light wrk openssl curl util-linux procps valgrind)
missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    "${SUDO[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The Debian package may start a system nginx on port 80: run.sh does not use it, it starts
# its own on free loopback ports.
cargo build --release --manifest-path "$ROOT/Cargo.toml" --bin strictproxy
cargo build --release --manifest-path "$BENCH/loadgen/Cargo.toml" --target-dir "$BENCH/loadgen/target"
if [[ ${NO_PEER:-0} != 1 ]]; then
    cargo build --release --manifest-path "$BENCH/hudsucker-peer/Cargo.toml" \
        --target-dir "$BENCH/hudsucker-peer/target"
fi
echo "bench/setup.sh: ready; run bench/run.sh (or bench/run.sh --quick)"
