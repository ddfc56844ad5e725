#!/usr/bin/env bash
# bench/idle-mem.sh — memory per idle client connection (issue 15, item 3), plain keep-alive
# and intercepted TLS measured separately, on loopback only.
#
# Starts bench/run.sh's nginx origin and a strictproxy with the 150k-entry preload list, then
# for each kind: 50 warm-up connections, RSS read, N idle connections opened with
# `loadgen idle` (each makes one request and stays open), RSS read again. Per connection =
# (RSS held − RSS before) / connections the proxy holds. A fresh proxy per kind.
#
#   bench/idle-mem.sh                    plain and tls, 10,000 connections each
#   options: --conns N  --only plain|tls  --keep (keep the work folder)
#   PROXY_WRAP="valgrind --tool=massif --pages-as-heap=no" runs the proxy under a tool
#   (then use a few hundred connections); MALLOC_ARENA_MAX etc. pass through the environment.
#   IDLE_MEM_HOOK runs (bash -c, $1 = the proxy's pid, $2 = the kind) while the connections
#   are held, e.g. 'vgdb --pid=$1 detailed_snapshot /tmp/massif.$2' under massif.
#
# Needs what bench/run.sh needs (bench/setup.sh). STRICTPROXY_BIN and LOADGEN_BIN override
# the binaries.
set -euo pipefail

CONNS=10000
ONLY=""
KEEP=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --conns) CONNS=$2; shift ;;
        --only) ONLY=$2; shift ;;
        --keep) KEEP=1 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "idle-mem.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$BENCH")
# shellcheck source=bench/origin-certs.sh
. "$BENCH/origin-certs.sh"
PROXY_BIN=${STRICTPROXY_BIN:-$ROOT/target/release/strictproxy}
LOADGEN=${LOADGEN_BIN:-$BENCH/loadgen/target/release/strictproxy-loadgen}
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
read -r -a WRAP <<<"${PROXY_WRAP:-}"

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
[[ $NOFILE == unlimited ]] && NOFILE=65536

WORK=$(mktemp -d /tmp/strictproxy-idle.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ $KEEP == 1 ]]; then echo "idle-mem.sh: work folder kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "$*" >&2; }
wanted() { [[ -z $ONLY ]] || [[ ,$ONLY, == *,$1,* ]]; }
wait_port() {
    local deadline=$((SECONDS + 60))
    until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
        kill -0 "$2" 2>/dev/null || { log "idle-mem.sh: process $2 ended"; return 1; }
        ((SECONDS < deadline)) || { log "idle-mem.sh: nothing listens on $1"; return 1; }
        sleep 0.05
    done
}
rss_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
field() { awk -v k="$2" '{ for (i = 1; i <= NF; i++) { n = index($i, "="); if (n && substr($i, 1, n - 1) == k) { print substr($i, n + 1); exit } } }' <<<"$1"; }

mkdir -p "$WORK/www" "$WORK/nginx-tmp" "$WORK/proxy-ca"
make_origin_certs "$WORK"
head -c 100 /dev/zero | tr '\0' 'a' >"$WORK/www/100b"
head -c 65536 /dev/zero | tr '\0' 'b' >"$WORK/www/64k"
"$LOADGEN" preload --count 150000 --out "$WORK/preload.json"
HTTP_PORT=$("$LOADGEN" freeport)
HTTPS_PORT=$("$LOADGEN" freeport)
sed -e "s|@DIR@|$WORK|g" -e "s|@HTTP_PORT@|$HTTP_PORT|g" -e "s|@HTTPS_PORT@|$HTTPS_PORT|g" \
    -e "s|@NOFILE@|$NOFILE|g" -e "s|@CONNS@|$((NOFILE - 100))|g" \
    "$BENCH/nginx.conf.in" >"$WORK/nginx.conf"
"$NGINX" -p "$WORK" -e "$WORK/nginx-error.log" -c "$WORK/nginx.conf" &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
wait_port "$HTTP_PORT" "$NGINX_PID"
wait_port "$HTTPS_PORT" "$NGINX_PID"

measure() { # KIND URL [loadgen options…]
    local kind=$1 url=$2
    shift 2
    local port
    port=$("$LOADGEN" freeport)
    cat >"$WORK/proxy-$kind.toml" <<EOF
listen = "127.0.0.1:$port"
ca_dir = "$WORK/proxy-ca"
upstream_ca = ["$WORK/origin-ca.pem"]
preload = ["$WORK/preload.json"]
max_connections = $((CONNS + 2000))
idle_timeout_secs = 600
resolve = ["bench.test=127.0.0.1"]
EOF
    RUST_LOG=warn "${WRAP[@]}" "$PROXY_BIN" --config "$WORK/proxy-$kind.toml" >"$WORK/proxy-$kind.log" 2>&1 &
    local proxy=$!
    PIDS+=("$proxy")
    wait_port "$port" "$proxy" || { cat "$WORK/proxy-$kind.log" >&2; exit 1; }
    sleep 1
    local start_rss
    start_rss=$(rss_kib "$proxy" VmRSS)
    "$LOADGEN" keepalive --url "$url" --proxy "127.0.0.1:$port" "$@" --conns 50 --secs 2 >/dev/null
    sleep 2
    local base idle_pid held rss fds n
    base=$(rss_kib "$proxy" VmRSS)
    "$LOADGEN" idle --url "$url" --proxy "127.0.0.1:$port" "$@" --conns "$CONNS" --secs 3600 \
        >"$WORK/idle-$kind.out" 2>>"$WORK/client.err" &
    idle_pid=$!
    PIDS+=("$idle_pid")
    until grep -q "^READY" "$WORK/idle-$kind.out" 2>/dev/null; do
        kill -0 "$idle_pid" 2>/dev/null || { log "idle-mem.sh: the idle client failed"; cat "$WORK/client.err" >&2; exit 1; }
        sleep 0.2
    done
    sleep 2
    rss=$(rss_kib "$proxy" VmRSS)
    held=$(field "$(grep '^READY' "$WORK/idle-$kind.out")" held)
    fds=$(find "/proc/$proxy/fd" -mindepth 1 -maxdepth 1 | wc -l)
    n=$held
    ((fds < n)) && n=$fds
    echo "$kind: RSS $base KiB before, $rss KiB with $n connections held ($fds descriptors): $(awk -v a="$rss" -v b="$base" -v n="$n" 'BEGIN { printf "%.2f", (a - b) / n }') KiB per connection (idle RSS at start, 150k list: $start_rss KiB)"
    if [[ -n ${IDLE_MEM_HOOK:-} ]]; then bash -c "$IDLE_MEM_HOOK" hook "$proxy" "$kind"; fi
    kill "$idle_pid" 2>/dev/null || true
    wait "$idle_pid" 2>/dev/null || true
    kill "$proxy" 2>/dev/null || true
    wait "$proxy" 2>/dev/null || true
}

wanted plain && measure plain "http://bench.test:$HTTP_PORT/100b"
wanted tls && measure tls "https://bench.test:$HTTPS_PORT/100b" --ca "$WORK/proxy-ca/ca.pem"
exit 0
