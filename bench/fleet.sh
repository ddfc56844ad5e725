#!/usr/bin/env bash
# The fleet benchmark: one redis-server and three in-process proxies on loopback.
# Prints the learn-on-A -> enforce-on-B latency (p50/p99 over FLEET_BENCH_HOSTS hosts,
# default 1000) and the local-307 throughput with Redis off and on, in one run.
# Needs redis-server (apt-get install redis-server). Usage: bench/fleet.sh
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --release --test fleet -- --ignored --exact fleet_benchmark --nocapture
