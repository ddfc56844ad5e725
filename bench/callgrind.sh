#!/usr/bin/env bash
# bench/callgrind.sh — strictproxy's instructions per request, counted (issue 15, item 1).
#
# Seconds are noisy on a shared machine; instructions are not. This runs the release proxy
# under `valgrind --tool=callgrind` with a local nginx origin (bench/nginx.conf.in) and curl as
# the only client, on ONE keep-alive connection, twice per scenario: 300 requests, then 1,300.
# Start-up, the CONNECT and TLS handshakes and shutdown are the same in both runs, so
#
#     instructions per request = (Ir(1300) − Ir(300)) / 1000
#
# where Ir is callgrind's count of user-space instructions executed by the proxy (every
# thread, the kernel not included). Repeatable to 0.1 % (HTTP/2: a few per cent).
#
#   bench/callgrind.sh                  every scenario, one Markdown table on stdout
#   options: --only plain,warn,h1,h2    a subset
#            --small N --large N        the two run lengths (300 and 1300)
#            --no-build                 use target/release/strictproxy as it is
#            --keep                     keep the work folder (callgrind.out.* files, logs)
#
# Scenarios (all GET of a 100-byte file):
#   plain   plain HTTP through the proxy (absolute-form), the console line on (RUST_LOG unset)
#   warn    the same with RUST_LOG=warn: no per-exchange console line
#   h1      HTTPS through CONNECT, intercepted, HTTP/1.1 inside the tunnel (curl --http1.1)
#   h2      the same with HTTP/2 inside the tunnel (curl's default by ALPN)
#   hud-plain, hud-h1   plain and h1 through the hudsucker 0.25 peer (bench/hudsucker-peer,
#           built by bench/setup.sh; PEER_BIN overrides it), counted the same way: "ahead of
#           the peer" without timing noise. Skipped when the peer is not built.
# A direct connection has no proxy process to count, so it has no row: the figures are the
# proxy's own cost per request.
#
# Needs nginx, curl, openssl and valgrind (bench/setup.sh installs them). Loopback only; no
# name is looked up (`resolve` in the config).
# STRICTPROXY_BIN overrides the binary (then nothing is built).
set -euo pipefail

SMALL=300
LARGE=1300
ONLY=""
BUILD=1
KEEP=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --only) ONLY=$2; shift ;;
        --small) SMALL=$2; shift ;;
        --large) LARGE=$2; shift ;;
        --no-build) BUILD=0 ;;
        --keep) KEEP=1 ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        *) echo "callgrind.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
((LARGE > SMALL)) || { echo "callgrind.sh: --large must exceed --small" >&2; exit 2; }

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$BENCH")
# shellcheck source=bench/origin-certs.sh
. "$BENCH/origin-certs.sh"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
if [[ -n ${STRICTPROXY_BIN:-} ]]; then
    PROXY_BIN=$STRICTPROXY_BIN
else
    PROXY_BIN=$TARGET_DIR/release/strictproxy
    if [[ $BUILD == 1 ]]; then
        cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" --bin strictproxy
    fi
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
for tool in "$NGINX" valgrind curl openssl; do
    command -v "$tool" >/dev/null || { echo "callgrind.sh: $tool is missing" >&2; exit 1; }
done
[[ -x $PROXY_BIN ]] || { echo "callgrind.sh: $PROXY_BIN is missing" >&2; exit 1; }
PEER_BIN=${PEER_BIN:-$BENCH/hudsucker-peer/target/release/hudsucker-peer}

WORK=$(mktemp -d /tmp/strictproxy-callgrind.XXXXXX)
PIDS=()
cleanup() {
    # Only the processes this script started, by PID.
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ $KEEP == 1 ]]; then echo "callgrind.sh: work folder kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "$*" >&2; }
wanted() { [[ -z $ONLY ]] || [[ ,$ONLY, == *,$1,* ]]; }

# A free loopback port: bind port 0 and report what the kernel chose.
freeport() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Waits (polling, 60 s at most: valgrind starts slowly) until 127.0.0.1:$1 accepts, while $2 lives.
wait_port() {
    local deadline=$((SECONDS + 60))
    until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
        kill -0 "$2" 2>/dev/null || { log "callgrind.sh: process $2 ended before listening on $1"; return 1; }
        ((SECONDS < deadline)) || { log "callgrind.sh: nothing listens on 127.0.0.1:$1 after 60 s"; return 1; }
        sleep 0.1
    done
}

# ---------------------------------------------------------------------------------------------
# The origin: bench/run.sh's nginx, test CA and wildcard certificate.

mkdir -p "$WORK/www" "$WORK/nginx-tmp" "$WORK/proxy-ca"
make_origin_certs "$WORK"
head -c 100 /dev/zero | tr '\0' 'a' >"$WORK/www/100b"

HTTP_PORT=$(freeport)
HTTPS_PORT=$(freeport)
sed -e "s|@DIR@|$WORK|g" -e "s|@HTTP_PORT@|$HTTP_PORT|g" -e "s|@HTTPS_PORT@|$HTTPS_PORT|g" \
    -e "s|@NOFILE@|1024|g" -e "s|@CONNS@|512|g" \
    "$BENCH/nginx.conf.in" >"$WORK/nginx.conf"
"$NGINX" -p "$WORK" -e "$WORK/nginx-error.log" -c "$WORK/nginx.conf" &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
wait_port "$HTTP_PORT" "$NGINX_PID"
wait_port "$HTTPS_PORT" "$NGINX_PID"

# The proxy's config: no preload list, no traffic log, no store, so a run's count is the
# requests plus a fixed start-up. One config for every run; the CA is made once, up front
# (outside valgrind), so every run loads the same files.
PROXY_PORT=$(freeport)
cat >"$WORK/proxy.toml" <<EOF
# strictproxy configuration for bench/callgrind.sh
listen = "127.0.0.1:$PROXY_PORT"
ca_dir = "$WORK/proxy-ca"
upstream_ca = ["$WORK/origin-ca.pem"]
resolve = ["bench.test=127.0.0.1"]
EOF
"$PROXY_BIN" --config "$WORK/proxy.toml" ca export >/dev/null

PLAIN_URL="http://bench.test:$HTTP_PORT/100b"
HTTPS_URL="https://bench.test:$HTTPS_PORT/100b"

# count SCENARIO N: runs the proxy under callgrind for N requests on one connection; sets IR.
IR=0
count() {
    local scen=$1 n=$2 url level="" out="$WORK/callgrind.out.$1.$2"
    local -a curl_opts=(-x "http://127.0.0.1:$PROXY_PORT")
    case $scen in
        plain | hud-plain) url=$PLAIN_URL ;;
        warn) url=$PLAIN_URL; level=warn ;;
        h1 | hud-h1) url=$HTTPS_URL; curl_opts+=(--cacert "$WORK/proxy-ca/ca.pem" --http1.1) ;;
        h2) url=$HTTPS_URL; curl_opts+=(--cacert "$WORK/proxy-ca/ca.pem" --http2) ;;
    esac
    local -a cmd=("$PROXY_BIN" --config "$WORK/proxy.toml")
    if [[ $scen == hud-* ]]; then
        # The peer on the same port, with the proxy's CA and the origin's test CA.
        cmd=("$PEER_BIN" "127.0.0.1:$PROXY_PORT" "$WORK/proxy-ca/ca.pem"
            "$WORK/proxy-ca/ca-key.pem" "$WORK/origin-ca.pem" 1000)
    fi
    # RUST_LOG unset means the proxy's default (info: one console line per exchange).
    env ${level:+RUST_LOG=$level} valgrind --tool=callgrind --callgrind-out-file="$out" \
        "${cmd[@]}" >"$WORK/proxy.$scen.$n.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    wait_port "$PROXY_PORT" "$pid" || { cat "$WORK/proxy.$scen.$n.log" >&2; exit 1; }
    # One curl, N times the same URL: curl keeps the connection (and the tunnel) open.
    local i
    for ((i = 0; i < n; i++)); do printf 'url = "%s"\noutput = "/dev/null"\n' "$url"; done >"$WORK/urls"
    curl -sS --max-time 600 "${curl_opts[@]}" -K "$WORK/urls" \
        -w '%{http_code} %{num_connects} %{http_version}\n' >"$WORK/curl.$scen.$n" 2>&1 || true
    # SIGTERM: the proxy drains and exits, and callgrind writes its counts.
    kill -TERM "$pid"
    wait "$pid" || true
    local ok conns version
    ok=$(grep -c '^200 ' "$WORK/curl.$scen.$n" || true)
    conns=$(awk '{ s += $2 } END { print s + 0 }' "$WORK/curl.$scen.$n")
    version=$(awk 'NR == 1 { print $3 }' "$WORK/curl.$scen.$n")
    if [[ $ok != "$n" || $conns != 1 ]]; then
        log "callgrind.sh: $scen ($n): $ok of $n answered 200 over $conns connections"
        head -3 "$WORK/curl.$scen.$n" >&2
        KEEP=1
        exit 1
    fi
    log "   $scen: $n requests, HTTP/$version in one connection"
    # The totals line holds Ir (the only event without cache simulation).
    IR=$(awk '/^(summary|totals):/ { print $2; exit }' "$out")
}

NAMES=(plain warn h1 h2)
if [[ -x $PEER_BIN ]]; then
    NAMES+=(hud-plain hud-h1)
elif [[ -z $ONLY ]] || [[ $ONLY == *hud-* ]]; then
    log "callgrind.sh: no hudsucker peer at $PEER_BIN (bench/setup.sh builds it): no peer rows"
fi
declare -A LABEL=(
    [plain]="plain HTTP 100 B"
    [warn]="plain HTTP 100 B, \`RUST_LOG=warn\` (no per-exchange console line)"
    [h1]="MITM, HTTP/1.1 inside the tunnel"
    [h2]="MITM, HTTP/2 inside the tunnel (curl's default)"
    [hud-plain]="hudsucker 0.25 peer: plain HTTP 100 B"
    [hud-h1]="hudsucker 0.25 peer: MITM, HTTP/1.1 inside the tunnel"
)
declare -A RESULT
for scen in "${NAMES[@]}"; do
    wanted "$scen" || continue
    log "== $scen"
    count "$scen" "$SMALL"
    small=$IR
    count "$scen" "$LARGE"
    large=$IR
    RESULT[$scen]=$(awk -v a="$small" -v b="$large" -v n=$((LARGE - SMALL)) \
        'BEGIN { printf "%.0f", (b - a) / n }')
    log "   $scen: Ir $small ($SMALL), $large ($LARGE): ${RESULT[$scen]} per request"
done

commas() { sed -e ':a' -e 's/\B[0-9]\{3\}\>/,&/' -e 'ta' <<<"$1"; }
echo
echo "Instructions per request (callgrind Ir, user space, proxy process; ($LARGE − $SMALL runs) / $((LARGE - SMALL)); $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?'))"
echo
echo "| request | instructions/request |"
echo "|---|---:|"
for scen in "${NAMES[@]}"; do
    [[ -n ${RESULT[$scen]:-} ]] || continue
    echo "| ${LABEL[$scen]} | $(commas "${RESULT[$scen]}") |"
done
