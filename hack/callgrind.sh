#!/usr/bin/env bash
# Instructions per admission of the pure decision path (Review::read -> needs -> Facts::gather on
# the embedded state -> decide -> respond), counted by valgrind's callgrind: the release
# `gmsa-bench decide` runs N1 and N2 times, and (I2 - I1) / (N2 - N1) cancels start-up.
# Usage: hack/callgrind.sh [N1] [N2]   (defaults 1000 and 11000; needs apt package valgrind)
set -euo pipefail
cd "$(dirname "$0")/.."
n1=${1:-1000}
n2=${2:-11000}
command -v valgrind >/dev/null || { echo "hack/callgrind.sh: install valgrind (apt-get install valgrind)" >&2; exit 1; }
cargo build --release -q -p gmsa-bench
bin="${CARGO_TARGET_DIR:-target}/release/gmsa-bench"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

total() { # the "summary:" (or "totals:") line of a callgrind output file
  awk '/^(summary|totals):/ {print $2; exit}' "$1"
}

printf '%-9s %4s %14s %14s %12s\n' hook refs "I($n1)" "I($n2)" per-admission
for hook in mutate validate; do
  for refs in 1 10; do
    for n in "$n1" "$n2"; do
      valgrind --tool=callgrind --callgrind-out-file="$out/$hook.$refs.$n" \
        "$bin" decide --iterations "$n" --hook "$hook" --refs "$refs" >/dev/null 2>&1
    done
    i1=$(total "$out/$hook.$refs.$n1")
    i2=$(total "$out/$hook.$refs.$n2")
    printf '%-9s %4s %14s %14s %12s\n' "$hook" "$refs" "$i1" "$i2" $(( (i2 - i1) / (n2 - n1) ))
  done
done
