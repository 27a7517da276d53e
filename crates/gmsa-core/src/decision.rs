//! The admission decisions: what to inline (mutate) and what to refuse (validate).
//!
//! Deciding is split in two so that it stays pure: [`Plan::needs`] says which credential specs
//! and which `use` grants a review depends on; a backend (watch cache, embedded state, the CLI)
//! gathers them into [`Facts`]; [`Plan::decide`] then walks the places in the reference's order
//! and returns the first problem, or the patch.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use crate::canonical::{go_quote, write_go_string};
use crate::credspec::{Contents, CredentialSpec};
use crate::hostname;
use crate::names;
use crate::pod::{Place, PlaceKind, Pod};

/// Which endpoint a review came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    Mutate,
    Validate,
}

impl Hook {
    /// Lowercase name for logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Mutate => "mutate",
            Hook::Validate => "validate",
        }
    }
}

pub use crate::verdict::{Denial, Verdict};

/// What a backend found for a credential-spec name.
#[derive(Debug, Clone)]
pub enum SpecLookup {
    Found(Arc<CredentialSpec>),
    NotFound,
    /// The cluster could not be asked; the text names the error.
    Failed(String),
}

/// What a backend found for "may this service account `use` this spec".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessCheck {
    Allowed,
    /// Refused; the reason the authorizer gave, often empty.
    Denied {
        reason: String,
    },
    /// The review could not be made; the text names the error.
    Failed(String),
}

/// What a decision depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// Credential specs whose contents are needed.
    pub specs: BTreeSet<String>,
    /// Credential specs the service account must be allowed to `use`.
    pub grants: BTreeSet<String>,
    /// Namespace and service account the grants are asked for.
    pub namespace: String,
    pub service_account: String,
}

impl Needs {
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty() && self.grants.is_empty()
    }
}

/// Answers to [`Needs`], gathered by a backend.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub specs: HashMap<String, SpecLookup>,
    pub grants: HashMap<String, AccessCheck>,
}

/// A cluster that can answer lookups synchronously (embedded state, offline `admit`).
pub trait ClusterView {
    fn credential_spec(&self, name: &str) -> SpecLookup;
    fn may_use(&self, namespace: &str, service_account: &str, spec: &str) -> AccessCheck;
}

impl Facts {
    /// Gathers everything `needs` asks for from a synchronous view.
    pub fn gather(needs: &Needs, view: &impl ClusterView) -> Self {
        Self {
            specs: needs
                .specs
                .iter()
                .map(|n| (n.clone(), view.credential_spec(n)))
                .collect(),
            grants: needs
                .grants
                .iter()
                .map(|n| {
                    let check = view.may_use(&needs.namespace, &needs.service_account, n);
                    (n.clone(), check)
                })
                .collect(),
        }
    }
}

/// Settings that change decisions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// `RANDOM_HOSTNAME`: give GMSA pods without a hostname a random NetBIOS-sized one.
    pub random_hostname: bool,
}

/// The admission operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Other(String),
}

impl Operation {
    pub fn parse(s: &str) -> Self {
        match s {
            "CREATE" => Operation::Create,
            "UPDATE" => Operation::Update,
            other => Operation::Other(other.to_string()),
        }
    }
}

/// What a review of a pod is, decided once from its operation, endpoint and subresource: the
/// reader takes from it whether to read the old pod, the plan what counts as created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Triage {
    /// A new pod: every place counts.
    Create,
    /// An update of the whole pod, validated: GMSA settings must not change.
    Update,
    /// `pods/ephemeralcontainers`: new ephemeral containers are created, the rest is immutable.
    EphemeralUpdate,
    /// Nothing to do (mutate on a plain update).
    Allow,
}

impl Triage {
    /// The triage of a review; any operation but CREATE and UPDATE is refused, with the
    /// reference's message (its typo included, which users may match on).
    pub fn of(hook: Hook, operation: &Operation, subresource: &str) -> Result<Self, Denial> {
        let ephemeral = subresource == names::EPHEMERAL_CONTAINERS_SUBRESOURCE;
        match (operation, hook, ephemeral) {
            (Operation::Create, _, _) => Ok(Triage::Create),
            (Operation::Update, _, true) => Ok(Triage::EphemeralUpdate),
            (Operation::Update, Hook::Validate, false) => Ok(Triage::Update),
            (Operation::Update, Hook::Mutate, false) => Ok(Triage::Allow),
            (Operation::Other(op), _, _) => {
                Err(Denial::new(400, format!("unpexpected operation {op}")))
            }
        }
    }

    /// Whether deciding compares with the pod as it was: the old object must be read.
    pub fn reads_old_pod(self) -> bool {
        matches!(self, Triage::Update | Triage::EphemeralUpdate)
    }
}

/// What to do with one review, once its pods are read.
#[derive(Debug, Clone)]
pub struct Plan {
    hook: Hook,
    triage: Triage,
    pod: Pod,
    old_pod: Option<Pod>,
    namespace: String,
    /// Ephemeral containers new in this request (subresource update), by name.
    new_ephemeral: HashSet<String>,
}

impl Plan {
    /// Plans a review. `old_pod` is read when [`Triage::reads_old_pod`] says so (the reader
    /// reports its absence as the reference does).
    pub fn new(
        hook: Hook,
        triage: Triage,
        namespace: &str,
        pod: Pod,
        old_pod: Option<Pod>,
    ) -> Self {
        let new_ephemeral = match (triage, &old_pod) {
            (Triage::EphemeralUpdate, old) => {
                let existing: HashSet<&str> = old
                    .iter()
                    .flat_map(|o| o.ephemeral_container_names())
                    .collect();
                pod.ephemeral_container_names()
                    .filter(|n| !existing.contains(n))
                    .map(str::to_string)
                    .collect()
            }
            _ => HashSet::new(),
        };
        Self {
            hook,
            triage,
            pod,
            old_pod,
            namespace: namespace.to_string(),
            new_ephemeral,
        }
    }

    /// The service account the pod runs as; an empty name means `default`.
    pub fn service_account(&self) -> &str {
        match self.pod.service_account_name() {
            "" => names::DEFAULT_SERVICE_ACCOUNT,
            sa => sa,
        }
    }

    /// The pod under review.
    pub fn pod(&self) -> &Pod {
        &self.pod
    }

    /// Places treated as being created by this request.
    fn created_places(&self) -> Box<dyn Iterator<Item = Place<'_>> + '_> {
        match self.triage {
            Triage::Create => Box::new(self.pod.places()),
            Triage::EphemeralUpdate => Box::new(self.pod.places().filter(|p| {
                p.kind == PlaceKind::EphemeralContainer && self.new_ephemeral.contains(p.owner)
            })),
            Triage::Update | Triage::Allow => Box::new(std::iter::empty()),
        }
    }

    /// The lookups this decision depends on.
    pub fn needs(&self) -> Needs {
        let mut needs = Needs {
            namespace: self.namespace.clone(),
            service_account: self.service_account().to_string(),
            ..Needs::default()
        };
        for place in self.created_places() {
            let Some(name) = &place.options.gmsa_credential_spec_name else {
                continue;
            };
            match self.hook {
                Hook::Mutate => {
                    if place.options.gmsa_credential_spec.is_none() {
                        needs.specs.insert(name.clone());
                    }
                }
                Hook::Validate => {
                    needs.grants.insert(name.clone());
                    if place.options.gmsa_credential_spec.is_some() {
                        needs.specs.insert(name.clone());
                    }
                }
            }
        }
        needs
    }

    /// Decides, given the facts gathered for [`Plan::needs`]. `hostname` is called at most once,
    /// only when a random hostname is to be added.
    pub fn decide(
        &self,
        facts: &Facts,
        options: Options,
        hostname: impl FnOnce() -> String,
    ) -> Verdict {
        let result = match self.hook {
            Hook::Mutate => self.mutate(facts, options, hostname),
            Hook::Validate => self.validate(facts),
        };
        match result {
            Ok(patch) => Verdict::Allowed { patch },
            Err(denial) => Verdict::Denied(denial),
        }
    }

    fn mutate(
        &self,
        facts: &Facts,
        options: Options,
        hostname: impl FnOnce() -> String,
    ) -> Result<Option<String>, Denial> {
        let mut patch = JsonPatch::default();
        let mut names_a_spec = false;
        for place in self.created_places() {
            let Some(name) = &place.options.gmsa_credential_spec_name else {
                continue;
            };
            names_a_spec = true;
            if place.options.gmsa_credential_spec.is_some() {
                // Pre-set contents are kept; validation checks they match.
                continue;
            }
            let contents = spec_contents(facts, name)?;
            patch.add_quoted(&place.contents_path(), contents.quoted());
        }
        if names_a_spec
            && options.random_hostname
            && self.triage == Triage::Create
            && self.pod.hostname().is_empty()
        {
            patch.add("/spec/hostname", &hostname());
        }
        Ok(patch.finish())
    }

    /// Admission warnings of a creation, never a refusal, for pods that name a credential spec
    /// ([`crate::hostname`]). Validation warns of a host name longer than a NetBIOS name.
    /// Mutation warns of a fixed `spec.hostname` under a controller that may run several pods:
    /// it sees the host name as the pod's author wrote it, where validation would also see the
    /// random one RANDOM_HOSTNAME adds, which no other pod shares.
    pub fn warnings(&self) -> Vec<String> {
        let names_a_spec = self
            .created_places()
            .any(|p| p.options.gmsa_credential_spec_name.is_some());
        if self.triage != Triage::Create || !names_a_spec {
            return Vec::new();
        }
        let warning = match self.hook {
            Hook::Validate => hostname::too_long(&self.pod),
            Hook::Mutate => hostname::shared_by_controller(&self.pod),
        };
        warning.into_iter().collect()
    }

    fn validate(&self, facts: &Facts) -> Result<Option<String>, Denial> {
        if self.triage.reads_old_pod() {
            self.check_unchanged()?;
        }
        for place in self.created_places() {
            let options = place.options;
            let Some(name) = &options.gmsa_credential_spec_name else {
                if options.gmsa_credential_spec.is_some() {
                    return Err(Denial::new(
                        422,
                        format!(
                            "{} {} has a GMSA cred spec set, but does not define the name of the corresponding resource",
                            place.kind,
                            go_quote(place.owner)
                        ),
                    ));
                }
                continue;
            };
            self.check_grant(facts, name)?;
            if let Some(preset) = &options.gmsa_credential_spec {
                let contents = spec_contents(facts, name)?;
                let mismatch = |detail: Option<String>| {
                    let mut msg = format!(
                        "the GMSA cred spec contents for {} {} does not match the contents of GMSA resource {}",
                        place.kind,
                        go_quote(place.owner),
                        go_quote(name)
                    );
                    if let Some(d) = detail {
                        msg.push_str(": ");
                        msg.push_str(&d);
                    }
                    Denial::new(422, msg)
                };
                match contents.matches(preset) {
                    Ok(true) => {}
                    Ok(false) => return Err(mismatch(None)),
                    Err(detail) => return Err(mismatch(Some(detail))),
                }
            }
        }
        Ok(None)
    }

    fn check_grant(&self, facts: &Facts, name: &str) -> Result<(), Denial> {
        // The reference quotes the service account as written in the pod, even when empty.
        let sa = self.pod.service_account_name();
        match facts.grants.get(name) {
            Some(AccessCheck::Allowed) => Ok(()),
            Some(AccessCheck::Denied { reason }) => {
                let mut msg = format!(
                    "service account {} is not authorized to `use` GMSA cred spec {}",
                    go_quote(sa),
                    go_quote(name)
                );
                if !reason.is_empty() {
                    msg.push_str(&format!(", reason: {}", go_quote(reason)));
                }
                Err(Denial::new(403, msg))
            }
            Some(AccessCheck::Failed(err)) => Err(Denial::new(
                500,
                format!(
                    "unable to check whether service account {} may `use` GMSA cred spec {}: {err}",
                    go_quote(self.service_account()),
                    go_quote(name)
                ),
            )),
            None => Err(Denial::new(
                500,
                format!(
                    "no authorization answer for GMSA cred spec {}",
                    go_quote(name)
                ),
            )),
        }
    }

    /// On update, no place's name or contents may change, matched by container name.
    fn check_unchanged(&self) -> Result<(), Denial> {
        let empty = crate::pod::WindowsOptions::default();
        let old = self.old_pod.as_ref();
        let changed = |new: &crate::pod::WindowsOptions, old: &crate::pod::WindowsOptions| {
            let mut what = Vec::new();
            if new.gmsa_credential_spec_name != old.gmsa_credential_spec_name {
                what.push("name");
            }
            if new.gmsa_credential_spec != old.gmsa_credential_spec {
                what.push("contents");
            }
            what
        };
        let deny = |what: Vec<&str>, place: &Place<'_>| {
            Denial::new(
                403,
                format!(
                    "cannot update an existing pod's GMSA settings (GMSA {} modified on {} {})",
                    what.join(" and "),
                    place.kind,
                    go_quote(place.owner)
                ),
            )
        };
        for place in self.pod.places() {
            if self.triage == Triage::EphemeralUpdate
                && place.kind == PlaceKind::EphemeralContainer
                && self.new_ephemeral.contains(place.owner)
            {
                continue;
            }
            let old_place = old.and_then(|o| o.place_like(&place));
            let what = changed(place.options, old_place.map_or(&empty, |p| p.options));
            if !what.is_empty() {
                return Err(deny(what, &place));
            }
        }
        // Settings removed in the new pod are changes too (the reference misses these).
        if let Some(old) = old {
            for place in old.places().filter(|p| p.options.mentions_gmsa()) {
                if self.pod.place_like(&place).is_none() {
                    let what = changed(&empty, place.options);
                    return Err(deny(what, &place));
                }
            }
        }
        Ok(())
    }
}

/// The contents of a looked-up spec; a resource without a `credspec` key is refused with 417.
fn spec_contents<'f>(facts: &'f Facts, name: &str) -> Result<&'f Contents, Denial> {
    spec_fact(facts, name)?.contents().ok_or_else(|| {
        Denial::new(
            417,
            format!("cred spec {name} does not have a credspec key"),
        )
    })
}

fn spec_fact<'f>(facts: &'f Facts, name: &str) -> Result<&'f Arc<CredentialSpec>, Denial> {
    match facts.specs.get(name) {
        Some(SpecLookup::Found(spec)) => Ok(spec),
        Some(SpecLookup::NotFound) => {
            Err(Denial::new(404, format!("cred spec {name} does not exist")))
        }
        Some(SpecLookup::Failed(err)) => Err(Denial::new(
            500,
            format!("unable to retrieve the contents of cred spec {name}: {err}"),
        )),
        None => Err(Denial::new(
            500,
            format!("unable to retrieve the contents of cred spec {name}: not looked up"),
        )),
    }
}

/// A JSON Patch written as Go's `json.Marshal([]map[string]string)` writes it, so the bytes
/// equal the reference's.
#[derive(Debug, Default)]
struct JsonPatch {
    out: String,
}

impl JsonPatch {
    fn add(&mut self, path: &str, value: &str) {
        let mut quoted = String::with_capacity(value.len() + 2);
        write_go_string(&mut quoted, value);
        self.add_quoted(path, &quoted);
    }

    /// Adds a value already written as a JSON string by [`write_go_string`].
    fn add_quoted(&mut self, path: &str, quoted: &str) {
        self.out.push(if self.out.is_empty() { '[' } else { ',' });
        self.out.push_str(r#"{"op":"add","path":"#);
        write_go_string(&mut self.out, path);
        self.out.push_str(r#","value":"#);
        self.out.push_str(quoted);
        self.out.push('}');
    }

    fn finish(mut self) -> Option<String> {
        if self.out.is_empty() {
            None
        } else {
            self.out.push(']');
            Some(self.out)
        }
    }
}

/// A random hostname for `RANDOM_HOSTNAME`: 15 characters (the NetBIOS limit), lowercase
/// letters and digits, starting with a letter so it is a valid DNS label and NetBIOS name.
pub fn random_hostname(rng: &mut impl rand::Rng) -> String {
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
    const ALPHANUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut s = String::with_capacity(15);
    s.push(LETTERS[rng.random_range(0..LETTERS.len())] as char);
    for _ in 1..15 {
        s.push(ALPHANUM[rng.random_range(0..ALPHANUM.len())] as char);
    }
    s
}
