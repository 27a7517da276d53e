//! `labelSelector` and `fieldSelector` query parameters, as far as clients of these resources
//! use them (kube-rs sends `metadata.name=X` field selectors for single-object watches).

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Equals(String),
    NotEquals(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
}

impl Op {
    fn matches(&self, value: Option<&str>) -> bool {
        match self {
            Op::Equals(v) => value == Some(v.as_str()),
            Op::NotEquals(v) => value != Some(v.as_str()),
            Op::In(vs) => value.is_some_and(|x| vs.iter().any(|v| v == x)),
            Op::NotIn(vs) => !value.is_some_and(|x| vs.iter().any(|v| v == x)),
            Op::Exists => value.is_some(),
            Op::DoesNotExist => value.is_none(),
        }
    }
}

/// A parsed label selector; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LabelSelector {
    requirements: Vec<(String, Op)>,
}

impl LabelSelector {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            requirements.push(parse_requirement(part)?);
        }
        Ok(Self { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, object: &Value) -> bool {
        let labels = object.pointer("/metadata/labels");
        self.requirements
            .iter()
            .all(|(key, op)| op.matches(labels.and_then(|l| l.get(key)).and_then(Value::as_str)))
    }
}

/// Commas separate requirements, except inside `in (a,b)` sets.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn parse_requirement(part: &str) -> Result<(String, Op), String> {
    let invalid = || format!("unable to parse requirement: {part:?}");
    if let Some(key) = part.strip_prefix('!') {
        return Ok((checked_key(key.trim(), part)?, Op::DoesNotExist));
    }
    for (token, make) in [
        ("!=", Op::NotEquals as fn(String) -> Op),
        ("==", Op::Equals),
        ("=", Op::Equals),
    ] {
        if let Some((key, value)) = part.split_once(token) {
            return Ok((
                checked_key(key.trim(), part)?,
                make(value.trim().to_string()),
            ));
        }
    }
    let words: Vec<&str> = part.splitn(2, char::is_whitespace).collect();
    if let [key, rest] = words.as_slice() {
        let rest = rest.trim();
        let (negated, set) = if let Some(set) = rest.strip_prefix("notin") {
            (true, set)
        } else if let Some(set) = rest.strip_prefix("in") {
            (false, set)
        } else {
            return Err(invalid());
        };
        let set = set.trim();
        let inner = set
            .strip_prefix('(')
            .and_then(|s| s.strip_suffix(')'))
            .ok_or_else(invalid)?;
        let values = inner
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        let op = if negated {
            Op::NotIn(values)
        } else {
            Op::In(values)
        };
        return Ok((checked_key(key, part)?, op));
    }
    Ok((checked_key(part, part)?, Op::Exists))
}

fn checked_key(key: &str, part: &str) -> Result<String, String> {
    let valid = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if valid {
        Ok(key.to_string())
    } else {
        Err(format!(
            "unable to parse requirement: invalid label key {key:?} in {part:?}"
        ))
    }
}

/// Why a field selector was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FieldSelectorError {
    Syntax(String),
    Unsupported(String),
}

impl FieldSelectorError {
    /// The message as the server words it: custom resources and built-in kinds differ.
    pub fn message(&self, custom: bool) -> String {
        match self {
            Self::Syntax(message) => message.clone(),
            Self::Unsupported(field) if custom => format!("field label not supported: {field}"),
            Self::Unsupported(field) => format!(
                "{field:?} is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
            ),
        }
    }
}

/// A parsed field selector over `metadata.name` and `metadata.namespace`, the fields every
/// resource supports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FieldSelector {
    requirements: Vec<(&'static str, Op)>,
}

impl FieldSelector {
    pub fn parse(text: &str) -> Result<Self, FieldSelectorError> {
        let mut requirements = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, op) = if let Some((f, v)) = part.split_once("!=") {
                (f, Op::NotEquals(v.trim().to_string()))
            } else if let Some((f, v)) = part.split_once("==") {
                (f, Op::Equals(v.trim().to_string()))
            } else if let Some((f, v)) = part.split_once('=') {
                (f, Op::Equals(v.trim().to_string()))
            } else {
                return Err(FieldSelectorError::Syntax(format!(
                    "invalid selector: '{text}'; can't understand '{part}'"
                )));
            };
            let field = match field.trim() {
                "metadata.name" => "name",
                "metadata.namespace" => "namespace",
                other => return Err(FieldSelectorError::Unsupported(other.to_string())),
            };
            requirements.push((field, op));
        }
        Ok(Self { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, object: &Value) -> bool {
        let meta = object.get("metadata");
        self.requirements.iter().all(|(field, op)| {
            // An unset namespace selects as the empty string, as on the real server.
            let value = meta
                .and_then(|m| m.get(*field))
                .and_then(Value::as_str)
                .unwrap_or("");
            op.matches(Some(value))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(name: &str, labels: Value) -> Value {
        json!({ "metadata": { "name": name, "labels": labels } })
    }

    #[test]
    fn label_selectors_follow_kubernetes_syntax() {
        let cases = [
            ("", json!({}), true),
            ("app=web", json!({ "app": "web" }), true),
            ("app==web", json!({ "app": "db" }), false),
            ("app!=web", json!({}), true),
            ("app", json!({ "app": "" }), true),
            ("!app", json!({ "app": "x" }), false),
            (
                "tier in (a, b),app",
                json!({ "tier": "b", "app": "x" }),
                true,
            ),
            ("tier notin (a,b)", json!({ "tier": "a" }), false),
            (
                "example.com/team=c",
                json!({ "example.com/team": "c" }),
                true,
            ),
        ];
        for (selector, labels, expected) in cases {
            let parsed = LabelSelector::parse(selector).expect(selector);
            assert_eq!(parsed.matches(&object("x", labels)), expected, "{selector}");
        }
        assert!(LabelSelector::parse("a in b").is_err());
        assert!(LabelSelector::parse("a b=c").is_err());
    }

    #[test]
    fn field_selectors_know_name_and_namespace_only() {
        let selector = FieldSelector::parse("metadata.name=gmsa-webapp1").expect("valid");
        assert!(selector.matches(&object("gmsa-webapp1", json!({}))));
        assert!(!selector.matches(&object("other", json!({}))));
        let cluster = FieldSelector::parse("metadata.namespace=").expect("valid");
        assert!(cluster.matches(&object("x", json!({}))));
        let unsupported = FieldSelector::parse("spec.x=1").expect_err("unsupported");
        assert_eq!(
            unsupported.message(true),
            "field label not supported: spec.x"
        );
        assert_eq!(
            unsupported.message(false),
            "\"spec.x\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        );
    }
}
