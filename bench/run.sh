#!/usr/bin/env bash
# bench/run.sh — strictproxy's performance benchmark (see bench/README.md).
#
# On loopback only and bounded in time: starts a local nginx origin, then measures each
# scenario directly against nginx and through strictproxy in the same run, N runs each,
# interleaved, and prints one Markdown table of medians with the ratio proxy/direct and the
# proxy's CPU time per request. The proxy is pinned to CPU 0, nginx and the load generators to
# CPU 1, so the figures compare across runs and machines of the same kind.
#
#   bench/run.sh            3 runs of 8 s per measurement (about 7 minutes)
#   bench/run.sh --quick    1 run of 3 s (a smoke test, about 1.5 minutes)
#   options: --runs N  --secs S  --only S1,S3,...  --keep (keep the work folder)
#            --sched nice|fifo|none: how the benchmark's processes (proxy, nginx, clients) are
#            favoured over other work on the machine: nice -19 (default as root), SCHED_FIFO
#            (steadier on a busy machine; the kernel's RT throttling then stalls each CPU
#            50 ms a second, which shows in p99), or not at all
#
# Set up once with bench/setup.sh. STRICTPROXY_BIN and LOADGEN_BIN override the binaries.
# Nothing is sent beyond 127.0.0.1 and no name is looked up: every host name the proxy meets
# (bench.test, h<N>.bench.test, the S5 names) is given to it with `resolve`.
set -euo pipefail

RUNS=3
SECS=8
ONLY=""
KEEP=0
SCHED=""
while [[ $# -gt 0 ]]; do
    case $1 in
        --quick) RUNS=1; SECS=3 ;;
        --runs) RUNS=$2; shift ;;
        --secs) SECS=$2; shift ;;
        --only) ONLY=$2; shift ;;
        --keep) KEEP=1 ;;
        --sched) SCHED=$2; shift ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
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
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

for tool in "$NGINX" wrk taskset openssl curl; do
    command -v "$tool" >/dev/null || { echo "run.sh: $tool is missing: run bench/setup.sh first" >&2; exit 1; }
done
for bin in "$PROXY_BIN" "$LOADGEN"; do
    [[ -x $bin ]] || { echo "run.sh: $bin is missing: run bench/setup.sh first" >&2; exit 1; }
done

# 10,000 idle connections (S6) need as many descriptors in the client and in the proxy.
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
"$LOADGEN" preload --count 150000 --out "$WORK/preload.json"

HTTP_PORT=$(freeport)
HTTPS_PORT=$(freeport)
sed -e "s|@DIR@|$WORK|g" -e "s|@HTTP_PORT@|$HTTP_PORT|g" -e "s|@HTTPS_PORT@|$HTTPS_PORT|g" \
    -e "s|@NOFILE@|$NOFILE|g" -e "s|@CONNS@|$((NOFILE - 100))|g" \
    "$BENCH/nginx.conf.in" >"$WORK/nginx.conf"
"${LOAD_PIN[@]}" "$NGINX" -p "$WORK" -e "$WORK/nginx-error.log" -c "$WORK/nginx.conf" &
PIDS+=($!)
NGINX_PID=$!
wait_port "$HTTP_PORT" "$NGINX_PID"
wait_port "$HTTPS_PORT" "$NGINX_PID"

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
# earlier one made the proxy mint a leaf or pool a connection for.
S4_SLICE=40000

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
measure() {
    local scen=$1 side=$2 t0=0 t1=0 line req cpu
    shift 2
    # The proxy's CPU on proxied runs; nginx's on direct runs, for comparison.
    local pid=$PROXY_PID
    [[ $side == direct ]] && pid=$NGINX_PID
    t0=$(cpu_ticks "$pid")
    line=$("$@" 2>>"$WORK/client.err" | grep '^RESULT' || true)
    t1=$(cpu_ticks "$pid")
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
    echo "$rps $p50 $p99 $errors $cpu ${resumed:-0} $req" >>"$WORK/results/$scen.$side"
    if [[ $side == proxy ]]; then
        log "   $scen $side: $rps req/s, p50 $p50 µs, p99 $p99 µs, errors $errors, proxy CPU $cpu µs/req${resumed:+, resumed $resumed}"
    else
        log "   $scen $side: $rps req/s, p50 $p50 µs, p99 $p99 µs, errors $errors, nginx CPU $cpu µs/req${resumed:+, resumed $resumed}"
    fi
}

# The commands of each scenario, for a run number $1, on side $2.
scenario_cmd() {
    local scen=$1 side=$2 run=$3
    local direct_https=(--connect "127.0.0.1:$HTTPS_PORT" --ca "$WORK/origin-ca.pem")
    local proxy_https=(--proxy "127.0.0.1:$PROXY_PORT" --ca "$WORK/proxy-ca/ca.pem")
    local https_url="https://bench.test:$HTTPS_PORT/100b"
    local -a via
    [[ $side == direct ]] && via=("${direct_https[@]}") || via=("${proxy_https[@]}")
    case $scen in
        S1-50|S1-1|S2-50)
            local conns=${scen#*-} path=/100b
            [[ $scen == S2-50 ]] && path=/64k
            if [[ $side == direct ]]; then
                wrk_run "$conns" "$HTTP_PORT" "$path"
            else
                wrk_run "$conns" "$PROXY_PORT" "http://bench.test:$HTTP_PORT$path"
            fi ;;
        S3-50) loadgen_run keepalive --url "$https_url" --conns 50 "${via[@]}" ;;
        S4-one) loadgen_run newconn --url "$https_url" --conns 50 "${via[@]}" ;;
        S4-resume) loadgen_run newconn --url "$https_url" --conns 50 --resume "${via[@]}" ;;
        S4-many)
            loadgen_run newconn --url "$https_url" --conns 50 --hosts "$S4_SLICE" \
                --host-offset $(((run - 1) * S4_SLICE)) "${via[@]}" ;;
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
    done
}

# One request each way before measuring, so a broken setup fails loudly, not as a slow run.
smoke() {
    local out
    out=$(curl -sS --max-time 5 -x "http://127.0.0.1:$PROXY_PORT" -o /dev/null -w '%{http_code} %{size_download}' \
        "http://bench.test:$HTTP_PORT/100b")
    [[ $out == "200 100" ]] || { log "run.sh: plain GET through the proxy gave '$out'"; exit 1; }
    out=$(curl -sS --max-time 5 -x "http://127.0.0.1:$PROXY_PORT" --cacert "$WORK/proxy-ca/ca.pem" \
        -o /dev/null -w '%{http_code} %{size_download}' "https://bench.test:$HTTPS_PORT/100b")
    [[ $out == "200 100" ]] || { log "run.sh: HTTPS GET through the proxy gave '$out'"; exit 1; }
    out=$(curl -sS --max-time 5 -x "http://127.0.0.1:$PROXY_PORT" -D - -o /dev/null "${S5_NAMES[0]/#/http://}/")
    [[ $out == *" 307 "* && ${out,,} == *"non-authoritative-reason: hsts"* ]] ||
        { log "run.sh: the preloaded name was not answered with a 307 Internal Redirect: $out"; exit 1; }
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
smoke
run_scenario S1-50
PEAK_RSS=$(rss_kib "$PROXY_PID" VmHWM)
run_scenario S1-1
run_scenario S2-50
run_scenario S3-50
run_scenario S4-one
run_scenario S4-resume
run_scenario S5-50
stop_proxy

if wanted S4; then
    seq 0 $((RUNS * S4_SLICE - 1)) | sed 's/.*/  "h&.bench.test=127.0.0.1",/' >"$WORK/s4-resolve.txt"
    start_proxy many "$WORK/s4-resolve.txt"
    run_scenario S4-many
    stop_proxy
fi

CONN_RSS=""
CONN_HELD=""
if wanted S6; then
    log "== S6: 10,000 idle keep-alive connections"
    # hyper's header-read timeout (10 s by default) also runs while a keep-alive connection
    # waits for its next request, so idle clients are dropped after it; lifted here so the
    # connections stay for the measurement.
    start_proxy idle "" "header_read_timeout_secs = 600"
    "${LOAD_PIN[@]}" "$LOADGEN" keepalive --url "http://bench.test:$HTTP_PORT/100b" \
        --proxy "127.0.0.1:$PROXY_PORT" --conns 50 --secs 2 >/dev/null
    sleep 1 # the 50 warm-up connections close; wait for the proxy to drop them
    BASE_RSS=$(rss_kib "$PROXY_PID" VmRSS)
    "${LOAD_PIN[@]}" "$LOADGEN" idle --url "http://bench.test:$HTTP_PORT/100b" \
        --proxy "127.0.0.1:$PROXY_PORT" --conns 10000 --secs 20 >"$WORK/idle.out" 2>>"$WORK/client.err" &
    IDLE_PID=$!
    PIDS+=("$IDLE_PID")
    deadline=$((SECONDS + 120))
    until grep -q '^READY' "$WORK/idle.out"; do
        ((SECONDS < deadline)) && kill -0 "$IDLE_PID" 2>/dev/null || { log "run.sh: the idle client did not get ready"; exit 1; }
        sleep 0.1
    done
    HELD_RSS=$(rss_kib "$PROXY_PID" VmRSS)
    PROXY_FDS=$(find "/proc/$PROXY_PID/fd" -mindepth 1 -maxdepth 1 | wc -l)
    CONN_HELD=$(field "$(grep '^READY' "$WORK/idle.out")" held)
    # Count only the connections the proxy really holds (each is one descriptor).
    ((PROXY_FDS < CONN_HELD)) && CONN_HELD=$PROXY_FDS
    CONN_RSS=$(awk -v a="$HELD_RSS" -v b="$BASE_RSS" -v n="$CONN_HELD" 'BEGIN { printf "%.2f", n ? (a - b) / n : 0 }')
    log "   proxy RSS $BASE_RSS KiB before, $HELD_RSS KiB with $CONN_HELD connections held ($PROXY_FDS descriptors open): $CONN_RSS KiB per connection"
    kill "$IDLE_PID" 2>/dev/null || true
    wait "$IDLE_PID" 2>/dev/null || true
    log "   opened in $(field "$(grep '^READY' "$WORK/idle.out")" secs)s"
    stop_proxy
fi

# ---------------------------------------------------------------------------------------------
# The table.

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
col() { if [[ -f $1 ]]; then awk -v c="$2" '{ print $c }' "$1" | median; fi; }
total() { if [[ -f $1 ]]; then awk -v c="$2" '{ s += $c } END { print s + 0 }' "$1"; else echo 0; fi; }

# row LABEL SCEN TARGET_KIND: prints one table line; TARGET_KIND names the checks.
FAILED=0
row() {
    local label=$1 scen=$2 target=$3
    local d="$WORK/results/$scen.direct" p="$WORK/results/$scen.proxy"
    [[ -f $p ]] || return 0
    local drps prps d50 d99 p50 p99 cpu dcpu derr perr resumed preq ratio verdict
    drps=$(col "$d" 1); prps=$(col "$p" 1); dcpu=$(col "$d" 5)
    d50=$(col "$d" 2); d99=$(col "$d" 3); p50=$(col "$p" 2); p99=$(col "$p" 3)
    cpu=$(col "$p" 5); resumed=$(total "$p" 6); preq=$(total "$p" 7)
    derr=$(total "$d" 4); perr=$(total "$p" 4)
    ratio=$(awk -v a="$prps" -v b="$drps" 'BEGIN { printf "%.2f", b ? a / b : 0 }')
    verdict=$(awk -v r="$ratio" -v cpu="$cpu" -v d99="$d99" -v p99="$p99" -v t="$target" \
        -v res="$resumed" -v n="$preq" -v e="$derr" -v f="$perr" 'BEGIN {
        ok = (e + f == 0); why = ""
        if (e + f) why = why " errors"
        if (t ~ /r80/ && r < 0.80) { ok = 0; why = why " ratio" }
        if (t ~ /r90/ && r < 0.90) { ok = 0; why = why " ratio" }
        if (t ~ /c12/ && cpu > 12) { ok = 0; why = why " cpu" }
        if (t ~ /c300/ && cpu > 300) { ok = 0; why = why " cpu" }
        if (t ~ /c600/ && cpu > 600) { ok = 0; why = why " cpu" }
        if (t ~ /p99/ && p99 - d99 >= 1000) { ok = 0; why = why " p99" }
        if (t ~ /resume/ && res == 0) { ok = 0; why = why " no-resumption" }
        print ok ? "yes" : "**no**:" why }')
    [[ $verdict == yes ]] || FAILED=1
    local extra=""
    [[ $target == *resume* ]] && extra=" ($(awk -v a="$resumed" -v n="$preq" 'BEGIN { printf "%.0f", n ? 100 * a / n : 0 }')% resumed)"
    printf '| %s | %s | %s | %s | %s / %s | %s / %s | %s | %s | %s / %s | %s | %s |\n' \
        "$label" "${drps%.*}" "${prps%.*}" "$ratio" "$d50" "$d99" "$p50" "$p99" "$cpu" "$dcpu" \
        "$derr" "$perr" "$(target_text "$target")$extra" "$verdict"
}

target_text() {
    local t=$1 out=()
    [[ $t == *r80* ]] && out+=("≥ 0.8×")
    [[ $t == *r90* ]] && out+=("≥ 0.9×")
    [[ $t == *c12* ]] && out+=("≤ 12 µs")
    [[ $t == *c300* ]] && out+=("≤ 300 µs")
    [[ $t == *c600* ]] && out+=("≤ 600 µs")
    [[ $t == *p99* ]] && out+=("+p99 < 1 ms")
    [[ $t == *resume* ]] && out+=("resumption offered")
    local IFS=,
    echo "${out[*]}" | sed 's/,/, /g'
}

KIB_TO_MIB() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }

ELAPSED=$((SECONDS - STARTED))
CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
{
    echo
    echo "strictproxy benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) × ${CPU_MODEL:-unknown CPU}, $(uname -sr);"
    echo "medians of $RUNS run(s) of ${SECS}s; proxy on CPU 0, nginx + load generator on CPU 1; scheduling: $SCHED; load average before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg); took ${ELAPSED}s."
    echo
    echo "| scenario | direct req/s | proxy req/s | ratio | direct p50 / p99 µs | proxy p50 / p99 µs | proxy CPU µs/req | nginx CPU µs/req (direct) | errors d / p | target | met |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
    row "S1 GET 100 B, 50 conns" S1-50 r80,c12,p99
    row "S1 GET 100 B, 1 conn" S1-1 c12,p99
    row "S2 GET 64 KiB, 50 conns" S2-50 r80,p99
    row "S3 HTTPS GET 100 B via CONNECT, 50 conns" S3-50 r90
    row "S4 new TLS conns/s, one host" S4-one r90,c300
    row "S4 new TLS conns/s, distinct hosts" S4-many r90,c600
    row "S4 new TLS conns/s, one host, client resumes" S4-resume resume
    row "S5 307 Internal Redirect vs nginx return 307" S5-50 r80
    if wanted S6; then
        ok=$(awk -v k="$IDLE_RSS" 'BEGIN { print (k < 20 * 1024) ? "yes" : "**no**" }')
        [[ $ok == yes ]] || FAILED=1
        echo "| S6 RSS idle, 150k preload entries | | $(KIB_TO_MIB "$IDLE_RSS") | | | | | | | < 20 MiB | $ok |"
    fi
    if [[ -n $START_PEAK_RSS ]] && wanted S6; then
        echo "| S6 peak RSS at startup (parsing the preload list) | | $(KIB_TO_MIB "$START_PEAK_RSS") | | | | | | | | |"
    fi
    if [[ -n ${PEAK_RSS:-} ]] && wanted S1; then
        echo "| $PEAK_LABEL | | $(KIB_TO_MIB "$PEAK_RSS") | | | | | | | | |"
    fi
    if [[ -n $CONN_RSS ]]; then
        ok=$(awk -v k="$CONN_RSS" -v n="$CONN_HELD" 'BEGIN { print (k < 10 && n == 10000) ? "yes" : "**no**" }')
        [[ $ok == yes ]] || FAILED=1
        echo "| S6 RSS per idle keep-alive conn ($CONN_HELD held) | | $CONN_RSS KiB | | | | | | | < 10 KiB | $ok |"
    fi
    echo
} >"$WORK/table.md"
cat "$WORK/table.md"
[[ $KEEP == 1 ]] && log "run.sh: table also in $WORK/table.md"
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average after: $LOAD_AFTER (other work on the machine skews the figures)"
[[ $FAILED == 0 ]] || log "run.sh: some targets were missed (the 'met' column); see bench/README.md"
exit 0
