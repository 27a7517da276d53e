//! `<name>-inline`: the mutating policy that inlines the pod's namespace's published contents
//! wherever a created place names a spec and sets none.

use k8s_openapi::api::admissionregistration::v1::{
    JSONPatch, MutatingAdmissionPolicy, MutatingAdmissionPolicyBinding,
    MutatingAdmissionPolicyBindingSpec, MutatingAdmissionPolicySpec, Mutation,
};

use super::cel::{self, LISTS};
use super::{
    contents_param, entries_variable, entry_of, inline_policy, mentions_gmsa, mutated_namespaces,
    pod_rules, this_namespace, COMPONENT, ENTRIES, FAILURE_POLICY,
};
use crate::{meta, Settings};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
