#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time and prints one result line per
# target; exits non-zero if any target found a crash (the input is kept under
# fuzz/artifacts/TARGET/ and printed). Fuzzing never touches the network.
#
#   scripts/fuzz.sh            # 60 s per target
#   scripts/fuzz.sh 300        # 300 s per target
#   FUZZ_TARGETS="location" scripts/fuzz.sh 30
#   FUZZ_SANITIZER=address scripts/fuzz.sh   # default none: the targets are safe Rust, where
#                                            # a sanitizer costs speed and finds nothing more
#
# cargo-fuzz needs nightly compiler flags (-Zsanitizer, -Cpasses=sancov). RUSTC_BOOTSTRAP=1
# lets the stable toolchain accept them, so no other toolchain has to be installed.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
targets="${FUZZ_TARGETS:-sts_parser request_target location}"
sanitizer="${FUZZ_SANITIZER:-none}"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "installing cargo-fuzz (once)..."
  cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1

for target in $targets; do cargo fuzz build --sanitizer "$sanitizer" "$target"; done

failed=0
results=()
for target in $targets; do
  corpus="fuzz/corpus/$target"
  mkdir -p "$corpus" "fuzz/artifacts/$target"
  log="fuzz/artifacts/$target/last-run.log"
  echo "fuzzing $target for ${seconds}s..."
  # The seeds are read, never written; new inputs go to the corpus, which grows across runs.
  if cargo fuzz run --sanitizer "$sanitizer" "$target" "$corpus" "fuzz/seeds/$target" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
      -print_final_stats=1 >"$log" 2>&1; then
    runs=$(grep -Eo 'Done [0-9]+ runs' "$log" | grep -Eo '[0-9]+' | tail -1 || true)
    cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -1 | grep -Eo '[0-9]+' || true)
    results+=("fuzz $target: ${seconds}s, ${runs:-?} runs, coverage ${cov:-?} edges, no crash")
  else
    failed=1
    artifact=$(grep -Eo 'fuzz/artifacts/[^ ]+' "$log" | grep -v last-run | tail -1 || true)
    results+=("fuzz $target: CRASH, input ${artifact:-unknown} (log $log)")
    grep -E 'panicked at|ERROR|SUMMARY' "$log" | head -5 || true
    if [ -n "$artifact" ] && [ -f "$artifact" ]; then
      echo "crash input (hex):"
      od -An -tx1 -v "$artifact" | head -20
    fi
  fi
done

printf '%s\n' "${results[@]}"
exit "$failed"
