#!/usr/bin/env bash
# Builds what the node tier runs besides the API server, once, cached outside the repository,
# and prints the directory holding it on stdout (progress goes to stderr):
#
#   <dir>/kubelet, kube-controller-manager, kube-scheduler, kube-proxy
#       v1.37.2 from the k8s.io/kubernetes module through hack/kubernetes/go.mod (the same
#       pinned wrapper as kube-apiserver, the same flags);
#   <dir>/runtime/   containerd, containerd-shim-runc-v2, runc, the CNI plugins: Debian
#       bookworm's packages, downloaded and unpacked into a private root (nothing installed,
#       nothing enabled; `apt-get download` + `dpkg -x`);
#   <dir>/images/    the pause program (a static Go binary that sleeps until signalled) and
#       busybox (Debian's busybox-static): the roots of the pause and workload images.
#
#   hack/build-kube-node.sh            # v1.37.2, the version hack/kubernetes/go.mod pins
#
# The cache is ${GMSA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gmsa-k8s}/kube-node-<version>.
# Cold: kubelet about 11 min, controller-manager about 5 min after it, scheduler and
# kube-proxy under a minute each (2 cores); instant once cached.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
. "$here/go-env.sh"
module="$here/kubernetes"
version="$(pinned_version k8s.io/kubernetes "$module/go.mod")"
if [ -n "${1:-}" ] && [ "$1" != "$version" ]; then
  echo "build-kube-node: $1 is not pinned; $module/go.mod pins k8s.io/kubernetes $version." >&2
  exit 2
fi
cache="${GMSA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gmsa-k8s}"
out="$cache/kube-node-$version"
components=(kubelet kube-controller-manager kube-scheduler kube-proxy)
# Debian packages unpacked into runtime/: what a node runs below the kubelet.
runtime_packages=(containerd runc containernetworking-plugins)

complete() {
  for c in "${components[@]}"; do [ -x "$out/$c" ] || return 1; done
  [ -x "$out/runtime/usr/bin/containerd" ] && [ -x "$out/runtime/usr/sbin/runc" ] &&
    [ -x "$out/runtime/usr/lib/cni/bridge" ] && [ -x "$out/images/pause" ] &&
    [ -x "$out/images/busybox" ]
}
if complete; then
  echo "$out"
  exit 0
fi
began=$(date +%s)
mkdir -p "$out"

minor="${version#v1.}"
minor="${minor%%.*}"
v=k8s.io/component-base/version
for c in "${components[@]}"; do
  [ -x "$out/$c" ] && continue
  started=$(date +%s)
  echo "building $c $version from the k8s.io/kubernetes module (minutes cold)" >&2
  (cd "$module" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath -o "$out/$c.tmp" \
    -ldflags "-s -w -X $v.gitVersion=$version -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean" \
    "k8s.io/kubernetes/cmd/$c" >&2)
  mv "$out/$c.tmp" "$out/$c"
  echo "build-kube-node: $c built in $(( $(date +%s) - started )) s" >&2
done

if [ ! -x "$out/runtime/usr/bin/containerd" ] || [ ! -x "$out/runtime/usr/sbin/runc" ] ||
  [ ! -x "$out/runtime/usr/lib/cni/bridge" ]; then
  debs="$(mktemp -d)"
  trap 'rm -rf "$debs"' EXIT
  (cd "$debs" && apt-get download -qq "${runtime_packages[@]}" >&2) || {
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    (cd "$debs" && apt-get download -qq "${runtime_packages[@]}" >&2)
  }
  rm -rf "$out/runtime.tmp"
  mkdir -p "$out/runtime.tmp"
  for deb in "$debs"/*.deb; do dpkg -x "$deb" "$out/runtime.tmp"; done
  rm -rf "$out/runtime"
  mv "$out/runtime.tmp" "$out/runtime"
fi

mkdir -p "$out/images"
if [ ! -x "$out/images/pause" ]; then
  (cd "$here/pause" && CGO_ENABLED=0 GOFLAGS= go build -trimpath -ldflags "-s -w" \
    -o "$out/images/pause.tmp" . >&2)
  mv "$out/images/pause.tmp" "$out/images/pause"
fi
if [ ! -x "$out/images/busybox" ]; then
  bb="$(mktemp -d)"
  (cd "$bb" && apt-get download -qq busybox-static >&2 && dpkg -x ./busybox-static_*.deb root)
  cp "$bb/root/bin/busybox" "$out/images/busybox.tmp"
  rm -rf "$bb"
  mv "$out/images/busybox.tmp" "$out/images/busybox"
fi

complete || { echo "build-kube-node: $out is incomplete after the build" >&2; exit 1; }
echo "build-kube-node: $version node binaries ready in $(( $(date +%s) - began )) s" >&2
echo "$out"
