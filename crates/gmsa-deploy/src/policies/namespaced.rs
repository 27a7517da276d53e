//! Policy mode by namespace: the admission policies of issue 21's design, whose cost per GMSA
//! pod does not grow with the number of credential specs. Not yet what `install` renders: the
//! per-spec policies of the parent module still are, until the keeper writes the objects these
//! read (`gmsa_core::contents` decides them).
//!
//! Each namespace's `GMSANamespaceContents` object (named after the install) holds the encoded
//! contents of the specs its service accounts may `use`. The policies read the pod's own
//! namespace's object (a `paramRef` with a name and no namespace): one cached get per policy.
//!
//! - `<name>-inline` (mutating): inlines the entry of each name left without contents.
//! - `<name>-pods` (validating): a name still without contents is not published here; pre-set
//!   contents equal the entry; contents without a name; the service account may `use` every
//!   name; settings never change on update.
//! - `<name>-elsewhere` (validating, no parameter): the same checks with no entries, bound to
//!   every namespace the keeper has not listed as holding an object. Without it a namespace
//!   with no object would skip `-pods` entirely (`parameterNotFoundAction: Allow`; `Deny` would
//!   refuse every pod there, GMSA or not, since the API server collects parameters before it
//!   evaluates match conditions).
//! - `<name>-specs` (validating, on spec updates): `credspec` never changes (delete and create
//!   again), and only the keeper removes the [`FINALIZER`].
//! - `<name>-finalize` (mutating, on spec creation): adds the [`FINALIZER`], so a spec's
//!   contents can be withdrawn before it goes.

use std::collections::BTreeSet;

use gmsa_core::contents::elsewhere_selector;
use gmsa_core::names as core_names;
use gmsa_core::names::contents::{self, FINALIZER};
use k8s_openapi::api::admissionregistration::v1::{
    JSONPatch, MatchResources, MutatingAdmissionPolicy, MutatingAdmissionPolicyBinding,
    MutatingAdmissionPolicyBindingSpec, MutatingAdmissionPolicySpec, Mutation,
    NamedRuleWithOperations, ParamKind, ParamRef, ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding, ValidatingAdmissionPolicyBindingSpec,
    ValidatingAdmissionPolicySpec, Validation, Variable,
};
use serde_json::Value;

use super::cel::{self, LISTS};
use super::{
    authorized_and_unchanged, contents_without_name, created_variables, inline_policy,
    mentions_gmsa, mutated_here, mutated_namespaces, on_created_places, pod_rules, pods_policy, q,
    validation, variable, COMPONENT, FAILURE_POLICY,
};
use crate::manifest::Object;
use crate::{meta, Kind, Settings};

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
const ENTRIES: &str = "variables.entries";

/// The entry for the spec named on `holder`, as an optional.
fn entry_of(holder: &str) -> String {
    format!("{ENTRIES}[?{}]", cel::name_of(holder))
}

fn contents_param() -> ParamKind {
    ParamKind {
        api_version: Some(format!("{}/{}", contents::GROUP, contents::VERSION)),
        kind: Some(contents::KIND.into()),
    }
}

/// The pod's namespace's object. A namespace without one skips the policy: `-elsewhere`
/// covers it.
fn this_namespace(settings: &Settings) -> ParamRef {
    ParamRef {
        name: Some(settings.name.clone()),
        parameter_not_found_action: Some("Allow".into()),
        ..ParamRef::default()
    }
}

fn entries_variable(from_params: bool) -> Variable {
    let expression = if from_params {
        format!("params.?{}.orValue({{}})", contents::FIELD)
    } else {
        "{}".to_string()
    };
    variable("entries", expression)
}

/// The JSON Patch inlining each created place's entry where it names a spec, has no contents
/// yet, and the namespace holds the spec's contents.
pub fn inline_patch() -> String {
    let wanted = |h: &str| {
        format!(
            "{} != '' && !{}.hasValue() && {}.hasValue()",
            cel::name_of(h),
            cel::contents_of(h),
            entry_of(h)
        )
    };
    let add = |path: String, holder: &str| {
        format!(
            "JSONPatch{{op: 'add', path: {path}, value: {ENTRIES}[{}]}}",
            cel::name_of(holder)
        )
    };
    let pod = "object.spec";
    let mut parts = vec![format!(
        "({} && {} ? [{}] : [])",
        cel::CREATING,
        wanted(pod),
        add(
            "'/spec/securityContext/windowsOptions/gmsaCredentialSpec'".into(),
            pod
        )
    )];
    for list in LISTS {
        parts.push(format!(
            "{}.filter(c, {}).map(c, {})",
            cel::created(list),
            wanted("c"),
            add(
                format!(
                    "'/spec/{}/' + string(object.spec.{}.indexOf(c)) + '/securityContext/windowsOptions/gmsaCredentialSpec'",
                    list.field, list.field
                ),
                "c"
            )
        ));
    }
    parts.join(" + ")
}

pub fn mutating_policy(settings: &Settings) -> MutatingAdmissionPolicy {
    MutatingAdmissionPolicy {
        metadata: meta::cluster(settings, &inline_policy(&settings.name), COMPONENT),
        spec: Some(MutatingAdmissionPolicySpec {
            param_kind: Some(contents_param()),
            match_constraints: Some(pod_rules(&["CREATE", "UPDATE"])),
            match_conditions: Some(vec![mentions_gmsa()]),
            variables: Some(vec![entries_variable(true)]),
            mutations: Some(vec![Mutation {
                patch_type: "JSONPatch".into(),
                json_patch: Some(JSONPatch {
                    expression: Some(inline_patch()),
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
            param_ref: Some(this_namespace(settings)),
            match_resources: Some(mutated_namespaces()),
        }),
    }
}

/// Every check of a GMSA request, against the namespace's entries (none without a parameter).
fn pod_validations() -> Vec<Validation> {
    let not_published = |place: &super::Place<'_>| {
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

fn binding(
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

/// Requests on credential specs themselves.
fn spec_rules(operation: &str) -> MatchResources {
    MatchResources {
        resource_rules: Some(vec![NamedRuleWithOperations {
            api_groups: Some(vec![core_names::GROUP.into()]),
            api_versions: Some(vec!["*".into()]),
            operations: Some(vec![operation.into()]),
            resources: Some(vec![core_names::RESOURCE.into()]),
            ..NamedRuleWithOperations::default()
        }]),
        ..MatchResources::default()
    }
}

/// Whether `object` (CEL) carries the finalizer.
fn finalized(object: &str) -> String {
    format!("{object}.metadata.?finalizers.orValue([]).exists(f, f == '{FINALIZER}')")
}

/// `credspec` never changes; only `keeper_user` removes the finalizer.
pub fn specs_policy_object(settings: &Settings, keeper_user: &str) -> ValidatingAdmissionPolicy {
    let credspec = core_names::CREDSPEC_KEY;
    let unchanged = format!(
        "has(object.{credspec}) == has(oldObject.{credspec}) && \
         (!has(object.{credspec}) || object.{credspec} == oldObject.{credspec})"
    );
    let kept = format!(
        "!{} || {} || request.userInfo.username == '{keeper_user}'",
        finalized("oldObject"),
        finalized("object")
    );
    let name = q("object.metadata.name");
    ValidatingAdmissionPolicy {
        metadata: meta::cluster(settings, &specs_policy(&settings.name), COMPONENT),
        spec: Some(ValidatingAdmissionPolicySpec {
            match_constraints: Some(spec_rules("UPDATE")),
            validations: Some(vec![
                validation(
                    unchanged,
                    format!(
                        "'the credspec of GMSACredentialSpec ' + {name} + ' cannot change while GMSA \
                         admission runs as admission policies: delete the spec and create it again \
                         (pods that run keep their contents)'"
                    ),
                    "Invalid",
                ),
                validation(
                    kept,
                    format!(
                        "'only the GMSA keeper ({keeper_user}) removes finalizer {FINALIZER} from \
                         GMSACredentialSpec ' + {name} + ', once no namespace holds its contents: \
                         is the keeper running? (kubectl gmsa doctor)'"
                    ),
                    "Forbidden",
                ),
            ]),
            failure_policy: Some(FAILURE_POLICY.into()),
            ..ValidatingAdmissionPolicySpec::default()
        }),
        status: None,
    }
}

pub fn specs_binding(settings: &Settings) -> ValidatingAdmissionPolicyBinding {
    binding(settings, specs_policy(&settings.name), None, None)
}

/// Adds the finalizer to every spec created.
pub fn finalize_policy_object(settings: &Settings) -> MutatingAdmissionPolicy {
    let patch = format!(
        "{} ? [] : has(object.metadata.finalizers) ? \
         [JSONPatch{{op: 'add', path: '/metadata/finalizers/-', value: '{FINALIZER}'}}] : \
         [JSONPatch{{op: 'add', path: '/metadata/finalizers', value: ['{FINALIZER}']}}]",
        finalized("object")
    );
    MutatingAdmissionPolicy {
        metadata: meta::cluster(settings, &finalize_policy(&settings.name), COMPONENT),
        spec: Some(MutatingAdmissionPolicySpec {
            match_constraints: Some(spec_rules("CREATE")),
            mutations: Some(vec![Mutation {
                patch_type: "JSONPatch".into(),
                json_patch: Some(JSONPatch {
                    expression: Some(patch),
                }),
                ..Mutation::default()
            }]),
            failure_policy: Some(FAILURE_POLICY.into()),
            reinvocation_policy: Some("Never".into()),
            ..MutatingAdmissionPolicySpec::default()
        }),
    }
}

pub fn finalize_binding(settings: &Settings) -> MutatingAdmissionPolicyBinding {
    MutatingAdmissionPolicyBinding {
        metadata: meta::cluster(settings, &finalize_policy(&settings.name), COMPONENT),
        spec: Some(MutatingAdmissionPolicyBindingSpec {
            policy_name: Some(finalize_policy(&settings.name)),
            ..MutatingAdmissionPolicyBindingSpec::default()
        }),
    }
}

/// Every object of the design, in apply order: the CRD, then each policy before its binding,
/// the spec policies first (a spec created meanwhile gets its finalizer). `listed` is what the
/// keeper has listed so far; `keeper_user` the identity its writes carry.
pub fn objects(settings: &Settings, keeper_user: &str, listed: &BTreeSet<String>) -> Vec<Object> {
    let contents_crd: Value = crate::crd::namespace_contents_definition();
    vec![
        Object::untyped(Kind::CustomResourceDefinition, contents_crd),
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
        Object::typed(
            Kind::ValidatingAdmissionPolicy,
            &elsewhere_policy_object(settings),
        ),
        Object::typed(
            Kind::ValidatingAdmissionPolicyBinding,
            &elsewhere_binding(settings, listed),
        ),
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
        let objects = objects(
            &settings,
            "system:serviceaccount:gmsa-system:gw",
            &BTreeSet::new(),
        );
        let names: Vec<String> = objects.iter().map(|o| o.id.name.clone()).collect();
        assert_eq!(
            names,
            [
                "gmsanamespacecontents.policy.gmsa.dev",
                "gw-finalize",
                "gw-finalize",
                "gw-specs",
                "gw-specs",
                "gw-inline",
                "gw-inline",
                "gw-pods",
                "gw-pods",
                "gw-elsewhere",
                "gw-elsewhere"
            ]
        );
        for binding in [&objects[6].body, &objects[8].body] {
            let param_ref = &binding["spec"]["paramRef"];
            assert_eq!(param_ref["name"], "gw");
            assert!(
                param_ref.get("namespace").is_none(),
                "a name and no namespace: the request's namespace's object"
            );
            assert_eq!(param_ref["parameterNotFoundAction"], "Allow");
        }
        let elsewhere = &objects[10].body["spec"];
        assert!(elsewhere.get("paramRef").is_none());
        let values =
            &elsewhere["matchResources"]["namespaceSelector"]["matchExpressions"][0]["values"];
        assert_eq!(values.as_array().map(Vec::len), Some(1));
        assert_eq!(values[0], "");
        assert!(objects[9].body["spec"].get("paramKind").is_none());
        assert_eq!(
            objects[7].body["spec"]["paramKind"]["kind"],
            "GMSANamespaceContents"
        );
    }

    #[test]
    fn the_patch_inlines_only_entries_the_namespace_holds() {
        let patch = inline_patch();
        assert!(patch.contains("variables.entries[?object.spec.?securityContext"));
        for list in ["containers", "initContainers", "ephemeralContainers"] {
            assert!(patch.contains(&format!("'/spec/{list}/'")), "{list}");
        }
        assert!(
            !patch.contains("params"),
            "entries come through the variable"
        );
    }

    #[test]
    fn only_the_keeper_releases_a_spec_and_credspec_never_changes() {
        let policy = specs_policy_object(&settings(), "system:serviceaccount:ns:keeper");
        let spec = policy.spec.unwrap();
        let validations = spec.validations.unwrap();
        assert!(validations[0]
            .expression
            .contains("object.credspec == oldObject.credspec"));
        assert!(validations[1]
            .expression
            .ends_with("request.userInfo.username == 'system:serviceaccount:ns:keeper'"));
        let rules = spec.match_constraints.unwrap().resource_rules.unwrap();
        assert_eq!(rules[0].operations, Some(vec!["UPDATE".to_string()]));
    }
}
