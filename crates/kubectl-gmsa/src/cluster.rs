//! The cluster the commands talk to: a client for the current kubectl context, the runtime it
//! runs on, the server's version, and the credential specs read dynamically.

use std::time::Duration;

use anyhow::Context;
use gmsa_core::names as core_names;
use gmsa_deploy::KubeVersion;

/// A single-threaded runtime for one command, with the crate's TLS provider installed.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // One TLS provider in the tree; install it before the client builds its TLS config.
    let _ = rustls::crypto::ring::default_provider().install_default();
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
    let mut config = kube::Config::infer().await.context(context)?;
    // kube retries 429, 503 and 504 up to 15 times with a backoff growing to minutes by
    // default. The API server answers 503 at once for a Service without endpoints, and doctor
    // must say so at once, not after minutes; every command here polls on its own anyway.
    config.default_retry = false;
    config.read_timeout = Some(READ_TIMEOUT);
    kube::Client::try_from(config).context(context)
}

/// The cluster's version, from `/version`.
pub async fn cluster_version(client: &kube::Client) -> anyhow::Result<KubeVersion> {
    let info = client
        .apiserver_version()
        .await
        .context("cannot read the cluster's version")?;
    Ok(KubeVersion::from_version_info(&info.major, &info.minor)?)
}

/// `GMSACredentialSpec` as the API serves it (`windows.k8s.io/v1`), for dynamic reads.
pub fn credential_spec_resource() -> kube::api::ApiResource {
    kube::api::ApiResource {
        group: core_names::GROUP.into(),
        version: core_names::VERSION.into(),
        api_version: format!("{}/{}", core_names::GROUP, core_names::VERSION),
        kind: core_names::KIND.into(),
        plural: core_names::RESOURCE.into(),
    }
}
