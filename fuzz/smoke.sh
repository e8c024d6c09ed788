#!/usr/bin/env bash
# Builds every fuzz target and runs each for N seconds (N = $1, default 20), starting from a copy
# of its seed corpus in a temporary directory, so that the corpus in the repository only ever
# holds the seeds. A crash fails the script; its input is left in fuzz/artifacts/<target>/.
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
#
# The sanitizer defaults to none: the library forbids `unsafe` and the targets have none of their
# own (only libfuzzer-sys's glue), so AddressSanitizer has nothing of ours to watch, and without it
# the targets run about six times faster. Overflow checks and debug assertions stay on.
# FUZZ_SANITIZER=address (or another) brings one back.
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-20}
sanitizer=${FUZZ_SANITIZER:-none}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo +nightly fuzz build --sanitizer "$sanitizer"
targets=$(cargo +nightly fuzz list)

for target in $targets; do
  corpus="$work/corpus/$target"
  mkdir -p "$corpus"
  if compgen -G "corpus/$target/seed-*" >/dev/null; then
    cp corpus/"$target"/seed-* "$corpus/"
  fi
  log="$work/$target.log"
  echo "--- fuzz $target for ${seconds}s ($(find "$corpus" -type f | wc -l) seeds)"
  if ! cargo +nightly fuzz run --sanitizer "$sanitizer" "$target" "$corpus" -- \
      -max_total_time="$seconds" -dict=mqtt.dict -print_final_stats=1 >"$log" 2>&1; then
    tail -n 100 "$log"
    echo "fuzz target $target failed; the input is in fuzz/artifacts/$target/"
    exit 1
  fi
  # The final line ("Done N runs in S second(s)") and libFuzzer's statistics.
  grep -E '^(Done |stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)' "$log" || true
  grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true
done
