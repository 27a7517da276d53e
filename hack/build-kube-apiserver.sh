#!/usr/bin/env bash
# Builds kube-apiserver v1.20.2 from Debian bookworm's source package, once, and caches the
# binary outside the repository. Prints the binary's path on stdout.
#
# Why from source: no prebuilt kube-apiserver can be fetched on these machines, but Debian's
# source package is the full upstream tree with vendor/.
set -euo pipefail

version=v1.20.2
cache="${GMSA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gmsa-k8s}"
out="$cache/kube-apiserver-$version"
if [ -x "$out/kube-apiserver" ]; then
  echo "$out/kube-apiserver"
  exit 0
fi

need=()
for pkg in golang-go dpkg-dev rsync golang-github-modern-go-reflect2-dev etcd-server etcd-client openssl curl; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
fi

work="$cache/build"
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

mkdir -p "$out"
cp "$tree/_output/bin/kube-apiserver" "$out/kube-apiserver.tmp"
mv "$out/kube-apiserver.tmp" "$out/kube-apiserver"
rm -rf "$work"
echo "$out/kube-apiserver"
