#!/usr/bin/env bash
# The one command that runs the whole test suite, on a fresh Debian bookworm machine too:
# installs what the test tiers need when missing (hack/install-test-deps.sh: etcd, kubectl,
# Samba, kubernetes-validate), builds and caches both kube-apiservers of the real-API-server
# tier, v1.20.2 and the current release, and the current one's etcd
# (hack/build-kube-apiserver.sh, hack/build-etcd.sh; minutes the first time, instant after),
# builds the release gmsa-webhook and kubectl-gmsa the image ships (GMSA_RELEASE_WEBHOOK: the
# image-root test runs it), the node tier's binaries (hack/build-kube-node.sh: kubelet,
# controller-manager, scheduler, kube-proxy, containerd, runc, CNI plugins) and the image
# itself (hack/build-image.sh, an OCI archive: GMSA_IMAGE_ARCHIVE), then runs every test
# target and the doc tests. Extra arguments go to both cargo test runs.
#
# Quiet and idempotent when everything is already there. GMSA_SKIP_REAL_APISERVER=1 skips the
# real-API-server tier (and its build) for a quick run; GMSA_SKIP_NODE_TIER=1 skips the node
# tier and its build.
set -euo pipefail
cd "$(dirname "$0")/.."

hack/install-test-deps.sh

if [ "${GMSA_SKIP_REAL_APISERVER:-}" != 1 ]; then
  GMSA_KUBE_APISERVER="$(hack/build-kube-apiserver.sh v1.20.2)"
  GMSA_KUBE_APISERVER_CURRENT="$(hack/build-kube-apiserver.sh v1.37.2)"
  GMSA_ETCD_CURRENT="$(hack/build-etcd.sh)"
  export GMSA_KUBE_APISERVER GMSA_KUBE_APISERVER_CURRENT GMSA_ETCD_CURRENT
fi

# The binaries the image ships (see Dockerfile): the image-root test runs this very build.
release="$(cargo build --release --locked -q -p gmsa-webhook --bin gmsa-webhook -p kubectl-gmsa \
  --bin kubectl-gmsa --message-format=json 2>/dev/null | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p')"
GMSA_RELEASE_WEBHOOK="$(echo "$release" | grep '/gmsa-webhook$' | tail -n 1)"
GMSA_RELEASE_KUBECTL_GMSA="$(echo "$release" | grep '/kubectl-gmsa$' | tail -n 1)"
for binary in "$GMSA_RELEASE_WEBHOOK" "$GMSA_RELEASE_KUBECTL_GMSA"; do
  if [ -z "$binary" ] || [ ! -x "$binary" ]; then
    echo "hack/test.sh: the release build failed; run: cargo build --release -p gmsa-webhook -p kubectl-gmsa" >&2
    exit 1
  fi
done
export GMSA_RELEASE_WEBHOOK GMSA_RELEASE_KUBECTL_GMSA

if [ "${GMSA_SKIP_NODE_TIER:-}" != 1 ] && [ "${GMSA_SKIP_REAL_APISERVER:-}" != 1 ]; then
  GMSA_KUBE_NODE_DIR="$(hack/build-kube-node.sh)"
  GMSA_IMAGE_ARCHIVE="$(hack/build-image.sh)"
  export GMSA_KUBE_NODE_DIR GMSA_IMAGE_ARCHIVE
fi

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
