#!/usr/bin/env bash
# The one command that runs the whole test suite, on a fresh Debian bookworm machine too:
# installs what the test tiers need when missing (hack/install-test-deps.sh: etcd, kubectl,
# Samba, kubernetes-validate), builds and caches both kube-apiservers of the real-API-server
# tier, v1.20.2 and the current release, and the current one's etcd
# (hack/build-kube-apiserver.sh, hack/build-etcd.sh; minutes the first time, instant after),
# builds the release gmsa-webhook the image ships (GMSA_RELEASE_WEBHOOK: the image-root test
# runs it), then runs every test target and the doc tests. Extra arguments go to both cargo test runs.
#
# Quiet and idempotent when everything is already there. GMSA_SKIP_REAL_APISERVER=1 skips the
# real-API-server tier (and its build) for a quick run.
set -euo pipefail
cd "$(dirname "$0")/.."

hack/install-test-deps.sh

if [ "${GMSA_SKIP_REAL_APISERVER:-}" != 1 ]; then
  GMSA_KUBE_APISERVER="$(hack/build-kube-apiserver.sh v1.20.2)"
  GMSA_KUBE_APISERVER_CURRENT="$(hack/build-kube-apiserver.sh v1.37.2)"
  GMSA_ETCD_CURRENT="$(hack/build-etcd.sh)"
  export GMSA_KUBE_APISERVER GMSA_KUBE_APISERVER_CURRENT GMSA_ETCD_CURRENT
fi

# The binary the image ships (see Dockerfile): the image-root test runs this very build.
GMSA_RELEASE_WEBHOOK="$(cargo build --release --locked -q -p gmsa-webhook --bin gmsa-webhook \
  --message-format=json 2>/dev/null | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)"
if [ -z "$GMSA_RELEASE_WEBHOOK" ] || [ ! -x "$GMSA_RELEASE_WEBHOOK" ]; then
  echo "hack/test.sh: the release build of gmsa-webhook failed; run: cargo build --release -p gmsa-webhook" >&2
  exit 1
fi
export GMSA_RELEASE_WEBHOOK

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --doc "$@" 2>&1 | tee -a "$log" || status=$?
if [ "$status" -eq 0 ]; then
  cargo test --workspace --all-targets "$@" 2>&1 | tee -a "$log" || status=$?
fi

# One closing line for the whole suite, summed over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
