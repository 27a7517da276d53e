//! Policy mode: the webhook's job done inside the API server (Kubernetes 1.36+) by one
//! MutatingAdmissionPolicy and two ValidatingAdmissionPolicies, with every
//! `GMSACredentialSpec` as a parameter. No process is on the admission path; the keeper
//! (`gmsa-webhook --keep-published-contents`) only publishes each spec's encoded contents.
//!
//! - `<name>-inline` (mutating, per spec): inlines the published contents.
//! - `<name>-use` (validating, per spec): the spec has a `credspec`, its contents are
//!   published for its generation, pre-set contents equal them.
//! - `<name>-pods` (validating, once): a name left without contents (no such spec), contents
//!   without a name, the service account may `use` every named spec, and GMSA settings never
//!   change on update.
//!
//! The uninstall guard (`guard.rs`) is not part of an install: `uninstall` leaves it so GMSA
//! pods are refused, not admitted without contents, until admission is installed again.

pub mod cel;
pub mod guard;
pub mod namespaced;

use gmsa_core::names as core_names;
use k8s_openapi::api::admissionregistration::v1::{
    JSONPatch, MatchCondition, MatchResources, MutatingAdmissionPolicy,
    MutatingAdmissionPolicyBinding, MutatingAdmissionPolicyBindingSpec,
    MutatingAdmissionPolicySpec, Mutation, NamedRuleWithOperations, ParamKind, ParamRef,
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
    ValidatingAdmissionPolicyBindingSpec, ValidatingAdmissionPolicySpec, Validation, Variable,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use k8s_openapi::Resource;

use crate::meta::{self, strings};
use crate::{names, webhooks, Kind, Settings};
use cel::LISTS;

/// The names of the three policies (each binding has its policy's name).
pub fn inline_policy(name: &str) -> String {
    format!("{name}-inline")
}

pub fn use_policy(name: &str) -> String {
    format!("{name}-use")
}

pub fn pods_policy(name: &str) -> String {
    format!("{name}-pods")
}

/// One of the three policies an install binds, as install, uninstall and doctor know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundPolicy {
    pub policy: Kind,
    pub binding: Kind,
    /// The policy's name, which its binding shares.
    pub name: String,
    /// Whether the binding takes every credential spec as a parameter (the per-spec
    /// policies), rather than running once per request.
    pub per_spec: bool,
}

/// The policies of the install named `name`, in the order uninstall removes them: one list
/// for install's objects, uninstall's and doctor's `admission-policies` row.
pub fn bound(name: &str) -> [BoundPolicy; 3] {
    let validating = |name: String, per_spec| BoundPolicy {
        policy: Kind::ValidatingAdmissionPolicy,
        binding: Kind::ValidatingAdmissionPolicyBinding,
        name,
        per_spec,
    };
    [
        validating(use_policy(name), true),
        validating(pods_policy(name), false),
        BoundPolicy {
            policy: Kind::MutatingAdmissionPolicy,
            binding: Kind::MutatingAdmissionPolicyBinding,
            name: inline_policy(name),
            per_spec: true,
        },
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

/// Why a place naming a spec was left without contents: no such spec, or none published for
/// its generation (keeper down, spec just created or edited, no `credspec` key). The
/// per-request policy cannot tell which, so it says both and points at doctor.
pub const NOT_USABLE: &str =
    "does not exist or has no contents published for its current generation: kubectl gmsa doctor tells which";

/// Above this many credential specs, policy mode costs the API server more than twice the CPU
/// per GMSA pod that the webhook does. The API server evaluates both per-spec policies once
/// for every spec on every GMSA pod; measured on v1.37.2 (BENCHMARKS.md, "Policy mode"): 3.8
/// ms with one spec and about 0.33 ms more per spec up to 1,000 (more beyond), against 2.5 to
/// 4.4 ms with the webhook at any count.
pub const SPECS_WITHIN_TWICE_THE_WEBHOOK: usize = 10;

/// What policy mode costs with `specs` credential specs, when that is more than the webhook
/// would cost: for install's and doctor's warnings.
pub fn cost_warning(specs: usize) -> Option<String> {
    (specs > SPECS_WITHIN_TWICE_THE_WEBHOOK).then(|| {
        format!(
            "{specs} credential specs: the API server evaluates two policies per spec on every GMSA pod, \
             about 0.35 ms of its CPU and 0.7 ms of latency per spec (measured on v1.37.2), so policy \
             mode costs it more than twice what the webhook does beyond {SPECS_WITHIN_TWICE_THE_WEBHOOK} specs"
        )
    })
}

/// The per-spec policies run only for the spec the request names.
fn names_this_spec() -> MatchCondition {
    MatchCondition {
        name: "names-this-spec".into(),
        expression: cel::names_the_spec(),
    }
}

fn spec_param() -> ParamKind {
    ParamKind {
        api_version: Some(format!("{}/{}", core_names::GROUP, core_names::VERSION)),
        kind: Some("GMSACredentialSpec".into()),
    }
}

/// Every credential spec is a parameter; with none, the policy has nothing to check.
fn every_spec() -> ParamRef {
    ParamRef {
        selector: Some(LabelSelector::default()),
        parameter_not_found_action: Some("Allow".into()),
        ..ParamRef::default()
    }
}

/// The variables the per-spec policies share: the spec, its published contents and the
/// containers this request creates.
fn spec_variables() -> Vec<Variable> {
    let mut vars = vec![
        variable("name", "params.metadata.name".into()),
        variable("published", cel::published()),
        variable("contents", cel::published_contents()),
    ];
    vars.extend(created_variables());
    vars
}

pub(crate) fn created_variables() -> Vec<Variable> {
    LISTS
        .iter()
        .map(|list| variable(list.field, cel::created(*list)))
        .collect()
}

pub fn mutating_policy(settings: &Settings) -> MutatingAdmissionPolicy {
    MutatingAdmissionPolicy {
        metadata: meta::cluster(settings, &inline_policy(&settings.name), COMPONENT),
        spec: Some(MutatingAdmissionPolicySpec {
            param_kind: Some(spec_param()),
            match_constraints: Some(pod_rules(&["CREATE", "UPDATE"])),
            // Naming the spec implies creating a place that mentions GMSA: one condition,
            // evaluated once per spec, is all the policy needs.
            match_conditions: Some(vec![names_this_spec()]),
            variables: Some(vec![
                variable("name", "params.metadata.name".into()),
                variable("published", cel::published()),
                variable("contents", cel::published_contents()),
            ]),
            mutations: Some(vec![Mutation {
                patch_type: "JSONPatch".into(),
                json_patch: Some(JSONPatch {
                    expression: Some(cel::inline_patch()),
                }),
                ..Mutation::default()
            }]),
            failure_policy: Some(FAILURE_POLICY.into()),
            reinvocation_policy: Some("Never".into()),
        }),
    }
}

/// Namespaces labelled `gmsa-webhook: disabled` skip mutation, never validation.
pub fn mutating_binding(settings: &Settings) -> MutatingAdmissionPolicyBinding {
    MutatingAdmissionPolicyBinding {
        metadata: meta::cluster(settings, &inline_policy(&settings.name), COMPONENT),
        spec: Some(MutatingAdmissionPolicyBindingSpec {
            policy_name: Some(inline_policy(&settings.name)),
            param_ref: Some(every_spec()),
            match_resources: Some(mutated_namespaces()),
        }),
    }
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

pub fn use_policy_object(settings: &Settings) -> ValidatingAdmissionPolicy {
    let named = "variables.named";
    let mut validations = vec![
        validation(
            format!("!{named} || has(params.credspec)"),
            "'cred spec ' + variables.name + ' does not have a credspec key'".into(),
            "Invalid",
        ),
        validation(
            format!("!{named} || variables.published"),
            "'the contents of cred spec ' + variables.name + ' are not published for its generation ' + \
             string(params.metadata.generation) + ': is the GMSA keeper running? (kubectl gmsa doctor)'"
                .into(),
            "Forbidden",
        ),
    ];
    validations.extend(on_created_places(
        |h| {
            format!(
                "{} == variables.name && {}.hasValue() && {}.value() != variables.contents",
                cel::name_of(h),
                cel::contents_of(h),
                cel::contents_of(h)
            )
        },
        |place| {
            format!(
                "'the GMSA cred spec contents for {} ' + {} + ' does not match the contents of GMSA resource ' + {}",
                place.kind,
                place.owner,
                q("variables.name")
            )
        },
        "Invalid",
    ));
    let mut variables = spec_variables();
    variables.push(variable("named", cel::holds_the_spec()));
    ValidatingAdmissionPolicy {
        metadata: meta::cluster(settings, &use_policy(&settings.name), COMPONENT),
        spec: Some(ValidatingAdmissionPolicySpec {
            param_kind: Some(spec_param()),
            match_constraints: Some(pod_rules(&["CREATE", "UPDATE"])),
            match_conditions: Some(vec![names_this_spec()]),
            variables: Some(variables),
            validations: Some(validations),
            failure_policy: Some(FAILURE_POLICY.into()),
            ..ValidatingAdmissionPolicySpec::default()
        }),
        status: None,
    }
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

/// Checks that need no spec: a name still without contents after mutation (the spec does not
/// exist), contents without a name, authorization, settings changed on update.
pub fn pods_policy_object(settings: &Settings) -> ValidatingAdmissionPolicy {
    let mutated = mutated_here();
    let mut validations = on_created_places(
        |h| {
            format!(
                "{mutated} && {} != '' && !{}.hasValue()",
                cel::name_of(h),
                cel::contents_of(h)
            )
        },
        |place| {
            format!(
                "'cred spec ' + {} + ' {}'",
                cel::name_of(&place.holder),
                NOT_USABLE
            )
        },
        "Invalid",
    );
    validations.extend(contents_without_name());
    validations.extend(authorized_and_unchanged());
    ValidatingAdmissionPolicy {
        metadata: meta::cluster(settings, &pods_policy(&settings.name), COMPONENT),
        spec: Some(ValidatingAdmissionPolicySpec {
            match_constraints: Some(pod_rules(&["CREATE", "UPDATE"])),
            match_conditions: Some(vec![mentions_gmsa()]),
            variables: Some({
                let mut variables = created_variables();
                variables.push(variable("names", cel::created_names()));
                variables
            }),
            validations: Some(validations),
            failure_policy: Some(FAILURE_POLICY.into()),
            ..ValidatingAdmissionPolicySpec::default()
        }),
        status: None,
    }
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
    // Authorized here, once per request and per name, rather than per spec: a policy
    // evaluated per spec never sees a name no spec has, and pre-set contents must not slip
    // past authorization that way.
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

fn validating_binding(
    settings: &Settings,
    policy: String,
    param_ref: Option<ParamRef>,
) -> ValidatingAdmissionPolicyBinding {
    ValidatingAdmissionPolicyBinding {
        metadata: meta::cluster(settings, &policy, COMPONENT),
        spec: ValidatingAdmissionPolicyBindingSpec {
            policy_name: policy,
            param_ref,
            validation_actions: vec!["Deny".into()],
            match_resources: None,
        },
    }
}

pub fn use_binding(settings: &Settings) -> ValidatingAdmissionPolicyBinding {
    validating_binding(settings, use_policy(&settings.name), Some(every_spec()))
}

pub fn pods_binding(settings: &Settings) -> ValidatingAdmissionPolicyBinding {
    validating_binding(settings, pods_policy(&settings.name), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_mode_is_costed_only_beyond_twice_the_webhook() {
        assert_eq!(cost_warning(0), None);
        assert_eq!(cost_warning(SPECS_WITHIN_TWICE_THE_WEBHOOK), None);
        let warning = cost_warning(SPECS_WITHIN_TWICE_THE_WEBHOOK + 1).unwrap_or_default();
        assert!(warning.starts_with("11 credential specs: "), "{warning}");
        assert!(warning.contains("beyond 10 specs"), "{warning}");
    }

    #[test]
    fn bound_policies_are_the_three_with_their_bindings() {
        let bound = bound("gw");
        let names: Vec<&str> = bound.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["gw-use", "gw-pods", "gw-inline"]);
        let per_spec: Vec<bool> = bound.iter().map(|p| p.per_spec).collect();
        assert_eq!(per_spec, [true, false, true]);
        for policy in &bound {
            assert_eq!(
                policy.binding.info().kind,
                format!("{}Binding", policy.policy.info().kind)
            );
        }
    }
}
