//! The one writer of a credential spec's published contents annotations, for the keeper and
//! for `kubectl gmsa credspec --apply`. What to write is decided by
//! [`gmsa_core::published::publication`] from the object as the API server returned it; the
//! write is a JSON merge patch carrying that object's resourceVersion, so contents decided
//! from an older object never land.

use gmsa_core::published::{publication, Publication, PublicationError};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use thiserror::Error;

/// What to do when the object changed since it was read (the write's 409).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnConflict {
    /// Read it again and decide anew, making at most `attempts` writes: a one-shot command has
    /// no watch that would bring it the newer version.
    Reread { attempts: usize },
    /// Give up on this version with [`PublishError::Superseded`]: the caller follows a watch,
    /// which brings the newer version to decide from, so reading it here as well would only
    /// race that watch.
    FollowWatch,
}

/// What a publication did to the stored object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The annotations already said what they must; nothing was written.
    Current,
    /// The contents and their generation were written.
    Published,
    /// Both annotations were removed: the spec has no contents.
    Withdrawn,
}

/// The outcome, with the `metadata.generation` of the object it was decided from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub outcome: Outcome,
    pub generation: Option<i64>,
}

/// Why the annotations were not brought up to date.
#[derive(Debug, Error)]
pub enum PublishError {
    #[error("the API server returned the spec without a resourceVersion")]
    NoResourceVersion,
    #[error(transparent)]
    Unreadable(#[from] serde_json::Error),
    #[error(transparent)]
    Undecidable(#[from] PublicationError),
    /// The object changed since it was read, with [`OnConflict::FollowWatch`].
    #[error("the spec changed since it was read")]
    Superseded,
    /// The write failed (a conflict only when following a watch is [`Self::Superseded`]).
    #[error(transparent)]
    Write(kube::Error),
    #[error("cannot read it again")]
    Reread(#[source] kube::Error),
    #[error("it changed {0} times while its contents were being published")]
    KeptChanging(usize),
}

/// Writes the published contents annotations with one field manager.
#[derive(Clone)]
pub struct ContentsWriter {
    api: Api<DynamicObject>,
    params: PatchParams,
    on_conflict: OnConflict,
}

impl ContentsWriter {
    /// A writer through `api` (the cluster-wide credential specs), owning its fields as
    /// `field_manager`.
    pub fn new(api: Api<DynamicObject>, field_manager: &str, on_conflict: OnConflict) -> Self {
        let params = PatchParams {
            field_manager: Some(field_manager.to_string()),
            ..PatchParams::default()
        };
        Self {
            api,
            params,
            on_conflict,
        }
    }

    /// Writes what `object`'s annotations need, guarded by its resourceVersion.
    pub async fn publish(&self, mut object: DynamicObject) -> Result<Published, PublishError> {
        let attempts = match self.on_conflict {
            OnConflict::Reread { attempts } => attempts,
            OnConflict::FollowWatch => 1,
        };
        for _ in 0..attempts {
            let name = object.metadata.name.clone().unwrap_or_default();
            let generation = object.metadata.generation;
            let resource_version = object
                .metadata
                .resource_version
                .clone()
                .ok_or(PublishError::NoResourceVersion)?;
            let change = publication(&serde_json::to_value(&object)?)?;
            let Some(patch) = change.merge_patch(&resource_version) else {
                return Ok(Published {
                    outcome: Outcome::Current,
                    generation,
                });
            };
            match self
                .api
                .patch(&name, &self.params, &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    let outcome = match change {
                        Publication::Withdraw => Outcome::Withdrawn,
                        _ => Outcome::Published,
                    };
                    return Ok(Published {
                        outcome,
                        generation,
                    });
                }
                Err(kube::Error::Api(status)) if status.code == 409 => match self.on_conflict {
                    OnConflict::FollowWatch => return Err(PublishError::Superseded),
                    OnConflict::Reread { .. } => {
                        object = self.api.get(&name).await.map_err(PublishError::Reread)?;
                    }
                },
                Err(e) => return Err(PublishError::Write(e)),
            }
        }
        Err(PublishError::KeptChanging(attempts))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
mod tests {
    use std::collections::VecDeque;
    use std::convert::Infallible;
    use std::sync::{Arc, Mutex};

    use gmsa_core::published::{CONTENTS_ANNOTATION, CONTENTS_GENERATION_ANNOTATION};
    use kube::client::Body;
    use serde_json::{json, Value};

    use super::*;
    use crate::credential_spec_resource;

    /// An API server in process: answers requests in order from a script and records what it
    /// was sent (method, path and query, body).
    #[derive(Default)]
    struct Script {
        answers: Mutex<VecDeque<(u16, Value)>>,
        seen: Mutex<Vec<(String, String, Value)>>,
    }

    impl Script {
        fn new(answers: Vec<(u16, Value)>) -> Arc<Self> {
            Arc::new(Self {
                answers: Mutex::new(answers.into()),
                seen: Mutex::default(),
            })
        }

        fn seen(&self) -> Vec<(String, String, Value)> {
            self.seen.lock().unwrap().clone()
        }
    }

    fn writer(script: &Arc<Script>, on_conflict: OnConflict) -> ContentsWriter {
        let script = script.clone();
        let service = tower::service_fn(move |request: http::Request<Body>| {
            let script = script.clone();
            async move {
                let (parts, body) = request.into_parts();
                let body = body.collect_bytes().await.unwrap();
                let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let target = parts.uri.path_and_query().unwrap().to_string();
                script
                    .seen
                    .lock()
                    .unwrap()
                    .push((parts.method.to_string(), target, body));
                let (code, answer) = script.answers.lock().unwrap().pop_front().unwrap();
                let response = http::Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                    .unwrap();
                Ok::<_, Infallible>(response)
            }
        });
        let client = kube::Client::new(service, "default");
        let api = Api::all_with(client, &credential_spec_resource());
        ContentsWriter::new(api, "test-manager", on_conflict)
    }

    fn spec(credspec: Option<Value>, generation: i64, rv: &str, annotations: Value) -> Value {
        let mut object = json!({
            "apiVersion": "windows.k8s.io/v1",
            "kind": "GMSACredentialSpec",
            "metadata": {"name": "web", "generation": generation, "resourceVersion": rv,
                         "annotations": annotations},
        });
        if let Some(credspec) = credspec {
            object["credspec"] = credspec;
        }
        object
    }

    /// Publishes `read` (an object as the API server returned it) against `script`.
    async fn publish(
        script: &Arc<Script>,
        on_conflict: OnConflict,
        read: &Value,
    ) -> Result<Published, PublishError> {
        let object: DynamicObject = serde_json::from_value(read.clone()).unwrap();
        writer(script, on_conflict).publish(object).await
    }

    fn conflict() -> (u16, Value) {
        let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                            "message": "the object has been modified", "reason": "Conflict",
                            "code": 409});
        (409, status)
    }

    const PATCH_PATH: &str =
        "/apis/windows.k8s.io/v1/gmsacredentialspecs/web?&fieldManager=test-manager";

    #[tokio::test]
    async fn current_annotations_are_not_written() {
        let script = Script::new(vec![]);
        let stored = spec(
            Some(json!({"A": 1})),
            4,
            "7",
            json!({CONTENTS_ANNOTATION: r#"{"A":1}"#, CONTENTS_GENERATION_ANNOTATION: "4"}),
        );
        let published = publish(&script, OnConflict::FollowWatch, &stored)
            .await
            .unwrap();
        assert_eq!(published.outcome, Outcome::Current);
        assert_eq!(published.generation, Some(4));
        assert!(script.seen().is_empty());
    }

    #[tokio::test]
    async fn a_publication_is_one_merge_patch_guarded_by_the_resource_version() {
        let stored = spec(Some(json!({"A": 1})), 3, "7", json!({}));
        let script = Script::new(vec![(200, stored.clone())]);
        let published = publish(&script, OnConflict::FollowWatch, &stored)
            .await
            .unwrap();
        assert_eq!(published.outcome, Outcome::Published);
        assert_eq!(published.generation, Some(3));
        let seen = script.seen();
        assert_eq!(seen.len(), 1);
        let (method, target, body) = &seen[0];
        assert_eq!((method.as_str(), target.as_str()), ("PATCH", PATCH_PATH));
        assert_eq!(
            body,
            &json!({"metadata": {"resourceVersion": "7", "annotations": {
                CONTENTS_ANNOTATION: r#"{"A":1}"#, CONTENTS_GENERATION_ANNOTATION: "3"}}})
        );
    }

    #[tokio::test]
    async fn a_spec_without_contents_has_its_annotations_withdrawn() {
        let stored = spec(
            None,
            2,
            "7",
            json!({CONTENTS_ANNOTATION: "{}", CONTENTS_GENERATION_ANNOTATION: "1"}),
        );
        let script = Script::new(vec![(200, stored.clone())]);
        let published = publish(&script, OnConflict::FollowWatch, &stored)
            .await
            .unwrap();
        assert_eq!(published.outcome, Outcome::Withdrawn);
        let body = &script.seen()[0].2;
        assert_eq!(
            body["metadata"]["annotations"],
            json!({CONTENTS_ANNOTATION: null, CONTENTS_GENERATION_ANNOTATION: null})
        );
    }

    #[tokio::test]
    async fn following_a_watch_a_conflict_is_left_to_it() {
        let stored = spec(Some(json!({"A": 1})), 3, "7", json!({}));
        let script = Script::new(vec![conflict()]);
        let result = publish(&script, OnConflict::FollowWatch, &stored).await;
        assert!(
            matches!(result, Err(PublishError::Superseded)),
            "{result:?}"
        );
        assert_eq!(script.seen().len(), 1, "no read behind the watch's back");
    }

    #[tokio::test]
    async fn rereading_a_conflict_decides_again_from_the_stored_object() {
        let read = spec(Some(json!({"A": 1})), 3, "7", json!({}));
        let stored = spec(Some(json!({"A": 2})), 4, "9", json!({}));
        let script = Script::new(vec![conflict(), (200, stored.clone()), (200, stored)]);
        let published = publish(&script, OnConflict::Reread { attempts: 5 }, &read)
            .await
            .unwrap();
        assert_eq!(published.outcome, Outcome::Published);
        assert_eq!(published.generation, Some(4));
        let seen = script.seen();
        let requests: Vec<(&str, &str)> = seen
            .iter()
            .map(|(method, target, _)| (method.as_str(), target.as_str()))
            .collect();
        assert_eq!(
            requests,
            [
                ("PATCH", PATCH_PATH),
                ("GET", "/apis/windows.k8s.io/v1/gmsacredentialspecs/web"),
                ("PATCH", PATCH_PATH),
            ]
        );
        assert_eq!(seen[2].2["metadata"]["resourceVersion"], "9");
        assert_eq!(
            seen[2].2["metadata"]["annotations"][CONTENTS_ANNOTATION],
            r#"{"A":2}"#
        );
    }

    #[tokio::test]
    async fn a_spec_that_keeps_changing_is_given_up_on() {
        let stored = spec(Some(json!({"A": 1})), 3, "7", json!({}));
        let script = Script::new(vec![
            conflict(),
            (200, stored.clone()),
            conflict(),
            (200, stored.clone()),
        ]);
        let result = publish(&script, OnConflict::Reread { attempts: 2 }, &stored).await;
        let error = result.unwrap_err();
        assert_eq!(
            error.to_string(),
            "it changed 2 times while its contents were being published"
        );
    }

    #[tokio::test]
    async fn other_write_failures_are_the_api_servers_error() {
        let stored = spec(Some(json!({"A": 1})), 3, "7", json!({}));
        let forbidden = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                               "message": "patch is forbidden", "reason": "Forbidden",
                               "code": 403});
        let script = Script::new(vec![(403, forbidden)]);
        let result = publish(&script, OnConflict::Reread { attempts: 5 }, &stored).await;
        assert!(
            matches!(&result, Err(PublishError::Write(kube::Error::Api(s))) if s.code == 403),
            "{result:?}"
        );
    }
}
