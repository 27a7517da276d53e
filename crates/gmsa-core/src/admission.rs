//! The AdmissionReview wire format, v1 and v1beta1, and the whole review as one pure function.
//!
//! We own the response type instead of using kube's: the patch must be base64 (kube-rs writes
//! it as an array of numbers), the status must look like Go's `metav1.Status`, and the answer
//! must echo the request's `apiVersion`.

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::decision::{Denial, Facts, Hook, Needs, Operation, Options, Plan, Verdict};
use crate::pod::{object, optional_object, Obj, Pod};
use crate::rbac::null_default;

/// `admission.k8s.io/v1`, the default answer version.
pub const API_VERSION_V1: &str = "admission.k8s.io/v1";
/// `admission.k8s.io/v1beta1`, still sent by older API servers.
pub const API_VERSION_V1BETA1: &str = "admission.k8s.io/v1beta1";

#[derive(Debug, Deserialize)]
struct ReviewIn<'a> {
    #[serde(default, rename = "apiVersion")]
    api_version: Option<String>,
    #[serde(default, borrow, deserialize_with = "optional_object")]
    request: Option<RequestIn<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct GroupVersionKind {
    #[serde(default)]
    pub(crate) kind: String,
}

/// The request part of an AdmissionReview, shared by every admission endpoint.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RequestIn<'a> {
    #[serde(default, deserialize_with = "null_default")]
    pub(crate) uid: String,
    #[serde(default, deserialize_with = "object")]
    pub(crate) kind: GroupVersionKind,
    #[serde(default)]
    pub(crate) sub_resource: Option<String>,
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) namespace: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub(crate) operation: String,
    #[serde(default, borrow)]
    pub(crate) object: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(crate) old_object: Option<&'a RawValue>,
}

/// Reads a review's envelope with the reference's rules for broken bodies: returns the answer's
/// `apiVersion` (the request's) and the request, or the 400 denial to answer with.
pub(crate) fn read_envelope(
    body: &[u8],
) -> Result<(&'static str, RequestIn<'_>), (&'static str, Denial)> {
    // Go decodes a `null` body into an empty review without error.
    let parsed: ReviewIn<'_> = match serde_json::from_slice::<Option<Obj<ReviewIn<'_>>>>(body) {
        Ok(r) => r.map(|r| r.0).unwrap_or(ReviewIn {
            api_version: None,
            request: None,
        }),
        Err(e) => {
            return Err((
                API_VERSION_V1,
                Denial::new(
                    400,
                    format!("unable to unmarshall JSON body as an admission review: {e}"),
                ),
            ))
        }
    };
    let api_version = match parsed.api_version.as_deref() {
        Some(API_VERSION_V1BETA1) => API_VERSION_V1BETA1,
        _ => API_VERSION_V1,
    };
    match parsed.request {
        Some(request) => Ok((api_version, request)),
        None => Err((
            api_version,
            Denial::new(400, "no 'Request' field in JSON body"),
        )),
    }
}

/// A review request, read and checked up to the point where lookups are needed.
#[derive(Debug)]
pub struct Review {
    api_version: &'static str,
    uid: String,
    /// Request metadata for logs.
    pub namespace: String,
    pub name: String,
    pub operation: String,
    stage: Stage,
}

#[derive(Debug)]
enum Stage {
    /// Refused before any lookup (unreadable body, not a pod, ...).
    Refused(Denial),
    Planned(Box<Plan>),
}

impl Review {
    /// Reads a request body. Never fails: an unusable body becomes a review to be refused with
    /// code 400, as the reference does.
    pub fn read(hook: Hook, body: &[u8]) -> Self {
        let (api_version, request) = match read_envelope(body) {
            Ok(envelope) => envelope,
            Err((api_version, denial)) => return Self::refused(api_version, String::new(), denial),
        };
        let mut review = Self {
            api_version,
            uid: request.uid,
            namespace: request.namespace.unwrap_or_default(),
            name: request.name.unwrap_or_default(),
            operation: request.operation,
            stage: Stage::Refused(Denial::new(0, String::new())),
        };
        review.stage = match plan(
            hook,
            &review,
            &request.kind,
            request.sub_resource.as_deref(),
            request.object,
            request.old_object,
        ) {
            Ok(p) => Stage::Planned(Box::new(p)),
            Err(d) => Stage::Refused(d),
        };
        review
    }

    fn refused(api_version: &'static str, uid: String, denial: Denial) -> Self {
        Self {
            api_version,
            uid,
            namespace: String::new(),
            name: String::new(),
            operation: String::new(),
            stage: Stage::Refused(denial),
        }
    }

    /// The request's uid, echoed in the answer.
    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// The answer's `apiVersion`: the request's.
    pub fn api_version(&self) -> &'static str {
        self.api_version
    }

    /// What must be looked up before deciding; empty when the review is already decided.
    pub fn needs(&self) -> Needs {
        match &self.stage {
            Stage::Planned(plan) => plan.needs(),
            Stage::Refused(_) => Needs::default(),
        }
    }

    /// The pod under review, once read.
    pub fn plan(&self) -> Option<&Plan> {
        match &self.stage {
            Stage::Planned(plan) => Some(plan),
            Stage::Refused(_) => None,
        }
    }

    /// Decides with the gathered facts.
    pub fn decide(
        &self,
        facts: &Facts,
        options: Options,
        hostname: impl FnOnce() -> String,
    ) -> Verdict {
        match &self.stage {
            Stage::Refused(d) => Verdict::Denied(d.clone()),
            Stage::Planned(plan) => plan.decide(facts, options, hostname),
        }
    }

    /// The response body for a verdict.
    pub fn respond(&self, verdict: &Verdict) -> Vec<u8> {
        response_body(self.api_version, &self.uid, verdict)
    }

    /// Admission warnings to send with an allowed verdict (a GMSA pod's long host name, or a
    /// fixed one its controller may share among several pods: [`crate::hostname`]); empty
    /// when there are none or the review was refused before it was planned.
    pub fn warnings(&self) -> Vec<String> {
        match &self.stage {
            Stage::Planned(plan) => plan.warnings(),
            Stage::Refused(_) => Vec::new(),
        }
    }

    /// The response body for a verdict, with [`Review::warnings`] when it is allowed.
    pub fn respond_warned(&self, verdict: &Verdict) -> Vec<u8> {
        let warnings = if verdict.is_allowed() {
            self.warnings()
        } else {
            Vec::new()
        };
        response_body_warned(self.api_version, &self.uid, verdict, &warnings)
    }
}

fn plan(
    hook: Hook,
    review: &Review,
    kind: &GroupVersionKind,
    sub_resource: Option<&str>,
    object: Option<&RawValue>,
    old_object: Option<&RawValue>,
) -> Result<Plan, Denial> {
    if kind.kind != "Pod" {
        return Err(Denial::new(
            400,
            format!("expected a Pod object, got a {}", kind.kind),
        ));
    }
    let operation = Operation::parse(&review.operation);
    let pod = read_pod(object)?;
    let old_pod = match (&operation, hook, sub_resource) {
        (Operation::Update, Hook::Validate, _)
        | (Operation::Update, _, Some(crate::names::EPHEMERAL_CONTAINERS_SUBRESOURCE)) => {
            Some(read_pod(old_object)?)
        }
        _ => None,
    };
    Plan::new(
        hook,
        &operation,
        sub_resource.unwrap_or_default(),
        &review.namespace,
        pod,
        old_pod,
    )
}

fn read_pod(raw: Option<&RawValue>) -> Result<Pod, Denial> {
    // Go's decoder reports an absent object as the end of its (empty) input.
    let text = raw.map(RawValue::get).unwrap_or_default();
    let parsed = if text.is_empty() || text == "null" {
        Err("unexpected end of JSON input".to_string())
    } else {
        Pod::from_json(text).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| Denial::new(400, format!("unable to unmarshall pod JSON object: {e}")))
}

#[derive(Serialize)]
struct ReviewOut<'a> {
    kind: &'static str,
    #[serde(rename = "apiVersion")]
    api_version: &'a str,
    response: ResponseOut<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<StatusOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    /// Shown by kubectl as `Warning: ...` (Kubernetes 1.19 and later; older servers ignore it).
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
}

/// Go's `metav1.Status` with only message and code set, as the reference sends it.
#[derive(Serialize)]
struct StatusOut<'a> {
    metadata: Empty,
    message: &'a str,
    code: u16,
}

#[derive(Serialize)]
struct Empty {}

/// Builds the AdmissionReview answer for `verdict`.
pub fn response_body(api_version: &str, uid: &str, verdict: &Verdict) -> Vec<u8> {
    match verdict {
        Verdict::Allowed { patch: Some(patch) } => patched_body(api_version, uid, patch),
        _ => serialized_body(api_version, uid, verdict, &[]),
    }
}

/// [`response_body`] with admission warnings, for reviews that never patch.
pub fn response_body_warned(
    api_version: &str,
    uid: &str,
    verdict: &Verdict,
    warnings: &[String],
) -> Vec<u8> {
    match verdict {
        Verdict::Allowed { patch: Some(patch) } if warnings.is_empty() => {
            patched_body(api_version, uid, patch)
        }
        _ => serialized_body(api_version, uid, verdict, warnings),
    }
}

/// The answer with a patch, written directly: the same bytes as [`serialized_body`], but the
/// base64 text (most of the answer, and on the admission hot path) is encoded in place instead
/// of being built apart and scanned again for characters to escape, which base64 never has.
fn patched_body(api_version: &str, uid: &str, patch: &str) -> Vec<u8> {
    let encoded_len = patch.len().div_ceil(3) * 4;
    let mut out = Vec::with_capacity(encoded_len + uid.len() + 128);
    out.extend_from_slice(br#"{"kind":"AdmissionReview","apiVersion":"#);
    // Writing a string to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, api_version);
    out.extend_from_slice(br#","response":{"uid":"#);
    let _ = serde_json::to_writer(&mut out, uid);
    out.extend_from_slice(br#","allowed":true,"patch":""#);
    let start = out.len();
    out.resize(start + encoded_len, 0);
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(patch, &mut out[start..])
        .unwrap_or(0);
    out.truncate(start + written);
    out.extend_from_slice(br#"","patchType":"JSONPatch"}}"#);
    out
}

fn serialized_body(
    api_version: &str,
    uid: &str,
    verdict: &Verdict,
    warnings: &[String],
) -> Vec<u8> {
    let response = match verdict {
        Verdict::Allowed { patch } => ResponseOut {
            uid,
            allowed: true,
            status: None,
            patch: patch
                .as_ref()
                .map(|p| base64::engine::general_purpose::STANDARD.encode(p)),
            patch_type: patch.as_ref().map(|_| "JSONPatch"),
            warnings,
        },
        Verdict::Denied(d) => ResponseOut {
            uid,
            allowed: false,
            status: Some(StatusOut {
                metadata: Empty {},
                message: &d.message,
                code: d.code,
            }),
            patch: None,
            patch_type: None,
            warnings,
        },
    };
    let out = ReviewOut {
        kind: "AdmissionReview",
        api_version,
        response,
    };
    // Serializing these plain structs cannot fail.
    serde_json::to_vec(&out).unwrap_or_default()
}

#[cfg(test)]
mod response_tests {
    use super::*;

    #[test]
    fn the_direct_patched_answer_equals_the_serialized_one() {
        let patch = r#"[{"op":"add","path":"/spec/hostname","value":"a\u003cb"}]"#;
        let verdict = Verdict::Allowed {
            patch: Some(patch.to_string()),
        };
        for uid in ["", "705ab4f5", "q\"u<o>te\u{1}é😀"] {
            for version in [API_VERSION_V1, API_VERSION_V1BETA1] {
                for p in [patch, "", "x", "xy"] {
                    assert_eq!(
                        patched_body(version, uid, p),
                        serialized_body(
                            version,
                            uid,
                            &Verdict::Allowed {
                                patch: Some(p.to_string())
                            },
                            &[]
                        ),
                        "{uid:?} {p:?}"
                    );
                }
            }
        }
        assert_eq!(
            response_body(API_VERSION_V1, "u", &verdict),
            serialized_body(API_VERSION_V1, "u", &verdict, &[])
        );
    }
}
