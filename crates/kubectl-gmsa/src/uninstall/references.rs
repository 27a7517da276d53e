//! What still references a credential spec when GMSA admission goes, read from the objects'
//! JSON without a cluster: pods, and the controllers whose pod templates name a spec (pod
//! level, containers, init and ephemeral containers, as `gmsa_core::pod` enumerates them);
//! whether to leave the guard; and the words that say what happens to those workloads.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use clap::ValueEnum;
use gmsa_core::pod::Pod;
use gmsa_deploy::{policies::guard, KindInfo, KubeVersion};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Pod as PodObject, ReplicationController};
use k8s_openapi::Resource;
use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;

/// A kind whose objects hold a pod spec: a pod itself, or a controller's template of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WorkloadKind {
    CronJob,
    Deployment,
    StatefulSet,
    DaemonSet,
    ReplicaSet,
    ReplicationController,
    Job,
    Pod,
}

const fn info<K: Resource>() -> KindInfo {
    KindInfo {
        api_version: K::API_VERSION,
        kind: K::KIND,
        plural: K::URL_PATH_SEGMENT,
        namespaced: true,
    }
}

impl WorkloadKind {
    /// Every kind, read in this order (controllers before what they control).
    pub const ALL: [WorkloadKind; 8] = [
        WorkloadKind::CronJob,
        WorkloadKind::Deployment,
        WorkloadKind::StatefulSet,
        WorkloadKind::DaemonSet,
        WorkloadKind::ReplicaSet,
        WorkloadKind::ReplicationController,
        WorkloadKind::Job,
        WorkloadKind::Pod,
    ];

    /// The API versions that serve this kind, newest first: CronJob is `batch/v1beta1` before
    /// Kubernetes 1.21.
    pub fn infos(self) -> &'static [KindInfo] {
        const CRON_JOBS: &[KindInfo] = &[
            info::<CronJob>(),
            KindInfo {
                api_version: "batch/v1beta1",
                ..info::<CronJob>()
            },
        ];
        const DEPLOYMENTS: &[KindInfo] = &[info::<Deployment>()];
        const STATEFUL_SETS: &[KindInfo] = &[info::<StatefulSet>()];
        const DAEMON_SETS: &[KindInfo] = &[info::<DaemonSet>()];
        const REPLICA_SETS: &[KindInfo] = &[info::<ReplicaSet>()];
        const REPLICATION_CONTROLLERS: &[KindInfo] = &[info::<ReplicationController>()];
        const JOBS: &[KindInfo] = &[info::<Job>()];
        const PODS: &[KindInfo] = &[info::<PodObject>()];
        match self {
            WorkloadKind::CronJob => CRON_JOBS,
            WorkloadKind::Deployment => DEPLOYMENTS,
            WorkloadKind::StatefulSet => STATEFUL_SETS,
            WorkloadKind::DaemonSet => DAEMON_SETS,
            WorkloadKind::ReplicaSet => REPLICA_SETS,
            WorkloadKind::ReplicationController => REPLICATION_CONTROLLERS,
            WorkloadKind::Job => JOBS,
            WorkloadKind::Pod => PODS,
        }
    }

    /// The kind as ownerReferences name it.
    pub fn as_str(self) -> &'static str {
        self.infos()[0].kind
    }

    fn from_kind(kind: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == kind)
    }

    /// Where the object holds its pod spec: itself for a pod, else its (job's) template.
    fn template(self, object: &Value) -> &Value {
        match self {
            WorkloadKind::Pod => object,
            WorkloadKind::CronJob => &object["spec"]["jobTemplate"]["spec"]["template"],
            _ => &object["spec"]["template"],
        }
    }
}

/// A workload that names a credential spec (or carries contents) somewhere in its pod spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
    /// The specs named, each once.
    pub specs: BTreeSet<String>,
    /// Some place carries contents without naming a spec.
    pub contents_without_name: bool,
    /// The controlling owner (kind, name), from `ownerReferences`.
    pub controller: Option<(String, String)>,
    /// Running pods of it, itself included for a pod, once folded ([`fold`]).
    pub pods: usize,
}

/// The reference `object` (of `kind`) makes, if any. Pods that finished or are being deleted
/// are left out: no controller recreates them and they are not admitted again.
pub fn find(kind: WorkloadKind, object: &Value) -> Option<Reference> {
    if kind == WorkloadKind::Pod && !is_live(object) {
        return None;
    }
    let pod = Pod::deserialize(kind.template(object)).ok()?;
    if !pod.mentions_gmsa() {
        return None;
    }
    let specs: BTreeSet<String> = pod
        .places()
        .filter_map(|p| p.options.gmsa_credential_spec_name.clone())
        .collect();
    let contents_without_name = pod.places().any(|p| {
        p.options.gmsa_credential_spec_name.is_none() && p.options.gmsa_credential_spec.is_some()
    });
    let meta = &object["metadata"];
    let controller = meta["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|o| o["controller"] == true)
        .and_then(|o| Some((o["kind"].as_str()?.into(), o["name"].as_str()?.into())));
    Some(Reference {
        kind,
        namespace: meta["namespace"].as_str().unwrap_or_default().into(),
        name: meta["name"].as_str().unwrap_or_default().into(),
        specs,
        contents_without_name,
        controller,
        pods: usize::from(kind == WorkloadKind::Pod),
    })
}

fn is_live(pod: &Value) -> bool {
    !matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    ) && pod["metadata"]["deletionTimestamp"].is_null()
}

type Key = (String, WorkloadKind, String);

fn key(r: &Reference) -> Key {
    (r.namespace.clone(), r.kind, r.name.clone())
}

/// Each reference folded into the topmost controller that is itself a reference (a pod into
/// its ReplicaSet, that into its Deployment; a Job into its CronJob), counting pods and
/// joining spec names; sorted by namespace, kind, name.
pub fn fold(references: Vec<Reference>) -> Vec<Reference> {
    let mut by_key: BTreeMap<Key, Reference> =
        references.into_iter().map(|r| (key(&r), r)).collect();
    let owner_of = |r: &Reference| -> Option<Key> {
        let (kind, name) = r.controller.as_ref()?;
        Some((
            r.namespace.clone(),
            WorkloadKind::from_kind(kind)?,
            name.clone(),
        ))
    };
    // Roots first, on the whole set: folding as we go would hide a pod's ReplicaSet.
    let mut moves = Vec::new();
    for (k, r) in &by_key {
        let mut root = None;
        let mut next = owner_of(r);
        // Ownership chains are short (Pod, ReplicaSet, Deployment); the bound stops a cycle.
        for _ in 0..4 {
            match next {
                Some(owner) if by_key.contains_key(&owner) => {
                    next = by_key.get(&owner).and_then(owner_of);
                    root = Some(owner);
                }
                _ => break,
            }
        }
        if let Some(root) = root {
            moves.push((k.clone(), root));
        }
    }
    for (k, root) in moves {
        let Some(child) = by_key.remove(&k) else {
            continue;
        };
        if let Some(parent) = by_key.get_mut(&root) {
            parent.pods += child.pods;
            parent.specs.extend(child.specs);
            parent.contents_without_name |= child.contents_without_name;
        }
    }
    by_key.into_values().collect()
}

/// `uninstall --refuse-gmsa-pods`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RefuseGmsaPods {
    /// Leave the guard when workloads still reference a credential spec (or they could not
    /// all be read).
    Auto,
    /// Leave the guard whatever references what.
    Always,
    /// Leave none, and delete one an earlier uninstall left.
    Never,
}

/// What uninstall does about the guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardPlan {
    /// Apply it before admission goes.
    Leave,
    /// Delete it if an earlier uninstall left it.
    Remove,
    /// Nothing references a spec: leave none, keep one left earlier.
    Untouched,
    /// Workloads need it, but the server has no ValidatingAdmissionPolicy v1.
    Impossible,
}

/// `--refuse-gmsa-pods=always` on a server without ValidatingAdmissionPolicy v1.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("--refuse-gmsa-pods=always needs ValidatingAdmissionPolicy v1 (Kubernetes {min}+); this is {0}, so no guard can be left: nothing was deleted (pass --refuse-gmsa-pods=auto to uninstall anyway; new GMSA pods are then admitted without their contents)", min = KubeVersion::VALIDATING_POLICIES)]
pub struct GuardUnsupported(pub KubeVersion);

/// Whether to leave the guard. `referenced`: some workload references a spec, or not every
/// kind could be read (then refusing is the safe guess).
pub fn plan(
    when: RefuseGmsaPods,
    version: KubeVersion,
    referenced: bool,
) -> Result<GuardPlan, GuardUnsupported> {
    let supported = version.at_least(KubeVersion::VALIDATING_POLICIES);
    Ok(match (when, referenced, supported) {
        (RefuseGmsaPods::Never, _, _) => GuardPlan::Remove,
        (RefuseGmsaPods::Always, _, false) => return Err(GuardUnsupported(version)),
        (RefuseGmsaPods::Always, _, true) | (RefuseGmsaPods::Auto, true, true) => GuardPlan::Leave,
        (RefuseGmsaPods::Auto, true, false) => GuardPlan::Impossible,
        (RefuseGmsaPods::Auto, false, _) => GuardPlan::Untouched,
    })
}

/// Where GMSA pods stand once uninstall is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The guard (this name) refuses them.
    Refused(String),
    /// `--refuse-gmsa-pods=never`.
    AdmittedAsAsked,
    /// Nothing referenced a spec, so no guard was left.
    AdmittedUnreferenced,
    /// The server cannot hold the guard.
    AdmittedOldServer(KubeVersion),
}

impl Ending {
    /// The ending of `plan` for install `name`; `guard_found`: a guard an earlier uninstall
    /// left is still there (it stays with [`GuardPlan::Untouched`]).
    pub fn of(plan: GuardPlan, name: &str, version: KubeVersion, guard_found: bool) -> Self {
        match plan {
            GuardPlan::Leave => Ending::Refused(guard::guard(name)),
            GuardPlan::Untouched if guard_found => Ending::Refused(guard::guard(name)),
            GuardPlan::Untouched => Ending::AdmittedUnreferenced,
            GuardPlan::Remove => Ending::AdmittedAsAsked,
            GuardPlan::Impossible => Ending::AdmittedOldServer(version),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let info = &self.kind.infos()[0];
        write!(
            f,
            "{} in {}: ",
            info.object_name(&self.name),
            self.namespace
        )?;
        let mut what: Vec<String> = self.specs.iter().cloned().collect();
        if self.contents_without_name {
            what.push("contents without a name".into());
        }
        f.write_str(&what.join(", "))?;
        match (self.kind, self.pods) {
            (WorkloadKind::Pod, _) => {}
            (_, 1) => f.write_str(" (1 pod running)")?,
            (_, n) if n > 1 => write!(f, " ({n} pods running)")?,
            _ => {}
        }
        if let (WorkloadKind::Pod, Some((kind, name))) = (self.kind, &self.controller) {
            write!(f, " (controlled by {kind} {name})")?;
        }
        Ok(())
    }
}

/// What uninstall tells: the workloads that reference a spec, the kinds it could not read,
/// and what happens to new pods of them now, `reinstall` being the install command that
/// brings the removed install back. One line per item.
pub fn describe(
    references: &[Reference],
    unread: &[String],
    ending: &Ending,
    reinstall: &str,
) -> Vec<String> {
    let reinstall = format!("`{reinstall}`");
    let mut lines = Vec::new();
    for problem in unread {
        lines.push(format!(
            "warning: {problem}: the workloads below may not be all"
        ));
    }
    if references.is_empty() && unread.is_empty() {
        lines.push(match ending {
            Ending::Refused(g) => format!(
                "no workload references a credential spec; ValidatingAdmissionPolicy {g} refuses new pods that name one until {reinstall} (or delete it)"
            ),
            _ => "no workload references a credential spec; no guard is left, so a pod naming one later is admitted without its contents (pass --refuse-gmsa-pods=always to refuse such pods until you reinstall)".into(),
        });
        return lines;
    }
    if !references.is_empty() {
        lines.push(format!(
            "warning: {} workload(s) still reference a GMSA credential spec:",
            references.len()
        ));
        lines.extend(references.iter().map(|r| format!("  {r}")));
    }
    let without = "admitted naming their credential spec but without its contents: they fail to start on Windows nodes (or run without the gMSA identity)";
    lines.push(match ending {
        Ending::Refused(g) => format!(
            "GMSA admission is gone and ValidatingAdmissionPolicy {g} now refuses every new pod that names a credential spec: running pods keep running, but none of these workloads starts a new pod (scaling, rollout, rescheduling) until {reinstall}, which deletes the guard; deleting the guard instead gets their new pods {without}"
        ),
        Ending::AdmittedAsAsked => format!(
            "--refuse-gmsa-pods=never: with GMSA admission gone, new pods of these workloads are {without}; reinstall with {reinstall}, or remove gmsaCredentialSpecName from them"
        ),
        Ending::AdmittedUnreferenced => format!(
            "with GMSA admission gone, new pods of these workloads are {without}; reinstall with {reinstall}"
        ),
        Ending::AdmittedOldServer(v) => format!(
            "Kubernetes {v} has no ValidatingAdmissionPolicy v1 ({}+), so no guard can be left on this version: with GMSA admission gone, new pods of these workloads are {without}; reinstall with {reinstall}, or scale them to zero",
            KubeVersion::VALIDATING_POLICIES
        ),
    });
    lines
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::disallowed_macros)] // fixtures are JSON
mod tests;
