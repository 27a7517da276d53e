//! The cluster the commands talk to: a client for the current kubectl context, the runtime it
//! runs on, and the server's version.

use std::time::Duration;

use anyhow::Context;
use gmsa_deploy::KubeVersion;

/// A single-threaded runtime for one command, with the crate's TLS provider installed.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // One TLS provider in the tree; install it before any client builds its TLS config.
    gmsa_kube::install_crypto_provider();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// How long a command waits for one answer of the API server: the longest request we make
/// is a dry run through two webhooks of at most 30 s each.
const READ_TIMEOUT: Duration = Duration::from_secs(75);

/// A client for the current kubectl context.
pub async fn client() -> anyhow::Result<kube::Client> {
    let context = "cannot connect to the cluster: check KUBECONFIG or your kubectl context";
    // Without kube's retry (see `gmsa_kube::load_config`): the API server answers 503 at once
    // for a Service without endpoints, and doctor must say so at once, not after minutes.
    let mut config = gmsa_kube::load_config(None).await.context(context)?;
    config.read_timeout = Some(READ_TIMEOUT);
    gmsa_kube::client(config).context(context)
}

/// The cluster's version, from `/version`.
pub async fn cluster_version(client: &kube::Client) -> anyhow::Result<KubeVersion> {
    let info = client
        .apiserver_version()
        .await
        .context("cannot read the cluster's version")?;
    Ok(KubeVersion::from_version_info(&info.major, &info.minor)?)
}
