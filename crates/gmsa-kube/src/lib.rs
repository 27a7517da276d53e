//! How this project talks to the Kubernetes API: the resources it reads and writes, the client
//! configuration both the webhook and the kubectl plugin start from, and the one writer of a
//! credential spec's published contents. Deciding what to write stays in `gmsa-core`; this
//! crate does the I/O.

pub mod client;
pub mod published;
pub mod resources;

pub use client::{client, install_crypto_provider, load_config, ConfigError};
pub use published::{ContentsWriter, OnConflict};
pub use resources::credential_spec_resource;
