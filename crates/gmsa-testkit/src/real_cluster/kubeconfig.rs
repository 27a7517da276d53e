//! The cluster's identities: bearer tokens and the kubeconfigs that carry them.

use std::fs::File;
use std::io::Read;

use base64::Engine as _;

use super::{io_err, ClusterError, ADMIN_USER, WEBHOOK_USER};

/// 32 hex characters from the kernel's random source.
pub(crate) fn random_token() -> Result<String, ClusterError> {
    let mut bytes = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(io_err("reading /dev/urandom"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The API server's `--token-auth-file`: the admin in `system:masters`, the webhook user in
/// no group beyond the authenticated ones.
pub(super) fn token_file(admin_token: &str, webhook_token: &str) -> String {
    format!(
        "{admin_token},{ADMIN_USER},uid-admin,\"system:masters\"\n\
         {webhook_token},{WEBHOOK_USER},uid-gmsa-webhook\n"
    )
}

/// A kubeconfig for one bearer-token user, the CA inline, so it needs no other file.
pub(crate) fn kubeconfig(url: &str, ca_pem: &str, user: &str, token: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: real\n  cluster:\n    server: {url}\n    \
         certificate-authority-data: {ca}\nusers:\n- name: {user}\n  user:\n    token: {token}\n\
         contexts:\n- name: {user}@real\n  context:\n    cluster: real\n    user: {user}\n\
         current-context: {user}@real\n"
    )
}
