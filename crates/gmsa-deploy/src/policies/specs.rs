//! The policies on credential specs themselves: `credspec` never changes in policy mode (a spec
//! is deleted and created again instead), and the finalizer that holds a deleted spec until
//! its contents are withdrawn is added on create and removed by the keeper alone.

use gmsa_core::names as core_names;
use gmsa_core::names::contents::FINALIZER;
use k8s_openapi::api::admissionregistration::v1::{
    JSONPatch, MatchResources, MutatingAdmissionPolicy, MutatingAdmissionPolicyBinding,
    MutatingAdmissionPolicyBindingSpec, MutatingAdmissionPolicySpec, Mutation,
    NamedRuleWithOperations, ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
    ValidatingAdmissionPolicySpec,
};

use super::{binding, finalize_policy, q, specs_policy, validation, COMPONENT, FAILURE_POLICY};
use crate::{meta, Settings};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_keeper_releases_a_spec_and_credspec_never_changes() {
        let policy = specs_policy_object(
            &Settings {
                name: "gw".into(),
                ..Settings::default()
            },
            "system:serviceaccount:ns:keeper",
        );
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
