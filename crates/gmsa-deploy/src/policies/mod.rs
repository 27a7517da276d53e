//! Policy mode: the webhook's job done inside the API server (Kubernetes 1.36+) by admission
//! policies, at a cost per GMSA pod that does not grow with the number of credential specs
//! (BENCHMARKS.md, "Policy mode"). No process is on the admission path; the keeper
//! (`gmsa-webhook --keep-published-contents`, [`gmsa_kube::contents`]) only writes what the
//! policies read.
//!
//! Each namespace's `GMSANamespaceContents` object (named after the install) holds the encoded
//! contents of the specs its service accounts may `use` (`gmsa_core::contents` decides them).
//! The pod policies read the pod's own namespace's object (a `paramRef` with a name and no
//! namespace): one cached get per policy, whatever the number of specs.
//!
//! - `<name>-inline` (mutating): inlines the entry of each name left without contents.
//! - `<name>-pods` (validating): the service account may `use` every name (asked first, so an
//!   account learns nothing of which specs exist); a name still without contents is not
//!   published here; pre-set contents equal the entry; contents without a name; settings
//!   never change on update.
//! - `<name>-elsewhere` (validating, no parameter): the same checks with no entries, bound to
//!   every namespace the keeper has not listed as holding an object. Without it a namespace
//!   with no object would skip `-pods` entirely (`parameterNotFoundAction: Allow`; `Deny` would
//!   refuse every pod there, GMSA or not, since the API server collects parameters before it
//!   evaluates match conditions).
//! - `<name>-specs` (validating, on spec updates): `credspec` never changes (delete and create
//!   again), and only the keeper removes the [`FINALIZER`].
//! - `<name>-finalize` (mutating, on spec creation): adds the [`FINALIZER`], so a spec's
//!   contents are withdrawn before it goes and its name never meets them again.
//!
//! The uninstall guard (`guard.rs`) is not part of an install: `uninstall` leaves it so GMSA
//! pods are refused, not admitted without contents, until admission is installed again.

pub mod cel;
pub mod guard;
mod inline;
mod specs;

pub use inline::{inline_patch, mutating_binding, mutating_policy};
pub use specs::{finalize_binding, finalize_policy_object, specs_binding, specs_policy_object};

use std::collections::BTreeSet;

use gmsa_core::contents::elsewhere_selector;
use gmsa_core::names as core_names;
use gmsa_core::names::contents;
use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MatchResources, NamedRuleWithOperations, ParamKind, ParamRef,
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
    ValidatingAdmissionPolicyBindingSpec, ValidatingAdmissionPolicySpec, Validation, Variable,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use k8s_openapi::Resource;

use crate::manifest::Object;
use crate::meta::{self, strings};
use crate::{names, webhooks, Kind, Settings};
use cel::LISTS;

/// The names of the policies (each binding has its policy's name).
pub fn inline_policy(name: &str) -> String {
    format!("{name}-inline")
}

pub fn pods_policy(name: &str) -> String {
    format!("{name}-pods")
}

/// One of the policies an install binds, as install, uninstall and doctor know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundPolicy {
    pub policy: Kind,
    pub binding: Kind,
    /// The policy's name, which its binding shares.
    pub name: String,
    /// Whether the binding reads the request's namespace's `GMSANamespaceContents` object
    /// (a `paramRef` naming the install).
    pub reads_contents: bool,
}

/// The policies of the install named `name`, in the order uninstall removes them (the pod
/// policies first, then those on specs): one list for install's objects, uninstall's and
/// doctor's `admission-policies` row.
pub fn bound(name: &str) -> [BoundPolicy; 5] {
    let validating = |name: String, reads_contents| BoundPolicy {
        policy: Kind::ValidatingAdmissionPolicy,
        binding: Kind::ValidatingAdmissionPolicyBinding,
        name,
        reads_contents,
    };
    let mutating = |name: String, reads_contents| BoundPolicy {
        policy: Kind::MutatingAdmissionPolicy,
        binding: Kind::MutatingAdmissionPolicyBinding,
        name,
        reads_contents,
    };
    [
        validating(pods_policy(name), true),
        validating(elsewhere_policy(name), false),
        mutating(inline_policy(name), true),
        validating(specs_policy(name), false),
        mutating(finalize_policy(name), false),
    ]
}

pub(crate) const FAILURE_POLICY: &str = "Fail";
pub(crate) const COMPONENT: &str = "admission-policy";

pub(crate) fn variable(name: &str, expression: String) -> Variable {
    Variable {
        name: name.into(),
        expression,
    }
}

/// Pods created, pods updated (the settings must not change) and new ephemeral containers.
pub(crate) fn pod_rules(operations: &[&str]) -> MatchResources {
    MatchResources {
        resource_rules: Some(vec![NamedRuleWithOperations {
            api_groups: Some(vec![Pod::GROUP.into()]),
            api_versions: Some(vec![Pod::VERSION.into()]),
            operations: Some(strings(operations)),
            resources: Some(vec![
                Pod::URL_PATH_SEGMENT.into(),
                format!(
                    "{}/{}",
                    Pod::URL_PATH_SEGMENT,
                    core_names::EPHEMERAL_CONTAINERS_SUBRESOURCE
                ),
            ]),
            ..NamedRuleWithOperations::default()
        }]),
        match_policy: Some("Equivalent".into()),
        ..MatchResources::default()
    }
}

/// Only requests that mention GMSA are evaluated, as with the webhooks.
pub(crate) fn mentions_gmsa() -> MatchCondition {
    MatchCondition {
        name: names::MATCH_CONDITION_NAME.into(),
        expression: webhooks::match_condition_expression(),
    }
}

pub(crate) fn created_variables() -> Vec<Variable> {
    LISTS
        .iter()
        .map(|list| variable(list.field, cel::created(*list)))
        .collect()
}

/// The namespaces mutation applies to: those not labelled `gmsa-webhook: disabled`.
pub(crate) fn mutated_namespaces() -> MatchResources {
    MatchResources {
        namespace_selector: Some(LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: names::DISABLE_LABEL.into(),
                operator: "NotIn".into(),
                values: Some(vec![names::DISABLE_VALUE.into()]),
            }]),
            match_labels: None,
        }),
        ..MatchResources::default()
    }
}

pub(crate) fn validation(
    expression: String,
    message_expression: String,
    reason: &str,
) -> Validation {
    Validation {
        expression,
        message_expression: Some(message_expression),
        reason: Some(reason.into()),
        message: None,
    }
}

/// The pod's service account, as written (the ServiceAccount admission plugin has already
/// put `default` there when it was empty).
pub(crate) const SERVICE_ACCOUNT: &str = "object.spec.?serviceAccountName.orValue('')";

/// How many distinct spec names one pod may use: one authorizer check per validation is what
/// the API server's cost limit allows (about two fit).
pub(crate) const NAME_SLOTS: usize = 8;

/// Whether the pod's service account may `use` the spec named by the CEL string `name`. The
/// namespace must be given for RoleBindings to count.
pub(crate) fn may_use(name: &str) -> String {
    format!(
        "authorizer.serviceAccount(request.namespace, {SERVICE_ACCOUNT} == '' ? 'default' : {SERVICE_ACCOUNT})\
         .group('{}').resource('{}').namespace(request.namespace).name({name}).check('use').allowed()",
        core_names::GROUP,
        core_names::RESOURCE
    )
}

/// The messages quote names as the webhook does (Go's `%q` of a Kubernetes name is the name
/// in double quotes).
pub(crate) fn q(expression: &str) -> String {
    format!("'\"' + {expression} + '\"'")
}

/// The first refused place, as a message names it.
pub(crate) struct Place<'a> {
    /// `pod`, `container`, `init container`, `ephemeral container`.
    pub(crate) kind: &'a str,
    /// CEL of the object holding its settings (`object.spec`, a container).
    pub(crate) holder: String,
    /// CEL of its quoted name, as the webhook quotes it.
    pub(crate) owner: String,
}

/// One validation for the pod level and one per container list, each refusing the places
/// this request creates that satisfy `bad` (CEL over the holder), with `message` naming the
/// first of them.
pub(crate) fn on_created_places(
    bad: impl Fn(&str) -> String,
    message: impl Fn(&Place<'_>) -> String,
    reason: &str,
) -> Vec<Validation> {
    let pod_level = "object.spec";
    let pod = Place {
        kind: "pod",
        holder: pod_level.into(),
        owner: q(cel::POD_NAME),
    };
    let mut validations = vec![validation(
        format!("!({} && {})", cel::CREATING, bad(pod_level)),
        message(&pod),
        reason,
    )];
    for list in LISTS {
        let list_var = cel::created_variable(list);
        let condition = bad("c");
        let first = format!("{list_var}.filter(c, {condition})[0]");
        let place = Place {
            kind: list.label,
            owner: q(&format!("{first}.name")),
            holder: first,
        };
        validations.push(validation(
            format!("!{list_var}.exists(c, {condition})"),
            message(&place),
            reason,
        ));
    }
    validations
}

/// Whether the request's namespace is mutated (not labelled `gmsa-webhook: disabled`). The
/// webhook refuses a missing spec while mutating, before any validation; namespaces that opt
/// out of mutation are not refused for what mutation would have done.
pub(crate) fn mutated_here() -> String {
    format!(
        "namespaceObject.metadata.?labels[?'{}'].orValue('') != '{}'",
        names::DISABLE_LABEL,
        names::DISABLE_VALUE
    )
}

/// Contents set on a place that names no spec: refused, as the webhook does.
pub(crate) fn contents_without_name() -> Vec<Validation> {
    on_created_places(
        |h| {
            format!(
                "{} == '' && {}.hasValue()",
                cel::name_of(h),
                cel::contents_of(h)
            )
        },
        |place| {
            format!(
                "'{} ' + {} + ' has a GMSA cred spec set, but does not define the name of the corresponding resource'",
                place.kind, place.owner
            )
        },
        "Invalid",
    )
}

/// The checks every GMSA request gets once: the service account may `use` each distinct
/// name (needs the `names` variable), at most [`NAME_SLOTS`] names, and no GMSA setting
/// changes on update.
pub(crate) fn authorized_and_unchanged() -> Vec<Validation> {
    let mut validations = Vec::new();
    // Once per request and per name: pre-set contents under a name no spec has still need a
    // grant.
    for slot in 0..NAME_SLOTS {
        let name = format!("variables.names[{slot}]");
        validations.push(validation(
            format!("size(variables.names) <= {slot} || {}", may_use(&name)),
            format!(
                "'service account ' + {} + ' is not authorized to `use` GMSA cred spec ' + {}",
                q(SERVICE_ACCOUNT),
                q(&name)
            ),
            "Forbidden",
        ));
    }
    validations.push(validation(
        format!("size(variables.names) <= {NAME_SLOTS}"),
        format!("'the pod names ' + string(size(variables.names)) + ' GMSA cred specs; admission policies check at most {NAME_SLOTS} (the webhook has no such limit)'"),
        "Invalid",
    ));
    let (pod_expression, pod_message) = cel::pod_unchanged();
    validations.push(validation(pod_expression, pod_message, "Forbidden"));
    for list in LISTS {
        let (expression, message) = cel::list_unchanged(list);
        validations.push(validation(expression, message, "Forbidden"));
    }
    validations
}

pub use gmsa_core::names::contents::elsewhere_policy;

pub fn specs_policy(name: &str) -> String {
    format!("{name}-specs")
}

pub fn finalize_policy(name: &str) -> String {
    format!("{name}-finalize")
}

/// Why a name has no contents here. The namespace's object cannot tell a spec that does not
/// exist from one no service account here may use, so the message names every cause.
pub const NOT_PUBLISHED: &str =
    "it does not exist, no service account of this namespace may `use` it, \
    or the GMSA keeper has not published it here yet: kubectl gmsa doctor tells which";

/// The variable holding the namespace's entries (spec name to contents).
pub(crate) const ENTRIES: &str = "variables.entries";

/// The entry for the spec named on `holder`, as an optional.
pub(crate) fn entry_of(holder: &str) -> String {
    format!("{ENTRIES}[?{}]", cel::name_of(holder))
}

pub(crate) fn contents_param() -> ParamKind {
    ParamKind {
        api_version: Some(format!("{}/{}", contents::GROUP, contents::VERSION)),
        kind: Some(contents::KIND.into()),
    }
}

/// The pod's namespace's object. A namespace without one skips the policy: `-elsewhere`
/// covers it.
pub(crate) fn this_namespace(settings: &Settings) -> ParamRef {
    ParamRef {
        name: Some(settings.name.clone()),
        parameter_not_found_action: Some("Allow".into()),
        ..ParamRef::default()
    }
}

pub(crate) fn entries_variable(from_params: bool) -> Variable {
    let expression = if from_params {
        format!("params.?{}.orValue({{}})", contents::FIELD)
    } else {
        "{}".to_string()
    };
    variable("entries", expression)
}

/// Every check of a GMSA request, against the namespace's entries (none without a parameter).
fn pod_validations() -> Vec<Validation> {
    let not_published = |place: &Place<'_>| {
        format!(
            "'cred spec ' + {} + ' is not published for namespace ' + request.namespace + ': {NOT_PUBLISHED}'",
            cel::name_of(&place.holder)
        )
    };
    let mutated = mutated_here();
    // Authorization first: a service account that may not `use` a name is told so, rather
    // than that the name is not published here (one of that message's causes).
    let mut validations = authorized_and_unchanged();
    validations.extend(on_created_places(
        |h| {
            format!(
                "{mutated} && {} != '' && !{}.hasValue()",
                cel::name_of(h),
                cel::contents_of(h)
            )
        },
        not_published,
        "Invalid",
    ));
    validations.extend(on_created_places(
        |h| {
            format!(
                "{} != '' && {}.hasValue() && !{}.hasValue()",
                cel::name_of(h),
                cel::contents_of(h),
                entry_of(h)
            )
        },
        not_published,
        "Invalid",
    ));
    validations.extend(on_created_places(
        |h| {
            format!(
                "{} != '' && {}.hasValue() && {}.orValue('') != {}.value()",
                cel::name_of(h),
                cel::contents_of(h),
                entry_of(h),
                cel::contents_of(h)
            )
        },
        |place| {
            format!(
                "'the GMSA cred spec contents for {} ' + {} + ' does not match the contents of GMSA resource ' + {}",
                place.kind,
                place.owner,
                q(&cel::name_of(&place.holder))
            )
        },
        "Invalid",
    ));
    validations.extend(contents_without_name());
    validations
}

fn pods_policy_spec(from_params: bool) -> ValidatingAdmissionPolicySpec {
    let mut variables = vec![entries_variable(from_params)];
    variables.extend(created_variables());
    variables.push(variable("names", cel::created_names()));
    ValidatingAdmissionPolicySpec {
        param_kind: from_params.then(contents_param),
        match_constraints: Some(pod_rules(&["CREATE", "UPDATE"])),
        match_conditions: Some(vec![mentions_gmsa()]),
        variables: Some(variables),
        validations: Some(pod_validations()),
        failure_policy: Some(FAILURE_POLICY.into()),
        ..ValidatingAdmissionPolicySpec::default()
    }
}

pub fn pods_policy_object(settings: &Settings) -> ValidatingAdmissionPolicy {
    ValidatingAdmissionPolicy {
        metadata: meta::cluster(settings, &pods_policy(&settings.name), COMPONENT),
        spec: Some(pods_policy_spec(true)),
        status: None,
    }
}

pub fn elsewhere_policy_object(settings: &Settings) -> ValidatingAdmissionPolicy {
    ValidatingAdmissionPolicy {
        metadata: meta::cluster(settings, &elsewhere_policy(&settings.name), COMPONENT),
        spec: Some(pods_policy_spec(false)),
        status: None,
    }
}

pub(crate) fn binding(
    settings: &Settings,
    policy: String,
    param_ref: Option<ParamRef>,
    match_resources: Option<MatchResources>,
) -> ValidatingAdmissionPolicyBinding {
    ValidatingAdmissionPolicyBinding {
        metadata: meta::cluster(settings, &policy, COMPONENT),
        spec: ValidatingAdmissionPolicyBindingSpec {
            policy_name: policy,
            param_ref,
            validation_actions: vec!["Deny".into()],
            match_resources,
        },
    }
}

pub fn pods_binding(settings: &Settings) -> ValidatingAdmissionPolicyBinding {
    binding(
        settings,
        pods_policy(&settings.name),
        Some(this_namespace(settings)),
        None,
    )
}

/// Every namespace but `listed`, those the keeper has written an object in.
pub fn elsewhere_binding(
    settings: &Settings,
    listed: &BTreeSet<String>,
) -> ValidatingAdmissionPolicyBinding {
    let selector = serde_json::from_value(elsewhere_selector(listed)).ok();
    binding(
        settings,
        elsewhere_policy(&settings.name),
        None,
        Some(MatchResources {
            namespace_selector: selector,
            ..MatchResources::default()
        }),
    )
}

/// The identity the keeper's writes carry: the install's ServiceAccount.
pub fn keeper_user(settings: &Settings) -> String {
    core_names::service_account_user(&settings.namespace, &settings.name)
}

/// The policies and bindings, in apply order: those on specs first (a spec created meanwhile
/// gets its finalizer), then `-elsewhere` (refusing GMSA places in every namespace but
/// `listed`, those the keeper has written an object in), then the pod policies, each policy
/// before its binding. The `GMSANamespaceContents` CRD is a definition of the manifest.
pub fn admission_objects(
    settings: &Settings,
    keeper_user: &str,
    listed: &BTreeSet<String>,
) -> Vec<Object> {
    vec![
        Object::typed(
            Kind::MutatingAdmissionPolicy,
            &finalize_policy_object(settings),
        ),
        Object::typed(
            Kind::MutatingAdmissionPolicyBinding,
            &finalize_binding(settings),
        ),
        Object::typed(
            Kind::ValidatingAdmissionPolicy,
            &specs_policy_object(settings, keeper_user),
        ),
        Object::typed(
            Kind::ValidatingAdmissionPolicyBinding,
            &specs_binding(settings),
        ),
        Object::typed(
            Kind::ValidatingAdmissionPolicy,
            &elsewhere_policy_object(settings),
        ),
        elsewhere_binding_object(settings, listed),
        Object::typed(Kind::MutatingAdmissionPolicy, &mutating_policy(settings)),
        Object::typed(
            Kind::MutatingAdmissionPolicyBinding,
            &mutating_binding(settings),
        ),
        Object::typed(
            Kind::ValidatingAdmissionPolicy,
            &pods_policy_object(settings),
        ),
        Object::typed(
            Kind::ValidatingAdmissionPolicyBinding,
            &pods_binding(settings),
        ),
    ]
}

/// [`elsewhere_binding`] as install applies it: taken over, since the keeper writes its
/// namespace list (install renders the list the keeper would).
pub fn elsewhere_binding_object(settings: &Settings, listed: &BTreeSet<String>) -> Object {
    let mut object = Object::typed(
        Kind::ValidatingAdmissionPolicyBinding,
        &elsewhere_binding(settings, listed),
    );
    object.take_over = true;
    object
}

/// The per-spec policy earlier versions bound (every spec a parameter): a policy install
/// removes it once its own policies are applied.
pub fn retired(name: &str) -> [(Kind, String); 2] {
    let use_policy = format!("{name}-use");
    [
        (Kind::ValidatingAdmissionPolicyBinding, use_policy.clone()),
        (Kind::ValidatingAdmissionPolicy, use_policy),
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            name: "gw".into(),
            ..Settings::default()
        }
    }

    #[test]
    fn the_pod_policies_read_the_namespaces_own_object() {
        let settings = settings();
        assert_eq!(
            keeper_user(&settings),
            "system:serviceaccount:gmsa-system:gw"
        );
        let objects = admission_objects(&settings, &keeper_user(&settings), &BTreeSet::new());
        let names: Vec<String> = objects.iter().map(|o| o.id.name.clone()).collect();
        assert_eq!(
            names,
            [
                "gw-finalize",
                "gw-finalize",
                "gw-specs",
                "gw-specs",
                "gw-elsewhere",
                "gw-elsewhere",
                "gw-inline",
                "gw-inline",
                "gw-pods",
                "gw-pods",
            ]
        );
        for binding in [&objects[7].body, &objects[9].body] {
            let param_ref = &binding["spec"]["paramRef"];
            assert_eq!(param_ref["name"], "gw");
            assert!(
                param_ref.get("namespace").is_none(),
                "a name and no namespace: the request's namespace's object"
            );
            assert_eq!(param_ref["parameterNotFoundAction"], "Allow");
        }
        let elsewhere = &objects[5].body["spec"];
        assert!(elsewhere.get("paramRef").is_none());
        let values =
            &elsewhere["matchResources"]["namespaceSelector"]["matchExpressions"][0]["values"];
        assert_eq!(values.as_array().map(Vec::len), Some(1));
        assert_eq!(values[0], "");
        assert!(objects[4].body["spec"].get("paramKind").is_none());
        assert_eq!(
            objects[8].body["spec"]["paramKind"]["kind"],
            "GMSANamespaceContents"
        );
    }

    #[test]
    fn bound_policies_are_the_five_with_their_bindings() {
        let bound = bound("gw");
        let names: Vec<&str> = bound.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "gw-pods",
                "gw-elsewhere",
                "gw-inline",
                "gw-specs",
                "gw-finalize"
            ]
        );
        let reads: Vec<bool> = bound.iter().map(|p| p.reads_contents).collect();
        assert_eq!(reads, [true, false, true, false, false]);
        for policy in &bound {
            assert_eq!(
                policy.binding.info().kind,
                format!("{}Binding", policy.policy.info().kind)
            );
        }
    }
}
