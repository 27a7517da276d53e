//! The client configuration every caller starts from, and the client built from it.

use std::path::{Path, PathBuf};

use kube::config::{InferConfigError, KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::{Client, Config};
use thiserror::Error;

/// Why no client configuration could be loaded.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The named kubeconfig cannot be read or used.
    #[error("{}: {error}", path.display())]
    Kubeconfig {
        path: PathBuf,
        error: KubeconfigError,
    },
    /// Neither `KUBECONFIG`, `~/.kube/config` nor the in-cluster service account gave one.
    #[error(transparent)]
    Infer(#[from] InferConfigError),
}

/// Loads the client configuration: the named kubeconfig, else what `Config::infer` finds
/// (`KUBECONFIG`, `~/.kube/config`, then the in-cluster service account).
///
/// kube's default retry (up to 15 attempts on 429, 503 and 504, with a backoff growing to
/// minutes) is turned off: admission calls have their own deadline and watches their own
/// backoff, and a command must report a Service without endpoints (503) at once; every caller
/// here retries on its own terms.
pub async fn load_config(kubeconfig: Option<&Path>) -> Result<Config, ConfigError> {
    let mut config = match kubeconfig {
        Some(path) => {
            let unusable = |error| ConfigError::Kubeconfig {
                path: path.to_path_buf(),
                error,
            };
            let file = Kubeconfig::read_from(path).map_err(unusable)?;
            Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(unusable)?
        }
        None => Config::infer().await?,
    };
    config.default_retry = false;
    Ok(config)
}

/// Installs ring as the process-wide TLS provider unless one is installed already: kube's
/// rustls connector uses that provider, and a library caller (or a test) may not have set it.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// A client for `config` without layers of its own, with the TLS provider in place.
pub fn client(config: Config) -> Result<Client, kube::Error> {
    install_crypto_provider();
    Client::try_from(config)
}

/// What the user sees after "unable to …: ". For an API error, the API server's own message, as
/// the reference shows it; otherwise the client error.
pub fn describe_error(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => {
            // kube marks error bodies that were not a `Status` (a proxy's HTML page, say).
            if status.reason == "Failed to parse error data" || status.message.is_empty() {
                let body = status.message.trim();
                let mut text = format!("the API server answered HTTP {}", status.code);
                if !status.reason.is_empty() && status.message.is_empty() {
                    text.push_str(&format!(" ({})", status.reason));
                }
                if !body.is_empty() {
                    text.push_str(&format!(": {body}"));
                }
                text
            } else {
                status.message.clone()
            }
        }
        other => format!("cannot reach the Kubernetes API: {other}"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_named_kubeconfig_that_cannot_be_read_names_its_path() {
        let path = Path::new("/nonexistent/gmsa-kube/kubeconfig");
        let error = load_config(Some(path)).await.expect_err("no such file");
        let text = error.to_string();
        assert!(
            text.starts_with("/nonexistent/gmsa-kube/kubeconfig: "),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_named_kubeconfig_loads_without_kubes_retry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    \
             server: http://127.0.0.1:1\nusers:\n- name: u\n  user: {}\ncontexts:\n\
             - name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\n",
        )
        .unwrap();
        let config = load_config(Some(&path)).await.unwrap();
        assert_eq!(config.cluster_url.to_string(), "http://127.0.0.1:1/");
        assert!(!config.default_retry);
    }

    #[test]
    fn api_errors_show_the_api_servers_message() {
        let status = kube::core::Status::failure(
            "gmsacredentialspecs.windows.k8s.io \"web\" is forbidden: no",
            "Forbidden",
        )
        .with_code(403);
        let text = describe_error(&kube::Error::Api(status.boxed()));
        assert_eq!(
            text,
            "gmsacredentialspecs.windows.k8s.io \"web\" is forbidden: no"
        );

        let raw =
            kube::core::Status::failure("upstream connect error", "Failed to parse error data")
                .with_code(502);
        let text = describe_error(&kube::Error::Api(raw.boxed()));
        assert_eq!(
            text,
            "the API server answered HTTP 502: upstream connect error"
        );
    }
}
