#!/usr/bin/env bash
# Builds the gmsa-webhook image without Docker: an OCI image archive holding what the
# Dockerfile's image holds (the release gmsa-webhook and kubectl-gmsa in /usr/local/bin, the
# shared libraries they link, CA certificates, user 65532 `nonroot`, HTTPS_PORT=8443, the
# same entrypoint), from this machine's Debian packages. The digest is reproducible: the same
# binaries give the same image. Prints the archive's path on stdout (progress on stderr).
#
#   hack/build-image.sh                                  # gmsa-webhook:<crate version>
#   hack/build-image.sh --tag gmsa-webhook:dev --out /tmp/gmsa-webhook.oci.tar
#
# Then, for example:
#   skopeo copy oci-archive:/tmp/gmsa-webhook.oci.tar docker://registry.example/gmsa-webhook:dev
#   ctr -n k8s.io images import /tmp/gmsa-webhook.oci.tar
#
# GMSA_RELEASE_WEBHOOK and GMSA_RELEASE_KUBECTL_GMSA name prebuilt binaries instead of
# building them (hack/test.sh passes the ones it built).
set -euo pipefail
cd "$(dirname "$0")/.."

version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
tag="gmsa-webhook:$version"
out=""
while [ $# -gt 0 ]; do
  case "$1" in
  --tag) tag="$2"; shift 2 ;;
  --out) out="$2"; shift 2 ;;
  -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "build-image: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
# The name containerd and skopeo store: a bare name is docker.io/library/NAME.
case "$tag" in
*/*/*) name="$tag" ;;
*.*/* | *:*/* | localhost/*) name="$tag" ;;
*/*) name="docker.io/$tag" ;;
*) name="docker.io/library/$tag" ;;
esac
case "${name##*/}" in *:*) ;; *) name="$name:latest" ;; esac

built() {
  cargo build --release --locked -q -p gmsa-webhook --bin gmsa-webhook -p kubectl-gmsa \
    --bin kubectl-gmsa --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | grep "/$1\$" | tail -n 1
}
webhook="${GMSA_RELEASE_WEBHOOK:-}"
kubectl_gmsa="${GMSA_RELEASE_KUBECTL_GMSA:-}"
[ -n "$webhook" ] || webhook="$(built gmsa-webhook)"
[ -n "$kubectl_gmsa" ] || kubectl_gmsa="$(built kubectl-gmsa)"
for binary in "$webhook" "$kubectl_gmsa"; do
  if [ -z "$binary" ] || [ ! -x "$binary" ]; then
    echo "build-image: the release build failed; run: cargo build --release -p gmsa-webhook -p kubectl-gmsa" >&2
    exit 1
  fi
done
if [ ! -s /etc/ssl/certs/ca-certificates.crt ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ca-certificates >&2
fi
if [ -z "$out" ]; then
  out="$(dirname "$webhook")/gmsa-webhook-image.oci.tar"
fi

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
install -D -m 0755 "$webhook" "$root/usr/local/bin/gmsa-webhook"
install -D -m 0755 "$kubectl_gmsa" "$root/usr/local/bin/kubectl-gmsa"
# The libraries the loader resolves for either binary, at the paths it resolves them to.
for library in $( (ldd "$webhook"; ldd "$kubectl_gmsa") |
  awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// && $1 !~ /:$/ { print $1 }' | sort -u); do
  install -D -m 0755 "$(readlink -f "$library")" "$root$library"
done
install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
  >"$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
chmod 0644 "$root/etc/passwd" "$root/etc/group"
install -d -m 0700 "$root/home/nonroot"
install -d -m 1777 "$root/tmp"
chmod 0755 "$root" "$root/etc" "$root/usr" "$root/usr/local" "$root/usr/local/bin"

mkdir -p "$(dirname "$out")"
digest="$(python3 hack/oci-image.py --root "$root" --name "$name" \
  --entrypoint /usr/local/bin/gmsa-webhook --user 65532:65532 --env HTTPS_PORT=8443 \
  --expose 8443 --expose 8081 --out "$out")"
echo "build-image: $name $digest" >&2
echo "$out"
