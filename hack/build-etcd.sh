#!/usr/bin/env bash
# Builds etcd VERSION once from the go.etcd.io/etcd/server/v3 module (the wrapper in
# hack/etcd pins it and every checksum) and caches it outside the repository; prints the
# binary's path on stdout and nothing else. The current kube-apiserver tier runs on it;
# the v1.20.2 tier uses Debian's etcd 3.4.
#
#   hack/build-etcd.sh           # the pinned version
#   hack/build-etcd.sh v3.6.16
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
module="$here/etcd"
. "$here/go-env.sh"
pinned="$(pinned_version go.etcd.io/etcd/server/v3 "$module/go.mod")"
version="${1:-$pinned}"
if [ "$version" != "$pinned" ]; then
  echo "build-etcd: $version is not pinned; $module/go.mod pins go.etcd.io/etcd/server/v3 $pinned (change it there and run 'go mod tidy')" >&2
  exit 2
fi
cache="${GMSA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gmsa-k8s}"
out="$cache/etcd-$version"
if [ -x "$out/etcd" ]; then
  echo "$out/etcd"
  exit 0
fi
began=$(date +%s)
mkdir -p "$out"
echo "building etcd $version from go.etcd.io/etcd/server/v3" >&2
(cd "$module" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath -o "$out/etcd.tmp" \
  -ldflags "-s -w" go.etcd.io/etcd/server/v3 >&2)
mv "$out/etcd.tmp" "$out/etcd"
echo "build-etcd: $version built in $(( $(date +%s) - began )) s" >&2
echo "$out/etcd"
