//! Policy mode's published contents, written: observes what [`gmsa_core::contents::plan`]
//! needs (every credential spec, the RBAC objects, the namespaces, each namespace's
//! `GMSANamespaceContents` object and the `elsewhere` binding), and performs the plan's steps
//! in order, stopping at the first that fails. The keeper runs this on every change; `install`
//! and the tests run it until nothing is left to do.

use std::collections::BTreeSet;

use gmsa_core::contents::{self, entries_of, listed_namespaces, SpecState, Step, Stored};
use gmsa_core::names::contents::{elsewhere_policy, FIELD, FINALIZER};
use gmsa_core::rbac::{Aggregation, RbacIndex};
use k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1 as rbac;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::Client;
use serde_json::{json, Value};
use thiserror::Error;

use crate::client::describe_error;
use crate::resources::{credential_spec_resource, namespace_contents_resource};

/// How long the API server's informers get to see one write before a step that relies on it.
const INFORMERS_CATCH_UP: std::time::Duration = std::time::Duration::from_secs(1);

/// How often a list answered 429 (a new CRD's storage starting) is tried again, 500 ms apart.
const STORAGE_STARTING_TRIES: usize = 40;

/// The field manager of these writes.
pub const FIELD_MANAGER: &str = "gmsa-keeper";

/// Why the contents could not be brought up to date.
#[derive(Debug, Error)]
pub enum ContentsError {
    #[error("cannot list {what}: {message}")]
    List { what: &'static str, message: String },
    #[error("cannot read {what}: {message}")]
    Read { what: String, message: String },
    #[error("{step}: {message}")]
    Write { step: String, message: String },
    #[error("ValidatingAdmissionPolicyBinding {0} is missing: install policy mode again")]
    NoBinding(String),
    #[error("still {0} step(s) to do after {1} passes: the cluster keeps changing")]
    KeptChanging(usize, usize),
}

/// What the `-elsewhere` binding lists, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub listed: BTreeSet<String>,
    pub resource_version: String,
}

/// A spec's name, finalizers and resourceVersion, as read.
type SpecMeta = (String, Vec<String>, Option<String>);

/// What the plan is decided from, with what the writes need.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The install's namespace, whose object is always written.
    pub home: String,
    pub specs: Vec<SpecState>,
    /// The specs' finalizers as stored, and their resourceVersions.
    spec_meta: Vec<SpecMeta>,
    pub rbac: RbacIndex,
    pub namespaces: BTreeSet<String>,
    pub stored: Stored,
    /// Whether the `-elsewhere` binding exists: without it policy mode is not installed (or
    /// is being removed), and the keeper does nothing, lest it finalize specs again that
    /// uninstall releases.
    pub binding_found: bool,
}

impl Observed {
    /// The steps from here.
    pub fn plan(&self) -> Vec<Step> {
        let desired = contents::desired(
            &self.specs,
            &self.rbac.use_grants(),
            &self.namespaces,
            &self.home,
        );
        contents::plan(&self.specs, &desired, &self.stored)
    }
}

/// Reads and writes one install's contents (`install` names its objects and policies;
/// `home` is its namespace).
#[derive(Clone)]
pub struct ContentsKeeper {
    client: Client,
    install: String,
    home: String,
}

fn listed<T>(what: &'static str, result: kube::Result<T>) -> Result<T, ContentsError> {
    result.map_err(|e| ContentsError::List {
        what,
        message: describe_error(&e),
    })
}

/// The objects of a list, as our own RBAC types.
fn rbac_items<K: serde::Serialize, T: serde::de::DeserializeOwned>(items: Vec<K>) -> Vec<T> {
    items
        .into_iter()
        .filter_map(|item| serde_json::from_value(serde_json::to_value(item).ok()?).ok())
        .collect()
}

impl ContentsKeeper {
    pub fn new(client: Client, install: &str, home: &str) -> Self {
        Self {
            client,
            install: install.to_string(),
            home: home.to_string(),
        }
    }

    fn specs(&self) -> Api<DynamicObject> {
        Api::all_with(self.client.clone(), &credential_spec_resource())
    }

    fn objects(&self, namespace: Option<&str>) -> Api<DynamicObject> {
        let resource = namespace_contents_resource();
        match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &resource),
            None => Api::all_with(self.client.clone(), &resource),
        }
    }

    fn binding(&self) -> Api<ValidatingAdmissionPolicyBinding> {
        Api::all(self.client.clone())
    }

    /// The `-elsewhere` binding's list as stored, with the binding's resourceVersion; `None`
    /// when there is no binding.
    pub async fn listing(&self) -> Result<Option<Listing>, ContentsError> {
        let binding_name = elsewhere_policy(&self.install);
        let binding =
            self.binding()
                .get_opt(&binding_name)
                .await
                .map_err(|e| ContentsError::Read {
                    what: format!("ValidatingAdmissionPolicyBinding {binding_name}"),
                    message: describe_error(&e),
                })?;
        Ok(binding.map(|binding| {
            let selector = binding
                .spec
                .match_resources
                .and_then(|m| m.namespace_selector)
                .and_then(|s| serde_json::to_value(s).ok())
                .unwrap_or(Value::Null);
            Listing {
                listed: listed_namespaces(&selector),
                resource_version: binding.metadata.resource_version.unwrap_or_default(),
            }
        }))
    }

    /// Each namespace's object of this install, as stored (nothing listed).
    pub async fn observe_contents(&self) -> Result<Stored, ContentsError> {
        let mut stored = Stored::default();
        // A CRD just created answers 429 for a moment while its storage starts.
        let mut list = self.objects(None).list(&ListParams::default()).await;
        for _ in 0..STORAGE_STARTING_TRIES {
            match &list {
                Err(kube::Error::Api(status)) if status.code == 429 => {
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    list = self.objects(None).list(&ListParams::default()).await;
                }
                _ => break,
            }
        }
        for item in listed(FIELD, list)?.items {
            if item.metadata.name.as_deref() != Some(self.install.as_str()) {
                continue;
            }
            let namespace = item.metadata.namespace.clone().unwrap_or_default();
            let value = serde_json::to_value(&item).unwrap_or(Value::Null);
            stored.objects.insert(namespace, entries_of(&value));
        }
        Ok(stored)
    }

    /// The credential specs alone, for releasing them.
    async fn observe_specs(&self) -> Result<Observed, ContentsError> {
        let (specs, spec_meta) = self.list_specs().await?;
        Ok(Observed {
            home: self.home.clone(),
            specs,
            spec_meta,
            rbac: RbacIndex::new(Aggregation::Stored),
            namespaces: BTreeSet::new(),
            stored: Stored::default(),
            binding_found: false,
        })
    }

    async fn list_specs(&self) -> Result<(Vec<SpecState>, Vec<SpecMeta>), ContentsError> {
        let all = ListParams::default();
        let spec_list = listed("gmsacredentialspecs", self.specs().list(&all).await)?;
        let mut specs = Vec::new();
        let mut spec_meta = Vec::new();
        for item in spec_list.items {
            let value = serde_json::to_value(&item).unwrap_or(Value::Null);
            // A spec the webhook cannot read is not published (doctor names it).
            if let Ok(state) = SpecState::from_resource(&value) {
                specs.push(state);
                spec_meta.push((
                    item.metadata.name.clone().unwrap_or_default(),
                    item.metadata.finalizers.clone().unwrap_or_default(),
                    item.metadata.resource_version.clone(),
                ));
            }
        }
        Ok((specs, spec_meta))
    }

    /// Lists everything the plan needs. RBAC is read as stored, as the authorizer reads it.
    pub async fn observe(&self) -> Result<Observed, ContentsError> {
        let all = ListParams::default();
        let (specs, spec_meta) = self.list_specs().await?;
        let mut index = RbacIndex::new(Aggregation::Stored);
        index.replace_roles(
            self.list_as::<rbac::ClusterRole, _>("clusterroles").await?,
            false,
        );
        index.replace_roles(self.list_as::<rbac::Role, _>("roles").await?, true);
        index.replace_bindings(
            self.list_as::<rbac::ClusterRoleBinding, _>("clusterrolebindings")
                .await?,
            false,
        );
        index.replace_bindings(
            self.list_as::<rbac::RoleBinding, _>("rolebindings").await?,
            true,
        );
        let client = &self.client;
        let namespaces = listed(
            "namespaces",
            Api::<Namespace>::all(client.clone()).list(&all).await,
        )?
        .items
        .into_iter()
        .filter(|ns| ns.metadata.deletion_timestamp.is_none())
        .filter_map(|ns| ns.metadata.name)
        .collect();
        let mut stored = self.observe_contents().await?;
        // Missing before install applies it: nothing is listed yet (and listing fails).
        let listing = self.listing().await?;
        stored.listed = listing
            .as_ref()
            .map(|l| l.listed.clone())
            .unwrap_or_default();
        Ok(Observed {
            home: self.home.clone(),
            specs,
            spec_meta,
            rbac: index,
            namespaces,
            stored,
            binding_found: listing.is_some(),
        })
    }

    /// Every object of the cluster-wide kind `K`, as our own type `T` (RBAC's).
    async fn list_as<K, T>(&self, what: &'static str) -> Result<Vec<T>, ContentsError>
    where
        K: kube::Resource<DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
        T: serde::de::DeserializeOwned,
    {
        let list = Api::<K>::all(self.client.clone())
            .list(&ListParams::default())
            .await;
        Ok(rbac_items(listed(what, list)?.items))
    }

    /// Performs `steps` in order; stops at the first that fails.
    pub async fn perform(&self, observed: &Observed, steps: &[Step]) -> Result<(), ContentsError> {
        let mut written = false;
        let mut listed = false;
        for step in steps {
            // The API server's parameter informer and its binding informer are separate
            // watches: give the objects just written time to reach the first before the
            // binding lists their namespaces, and the unlisting time to reach the second
            // before the objects go.
            if (matches!(step, Step::List(_)) && written)
                || (matches!(step, Step::Delete(_)) && listed)
            {
                tokio::time::sleep(INFORMERS_CATCH_UP).await;
            }
            written |= matches!(step, Step::Write { .. });
            listed |= matches!(step, Step::List(_));
            self.perform_one(observed, step)
                .await
                .map_err(|e| match (step, &e) {
                    (Step::List(_), kube::Error::Api(status)) if status.code == 404 => {
                        ContentsError::NoBinding(elsewhere_policy(&self.install))
                    }
                    _ => ContentsError::Write {
                        step: describe_step(step),
                        message: describe_error(&e),
                    },
                })?;
        }
        Ok(())
    }

    async fn perform_one(&self, observed: &Observed, step: &Step) -> kube::Result<()> {
        let merge = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        match step {
            Step::Finalize(name) | Step::Release(name) => {
                let Some((_, finalizers, resource_version)) =
                    observed.spec_meta.iter().find(|(n, _, _)| n == name)
                else {
                    return Ok(());
                };
                let mut finalizers: Vec<String> = finalizers
                    .iter()
                    .filter(|f| *f != FINALIZER)
                    .cloned()
                    .collect();
                if matches!(step, Step::Finalize(_)) {
                    finalizers.push(FINALIZER.to_string());
                }
                // Guarded by the resourceVersion read: other finalizers are kept as they are.
                let patch = json!({"metadata": {"resourceVersion": resource_version,
                                                "finalizers": finalizers}});
                self.specs()
                    .patch(name, &merge, &Patch::Merge(&patch))
                    .await
                    .map(drop)
            }
            Step::Write { namespace, entries } => {
                let objects = self.objects(Some(namespace));
                match observed.stored.objects.get(namespace) {
                    // Exactly `entries`: whatever else the object holds (a hand edit, a spec
                    // withdrawn) is removed, whoever wrote it.
                    Some(stored) => {
                        let mut contents = serde_json::Map::new();
                        for name in stored.keys().filter(|name| !entries.contains_key(*name)) {
                            contents.insert(name.clone(), Value::Null);
                        }
                        for (name, value) in entries {
                            contents.insert(name.clone(), Value::String(value.clone()));
                        }
                        let patch = json!({ FIELD: contents });
                        objects
                            .patch(&self.install, &merge, &Patch::Merge(&patch))
                            .await
                            .map(drop)
                    }
                    None => {
                        let resource = namespace_contents_resource();
                        let object = json!({
                            "apiVersion": resource.api_version,
                            "kind": resource.kind,
                            "metadata": {"name": self.install, "namespace": namespace},
                            FIELD: entries,
                        });
                        let apply = PatchParams::apply(FIELD_MANAGER).force();
                        objects
                            .patch(&self.install, &apply, &Patch::Apply(&object))
                            .await
                            .map(drop)
                    }
                }
            }
            Step::List(namespaces) => {
                let patch = json!({"spec": {"matchResources": {
                    "namespaceSelector": contents::elsewhere_selector(namespaces)}}});
                self.binding()
                    .patch(
                        &elsewhere_policy(&self.install),
                        &merge,
                        &Patch::Merge(&patch),
                    )
                    .await
                    .map(drop)
            }
            Step::Delete(namespace) => {
                match self
                    .objects(Some(namespace))
                    .delete(&self.install, &DeleteParams::default())
                    .await
                {
                    Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
                    other => other.map(drop),
                }
            }
        }
    }

    /// Observes and performs until the plan is empty (at most `passes` times); the steps
    /// performed, in order. `scope` says which of the plan's steps to take.
    pub async fn settle(&self, passes: usize, scope: Scope) -> Result<Vec<Step>, ContentsError> {
        let mut done = Vec::new();
        for _ in 0..passes {
            let observed = self.observe().await?;
            if scope == Scope::All && !observed.binding_found {
                return Err(ContentsError::NoBinding(elsewhere_policy(&self.install)));
            }
            let steps = scope.of(observed.plan());
            if steps.is_empty() {
                return Ok(done);
            }
            self.perform(&observed, &steps).await?;
            done.extend(steps);
        }
        let left = scope.of(self.observe().await?.plan()).len();
        if left == 0 {
            Ok(done)
        } else {
            Err(ContentsError::KeptChanging(left, passes))
        }
    }

    /// Removes the finalizer from every spec that has it: policy mode is going (uninstall, a
    /// switch to the webhook), and its published contents with it. Run once the `-specs`
    /// policy, which lets only the keeper remove it, is gone. The specs released, by name.
    pub async fn release_every_spec(&self) -> Result<Vec<String>, ContentsError> {
        let observed = self.observe_specs().await?;
        let held: Vec<Step> = observed
            .specs
            .iter()
            .filter(|s| s.finalized)
            .map(|s| Step::Release(s.name.clone()))
            .collect();
        self.perform(&observed, &held).await?;
        Ok(held
            .into_iter()
            .filter_map(|s| match s {
                Step::Release(name) => Some(name),
                _ => None,
            })
            .collect())
    }
}

/// Which of a plan's steps a [`ContentsKeeper::settle`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every step: the keeper.
    All,
    /// Finalizers added and objects written, nothing listed, deleted or released: what
    /// `install` does before the policies exist, so they find the contents in place.
    Publish,
    /// Every step but releasing finalizers, which only the keeper's identity may do.
    NoRelease,
}

impl Scope {
    fn of(self, steps: Vec<Step>) -> Vec<Step> {
        steps
            .into_iter()
            .filter(|step| match self {
                Scope::All => true,
                Scope::Publish => matches!(step, Step::Finalize(_) | Step::Write { .. }),
                Scope::NoRelease => !matches!(step, Step::Release(_)),
            })
            .collect()
    }
}

/// A step as logs and errors name it.
pub fn describe_step(step: &Step) -> String {
    match step {
        Step::Finalize(name) => {
            format!("adding finalizer {FINALIZER} to GMSACredentialSpec {name}")
        }
        Step::Release(name) => {
            format!("removing finalizer {FINALIZER} from GMSACredentialSpec {name}")
        }
        Step::Write { namespace, entries } => format!(
            "writing the contents of {} credential spec(s) in namespace {namespace}",
            entries.len()
        ),
        Step::List(namespaces) => format!(
            "listing {} namespace(s) as holding published contents",
            namespaces.len()
        ),
        Step::Delete(namespace) => {
            format!("deleting the published contents of namespace {namespace}")
        }
    }
}

/// How long the keeper lets changes gather before it observes the cluster again, and how
/// often it does so anyway.
const GATHER: std::time::Duration = std::time::Duration::from_millis(100);
const RESYNC: std::time::Duration = std::time::Duration::from_secs(30);
const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(30);

impl ContentsKeeper {
    /// Keeps the contents until the task is aborted: on every change of what the plan reads
    /// (and every [`RESYNC`] anyway), observes the cluster and performs the plan, retrying a
    /// failed pass with backoff. `on_pass` hears each pass's outcome.
    pub async fn run(&self, on_pass: impl Fn(&Result<Vec<Step>, ContentsError>)) {
        use futures::stream::{select_all, BoxStream};
        use futures::StreamExt;

        fn kind<K>(api: Api<K>) -> BoxStream<'static, ()>
        where
            K: kube::Resource
                + Clone
                + serde::de::DeserializeOwned
                + std::fmt::Debug
                + Send
                + 'static,
        {
            crate::watch::changes(api).map(|_| ()).boxed()
        }
        let client = &self.client;
        let mut changes = select_all([
            kind(self.specs()),
            kind(self.objects(None)),
            kind(self.binding()),
            kind(Api::<Namespace>::all(client.clone())),
            kind(Api::<rbac::ClusterRole>::all(client.clone())),
            kind(Api::<rbac::Role>::all(client.clone())),
            kind(Api::<rbac::ClusterRoleBinding>::all(client.clone())),
            kind(Api::<rbac::RoleBinding>::all(client.clone())),
        ]);
        let mut backoff = std::time::Duration::from_secs(1);
        let mut due = tokio::time::Instant::now();
        loop {
            tokio::select! {
                change = changes.next() => {
                    if change.is_none() {
                        break;
                    }
                    due = due.min(tokio::time::Instant::now() + GATHER);
                }
                () = tokio::time::sleep_until(due) => {
                    let outcome = self.settle(1, Scope::All).await;
                    on_pass(&outcome);
                    due = match outcome {
                        Ok(_) | Err(ContentsError::KeptChanging(..)) => {
                            backoff = std::time::Duration::from_secs(1);
                            tokio::time::Instant::now()
                                + if outcome.is_ok() { RESYNC } else { GATHER }
                        }
                        Err(_) => {
                            let at = tokio::time::Instant::now() + backoff;
                            backoff = (backoff * 2).min(RETRY_MAX);
                            at
                        }
                    };
                }
            }
        }
    }
}
