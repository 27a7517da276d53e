//! Admission review of `GMSACredentialSpec` objects (`/validate-credspec`): the checks of
//! [`crate::credspec::validate`] on CREATE and UPDATE, read and answered by [`super::Review`]
//! as the pod endpoints are.
//! Errors (a spec that cannot work) refuse; warnings (an unknown plugin, a missing scope)
//! are returned as admission warnings and the spec is admitted.

use serde_json::value::RawValue;
use serde_json::Value;

use super::{Answer, RequestIn};
use crate::canonical::go_quote;
use crate::credspec::{validate, Problem};
use crate::names;
use crate::verdict::{Denial, Verdict};

/// Decides a credential-spec review from its object alone. An unusable object is refused with
/// code 400 and the same messages as the pod endpoints.
pub(crate) fn check(request: &RequestIn<'_>) -> Answer {
    let (verdict, warnings) = match decide_object(request) {
        Ok((name, problems)) => judge(&name, &problems),
        Err(verdict) => (verdict, Vec::new()),
    };
    Answer { verdict, warnings }
}

/// Refused when any problem is an error; the warnings go back either way.
fn judge(name: &str, problems: &[Problem]) -> (Verdict, Vec<String>) {
    let (warnings, errors): (Vec<&Problem>, Vec<&Problem>) =
        problems.iter().partition(|p| p.is_warning());
    let warnings = warnings.iter().map(ToString::to_string).collect();
    if errors.is_empty() {
        return (Verdict::Allowed { patch: None }, warnings);
    }
    let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let verdict = Verdict::Denied(Denial::new(
        422,
        format!(
            "{} {} is invalid: {}",
            names::KIND,
            go_quote(name),
            list.join("; ")
        ),
    ));
    (verdict, warnings)
}

/// The name and problems of the object under review, or the verdict when there is nothing to
/// check.
fn decide_object(request: &RequestIn<'_>) -> Result<(String, Vec<Problem>), Verdict> {
    if request.kind.kind != names::KIND {
        return Err(Verdict::Denied(Denial::new(
            400,
            format!(
                "expected a {} object, got a {}",
                names::KIND,
                request.kind.kind
            ),
        )));
    }
    if !matches!(request.operation.as_str(), "CREATE" | "UPDATE") {
        // Deleting or connecting leaves nothing to check.
        return Err(Verdict::Allowed { patch: None });
    }
    let text = request.object.map(RawValue::get).unwrap_or_default();
    let object: Value = match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => v,
        Ok(other) => {
            return Err(Verdict::Denied(Denial::new(
                400,
                format!(
                    "unable to unmarshall {} JSON object: expected an object, got {}",
                    names::KIND,
                    if other.is_null() {
                        "null"
                    } else {
                        "another value"
                    }
                ),
            )))
        }
        Err(e) => {
            return Err(Verdict::Denied(Denial::new(
                400,
                format!("unable to unmarshall {} JSON object: {e}", names::KIND),
            )))
        }
    };
    if unchanged_contents(request, &object) {
        // Ratcheting: a spec written before today's checks can still get labels, annotations
        // and finalizers; what pods would receive has not changed.
        return Err(Verdict::Allowed { patch: None });
    }
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Ok((name, validate(&object)))
}

/// Whether an UPDATE leaves `credspec` as it was (JSON-equal; absent on both sides counts).
fn unchanged_contents(request: &RequestIn<'_>, object: &Value) -> bool {
    if request.operation != "UPDATE" {
        return false;
    }
    let Some(old) = request.old_object else {
        return false;
    };
    match serde_json::from_str::<Value>(old.get()) {
        Ok(old) => old.get("credspec") == object.get("credspec"),
        Err(_) => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;
    use crate::admission::{Endpoint, Review};
    use crate::decision::{Facts, Options};
    use serde_json::json;

    /// Reads and decides a credential-spec review body.
    fn review(body: &[u8]) -> (Review, Answer) {
        let review = Review::read(Endpoint::CredentialSpecs, body);
        let answer = review.decide(&Facts::default(), Options::default(), String::new);
        (review, answer)
    }

    fn body(kind: &str, operation: &str, object: Value) -> Vec<u8> {
        json!({
            "apiVersion": "admission.k8s.io/v1beta1",
            "kind": "AdmissionReview",
            "request": {"uid": "u1", "kind": {"group": "windows.k8s.io", "version": "v1", "kind": kind},
                "name": "x", "operation": operation, "object": object}
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn decides_on_the_checks() {
        let (review, answer) = review(&body(
            "GMSACredentialSpec",
            "CREATE",
            json!({"apiVersion": "windows.k8s.io/v1", "kind": "GMSACredentialSpec",
                "metadata": {"name": "x"}, "credspec": {"CmsPlugins": ["ActiveDirectory"]}}),
        ));
        let Verdict::Denied(d) = &answer.verdict else {
            panic!("{:?}", answer.verdict)
        };
        assert_eq!(d.code, 422);
        assert!(
            d.message.starts_with(
                r#"GMSACredentialSpec "x" is invalid: credspec.DomainJoinConfig: is missing"#
            ),
            "{}",
            d.message
        );
        let body_out: Value = serde_json::from_slice(&review.respond(&answer)).unwrap();
        assert_eq!(body_out["apiVersion"], "admission.k8s.io/v1beta1");
        assert_eq!(body_out["response"]["uid"], "u1");
        assert!(review.needs().is_empty());

        let (_, answer) = self::review(&body("GMSACredentialSpec", "DELETE", Value::Null));
        assert!(answer.verdict.is_allowed());
        let (_, answer) = self::review(&body("Pod", "CREATE", json!({})));
        assert_eq!(
            answer.verdict,
            Verdict::Denied(Denial::new(
                400,
                "expected a GMSACredentialSpec object, got a Pod"
            ))
        );
        let (_, answer) = self::review(&body("GMSACredentialSpec", "UPDATE", json!(7)));
        assert!(matches!(answer.verdict, Verdict::Denied(d) if d.code == 400));
    }

    /// An UPDATE that leaves `credspec` alone is not re-checked; one that changes it is.
    #[test]
    fn updates_ratchet_on_unchanged_contents() {
        let invalid = json!({"CmsPlugins": ["ActiveDirectory"]});
        let spec = |credspec: &Value, label: &str| {
            json!({"apiVersion": "windows.k8s.io/v1", "kind": "GMSACredentialSpec",
                "metadata": {"name": "x", "labels": {"team": label}}, "credspec": credspec})
        };
        let update = |old: Value, new: Value| {
            let mut review: Value =
                serde_json::from_slice(&body("GMSACredentialSpec", "UPDATE", new)).unwrap();
            review["request"]["oldObject"] = old;
            self::review(review.to_string().as_bytes()).1
        };
        let relabelled = update(spec(&invalid, "a"), spec(&invalid, "b"));
        assert!(relabelled.verdict.is_allowed(), "{:?}", relabelled.verdict);
        let changed = update(
            spec(&invalid, "a"),
            spec(&json!({"CmsPlugins": ["ActiveDirectory"], "X": 1}), "a"),
        );
        assert!(matches!(changed.verdict, Verdict::Denied(d) if d.code == 422));
        // Without the old object (or on CREATE) the checks run.
        let (_, answer) = self::review(&body("GMSACredentialSpec", "UPDATE", spec(&invalid, "a")));
        assert!(matches!(answer.verdict, Verdict::Denied(d) if d.code == 422));
    }
}
