//! The uninstall guard: one ValidatingAdmissionPolicy (Kubernetes 1.30+) and its binding that
//! `uninstall` leaves behind, refusing every new pod that names a credential spec or carries
//! contents. Without GMSA admission such a pod would be admitted with the name alone (its
//! containers fail to start on Windows nodes) or with contents nobody authorized. `install`
//! deletes the guard once admission is back.

use super::{cel, mentions_gmsa, pod_rules, FAILURE_POLICY};
use crate::{meta, Kind, Object, Settings};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
    ValidatingAdmissionPolicyBindingSpec, ValidatingAdmissionPolicySpec, Validation,
};

/// The `app.kubernetes.io/component` of the guard's objects.
pub const COMPONENT: &str = "uninstall-guard";

/// Name of the guard's policy and of its binding.
pub fn guard(name: &str) -> String {
    format!("{name}-uninstalled")
}

/// What a refused pod's creator reads: why, and the two ways out, the first being the install
/// that was removed (its mode, name and namespace).
pub fn guard_message(settings: &Settings) -> String {
    format!(
        "GMSA admission is not installed (kubectl gmsa uninstall left this guard): reinstall with \
         `{}`, or delete ValidatingAdmissionPolicy {} to admit GMSA pods without their \
         credential specs",
        crate::reinstall_command(settings),
        guard(&settings.name)
    )
}

/// The policy. Only created places count (new pods, new ephemeral containers), so the pods
/// that run keep being updated, adopted and deleted as usual.
pub fn guard_policy(settings: &Settings) -> ValidatingAdmissionPolicy {
    ValidatingAdmissionPolicy {
        metadata: meta::cluster(settings, &guard(&settings.name), COMPONENT),
        spec: Some(ValidatingAdmissionPolicySpec {
            match_constraints: Some(pod_rules(&["CREATE", "UPDATE"])),
            match_conditions: Some(vec![mentions_gmsa()]),
            validations: Some(vec![Validation {
                expression: format!("!({})", cel::creates_a_gmsa_place()),
                message: Some(guard_message(settings)),
                reason: Some("Forbidden".into()),
                message_expression: None,
            }]),
            failure_policy: Some(FAILURE_POLICY.into()),
            ..ValidatingAdmissionPolicySpec::default()
        }),
        status: None,
    }
}

/// The binding: every namespace, the install's own included (nothing there should name a
/// spec either).
pub fn guard_binding(settings: &Settings) -> ValidatingAdmissionPolicyBinding {
    ValidatingAdmissionPolicyBinding {
        metadata: meta::cluster(settings, &guard(&settings.name), COMPONENT),
        spec: ValidatingAdmissionPolicyBindingSpec {
            policy_name: guard(&settings.name),
            param_ref: None,
            validation_actions: vec!["Deny".into()],
            match_resources: None,
        },
    }
}

/// The policy, then its binding: the order they are applied in.
pub fn guard_objects(settings: &Settings) -> Vec<Object> {
    vec![
        Object::typed(Kind::ValidatingAdmissionPolicy, &guard_policy(settings)),
        Object::typed(
            Kind::ValidatingAdmissionPolicyBinding,
            &guard_binding(settings),
        ),
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ObjectRef;

    #[test]
    fn the_guard_refuses_created_gmsa_places_with_the_way_out() {
        let settings = Settings {
            name: "gw".into(),
            ..Settings::default()
        };
        let objects: Vec<_> = guard_objects(&settings)
            .into_iter()
            .map(|o| {
                assert_eq!(o.id, ObjectRef::cluster(o.id.kind, "gw-uninstalled"));
                assert!(!o.take_over);
                o.body
            })
            .collect();
        let kinds: Vec<&str> = objects
            .iter()
            .map(|o| o["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "ValidatingAdmissionPolicy",
                "ValidatingAdmissionPolicyBinding"
            ]
        );
        for object in &objects {
            assert_eq!(object["apiVersion"], "admissionregistration.k8s.io/v1");
            assert_eq!(object["metadata"]["name"], "gw-uninstalled");
            let labels = &object["metadata"]["labels"];
            assert_eq!(labels["app.kubernetes.io/instance"], "gw");
            assert_eq!(labels["app.kubernetes.io/component"], COMPONENT);
        }
        let policy = &objects[0]["spec"];
        assert_eq!(policy["failurePolicy"], "Fail");
        assert_eq!(policy["matchConditions"][0]["name"], "mentions-gmsa");
        let validation = &policy["validations"][0];
        assert!(validation["expression"]
            .as_str()
            .unwrap()
            .starts_with("!((request.operation == 'CREATE' && "));
        let message = validation["message"].as_str().unwrap();
        assert!(
            message.contains("reinstall with `kubectl gmsa install --name gw --apply`"),
            "{message}"
        );
        assert!(
            message.contains("delete ValidatingAdmissionPolicy gw-uninstalled"),
            "{message}"
        );
        // A policy install elsewhere is told to come back as it was, not as the webhook.
        let policies = Settings {
            name: "gw".into(),
            namespace: "gmsa-ops".into(),
            admission: crate::Admission::Policies,
            ..Settings::default()
        };
        let message = guard_message(&policies);
        assert!(
            message.contains(
                "reinstall with `kubectl gmsa install --admission policies --namespace gmsa-ops --name gw --apply`"
            ),
            "{message}"
        );
        let binding = &objects[1]["spec"];
        assert_eq!(binding["policyName"], "gw-uninstalled");
        assert_eq!(binding["validationActions"][0], "Deny");
        assert_eq!(binding["validationActions"].as_array().unwrap().len(), 1);
        assert!(binding.get("matchResources").is_none(), "every namespace");
    }
}
