//! Every object but the CRD and the webhook configurations, one file per job: identity and
//! RBAC, certificate material, the Deployment, the rest of the workload, and (alone untyped)
//! other projects' kinds.

pub mod certificates;
pub mod deployment;
pub mod rbac;
pub mod untyped;
pub mod workload;
