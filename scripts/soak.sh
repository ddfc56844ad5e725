#!/usr/bin/env bash
# Soak test of the release binary, on loopback only and bounded in time: N concurrent clients
# (default 200) for D seconds (default 60; --quick: 10) through strictproxy, mixing plain,
# intercepted, tunnelled (--passthrough), redirecting, HSTS, slow and failing origins. Checks:
#   - no unintended errors (every answer is the one its kind must get: 200, 302, 307, 500, 502)
#   - the proxy's RSS is back under a bound after the load (SOAK_RSS_BOUND_MIB, default 128)
#   - no growth of open file descriptors (/proc/PID/fd before vs after, once idle)
#   - every exchange is in the traffic log, as a well-formed JSON line
#   - the proxy is alive and logged no panic; SIGTERM then stops it cleanly
# Prints "soak: ..." result lines and exits non-zero on any failed check.
#
#   scripts/soak.sh                 # 200 clients, 60 s
#   scripts/soak.sh --quick         # 200 clients, 10 s
#   SOAK_CLIENTS=50 SOAK_SECONDS=30 scripts/soak.sh
# shellcheck disable=SC2317  # the check functions are called through wait_for and trap
set -euo pipefail
cd "$(dirname "$0")/.."

clients="${SOAK_CLIENTS:-200}"
seconds="${SOAK_SECONDS:-60}"
if [ "${1:-}" = "--quick" ]; then seconds=10; fi
rss_bound_mib="${SOAK_RSS_BOUND_MIB:-128}"
fd_slack="${SOAK_FD_SLACK:-0}"

cargo build --release --quiet
cargo build --release --quiet --manifest-path scripts/soak/Cargo.toml
proxy_bin="$PWD/target/release/strictproxy"
soak_bin="$PWD/scripts/soak/target/release/strictproxy-soak"

work="$(mktemp -d -t strictproxy-soak.XXXXXX)"
origins_pid=""
proxy_pid=""
sampler_pid=""
cleanup() {
  for pid in "$sampler_pid" "$proxy_pid" "$origins_pid"; do
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill "$pid" 2>/dev/null || true; fi
  done
  if [ -z "${SOAK_KEEP:-}" ]; then rm -rf "$work"; else echo "soak: files kept in $work"; fi
}
trap cleanup EXIT

fail=0
check() { # check NAME OK(0/1) MESSAGE
  if [ "$2" = 0 ]; then echo "soak: $3 OK"; else echo "soak: $3 FAILED"; fail=1; fi
}
wait_for() { # wait_for SECONDS COMMAND...: polls every 0.1 s
  local end=$((SECONDS + $1)); shift
  until "$@"; do
    if [ "$SECONDS" -ge "$end" ]; then return 1; fi
    sleep 0.1
  done
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 | wc -l; }

"$soak_bin" origins "$work" &
origins_pid=$!
wait_for 20 test -s "$work/ports.json"

"$proxy_bin" --listen 127.0.0.1:0 --admin 127.0.0.1:0 --ca-dir "$work/ca" \
  --hsts-store "$work/hsts.json" --traffic-log "$work/traffic.jsonl" \
  --upstream-ca "$work/origin-ca.pem" --passthrough tunnel.soak.test \
  --resolve plain.soak.test=127.0.0.1 --resolve secure.soak.test=127.0.0.1 \
  --resolve tunnel.soak.test=127.0.0.1 --resolve hsts.soak.test=127.0.0.1 \
  >"$work/proxy.out" 2>"$work/proxy.err" &
proxy_pid=$!
wait_for 20 grep -qs "listening on" "$work/proxy.out"
listen="$(sed -n 's/.*listening on http:\/\/\([^ ]*\).*/\1/p' "$work/proxy.out" | head -1)"

fd_before="$(fd_count "$proxy_pid")"
rss_before="$(rss_kib "$proxy_pid")"
# Peak RSS, sampled every 0.5 s during the load.
(
  peak=0
  while kill -0 "$proxy_pid" 2>/dev/null; do
    r="$(rss_kib "$proxy_pid" 2>/dev/null || echo 0)"
    if [ "$r" -gt "$peak" ]; then peak=$r; echo "$peak" >"$work/peak"; fi
    sleep 0.5
  done
) &
sampler_pid=$!

echo "soak: $clients clients for ${seconds}s through $listen (files in $work)"
"$soak_bin" load proxy="$listen" proxy_ca="$work/ca/ca.pem" origin_ca="$work/origin-ca.pem" \
  ports="$work/ports.json" clients="$clients" seconds="$seconds" >"$work/load.json"
load="$(cat "$work/load.json")"
field() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p" <<<"$load"; }
requests="$(field requests)"
expected="$(field expected_log_lines)"
unintended="$(field unintended)"
rate="$(field per_second)"
echo "soak: load $load"

# Once the clients are gone their connections close, and the origins close idle connections
# after 5 s (GOAWAY on HTTP/2), so the proxy's pool lets go of them: whatever stays is a leak.
fd_settled() { [ "$(fd_count "$proxy_pid")" -le $((fd_before + fd_slack)) ]; }
wait_for 30 fd_settled || true
fd_after="$(fd_count "$proxy_pid")"
log_complete() { [ "$(wc -l <"$work/traffic.jsonl")" -ge "$expected" ]; }
wait_for 15 log_complete || true
kill "$sampler_pid" 2>/dev/null || true
rss_after="$(rss_kib "$proxy_pid")"
rss_peak="$(cat "$work/peak" 2>/dev/null || echo "$rss_after")"
logcheck="$("$soak_bin" check-log "$work/traffic.jsonl")"
lines="$(sed -n 's/.*"lines":\([0-9]*\).*/\1/p' <<<"$logcheck")"
malformed="$(sed -n 's/.*"malformed":\([0-9]*\).*/\1/p' <<<"$logcheck")"

check load "$([ "$unintended" = 0 ] && [ "$requests" -gt 0 ] && echo 0 || echo 1)" \
  "$requests requests in ${seconds}s (${rate%.*}/s), $unintended unintended errors"
check rss "$([ "$rss_after" -le $((rss_bound_mib * 1024)) ] && echo 0 || echo 1)" \
  "RSS before $((rss_before / 1024)) MiB, peak $((rss_peak / 1024)) MiB, after $((rss_after / 1024)) MiB (bound ${rss_bound_mib} MiB)"
check fds "$([ "$fd_after" -le $((fd_before + fd_slack)) ] && echo 0 || echo 1)" \
  "open fds before $fd_before, after $fd_after (slack $fd_slack)"
if [ "$fd_after" -gt $((fd_before + fd_slack)) ]; then
  echo "soak: the proxy's open sockets:"
  ss -tanp 2>/dev/null | grep "pid=$proxy_pid," || ls -l "/proc/$proxy_pid/fd"
fi
check log "$([ "$lines" = "$expected" ] && [ "$malformed" = 0 ] && echo 0 || echo 1)" \
  "traffic log $lines lines for $expected exchanges, $malformed malformed: $logcheck"
check panic "$(grep -q -i panick "$work/proxy.err" && echo 1 || echo 0)" "no panic in the proxy's log"

kill -TERM "$proxy_pid"
# A child that exited stays a zombie (state Z) until waited for.
stopped() { [ "$(awk '{print $3}' "/proc/$proxy_pid/stat" 2>/dev/null || echo Z)" = Z ]; }
status=1
if wait_for 20 stopped; then
  wait "$proxy_pid" && status=0 || status=$?
fi
proxy_pid=""
check sigterm "$status" "SIGTERM stop (exit status $status)"

if [ "$fail" = 0 ]; then echo "soak: PASS"; else echo "soak: FAIL"; fi
exit "$fail"
