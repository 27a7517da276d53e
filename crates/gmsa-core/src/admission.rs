//! The AdmissionReview wire format, v1 and v1beta1, and the whole review as one pure function.
//!
//! We own the response type instead of using kube's: the patch must be base64 (kube-rs writes
//! it as an array of numbers), the status must look like Go's `metav1.Status`, and the answer
//! must echo the request's `apiVersion`.

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::decision::{Denial, Facts, Hook, Needs, Operation, Options, Plan, Triage, Verdict};
use crate::names;
use crate::pod::{object, optional_object, Obj, Pod};
use crate::rbac::null_default;

mod spec_review;

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

/// Which admission endpoint a review came to: the pod hooks, which look things up, or the
/// credential-spec check, which decides from the object alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Pods(Hook),
    CredentialSpecs,
}

impl Endpoint {
    /// The URL path it is served on.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Pods(Hook::Mutate) => names::paths::MUTATE,
            Endpoint::Pods(Hook::Validate) => names::paths::VALIDATE,
            Endpoint::CredentialSpecs => names::paths::VALIDATE_CREDSPEC,
        }
    }

    /// Lowercase name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Pods(hook) => hook.as_str(),
            Endpoint::CredentialSpecs => "validate-credspec",
        }
    }
}

impl From<Hook> for Endpoint {
    fn from(hook: Hook) -> Self {
        Endpoint::Pods(hook)
    }
}

/// What a review answers: the verdict and the admission warnings that go with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub verdict: Verdict,
    /// Shown by kubectl as `Warning: ...`.
    pub warnings: Vec<String>,
}

impl Answer {
    /// A refusal without warnings.
    pub fn refused(denial: Denial) -> Self {
        Self {
            verdict: Verdict::Denied(denial),
            warnings: Vec::new(),
        }
    }

    /// The AdmissionReview answer, in `api_version` (the request's), echoing `uid`.
    pub fn body(&self, api_version: &str, uid: &str) -> Vec<u8> {
        match &self.verdict {
            Verdict::Allowed { patch: Some(patch) } if self.warnings.is_empty() => {
                patched_body(api_version, uid, patch)
            }
            verdict => serialized_body(api_version, uid, verdict, &self.warnings),
        }
    }
}

/// A review request of either endpoint, read and checked up to the point where lookups are
/// needed.
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
    /// A pod review, waiting for its facts.
    Planned(Box<Plan>),
    /// A credential-spec review: decided from the object alone.
    Checked(Answer),
}

/// The parts of a pod review `kubectl gmsa admit` knows without an AdmissionReview body; the
/// review has no uid, as it is never answered over the wire.
#[derive(Debug, Clone, Copy)]
pub struct PodRequest<'a> {
    pub namespace: &'a str,
    /// The pod's name, empty before the API server has given it one.
    pub name: &'a str,
    /// `CREATE` or `UPDATE`, as the API server spells them.
    pub operation: &'a str,
    pub object: &'a RawValue,
    pub old_object: Option<&'a RawValue>,
}

impl Review {
    /// Reads a request body. Never fails: an unusable body becomes a review to be refused with
    /// code 400, as the reference does.
    pub fn read(endpoint: impl Into<Endpoint>, body: &[u8]) -> Self {
        match read_envelope(body) {
            Ok((api_version, request)) => Self::of(endpoint.into(), api_version, request),
            Err((api_version, denial)) => Self::refused(api_version, String::new(), denial),
        }
    }

    /// A pod review given by its parts (`admit`), decided as [`Review::read`] decides a body.
    pub fn of_pod(hook: Hook, request: PodRequest<'_>) -> Self {
        let request = RequestIn {
            uid: String::new(),
            kind: GroupVersionKind {
                kind: "Pod".to_string(),
            },
            sub_resource: None,
            name: Some(request.name.to_string()).filter(|n| !n.is_empty()),
            namespace: Some(request.namespace.to_string()),
            operation: request.operation.to_string(),
            object: Some(request.object),
            old_object: request.old_object,
        };
        Self::of(Endpoint::Pods(hook), API_VERSION_V1, request)
    }

    fn of(endpoint: Endpoint, api_version: &'static str, request: RequestIn<'_>) -> Self {
        let stage = match endpoint {
            Endpoint::Pods(hook) => match plan(hook, &request) {
                Ok(p) => Stage::Planned(Box::new(p)),
                Err(d) => Stage::Refused(d),
            },
            Endpoint::CredentialSpecs => Stage::Checked(spec_review::check(&request)),
        };
        Self {
            api_version,
            uid: request.uid,
            namespace: request.namespace.unwrap_or_default(),
            name: request.name.unwrap_or_default(),
            operation: request.operation,
            stage,
        }
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
            Stage::Refused(_) | Stage::Checked(_) => Needs::default(),
        }
    }

    /// The pod under review, once read.
    pub fn plan(&self) -> Option<&Plan> {
        match &self.stage {
            Stage::Planned(plan) => Some(plan),
            Stage::Refused(_) | Stage::Checked(_) => None,
        }
    }

    /// Decides with the gathered facts. An allowed pod carries its admission warnings (a GMSA
    /// pod's long host name, or a fixed one its controller may share among several pods:
    /// [`crate::hostname`]); a credential spec carries its warnings either way.
    pub fn decide(
        &self,
        facts: &Facts,
        options: Options,
        hostname: impl FnOnce() -> String,
    ) -> Answer {
        match &self.stage {
            Stage::Refused(d) => Answer::refused(d.clone()),
            Stage::Planned(plan) => {
                let verdict = plan.decide(facts, options, hostname);
                let warnings = if verdict.is_allowed() {
                    plan.warnings()
                } else {
                    Vec::new()
                };
                Answer { verdict, warnings }
            }
            Stage::Checked(answer) => answer.clone(),
        }
    }

    /// The response body for an answer.
    pub fn respond(&self, answer: &Answer) -> Vec<u8> {
        answer.body(self.api_version, &self.uid)
    }
}

/// Reads the pods of a pod review: the old one only when its triage compares with it. Errors
/// come in the reference's order: the kind, the pod, the operation, the old pod.
fn plan(hook: Hook, request: &RequestIn<'_>) -> Result<Plan, Denial> {
    if request.kind.kind != "Pod" {
        return Err(Denial::new(
            400,
            format!("expected a Pod object, got a {}", request.kind.kind),
        ));
    }
    let pod = read_pod(request.object)?;
    let triage = Triage::of(
        hook,
        &Operation::parse(&request.operation),
        request.sub_resource.as_deref().unwrap_or_default(),
    )?;
    let old_pod = match triage.reads_old_pod() {
        true => Some(read_pod(request.old_object)?),
        false => None,
    };
    Ok(Plan::new(
        hook,
        triage,
        request.namespace.as_deref().unwrap_or_default(),
        pod,
        old_pod,
    ))
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
        let answer = Answer {
            verdict: verdict.clone(),
            warnings: Vec::new(),
        };
        assert_eq!(
            answer.body(API_VERSION_V1, "u"),
            serialized_body(API_VERSION_V1, "u", &verdict, &[])
        );
    }
}
