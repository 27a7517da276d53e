#!/usr/bin/env bash
# Builds kube-apiserver VERSION once and caches it outside the repository; prints the binary's
# path on stdout and nothing else (progress goes to stderr).
#
#   hack/build-kube-apiserver.sh            # v1.20.2, the old tier
#   hack/build-kube-apiserver.sh v1.20.2    # from Debian bookworm's source package
#   hack/build-kube-apiserver.sh v1.37.2    # from the k8s.io/kubernetes module (hack/kubernetes)
#
# No prebuilt kube-apiserver can be fetched on these machines. v1.20.2 comes from Debian's
# source package (the full upstream tree with vendor/); current versions from the Go module
# proxy through the wrapper module in hack/kubernetes, whose go.mod and go.sum pin every
# module and checksum. The cache is ${GMSA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gmsa-k8s}.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
version="${1:-v1.20.2}"
cache="${GMSA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gmsa-k8s}"
out="$cache/kube-apiserver-$version"
if [ -x "$out/kube-apiserver" ]; then
  echo "$out/kube-apiserver"
  exit 0
fi
began=$(date +%s)

case "$version" in
v1.20.2)
  need=()
  for pkg in golang-go dpkg-dev rsync golang-github-modern-go-reflect2-dev openssl curl; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
  done
  if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
  fi

  work="$cache/build-$version"
  rm -rf "$work"
  mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/src"
  echo "deb-src http://deb.debian.org/debian bookworm main" >"$work/sources.list"
  apt_opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/nonexistent
    -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache")
  apt-get "${apt_opts[@]}" update -qq >&2
  (cd "$work/src" && apt-get "${apt_opts[@]}" source --download-only kubernetes >&2 &&
    dpkg-source --no-check -x ./*.dsc tree >&2)

  tree="$work/src/tree"
  # The vendored reflect2 1.0.1 crashes the server on the first custom-resource write under
  # Go >= 1.18; Debian's 1.0.2 does not.
  r2="$tree/vendor/github.com/modern-go/reflect2"
  rm -f "$r2"/*.go "$r2"/*.s
  find /usr/share/gocode/src/github.com/modern-go/reflect2/ -maxdepth 1 \( -name '*.go' -o -name '*.s' \) \
    ! -name '*_test.go' -exec cp {} "$r2/" \;

  (cd "$tree" && CGO_ENABLED=0 GOPROXY=off GOFLAGS= KUBE_GIT_VERSION=$version KUBE_GIT_MAJOR=1 \
    KUBE_GIT_MINOR=20 KUBE_GIT_TREE_STATE=clean make WHAT=cmd/kube-apiserver >&2)
  built="$tree/_output/bin/kube-apiserver"
  ;;
v1.3*)
  . "$here/go-env.sh"
  module="$here/kubernetes"
  pinned="$(pinned_version k8s.io/kubernetes "$module/go.mod")"
  if [ "$version" != "$pinned" ]; then
    echo "build-kube-apiserver: $version is not pinned; $module/go.mod pins k8s.io/kubernetes $pinned." >&2
    echo "  To move: set that version, the v0.Y.Z of every staging replace, then run 'go mod tidy' there." >&2
    exit 2
  fi
  minor="${version#v1.}"
  minor="${minor%%.*}"
  work="$cache/build-$version"
  rm -rf "$work"
  mkdir -p "$work"
  built="$work/kube-apiserver"
  v=k8s.io/component-base/version
  echo "building kube-apiserver $version from the k8s.io/kubernetes module (several minutes cold)" >&2
  (cd "$module" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath -o "$built" \
    -ldflags "-s -w -X $v.gitVersion=$version -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean" \
    k8s.io/kubernetes/cmd/kube-apiserver >&2)
  ;;
*)
  echo "build-kube-apiserver: unknown version $version; use v1.20.2 or the v1.3x pinned in hack/kubernetes/go.mod" >&2
  exit 2
  ;;
esac

mkdir -p "$out"
cp "$built" "$out/kube-apiserver.tmp"
mv "$out/kube-apiserver.tmp" "$out/kube-apiserver"
rm -rf "$work"
echo "build-kube-apiserver: $version built in $(( $(date +%s) - began )) s" >&2
echo "$out/kube-apiserver"
