//! `Status` bodies, worded and shaped as kube-apiserver 1.20 sends them, so clients parse
//! and match them exactly as they would in a cluster.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::resources::ResourceType;

/// A `meta/v1` `Status`, boxed because handlers pass it around as their error type.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub(crate) struct Status(Box<StatusBody>);

/// Field order follows the real server's output.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusBody {
    kind: &'static str,
    api_version: &'static str,
    metadata: StatusMeta,
    status: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    message: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Details>,
    #[serde(skip_serializing_if = "is_zero")]
    code: u16,
}

#[derive(Debug, Clone, Default, Serialize)]
struct StatusMeta {
    #[serde(rename = "continue", skip_serializing_if = "String::is_empty")]
    continue_token: String,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct Details {
    #[serde(skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    group: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    kind: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    uid: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    causes: Vec<Cause>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_seconds: Option<u32>,
}

/// One entry of `details.causes`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Cause {
    reason: &'static str,
    message: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    field: String,
}

fn is_zero(code: &u16) -> bool {
    *code == 0
}

/// A validation error, rendered like Go's `field.Error`.
#[derive(Debug, Clone)]
pub(crate) struct FieldError {
    pub field: String,
    /// The offending value as Go's `%q`/`%v` prints it, e.g. `"team-c"` or `"null"`.
    pub value: String,
    pub detail: String,
    pub required: bool,
}

impl FieldError {
    pub fn invalid(field: &str, value: String, detail: &str) -> Self {
        Self {
            field: field.into(),
            value,
            detail: detail.into(),
            required: false,
        }
    }

    pub fn required(field: &str, detail: &str) -> Self {
        Self {
            field: field.into(),
            value: String::new(),
            detail: detail.into(),
            required: true,
        }
    }

    fn body(&self) -> String {
        if self.required {
            format!("Required value: {}", self.detail)
        } else {
            format!("Invalid value: {}: {}", self.value, self.detail)
        }
    }

    fn cause(&self) -> Cause {
        Cause {
            reason: if self.required {
                "FieldValueRequired"
            } else {
                "FieldValueInvalid"
            },
            message: self.body(),
            field: self.field.clone(),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

/// Go's `%q` for a string, close enough for the ASCII names the API carries.
pub(crate) fn quote(s: &str) -> String {
    format!("{s:?}")
}

impl Status {
    fn failure(code: u16, reason: &'static str, message: String) -> Self {
        Self(Box::new(StatusBody {
            kind: "Status",
            api_version: "v1",
            metadata: StatusMeta::default(),
            status: "Failure",
            message,
            reason,
            details: None,
            code,
        }))
    }

    fn about(mut self, rt: &ResourceType, name: &str) -> Self {
        self.0.details = Some(Details {
            name: name.into(),
            group: rt.group,
            kind: rt.plural,
            ..Details::default()
        });
        self
    }

    /// `<plural>.<group> "<name>" not found`.
    pub fn not_found(rt: &ResourceType, name: &str) -> Self {
        Self::failure(
            404,
            "NotFound",
            format!("{} {} not found", rt.qualified(), quote(name)),
        )
        .about(rt, name)
    }

    pub fn already_exists(rt: &ResourceType, name: &str) -> Self {
        Self::failure(
            409,
            "AlreadyExists",
            format!("{} {} already exists", rt.qualified(), quote(name)),
        )
        .about(rt, name)
    }

    pub fn conflict(rt: &ResourceType, name: &str) -> Self {
        Self::failure(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {}: the object has been modified; please \
                 apply your changes to the latest version and try again",
                rt.qualified(),
                quote(name)
            ),
        )
        .about(rt, name)
    }

    /// 422 `Invalid`; `kind` and `group` make the `<Kind>.<group> "<name>" is invalid` prefix.
    pub fn invalid(
        kind: &'static str,
        group: &'static str,
        name: &str,
        errors: &[FieldError],
    ) -> Self {
        let listed = match errors {
            [one] => one.to_string(),
            many => format!(
                "[{}]",
                many.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let mut status = Self::failure(
            422,
            "Invalid",
            format!("{kind}.{group} {} is invalid: {listed}", quote(name)),
        );
        status.0.details = Some(Details {
            name: name.into(),
            group,
            kind,
            causes: errors.iter().map(FieldError::cause).collect(),
            ..Details::default()
        });
        status
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::failure(400, "BadRequest", message.into())
    }

    /// 410 `Expired`, as a watch from a compacted version or a stale continue token gets.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::failure(410, "Expired", message.into())
    }

    /// 410 `Expired` for a stale continue token, with a token to carry on inconsistently.
    pub fn continue_expired(inconsistent_token: String) -> Self {
        let mut status = Self::expired(
            "The provided continue parameter is too old to display a consistent list result. \
             You can start a new list without the continue parameter, or use the continue token \
             in this response to retrieve the remainder of the results. Continuing with the \
             provided token results in an inconsistent list - objects that were created, \
             modified, or deleted between the time the first chunk was returned and now may \
             show up in the list.",
        );
        status.0.metadata.continue_token = inconsistent_token;
        status
    }

    /// 410 `Gone`, as a paged list at a compacted version gets.
    pub fn gone(message: impl Into<String>) -> Self {
        Self::failure(410, "Gone", message.into())
    }

    /// 504 for a resourceVersion the server has not reached within its wait.
    pub fn too_large_resource_version(requested: u64, current: u64) -> Self {
        let mut status = Self::failure(
            504,
            "Timeout",
            format!("Timeout: Too large resource version: {requested}, current: {current}"),
        );
        status.0.details = Some(Details {
            causes: vec![Cause {
                reason: "ResourceVersionTooLarge",
                message: "Too large resource version".into(),
                field: String::new(),
            }],
            retry_after_seconds: Some(1),
            ..Details::default()
        });
        status
    }

    /// 404 for a path the server does not serve.
    pub fn path_not_found() -> Self {
        let mut status = Self::failure(
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
        );
        status.0.details = Some(Details::default());
        status
    }

    pub fn method_not_allowed(action: &str, rt_qualified: &str) -> Self {
        Self::failure(
            405,
            "MethodNotAllowed",
            format!(
                "{action} is not supported on resources of kind {}",
                quote(rt_qualified)
            ),
        )
    }

    /// An injected failure: the reason and wording the real server uses for that code.
    pub fn injected(code: u16) -> Self {
        let (reason, message) = match code {
            400 => ("BadRequest", "the server rejected our request for an unknown reason"),
            401 => ("Unauthorized", "Unauthorized"),
            403 => ("Forbidden", "forbidden: injected by the fake API server"),
            404 => ("NotFound", "the server could not find the requested resource"),
            405 => ("MethodNotAllowed", "the server does not allow this method on the requested resource"),
            409 => ("Conflict", "the server reported a conflict"),
            410 => ("Expired", "the resource has expired"),
            422 => ("Invalid", "the server rejected our request due to an error in our request"),
            429 => ("TooManyRequests", "the server has received too many requests and has asked us to try again later"),
            500 => ("InternalError", "Internal error occurred: injected by the fake API server"),
            503 => ("ServiceUnavailable", "the server is currently unable to handle the request"),
            504 => ("Timeout", "the server was unable to return a response in the time allotted, but may still be processing the request"),
            _ => ("", "injected by the fake API server"),
        };
        let mut status = Self::failure(code, reason, message.into());
        // The real server asks for a retry after 1 s on throttling and timeouts, not on 503.
        if code == 429 || code == 504 {
            status.0.details = Some(Details {
                retry_after_seconds: Some(1),
                ..Details::default()
            });
        }
        status
    }

    /// The `Success` status a DELETE answers with.
    pub fn deleted(rt: &ResourceType, name: &str, uid: &str) -> Self {
        Self(Box::new(StatusBody {
            kind: "Status",
            api_version: "v1",
            metadata: StatusMeta::default(),
            status: "Success",
            message: String::new(),
            reason: "",
            details: Some(Details {
                name: name.into(),
                group: rt.group,
                kind: rt.plural,
                uid: uid.into(),
                ..Details::default()
            }),
            code: 0,
        }))
    }

    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    fn http_code(&self) -> StatusCode {
        if self.0.code == 0 {
            return StatusCode::OK;
        }
        StatusCode::from_u16(self.0.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Status {
    fn into_response(self) -> Response {
        let code = self.http_code();
        let retry_after = self.0.details.as_ref().and_then(|d| d.retry_after_seconds);
        let mut response = json_response(code, &self);
        if let Some(seconds) = retry_after {
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

/// A JSON body with the content type the real server sets.
pub(crate) fn json_response<T: Serialize>(code: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (code, [(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
