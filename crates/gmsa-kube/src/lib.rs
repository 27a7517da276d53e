//! How this project talks to the Kubernetes API: the resources it reads and writes, the client
//! configuration both the webhook and the kubectl plugin start from, the one watch driver every
//! cache and controller follows the cluster through, the keeper of policy mode's published
//! contents, and the renewal of the self-signed serving certificate and the caBundles that
//! trust it.
//! Deciding what to write stays in `gmsa-core`; this crate does the I/O.

pub mod client;
pub mod contents;
pub mod renewal;
pub mod resources;
pub mod watch;

pub use client::{client, describe_error, install_crypto_provider, load_config, ConfigError};
pub use resources::{credential_spec_resource, namespace_contents_resource};
