#!/usr/bin/env bash
# Fuzzes review parsing and decisions (`review`) and manifest / credential-spec parsing
# (`manifests`) with cargo-fuzz (libFuzzer, AddressSanitizer), each for a bounded time.
# Usage: hack/fuzz.sh [SECONDS_PER_TARGET]   (default 30)
# Needs cargo-fuzz (`cargo install cargo-fuzz`, installed here when missing). libFuzzer needs
# nightly compiler flags (-Zsanitizer): the project's stable toolchain allows them with
# RUSTC_BOOTSTRAP=1, so no nightly toolchain is needed. The corpus grows in fuzz/corpus/ (not committed), seeded from fuzz/seeds/;
# crashes land in fuzz/artifacts/; builds go to target/fuzz/. The same bodies run as a plain test on stable:
# `cargo test -p gmsa-core --test fuzz_bodies`.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-30}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for target in review manifests; do
  mkdir -p "corpus/$target"
  echo "== fuzzing $target for ${secs}s" >&2
  start=$(date +%s)
  status=0
  cargo fuzz run --target-dir ../target/fuzz "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1 || status=$?
  grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb|Done|==[0-9]+==ERROR|SUMMARY|.*Test unit written)' "$log" || true
  grep -E '^#[0-9]+' "$log" | tail -1 || true
  if [ "$status" -ne 0 ]; then tail -40 "$log" >&2; fi
  echo "== $target: $(( $(date +%s) - start ))s, exit $status, corpus $(ls "corpus/$target" | wc -l) inputs" >&2
  [ "$status" -eq 0 ] || exit "$status"
done
