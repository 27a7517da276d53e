//! `admit`: the webhook's decisions, offline. Each pod (or workload pod template) goes through
//! `gmsa_core::admission::Review` for mutate, as the API server would send it, the patch is
//! applied, and the mutated pod goes through validate, as the API server calls the two
//! webhooks. Both answers' admission warnings are printed, and
//! for a workload one more that the webhook cannot give, knowing one pod only: several pods at
//! once with one fixed host name under a gMSA (`gmsa_core::hostname`).

use anyhow::{anyhow, bail, Context};
use gmsa_core::admission::{Answer, PodRequest, Review};
use gmsa_core::names;
use gmsa_core::pod::Pod;
use gmsa_core::state::State;
use gmsa_core::{hostname, Denial, Facts, Hook, Options, Verdict};
use serde_json::{json, Value};

use crate::cli::{AdmitArgs, Format, Operation};
use crate::exit::ExitStatus;
use crate::input::{parse_documents, Source};
use crate::output;

/// Where a kind keeps the pods it creates.
fn pod_template_path(kind: &str) -> Option<&'static str> {
    match kind {
        "Deployment"
        | "ReplicaSet"
        | "StatefulSet"
        | "DaemonSet"
        | "Job"
        | "ReplicationController" => Some("/spec/template"),
        "CronJob" => Some("/spec/jobTemplate/spec/template"),
        _ => None,
    }
}

/// One object of the input and what the webhook would see of it.
struct Subject {
    kind: String,
    namespace: String,
    /// Name for messages: the name, or `generateName` when there is none yet.
    display_name: String,
    site: Site,
}

enum Site {
    /// The object is a pod.
    Pod,
    /// The object creates pods from the template at this JSON pointer.
    Template(&'static str),
    /// The webhook never sees this kind.
    None,
}

/// What the webhooks said about one pod.
enum Outcome {
    /// Admitted; the mutation patch, if any, to apply to the pod, and the validation's
    /// admission warnings.
    Admitted(Option<json_patch::Patch>, Vec<String>),
    Denied(Denial),
}

/// Runs `admit`. Errors are unusable input (exit 2).
pub fn admit(args: &AdmitArgs) -> anyhow::Result<ExitStatus> {
    let operation = match (args.operation, &args.old) {
        (None, None) => Operation::Create,
        (None, Some(_)) => Operation::Update,
        (Some(Operation::Update), None) => {
            bail!("--operation UPDATE needs --old FILE with the pods as they are now")
        }
        (Some(Operation::Create), Some(_)) => {
            bail!("--old is only for --operation UPDATE; leave it out to review a creation")
        }
        (Some(op), _) => op,
    };
    let state = State::load_dir(&args.state)
        .with_context(|| format!("cannot load the state in {}", args.state.display()))?;

    let source = Source::new(&args.file);
    let file = source.name();
    let mut objects = parse_documents(&file, &source.read_text()?)?;
    if objects.is_empty() {
        bail!("{file}: no objects to review");
    }
    let old_objects = match &args.old {
        Some(path) => {
            let old = Source::new(path);
            parse_documents(&old.name(), &old.read_text()?)?
        }
        None => Vec::new(),
    };
    let default_namespace = args.namespace.as_deref().unwrap_or("default");
    let subjects = objects
        .iter()
        .enumerate()
        .map(|(i, o)| {
            subject(
                o,
                &file,
                i + 1,
                args.namespace.as_deref(),
                default_namespace,
            )
        })
        .collect::<anyhow::Result<Vec<_>>>()?;

    let mut admitted = Vec::new();
    let mut denied = false;
    for (object, subject) in objects.iter_mut().zip(&subjects) {
        let what = format!("{} {}", subject.kind, subject.display_name);
        let outcome = match subject.site {
            Site::None => {
                eprintln!("skipped {what}: no pods to review");
                admitted.push(object.clone());
                continue;
            }
            Site::Pod => {
                let old = match operation {
                    Operation::Create => None,
                    Operation::Update => Some(old_pod(&old_objects, subject, object)?),
                };
                let outcome = review_pod(&state, object, old, &subject.namespace, operation)?;
                if let Outcome::Admitted(Some(patch), _) = &outcome {
                    json_patch::patch(object, patch)
                        .map_err(|e| anyhow!("cannot apply the webhook's patch to {what}: {e}"))?;
                }
                outcome
            }
            Site::Template(pointer) => {
                let pod = template_pod(object, pointer, &what)?;
                let mut outcome =
                    review_pod(&state, &pod, None, &subject.namespace, Operation::Create)?;
                if let Outcome::Admitted(_, warnings) = &mut outcome {
                    warnings.extend(shared_hostname(object, &subject.kind, &pod));
                }
                if let Outcome::Admitted(Some(patch), _) = &outcome {
                    let spec_pointer = format!("{pointer}/spec");
                    let spec = object
                        .pointer_mut(&spec_pointer)
                        .ok_or_else(|| anyhow!("{what} has no {spec_pointer}"))?;
                    let mut wrapped = json!({ "spec": spec.take() });
                    json_patch::patch(&mut wrapped, patch)
                        .map_err(|e| anyhow!("cannot apply the webhook's patch to {what}: {e}"))?;
                    *spec = wrapped["spec"].take();
                }
                outcome
            }
        };
        match outcome {
            Outcome::Admitted(_, warnings) => {
                for warning in warnings {
                    eprintln!("warning: {what}: {warning}");
                }
                eprintln!("admitted {what}");
                admitted.push(object.clone());
            }
            Outcome::Denied(Denial { code, message }) => {
                eprintln!("denied {what}: {message} (code {code})");
                denied = true;
            }
        }
    }

    let text = match args.output {
        Format::Yaml => output::yaml_documents(&admitted)?,
        Format::Json => {
            let list =
                json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": admitted});
            let mut text = serde_json::to_string_pretty(&list)?;
            text.push('\n');
            text
        }
    };
    output::write(None, false, &text)?;
    Ok(if denied {
        ExitStatus::Refused
    } else {
        ExitStatus::Success
    })
}

fn subject(
    object: &Value,
    file: &str,
    index: usize,
    namespace_flag: Option<&str>,
    default_namespace: &str,
) -> anyhow::Result<Subject> {
    let Some(map) = object.as_object() else {
        bail!("{file}: document {index} is not an object");
    };
    let Some(kind) = map
        .get("kind")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
    else {
        bail!("{file}: document {index} has no kind: give Kubernetes objects (Pods, Deployments, ...)");
    };
    let metadata = map.get("metadata");
    let text = |key: &str| {
        metadata
            .and_then(|m| m.get(key))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let site = if kind == "Pod" {
        Site::Pod
    } else if let Some(pointer) = pod_template_path(kind) {
        Site::Template(pointer)
    } else {
        Site::None
    };
    let namespace = match (text("namespace"), namespace_flag) {
        (Some(own), Some(flag)) if own != flag => bail!(
            "{file}: {kind} {} is in namespace {own:?}, not {flag:?} as --namespace says: leave out --namespace or make them agree",
            text("name").unwrap_or_default()
        ),
        (Some(own), _) => own.to_string(),
        (None, _) => default_namespace.to_string(),
    };
    let name = text("name")
        .map(str::to_string)
        .or_else(|| text("generateName").map(|g| format!("{g}*")))
        .unwrap_or_default();
    let display_name = match site {
        Site::None if text("namespace").is_none() => name,
        _ => format!("{namespace}/{name}"),
    };
    Ok(Subject {
        kind: kind.to_string(),
        namespace,
        display_name,
        site,
    })
}

/// The webhook sees one pod at a time; `admit` sees the workload, and warns when it runs
/// several pods at once with one fixed host name under a gMSA.
fn shared_hostname(object: &Value, kind: &str, template: &Value) -> Option<String> {
    let concurrency = hostname::concurrency(kind, object)?;
    let name = object
        .pointer("/metadata/name")
        .or_else(|| object.pointer("/metadata/generateName"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    // The template was reviewed already: one the webhook's reader refuses was denied there.
    let pod = Pod::from_json(&template.to_string()).ok()?;
    hostname::shared_by_workload(kind, name, concurrency, &pod)
}

/// The old version of a pod, for an UPDATE.
fn old_pod<'o>(old: &'o [Value], subject: &Subject, pod: &Value) -> anyhow::Result<&'o Value> {
    let name = pod.pointer("/metadata/name").and_then(Value::as_str);
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        bail!(
            "Pod {}: an UPDATE needs the pod's metadata.name",
            subject.display_name
        );
    };
    old.iter()
        .find(|o| {
            o.get("kind").and_then(Value::as_str) == Some("Pod")
                && o.pointer("/metadata/name").and_then(Value::as_str) == Some(name)
                && o.pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or(&subject.namespace)
                    == subject.namespace
        })
        .ok_or_else(|| {
            anyhow!(
                "no old version of Pod {} in --old: give the pod as it is now",
                subject.display_name
            )
        })
}

/// The pod a workload creates from its template.
fn template_pod(object: &Value, pointer: &str, what: &str) -> anyhow::Result<Value> {
    let template = object
        .pointer(pointer)
        .and_then(Value::as_object)
        .ok_or_else(|| {
            anyhow!(
                "{what} has no pod template at {}",
                pointer.replace('/', ".")
            )
        })?;
    let mut metadata = template
        .get("metadata")
        .filter(|m| m.is_object())
        .cloned()
        .unwrap_or_else(|| json!({}));
    if let Some(name) = object.pointer("/metadata/name").and_then(Value::as_str) {
        metadata["generateName"] = json!(format!("{name}-"));
    }
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": template.get("spec").cloned().unwrap_or_else(|| json!({})),
    }))
}

/// The pod as admission webhooks receive it: in its namespace, with the service account the
/// ServiceAccount admission plugin fills in before them.
fn as_admitted(pod: &Value, namespace: &str) -> Value {
    let mut pod = pod.clone();
    if let Some(map) = pod.as_object_mut() {
        let metadata = map.entry("metadata").or_insert_with(|| json!({}));
        if let Some(m) = metadata.as_object_mut() {
            m.insert("namespace".into(), json!(namespace));
        }
        if let Some(spec) = map.get_mut("spec").and_then(Value::as_object_mut) {
            let named = spec
                .get("serviceAccountName")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty());
            if !named {
                let legacy = spec
                    .get("serviceAccount")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .unwrap_or(names::DEFAULT_SERVICE_ACCOUNT)
                    .to_string();
                spec.insert("serviceAccountName".into(), json!(legacy));
            }
        }
    }
    pod
}

/// One webhook's decision on `pod`, by the webhook's own review code.
fn decide(
    state: &State,
    hook: Hook,
    pod: &Value,
    old: Option<&Value>,
    namespace: &str,
    operation: Operation,
) -> anyhow::Result<Answer> {
    let object = serde_json::value::to_raw_value(pod)?;
    let old_object = old.map(serde_json::value::to_raw_value).transpose()?;
    let review = Review::of_pod(
        hook,
        PodRequest {
            namespace,
            name: pod
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default(),
            operation: match operation {
                Operation::Create => "CREATE",
                Operation::Update => "UPDATE",
            },
            object: &object,
            old_object: old_object.as_deref(),
        },
    );
    let facts = Facts::gather(&review.needs(), state);
    // RANDOM_HOSTNAME is off, so no hostname is ever asked for.
    Ok(review.decide(&facts, Options::default(), String::new))
}

/// The pod through mutation, its patch applied, then through validation, as the API server
/// calls the two webhooks.
fn review_pod(
    state: &State,
    pod: &Value,
    old: Option<&Value>,
    namespace: &str,
    operation: Operation,
) -> anyhow::Result<Outcome> {
    let pod = as_admitted(pod, namespace);
    let old = old.map(|o| as_admitted(o, namespace));
    let mutate = decide(
        state,
        Hook::Mutate,
        &pod,
        old.as_ref(),
        namespace,
        operation,
    )?;
    let patch = match mutate.verdict {
        Verdict::Denied(denial) => return Ok(Outcome::Denied(denial)),
        Verdict::Allowed { patch: None } => None,
        Verdict::Allowed { patch: Some(text) } => Some(
            serde_json::from_str::<json_patch::Patch>(&text)
                .context("the webhook's patch is not a JSON Patch")?,
        ),
    };
    let mut mutated = pod;
    if let Some(p) = &patch {
        json_patch::patch(&mut mutated, p).context("cannot apply the webhook's patch")?;
    }

    let validate = decide(
        state,
        Hook::Validate,
        &mutated,
        old.as_ref(),
        namespace,
        operation,
    )?;
    if let Verdict::Denied(denial) = validate.verdict {
        return Ok(Outcome::Denied(denial));
    }
    // In the order the API server collects them: mutating webhooks answer first.
    let mut warnings = mutate.warnings;
    warnings.extend(validate.warnings);
    Ok(Outcome::Admitted(patch, warnings))
}
