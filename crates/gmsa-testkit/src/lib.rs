//! Test support for the GMSA webhook: a loopback fake of kube-apiserver 1.20 that serves
//! `GMSACredentialSpec` objects, RBAC roles and bindings, and access reviews, so client code
//! runs against the real wire behaviour (paging, watches, bookmarks, 410s, Status bodies)
//! without a cluster.

pub mod credspecs;
pub mod fake_api;
pub mod one_answer;
pub mod real_cluster;
pub mod real_node;
pub mod reviews;
pub mod samba;
pub mod secret_volume;
pub mod wait;

pub use fake_api::{FakeApiError, FakeApiServer, FakeOptions};
