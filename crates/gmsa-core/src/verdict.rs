//! What a review ends in, shared by the pod decisions and the credential spec review.

/// A refusal: the HTTP-like code and the message the user sees in `kubectl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub code: u16,
    pub message: String,
}

impl Denial {
    pub fn new(code: u16, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// The outcome of one review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Admitted; `patch` is the JSON Patch document, absent when there is nothing to change.
    Allowed {
        patch: Option<String>,
    },
    Denied(Denial),
}

impl Verdict {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Verdict::Allowed { .. })
    }
}
