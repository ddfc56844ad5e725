#!/usr/bin/env bash
# bench/run.sh — strictproxy's performance benchmark (see bench/README.md).
#
# On loopback only and bounded in time: starts a local nginx origin, then measures each
# scenario directly against nginx, through strictproxy and (S1-S4, when it is built) through
# a no-op hudsucker proxy in the same run, N runs each, interleaved, and prints one Markdown
# table of medians with the ratio proxy/direct, the added p99 and the proxy's CPU time per
# request. The proxies are pinned to CPU 0, nginx and the load generators to CPU 1, so the
# figures compare across runs and machines of the same kind.
#
#   bench/run.sh            3 runs of 8 s per measurement (about 13 minutes; 10 with --no-peer)
#   bench/run.sh --quick    1 run of 3 s (a smoke test, about 3 minutes)
#   options: --runs N  --secs S  --only S1,S3,...  --keep (keep the work folder)
#            --no-peer: no hudsucker column (it is also left out when its binary is missing)
#            --sched nice|fifo|none: how the benchmark's processes (proxy, nginx, clients) are
#            favoured over other work on the machine: nice -19 (default as root), SCHED_FIFO
#            (steadier on a busy machine; the kernel's RT throttling then stalls each CPU
#            50 ms a second, which shows in p99), or not at all
#
# Set up once with bench/setup.sh. STRICTPROXY_BIN, LOADGEN_BIN and PEER_BIN override the
# binaries. Nothing is sent beyond 127.0.0.1 and no name is looked up: every host name
# strictproxy meets (bench.test, h<N>/m<N>.bench.test, the S5 names) is given to it with
# `resolve`; the hudsucker peer resolves every name to 127.0.0.1 itself.
set -euo pipefail

RUNS=3
SECS=8
ONLY=""
KEEP=0
SCHED=""
PEER=1
while [[ $# -gt 0 ]]; do
    case $1 in
        --quick) RUNS=1; SECS=3 ;;
        --runs) RUNS=$2; shift ;;
        --secs) SECS=$2; shift ;;
        --only) ONLY=$2; shift ;;
        --keep) KEEP=1 ;;
        --sched) SCHED=$2; shift ;;
        --no-peer) PEER=0 ;;
        -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$BENCH")
# shellcheck source=bench/origin-certs.sh
. "$BENCH/origin-certs.sh"
PROXY_BIN=${STRICTPROXY_BIN:-$ROOT/target/release/strictproxy}
LOADGEN=${LOADGEN_BIN:-$BENCH/loadgen/target/release/strictproxy-loadgen}
PEER_BIN=${PEER_BIN:-$BENCH/hudsucker-peer/target/release/hudsucker-peer}
if [[ $PEER == 1 && ! -x $PEER_BIN ]]; then
    echo "run.sh: no hudsucker peer at $PEER_BIN (bench/setup.sh builds it): no hudsucker column" >&2
    PEER=0
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

for tool in "$NGINX" wrk taskset openssl curl; do
    command -v "$tool" >/dev/null || { echo "run.sh: $tool is missing: run bench/setup.sh first" >&2; exit 1; }
done
for bin in "$PROXY_BIN" "$LOADGEN"; do
    [[ -x $bin ]] || { echo "run.sh: $bin is missing: run bench/setup.sh first" >&2; exit 1; }
done

# 10,000 idle connections (S6) need as many descriptors in the client and in the proxy.
# (S6 runs twice, plain and intercepted TLS, each with a fresh proxy.)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
if [[ $NOFILE != unlimited && $NOFILE -lt 12000 ]]; then
    echo "run.sh: the open-file limit is $NOFILE; S6 needs 12000 (raise the hard limit)" >&2
    exit 1
fi
[[ $NOFILE == unlimited ]] && NOFILE=65536

if [[ -z $SCHED ]]; then
    if [[ $(id -u) == 0 ]]; then SCHED="nice"; else SCHED="none"; fi
fi
case $SCHED in
    nice) PRIO=(nice -n -19) ;;
    fifo) PRIO=(chrt -f 10) ;;
    none) PRIO=() ;;
    *) echo "run.sh: --sched takes nice, fifo or none" >&2; exit 2 ;;
esac
if [[ $(nproc) -ge 2 ]]; then
    PROXY_PIN=("${PRIO[@]}" taskset -c 0)
    LOAD_PIN=("${PRIO[@]}" taskset -c 1)
else
    echo "run.sh: one CPU only: nothing pinned, ratios will be pessimistic" >&2
    PROXY_PIN=("${PRIO[@]}")
    LOAD_PIN=("${PRIO[@]}")
fi

WORK=$(mktemp -d /tmp/strictproxy-bench.XXXXXX)
PIDS=()
cleanup() {
    # Only the processes this script started, by PID.
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ $KEEP == 1 ]]; then
        echo "run.sh: work folder kept: $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "$*" >&2; }
wanted() { [[ -z $ONLY ]] || [[ ,$ONLY, == *,$1,* ]]; }

# Waits (polling, 30 s at most) until 127.0.0.1:$1 accepts connections, while process $2 lives.
wait_port() {
    local deadline=$((SECONDS + 30))
    until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
        if ! kill -0 "$2" 2>/dev/null; then
            log "run.sh: process $2 ended before listening on 127.0.0.1:$1"
            return 1
        fi
        if ((SECONDS > deadline)); then
            log "run.sh: nothing listens on 127.0.0.1:$1 after 30 s"
            return 1
        fi
        sleep 0.05
    done
}

freeport() { "$LOADGEN" freeport; }

# utime+stime of a process (all its threads), in clock ticks.
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
CLK_TCK=$(getconf CLK_TCK)
# Resident set size (VmRSS) and its peak (VmHWM) in KiB.
rss_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

field() { awk -v k="$2" '{ for (i = 1; i <= NF; i++) { n = index($i, "="); if (n && substr($i, 1, n - 1) == k) { print substr($i, n + 1); exit } } }' <<<"$1"; }

# ---------------------------------------------------------------------------------------------
# The origin: test CA, wildcard certificate, bodies, nginx.

log "== setting up in $WORK"
mkdir -p "$WORK/www" "$WORK/nginx-tmp" "$WORK/results" "$WORK/proxy-ca"
make_origin_certs "$WORK"
head -c 100 /dev/zero | tr '\0' 'a' >"$WORK/www/100b"
head -c 65536 /dev/zero | tr '\0' 'b' >"$WORK/www/64k"
cp "$WORK/www/100b" "$WORK/www/proto"
"$LOADGEN" preload --count 150000 --out "$WORK/preload.json"

HTTP_PORT=$(freeport)
HTTPS_PORT=$(freeport)
H2_PORT=$(freeport)
sed -e "s|@DIR@|$WORK|g" -e "s|@HTTP_PORT@|$HTTP_PORT|g" -e "s|@HTTPS_PORT@|$HTTPS_PORT|g" \
    -e "s|@NOFILE@|$NOFILE|g" -e "s|@CONNS@|$((NOFILE - 100))|g" \
    "$BENCH/nginx.conf.in" >"$WORK/nginx.conf"
sed -e "s|@DIR@|$WORK|g" -e "s|@H2_PORT@|$H2_PORT|g" "$BENCH/nginx-h2.conf.in" >"$WORK/nginx-h2.conf"
"${LOAD_PIN[@]}" "$NGINX" -p "$WORK" -e "$WORK/nginx-error.log" -c "$WORK/nginx.conf" &
PIDS+=($!)
NGINX_PID=$!
wait_port "$HTTP_PORT" "$NGINX_PID"
wait_port "$HTTPS_PORT" "$NGINX_PID"
wait_port "$H2_PORT" "$NGINX_PID"

# Connections nginx has accepted (stub_status), less the one this query opens.
nginx_accepts() {
    curl -sS --max-time 5 "http://127.0.0.1:$HTTP_PORT/status" | awk 'NR == 3 { print $1 - 1 }' || true
}

# S5's names: 256 force-https entries spread over the 150k list (loadgen's preload writes
# site<i>.example, every tenth entry pins-only).
S5_NAMES=()
for k in $(seq 0 255); do
    i=$((k * 577))
    ((i % 10 == 9)) && i=$((i - 1))
    S5_NAMES+=("site$i.example")
done
S5_TARGETS=""
for name in "${S5_NAMES[@]}"; do S5_TARGETS+="http://$name/ "; done

# S4's distinct hosts: each run gets its own slice of names, so no run meets a host an
# earlier one made the proxy mint a leaf or pool a connection for (the peer gets the slices
# after strictproxy's).
S4_SLICE=40000
# S4 "new leaf, pooled upstream": connections rotate over these names on a proxy whose leaf
# cache holds one leaf, so nearly every handshake mints while each name's upstream
# connections stay pooled.
S4_MINT_HOSTS=64

# ---------------------------------------------------------------------------------------------
# The proxy.

PROXY_PID=""
PROXY_PORT=""
# start_proxy NAME [EXTRA_RESOLVE_FILE [EXTRA_TOML_LINE]]: a fresh proxy with the 150k
# preload list.
start_proxy() {
    local name=$1 extra=${2:-} line=${3:-}
    PROXY_PORT=$(freeport)
    {
        echo "# strictproxy configuration for bench/run.sh ($name)"
        echo "listen = \"127.0.0.1:$PROXY_PORT\""
        echo "ca_dir = \"$WORK/proxy-ca\""
        echo "upstream_ca = [\"$WORK/origin-ca.pem\"]"
        echo "preload = [\"$WORK/preload.json\"]"
        echo "max_connections = 12000"
        echo "resolve = ["
        echo "  \"bench.test=127.0.0.1\","
        # Safety net: were the preload list not loaded, S5's requests would go to
        # 127.0.0.1:80 (refused) instead of being looked up.
        for n in "${S5_NAMES[@]}"; do echo "  \"$n=127.0.0.1\","; done
        if [[ -n $extra ]]; then cat "$extra"; fi
        echo "]"
        echo "$line"
    } >"$WORK/proxy-$name.toml"
    RUST_LOG=warn "${PROXY_PIN[@]}" "$PROXY_BIN" --config "$WORK/proxy-$name.toml" \
        >"$WORK/proxy-$name.log" 2>&1 &
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    wait_port "$PROXY_PORT" "$PROXY_PID" || { cat "$WORK/proxy-$name.log" >&2; exit 1; }
}

stop_proxy() {
    kill "$PROXY_PID" 2>/dev/null || true
    wait "$PROXY_PID" 2>/dev/null || true
}

# The hudsucker peer: the bench's proxy CA for its leaves (so clients trust both proxies the
# same way), the origin's test CA upstream, a 1,000-leaf cache (strictproxy's is 1,024).
PEER_PID=""
PEER_PORT=""
start_peer() {
    PEER_PORT=$(freeport)
    "${PROXY_PIN[@]}" "$PEER_BIN" "127.0.0.1:$PEER_PORT" "$WORK/proxy-ca/ca.pem" \
        "$WORK/proxy-ca/ca-key.pem" "$WORK/origin-ca.pem" 1000 >"$WORK/peer.log" 2>&1 &
    PEER_PID=$!
    PIDS+=("$PEER_PID")
    wait_port "$PEER_PORT" "$PEER_PID" || { cat "$WORK/peer.log" >&2; exit 1; }
}
# The scenarios with a hudsucker column (the issue's list: no S5, no HTTP/2 in hudsucker).
PEER_SCENS=" S1-50 S1-1 S2-50 S3-50 S4-one S4-many "

# The leaf cache's misses so far, from the admin API of a proxy started with one (S4-mint).
ADMIN_PORT=""
leaf_misses() {
    curl -sS --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" |
        awk '$1 ~ /leaf_cache_misses/ && $1 !~ /^#/ { print $2; exit }' || true
}

# ---------------------------------------------------------------------------------------------
# Load generators. Each prints one `RESULT key=value …` line.

# Every client runs under a watchdog, so a wedged run fails instead of hanging the benchmark.
WATCHDOG=(timeout -k 5 $((SECS + 60)))

wrk_run() { # CONNS PORT TARGETS
    WRK_TARGETS=$3 "${WATCHDOG[@]}" "${LOAD_PIN[@]}" wrk -t1 -c"$1" -d"${SECS}s" --timeout 5s \
        -s "$BENCH/wrk.lua" "http://127.0.0.1:$2/"
}

loadgen_run() { "${WATCHDOG[@]}" "${LOAD_PIN[@]}" "$LOADGEN" "$@" --secs "$SECS"; }

# measure SCENARIO SIDE COMMAND…: runs one measurement, appends its figures to the results.
# SIDE is direct, proxy (strictproxy) or peer (hudsucker).
measure() {
    local scen=$1 side=$2 t0=0 t1=0 line req cpu a0 a1 m0="" m1=""
    shift 2
    # The proxy's CPU on proxied runs; nginx's on direct runs, for comparison.
    local pid=$PROXY_PID who="proxy"
    [[ $side == direct ]] && { pid=$NGINX_PID; who="nginx"; }
    [[ $side == peer ]] && { pid=$PEER_PID; who="hudsucker"; }
    a0=$(nginx_accepts)
    [[ -n $ADMIN_PORT && $side == proxy ]] && m0=$(leaf_misses)
    t0=$(cpu_ticks "$pid")
    line=$("$@" 2>>"$WORK/client.err" | grep '^RESULT' || true)
    t1=$(cpu_ticks "$pid")
    a1=$(nginx_accepts)
    [[ -n $m0 ]] && m1=$(leaf_misses)
    if [[ -z $line ]]; then
        log "   $scen $side: no result (see $WORK/client.err)"
        KEEP=1
        line="RESULT requests=0 rps=0 p50_us=0 p99_us=0 errors=1 resumed=0"
    fi
    req=$(field "$line" requests)
    cpu=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$req" 'BEGIN { printf "%.1f", n ? d / hz * 1e6 / n : 0 }')
    local rps p50 p99 errors resumed
    rps=$(field "$line" rps)
    p50=$(field "$line" p50_us)
    p99=$(field "$line" p99_us)
    errors=$(field "$line" errors)
    resumed=$(field "$line" resumed)
    # New connections nginx accepted (the proxy's upstream ones on a proxied run) and leaves
    # minted (S4-mint), both per request answered.
    local accepts=$((${a1:-0} - ${a0:-0})) minted=""
    [[ -n $m1 && -n $m0 ]] && minted=$((m1 - m0))
    echo "$rps $p50 $p99 $errors $cpu ${resumed:-0} $req $accepts ${minted:-0}" >>"$WORK/results/$scen.$side"
    log "   $scen $side: $rps req/s, p50 $p50 µs, p99 $p99 µs, errors $errors, $who CPU $cpu µs/req, nginx accepted $accepts conns${resumed:+, resumed $resumed}${minted:+, leaves minted $minted}"
}

# The commands of each scenario, for a run number $1, on side $2.
scenario_cmd() {
    local scen=$1 side=$2 run=$3
    local port=$PROXY_PORT
    [[ $side == peer ]] && port=$PEER_PORT
    local -a via
    if [[ $side == direct ]]; then
        via=(--ca "$WORK/origin-ca.pem" --connect "127.0.0.1:$HTTPS_PORT")
    else
        via=(--ca "$WORK/proxy-ca/ca.pem" --proxy "127.0.0.1:$port")
    fi
    local https_url="https://bench.test:$HTTPS_PORT/100b"
    case $scen in
        S1-50|S1-1|S2-50)
            local conns=${scen#*-} path=/100b
            [[ $scen == S2-50 ]] && path=/64k
            if [[ $side == direct ]]; then
                wrk_run "$conns" "$HTTP_PORT" "$path"
            else
                wrk_run "$conns" "$port" "http://bench.test:$HTTP_PORT$path"
            fi ;;
        S3-50) loadgen_run keepalive --url "$https_url" --conns 50 "${via[@]}" ;;
        S4-one) loadgen_run newconn --url "$https_url" --conns 50 "${via[@]}" ;;
        S4-resume) loadgen_run newconn --url "$https_url" --conns 50 --resume "${via[@]}" ;;
        S4-mint)
            loadgen_run newconn --url "$https_url" --conns 50 --hosts "$S4_MINT_HOSTS" \
                --host-pattern 'm{}.bench.test' "${via[@]}" ;;
        S4-many)
            local slice=$((run - 1))
            [[ $side == peer ]] && slice=$((RUNS + run - 1))
            loadgen_run newconn --url "$https_url" --conns 50 --hosts "$S4_SLICE" \
                --host-offset $((slice * S4_SLICE)) "${via[@]}" ;;
        # S7: one HTTP/2 connection, 100 streams. Direct: h2 to nginx's h2 listener. Through
        # the proxy: CONNECT, intercepted TLS with ALPN h2, to the h2 listener (S7-h2) or to
        # the HTTP/1.1-only one (S7-h1); S7-h1 has no direct run of its own: its anchor is
        # S7-h2's direct run.
        S7-h2)
            [[ $side == direct ]] && via=(--ca "$WORK/origin-ca.pem" --connect "127.0.0.1:$H2_PORT")
            loadgen_run h2 --url "https://bench.test:$H2_PORT/100b" --conns 1 --streams 100 "${via[@]}" ;;
        S7-h1) loadgen_run h2 --url "$https_url" --conns 1 --streams 100 "${via[@]}" ;;
        S5-50)
            if [[ $side == direct ]]; then
                wrk_run 50 "$HTTP_PORT" "$S5_TARGETS"
            else
                wrk_run 50 "$PROXY_PORT" "$S5_TARGETS"
            fi ;;
    esac
}

run_scenario() {
    local scen=$1
    wanted "${scen%%-*}" || return 0
    log "== $scen"
    for run in $(seq 1 "$RUNS"); do
        measure "$scen" direct scenario_cmd "$scen" direct "$run"
        measure "$scen" proxy scenario_cmd "$scen" proxy "$run"
        if [[ $PEER == 1 && $PEER_SCENS == *" $scen "* ]]; then
            measure "$scen" peer scenario_cmd "$scen" peer "$run"
        fi
    done
}

# S7, interleaved per run: direct h2, through the proxy to the h2 origin, to the h1 origin.
# Then a short probe of each path to /proto, which nginx logs with the protocol it was
# spoken to in, so the table can say what the proxy spoke upstream.
S7_PROTO=()
run_s7() {
    wanted S7 || return 0
    log "== S7"
    for run in $(seq 1 "$RUNS"); do
        measure S7-h2 direct scenario_cmd S7-h2 direct "$run"
        measure S7-h2 proxy scenario_cmd S7-h2 proxy "$run"
        measure S7-h1 proxy scenario_cmd S7-h1 proxy "$run"
    done
    local via port target
    for via in direct proxy-h2 proxy-h1; do
        port=$H2_PORT
        [[ $via == proxy-h1 ]] && port=$HTTPS_PORT
        target=(--proxy "127.0.0.1:$PROXY_PORT" --ca "$WORK/proxy-ca/ca.pem")
        [[ $via == direct ]] && target=(--connect "127.0.0.1:$H2_PORT" --ca "$WORK/origin-ca.pem")
        "${LOAD_PIN[@]}" "$LOADGEN" h2 --url "https://bench.test:$port/proto?via=$via" --conns 1 \
            --streams 4 --secs 0.3 "${target[@]}" >/dev/null 2>>"$WORK/client.err" || true
    done
    for via in direct proxy-h2 proxy-h1; do
        # "HTTP/2.0 812/812": the protocol of the first logged request and how many of the
        # logged requests used it.
        S7_PROTO+=("$(awk -v v="$via" '$1 == v { n++; if (!p) p = $2; if ($2 == p) k++ }
            END { print n ? p " " k "/" n : "none 0/0" }' "$WORK/proto.log" 2>/dev/null)")
    done
    log "   upstream protocol (nginx's log): direct ${S7_PROTO[0]}, proxy to the h2 origin ${S7_PROTO[1]}, proxy to the h1 origin ${S7_PROTO[2]}"
}

# One request each way before measuring, so a broken setup fails loudly, not as a slow run.
# smoke PORT [plain]: through the proxy listening on PORT; the 307 check is strictproxy's.
smoke() {
    local port=$1 out
    out=$(curl -sS --max-time 5 -x "http://127.0.0.1:$port" -o /dev/null -w '%{http_code} %{size_download}' \
        "http://bench.test:$HTTP_PORT/100b")
    [[ $out == "200 100" ]] || { log "run.sh: plain GET through 127.0.0.1:$port gave '$out'"; exit 1; }
    out=$(curl -sS --max-time 5 -x "http://127.0.0.1:$port" --cacert "$WORK/proxy-ca/ca.pem" \
        -o /dev/null -w '%{http_code} %{size_download}' "https://bench.test:$HTTPS_PORT/100b")
    [[ $out == "200 100" ]] || { log "run.sh: HTTPS GET through 127.0.0.1:$port gave '$out'"; exit 1; }
    [[ ${2:-} == plain ]] && return 0
    out=$(curl -sS --max-time 5 -x "http://127.0.0.1:$port" -D - -o /dev/null "${S5_NAMES[0]/#/http://}/")
    [[ $out == *" 307 "* && ${out,,} == *"non-authoritative-reason: hsts"* ]] ||
        { log "run.sh: the preloaded name was not answered with a 307 Internal Redirect: $out"; exit 1; }
}

# idle_conns KIND URL: RSS per idle client connection on a fresh proxy, from 10,000
# connections that each made one request to URL (plain HTTP, or HTTPS: CONNECT and
# intercepted TLS) and then wait. Sets CONN_RSS[KIND] and CONN_HELD[KIND].
declare -A CONN_RSS CONN_HELD
idle_conns() {
    local kind=$1 url=$2
    log "== S6: 10,000 idle $kind connections"
    # The idle timeout (300 s by default) bounds the wait between requests; raised so no
    # connection can be dropped while RSS is read. (The header timeout no longer runs while
    # a connection waits: it arms on a request's first byte.)
    start_proxy "idle-$kind" "" "idle_timeout_secs = 900"
    local via=(--proxy "127.0.0.1:$PROXY_PORT" --ca "$WORK/proxy-ca/ca.pem")
    "${LOAD_PIN[@]}" "$LOADGEN" keepalive --url "$url" "${via[@]}" --conns 50 --secs 2 >/dev/null
    # The 50 warm-up connections close; the pool drops its idle upstream connections after
    # 4 s: wait for both before the baseline.
    sleep 5
    local base held fds n out="$WORK/idle-$kind.out"
    base=$(rss_kib "$PROXY_PID" VmRSS)
    "${LOAD_PIN[@]}" "$LOADGEN" idle --url "$url" "${via[@]}" --conns 10000 --secs 40 \
        >"$out" 2>>"$WORK/client.err" &
    local idle_pid=$!
    PIDS+=("$idle_pid")
    local deadline=$((SECONDS + 180))
    until grep -q '^READY' "$out"; do
        ((SECONDS < deadline)) && kill -0 "$idle_pid" 2>/dev/null || { log "run.sh: the idle client did not get ready"; exit 1; }
        sleep 0.1
    done
    # The upstream connections the opening burst pooled idle out too (4 s), so what is left
    # is the client connections.
    sleep 5
    held=$(rss_kib "$PROXY_PID" VmRSS)
    fds=$(find "/proc/$PROXY_PID/fd" -mindepth 1 -maxdepth 1 | wc -l)
    n=$(field "$(grep '^READY' "$out")" held)
    # Count only the connections the proxy really holds (each is one descriptor).
    ((fds < n)) && n=$fds
    CONN_HELD[$kind]=$n
    CONN_RSS[$kind]=$(awk -v a="$held" -v b="$base" -v n="$n" 'BEGIN { printf "%.2f", n ? (a - b) / n : 0 }')
    log "   proxy RSS $base KiB before, $held KiB with $n connections held ($fds descriptors open): ${CONN_RSS[$kind]} KiB per connection; opened in $(field "$(grep '^READY' "$out")" secs)s"
    kill "$idle_pid" 2>/dev/null || true
    wait "$idle_pid" 2>/dev/null || true
    stop_proxy
}

# ---------------------------------------------------------------------------------------------
# The runs.

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED=$SECONDS
log "== runs: $RUNS x ${SECS}s per measurement; load average before: $LOAD_BEFORE"

start_proxy main
sleep 1 # let the startup's allocations settle before reading the idle RSS
IDLE_RSS=$(rss_kib "$PROXY_PID" VmRSS)
START_PEAK_RSS=$(rss_kib "$PROXY_PID" VmHWM)
# Reset the peak (VmHWM) so the next reading is the peak under S1, not the preload parsing.
PEAK_LABEL="S6 peak RSS under S1 (50 conns)"
if ! echo 5 >"/proc/$PROXY_PID/clear_refs" 2>/dev/null; then
    START_PEAK_RSS=""
    PEAK_LABEL="S6 peak RSS, startup or S1 (VmHWM cannot be reset here)"
fi
smoke "$PROXY_PORT"
if [[ $PEER == 1 ]] && { wanted S1 || wanted S2 || wanted S3 || wanted S4; }; then
    # The proxy CA exists now (strictproxy made it): the peer signs its leaves with it.
    start_peer
    smoke "$PEER_PORT" plain
fi
run_scenario S1-50
PEAK_RSS=$(rss_kib "$PROXY_PID" VmHWM)
run_scenario S1-1
run_scenario S2-50
run_scenario S3-50
run_scenario S4-one
run_scenario S4-resume
run_scenario S5-50
run_s7
stop_proxy

if wanted S4; then
    # New leaf, pooled upstream: a one-leaf cache, names rotating; the admin API counts the
    # leaves minted.
    seq 0 $((S4_MINT_HOSTS - 1)) | sed 's/.*/  "m&.bench.test=127.0.0.1",/' >"$WORK/s4-mint-resolve.txt"
    ADMIN_PORT=$(freeport)
    start_proxy mint "$WORK/s4-mint-resolve.txt" "$(printf 'leaf_cache_size = 1\nadmin = "127.0.0.1:%s"' "$ADMIN_PORT")"
    wait_port "$ADMIN_PORT" "$PROXY_PID"
    run_scenario S4-mint
    stop_proxy
    ADMIN_PORT=""

    seq 0 $((RUNS * S4_SLICE - 1)) | sed 's/.*/  "h&.bench.test=127.0.0.1",/' >"$WORK/s4-resolve.txt"
    start_proxy many "$WORK/s4-resolve.txt"
    run_scenario S4-many
    stop_proxy
fi
if [[ -n $PEER_PID ]]; then
    kill "$PEER_PID" 2>/dev/null || true
    wait "$PEER_PID" 2>/dev/null || true
fi

if wanted S6; then
    idle_conns plain "http://bench.test:$HTTP_PORT/100b"
    idle_conns tls "https://bench.test:$HTTPS_PORT/100b"
fi

# ---------------------------------------------------------------------------------------------
# The table.

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
col() { if [[ -f $1 ]]; then awk -v c="$2" '{ print $c }' "$1" | median; fi; }
total() { if [[ -f $1 ]]; then awk -v c="$2" '{ s += $c } END { print s + 0 }' "$1"; else echo 0; fi; }

# row LABEL SCEN TARGETS [DIRECT_SCEN]: prints one table line; TARGETS names the checks
# (comma-separated: cN = proxy CPU ≤ N µs per request, p99h = added p99 ≤ 0.5 ms, r60 = ratio
# ≥ 0.6, resume = resumption offered, mint = leaves minted, up:PROTO = the proxy spoke PROTO
# upstream, per nginx's log); DIRECT_SCEN is the scenario whose direct runs are the anchor.
FAILED=0
row() {
    local label=$1 scen=$2 target=$3 dscen=${4:-$2}
    local d="$WORK/results/$dscen.direct" p="$WORK/results/$scen.proxy" h="$WORK/results/$scen.peer"
    [[ -f $p ]] || return 0
    local drps prps d50 d99 p50 p99 cpu dcpu derr perr resumed preq ratio verdict added
    local accepts minted up=""
    drps=$(col "$d" 1); prps=$(col "$p" 1); dcpu=$(col "$d" 5)
    d50=$(col "$d" 2); d99=$(col "$d" 3); p50=$(col "$p" 2); p99=$(col "$p" 3)
    cpu=$(col "$p" 5); resumed=$(total "$p" 6); preq=$(total "$p" 7)
    accepts=$(total "$p" 8); minted=$(total "$p" 9)
    derr=$(total "$d" 4); perr=$(total "$p" 4)
    ratio=$(awk -v a="$prps" -v b="$drps" 'BEGIN { printf "%.2f", b ? a / b : 0 }')
    added=$(awk -v a="$p99" -v b="$d99" 'BEGIN { printf "%+d", a - b }')
    [[ $target == *up:* ]] && up=${target#*up:} && up=${up%%,*}
    verdict=$(awk -v r="$ratio" -v cpu="$cpu" -v added="$added" -v t="$target" -v res="$resumed" \
        -v n="$preq" -v e="$derr" -v f="$perr" -v minted="$minted" -v up="$up" -v proto="${5:-}" 'BEGIN {
        ok = (e + f == 0); why = ""
        if (e + f) why = why " errors"
        if (t ~ /(^|,)c[0-9]/) {
            limit = t; sub(/^.*(^|,)c/, "", limit); sub(/,.*$/, "", limit)
            if (cpu > limit + 0) { ok = 0; why = why " cpu" }
        }
        if (t ~ /p99h/ && added > 500) { ok = 0; why = why " p99" }
        if (t ~ /r60/ && r < 0.60) { ok = 0; why = why " ratio" }
        if (t ~ /resume/ && res == 0) { ok = 0; why = why " no-resumption" }
        if (t ~ /mint/ && minted < 0.9 * n) { ok = 0; why = why " leaves-cached" }
        if (up != "") {
            split(proto, w, " "); split(w[2], c, "/")
            if (w[1] != up || c[1] != c[2] || c[2] == 0) { ok = 0; why = why " upstream-protocol" }
        }
        print ok ? "yes" : "**no**:" why }')
    [[ $verdict == yes ]] || FAILED=1
    local extra=""
    [[ $target == *resume* ]] && extra+=" ($(awk -v a="$resumed" -v n="$preq" 'BEGIN { printf "%.0f", n ? 100 * a / n : 0 }')% resumed)"
    [[ $target == *mint* ]] && extra+=" ($(awk -v a="$minted" -v n="$preq" 'BEGIN { printf "%.0f", n ? 100 * a / n : 0 }')% minted)"
    # For new-connection rows: the upstream connections nginx accepted per proxied connection.
    [[ $scen == S4-* ]] && extra+=" ($(awk -v a="$accepts" -v n="$preq" 'BEGIN { printf "%.2f", n ? a / n : 0 }') upstream conns/conn)"
    [[ -n $up ]] && extra+=" (nginx log: ${5:-nothing})"
    local peer=""
    if [[ -f $h ]]; then
        local hrps hcpu herr
        hrps=$(col "$h" 1); hcpu=$(col "$h" 5); herr=$(total "$h" 4)
        peer=$(awk -v a="$hrps" -v b="$drps" -v c="$hcpu" -v e="$herr" \
            'BEGIN { printf "%d (%.2f×), %s µs%s", a, b ? a / b : 0, c, e ? ", errors " e : "" }')
    fi
    printf '| %s | %s | %s | %s | %s / %s | %s / %s | %s | %s | %s | %s | %s / %s | %s | %s |\n' \
        "$label" "${drps%.*}" "${prps%.*}" "$ratio" "$d50" "$d99" "$p50" "$p99" "$added" "$cpu" "$dcpu" \
        "$peer" "$derr" "$perr" "$(target_text "$target")$extra" "$verdict"
}

target_text() {
    local t=$1 out=() k
    for k in ${t//,/ }; do
        case $k in
            c[0-9]*) out+=("≤ ${k#c} µs") ;;
            p99h) out+=("+p99 ≤ 0.5 ms") ;;
            r60) out+=("≥ 0.6×") ;;
            resume) out+=("resumption offered") ;;
            mint) out+=("a leaf minted per conn") ;;
            up:*) out+=("upstream ${k#up:}") ;;
        esac
    done
    local IFS=,
    echo "${out[*]}" | sed 's/,/, /g'
}

KIB_TO_MIB() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }

ELAPSED=$((SECONDS - STARTED))
CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
{
    echo
    echo "strictproxy benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) × ${CPU_MODEL:-unknown CPU}, $(uname -sr);"
    echo "medians of $RUNS run(s) of ${SECS}s; proxies on CPU 0, nginx + load generator on CPU 1; scheduling: $SCHED; load average before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg); took ${ELAPSED}s."
    echo
    echo "| scenario | direct req/s | proxy req/s | ratio | direct p50 / p99 µs | proxy p50 / p99 µs | added p99 µs | proxy CPU µs/req | nginx CPU µs/req (direct) | hudsucker req/s (ratio), CPU µs/req | errors d / p | target | met |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
    row "S1 GET 100 B, 50 conns" S1-50 c12,p99h
    row "S1 GET 100 B, 1 conn" S1-1 r60
    row "S2 GET 64 KiB, 50 conns" S2-50 c22
    row "S3 HTTPS GET 100 B via CONNECT, 50 conns" S3-50 c15,p99h
    row "S4 new TLS conns/s, one host (cached leaf, pooled upstream)" S4-one c120
    row "S4 new TLS conns/s, $S4_MINT_HOSTS hosts, 1-leaf cache (new leaf, pooled upstream)" S4-mint c150,mint
    row "S4 new TLS conns/s, distinct hosts (new leaf, new upstream conn)" S4-many c600
    row "S4 new TLS conns/s, one host, client resumes" S4-resume resume
    row "S5 307 Internal Redirect vs nginx return 307" S5-50 ""
    row "S7 h2, 1 conn × 100 streams, via MITM to an h2 origin (vs direct h2)" S7-h2 up:HTTP/2.0 S7-h2 "${S7_PROTO[1]:-}"
    row "S7 h2, 1 conn × 100 streams, via MITM to an HTTP/1.1 origin (vs direct h2)" S7-h1 up:HTTP/1.1 S7-h2 "${S7_PROTO[2]:-}"
    if wanted S6; then
        ok=$(awk -v k="$IDLE_RSS" 'BEGIN { print (k < 20 * 1024) ? "yes" : "**no**" }')
        [[ $ok == yes ]] || FAILED=1
        echo "| S6 RSS idle, 150k preload entries | | $(KIB_TO_MIB "$IDLE_RSS") | | | | | | | | | < 20 MiB | $ok |"
    fi
    if [[ -n $START_PEAK_RSS ]] && wanted S6; then
        echo "| S6 peak RSS at startup (parsing the preload list) | | $(KIB_TO_MIB "$START_PEAK_RSS") | | | | | | | | | | |"
    fi
    if [[ -n ${PEAK_RSS:-} ]] && wanted S1; then
        echo "| $PEAK_LABEL | | $(KIB_TO_MIB "$PEAK_RSS") | | | | | | | | | | |"
    fi
    for kind in plain tls; do
        [[ -n ${CONN_RSS[$kind]:-} ]] || continue
        what="keep-alive conn"
        [[ $kind == tls ]] && what="intercepted TLS conn (CONNECT + TLS, one request)"
        ok=$(awk -v k="${CONN_RSS[$kind]}" -v n="${CONN_HELD[$kind]}" 'BEGIN { print (k <= 10 && n == 10000) ? "yes" : "**no**" }')
        [[ $ok == yes ]] || FAILED=1
        echo "| S6 RSS per idle $what (${CONN_HELD[$kind]} held) | | ${CONN_RSS[$kind]} KiB | | | | | | | | | ≤ 10 KiB | $ok |"
    done
    echo
} >"$WORK/table.md"
cat "$WORK/table.md"
[[ $KEEP == 1 ]] && log "run.sh: table also in $WORK/table.md"
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average after: $LOAD_AFTER (other work on the machine skews the figures)"
[[ $FAILED == 0 ]] || log "run.sh: some targets were missed (the 'met' column); see bench/README.md"
exit 0
