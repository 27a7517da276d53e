#!/usr/bin/env bash
# The one command that runs the whole test suite, on a fresh Debian bookworm machine too:
# installs what the real-API-server tier needs (etcd, kubectl) when missing, builds and caches
# kube-apiserver v1.20.2 (hack/build-kube-apiserver.sh; minutes the first time, instant after),
# then runs every test target and the doc tests. Extra arguments go to both cargo test runs.
#
# Quiet and idempotent when everything is already there. GMSA_SKIP_REAL_APISERVER=1 skips the
# real-API-server tier (and its build) for a quick run.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  sudo=(sudo)
fi

need=()
[ -x /usr/bin/etcd ] || need+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
# Any kubectl at /usr/bin works; Debian's kubernetes-client (1.20) matches the API server.
[ -x /usr/bin/kubectl ] || need+=(kubernetes-client)
if [ ${#need[@]} -gt 0 ] && [ "${GMSA_SKIP_REAL_APISERVER:-}" != 1 ]; then
  echo "hack/test.sh: installing ${need[*]}" >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi

if [ "${GMSA_SKIP_REAL_APISERVER:-}" != 1 ]; then
  GMSA_KUBE_APISERVER="$(hack/build-kube-apiserver.sh)"
  export GMSA_KUBE_APISERVER
fi

cargo test --workspace --all-targets "$@"
cargo test --workspace --doc "$@"
