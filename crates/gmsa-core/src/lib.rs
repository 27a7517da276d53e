//! Pure GMSA domain logic shared by the webhook, the CLI and the tests: credential specs,
//! admission decisions, the AdmissionReview wire format, RBAC evaluation and the embedded
//! state's manifests. Nothing here does network I/O.

pub mod admission;
pub mod canonical;
pub mod contents;
pub mod credspec;
pub mod decision;
pub mod hostname;
pub mod names;
pub mod pod;
pub mod rbac;
pub mod state;
pub mod syntax;
pub mod verdict;

pub use credspec::CredentialSpec;
pub use decision::{
    AccessCheck, ClusterView, Denial, Facts, Hook, Needs, Options, SpecLookup, Verdict,
};
