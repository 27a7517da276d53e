//! Why the webhook behind a Service does not answer `/readyz`, decided from what the cluster
//! says about its Deployment, its pods and the Service's endpoints, without I/O.

use gmsa_deploy::names;
use serde_json::Value;

use super::fixes::Fixes;

/// The webhook's Service, and the Deployment of the same name behind it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Backend<'a> {
    pub(super) namespace: &'a str,
    pub(super) name: &'a str,
}

impl Backend<'_> {
    /// The label selector of the webhook replicas, as the Service selects them.
    pub(super) fn pod_selector(&self) -> String {
        format!(
            "{}={},{}={},{}={}",
            names::LABEL_INSTANCE,
            self.name,
            names::LABEL_NAME,
            names::APP_NAME,
            names::LABEL_COMPONENT,
            names::WEBHOOK_ROLE
        )
    }
}

/// What the cluster says about the webhook's replicas.
#[derive(Debug, Clone, Copy)]
pub(super) struct Observed<'a> {
    /// The Deployment, `None` when it does not exist.
    pub(super) deployment: Option<&'a Value>,
    /// The pods the Service selects.
    pub(super) pods: &'a [Value],
    /// Ready endpoints of the Service, `None` when the cluster has no EndpointSlice API.
    pub(super) ready_endpoints: Option<usize>,
}

/// A finding's detail (after "does not answer /readyz: ") and its fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Cause {
    pub(super) detail: String,
    pub(super) fix: String,
}

/// Container waiting reasons that mean the node cannot get the image.
const PULL_FAILURES: [&str; 2] = ["ErrImagePull", "ImagePullBackOff"];
const CRASH_LOOP: &str = "CrashLoopBackOff";
/// A termination message is the tail of a log: one line of it is enough for a row.
const MESSAGE_CAP: usize = 200;

/// The first cause that explains a silent webhook, in the order a user fixes them; `None`
/// when nothing observed explains it.
pub(super) fn diagnose(
    backend: Backend<'_>,
    observed: Observed<'_>,
    fixes: &Fixes,
) -> Option<Cause> {
    let Backend { namespace, name } = backend;
    let Some(deployment) = observed.deployment else {
        return Some(Cause {
            detail: format!("deployment {namespace}/{name} does not exist"),
            fix: fixes.reinstall(),
        });
    };
    if deployment["spec"]["replicas"].as_i64() == Some(0) {
        return Some(Cause {
            detail: format!("deployment {namespace}/{name} is scaled to zero: no replica serves"),
            fix: format!(
                "kubectl -n {namespace} scale deployment/{name} --replicas={}",
                names::DEFAULT_REPLICAS
            ),
        });
    }
    let statuses = || {
        observed.pods.iter().flat_map(|pod| {
            pod["status"]["containerStatuses"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |status| (pod, status))
        })
    };
    if let Some((pod, status)) = statuses().find(|(_, s)| {
        s["state"]["waiting"]["reason"]
            .as_str()
            .is_some_and(|r| PULL_FAILURES.contains(&r))
    }) {
        let waiting = &status["state"]["waiting"];
        let reason = waiting["reason"].as_str().unwrap_or_default();
        let image = image_of(pod, status);
        let detail = match one_line(&waiting["message"]) {
            Some(message) => format!("image {image} cannot be pulled ({reason}: {message})"),
            None => format!("image {image} cannot be pulled ({reason})"),
        };
        return Some(Cause {
            detail,
            fix: format!(
                "push {image} to a registry the nodes pull from, or install an image they can pull: {} --image <ref>",
                fixes.reinstall()
            ),
        });
    }
    if let Some(crash) = statuses().find_map(|(pod, status)| crashing(pod, status)) {
        return Some(Cause {
            detail: format!("the webhook container keeps crashing ({crash})"),
            fix: format!("kubectl -n {namespace} logs deploy/{name} --previous"),
        });
    }
    if observed.ready_endpoints == Some(0) {
        let total = observed.pods.len();
        let ready = observed.pods.iter().filter(|p| pod_ready(p)).count();
        let pods = match (total, ready) {
            (0, _) => "no pod matches the Service's selector".to_string(),
            (1, 0) => "1 pod, not ready".to_string(),
            (_, 0) => format!("{total} pods, none ready"),
            _ => format!("{total} pods, {ready} ready but not yet among its endpoints"),
        };
        return Some(Cause {
            detail: format!("service {namespace}/{name} has no ready endpoint: {pods}"),
            fix: format!(
                "kubectl -n {namespace} describe pods -l {}",
                backend.pod_selector()
            ),
        });
    }
    None
}

/// The image a container status is about: the status names it, the pod spec when it does not.
fn image_of<'a>(pod: &'a Value, status: &'a Value) -> &'a str {
    if let Some(image) = status["image"].as_str().filter(|i| !i.is_empty()) {
        return image;
    }
    pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == status["name"])
        .and_then(|c| c["image"].as_str())
        .unwrap_or("?")
}

/// How a container crashes: in a crash loop, or last terminated with an error.
fn crashing(pod: &Value, status: &Value) -> Option<String> {
    let looping = status["state"]["waiting"]["reason"] == CRASH_LOOP;
    let terminated = [
        &status["lastState"]["terminated"],
        &status["state"]["terminated"],
    ]
    .into_iter()
    .find(|t| t["exitCode"].as_i64().is_some_and(|code| code != 0));
    if !looping && terminated.is_none() {
        return None;
    }
    let mut text = format!("pod {}", pod["metadata"]["name"].as_str().unwrap_or("?"));
    if looping {
        text.push_str(": ");
        text.push_str(CRASH_LOOP);
    }
    if let Some(t) = terminated {
        text.push_str(&format!(
            ", last exit code {}",
            t["exitCode"].as_i64().unwrap_or_default()
        ));
        if let Some(reason) = t["reason"].as_str().filter(|r| !r.is_empty()) {
            text.push_str(&format!(" ({reason})"));
        }
        if let Some(message) = one_line(&t["message"]) {
            text.push_str(": ");
            text.push_str(&message);
        }
    }
    Some(text)
}

fn pod_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// The first non-empty line of a message, capped: a row stays one line.
fn one_line(message: &Value) -> Option<String> {
    let line = message
        .as_str()?
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())?;
    Some(match line.char_indices().nth(MESSAGE_CAP) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line.to_string(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use serde_json::json;

    use super::super::fixes::tests::{accepted_by_install, install_commands, modes};
    use super::*;

    const BACKEND: Backend<'static> = Backend {
        namespace: "gmsa-system",
        name: "gmsa-webhook",
    };
    const SELECTOR: &str = "app.kubernetes.io/instance=gmsa-webhook,app.kubernetes.io/name=gmsa-webhook,app.kubernetes.io/component=webhook";
    const IMAGE: &str = "registry.example/gmsa-webhook:0.1.0";

    fn deployment(replicas: i64) -> Value {
        json!({
            "metadata": {"namespace": "gmsa-system", "name": "gmsa-webhook"},
            "spec": {"replicas": replicas},
            "status": {"replicas": replicas}
        })
    }

    fn pod(name: &str, ready: bool, status: Value) -> Value {
        json!({
            "metadata": {"namespace": "gmsa-system", "name": name},
            "spec": {"containers": [{"name": "webhook", "image": IMAGE}]},
            "status": {
                "phase": if ready { "Running" } else { "Pending" },
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
                "containerStatuses": [status]
            }
        })
    }

    fn running(ready: bool) -> Value {
        json!({"name": "webhook", "image": IMAGE, "ready": ready,
               "state": {"running": {"startedAt": "2026-12-07T03:00:00Z"}}})
    }

    /// A case, the Deployment, the pods, the ready endpoints, and the detail and fix expected
    /// (`None`: today's text stays).
    type Row<'a> = (
        &'a str,
        Option<&'a Value>,
        Vec<Value>,
        Option<usize>,
        Option<(&'a str, &'a str)>,
    );

    fn webhook_mode() -> Fixes {
        modes()[0].clone()
    }

    #[test]
    fn each_cause_is_named_with_its_fix() {
        let pull = pod(
            "gmsa-webhook-1",
            false,
            json!({"name": "webhook", "image": IMAGE, "ready": false, "state": {"waiting": {
                "reason": "ImagePullBackOff",
                "message": "Back-off pulling image \"registry.example/gmsa-webhook:0.1.0\""}}}),
        );
        let err_pull = pod(
            "gmsa-webhook-1",
            false,
            json!({"name": "webhook", "image": "", "ready": false, "state": {"waiting": {"reason": "ErrImagePull"}}}),
        );
        let crash_loop = pod(
            "gmsa-webhook-2",
            false,
            json!({"name": "webhook", "image": IMAGE, "ready": false, "restartCount": 5,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s restarting failed container"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                    "message": "cannot read /etc/gmsa-webhook/tls/tls.crt: no such file\nmore"}}}),
        );
        let exited = pod(
            "gmsa-webhook-3",
            false,
            json!({"name": "webhook", "image": IMAGE, "ready": false,
                "state": {"running": {}},
                "lastState": {"terminated": {"exitCode": 2, "reason": "Error"}}}),
        );
        let restarted_cleanly = pod(
            "gmsa-webhook-4",
            true,
            json!({"name": "webhook", "image": IMAGE, "ready": true,
                "state": {"running": {}},
                "lastState": {"terminated": {"exitCode": 0, "reason": "Completed"}}}),
        );
        let unready = pod("gmsa-webhook-5", false, running(false));
        let ready = pod("gmsa-webhook-6", true, running(true));
        let two = deployment(2);
        let zero = deployment(0);
        let describe = format!("kubectl -n gmsa-system describe pods -l {SELECTOR}");
        let logs = "kubectl -n gmsa-system logs deploy/gmsa-webhook --previous";
        let table: Vec<Row> = vec![
            ("missing deployment", None, vec![], Some(0),
                Some(("deployment gmsa-system/gmsa-webhook does not exist", "kubectl gmsa install --apply"))),
            ("scaled to zero", Some(&zero), vec![], Some(0),
                Some(("deployment gmsa-system/gmsa-webhook is scaled to zero: no replica serves",
                      "kubectl -n gmsa-system scale deployment/gmsa-webhook --replicas=2"))),
            ("image pull back-off", Some(&two), vec![ready.clone(), pull], Some(0),
                Some(("image registry.example/gmsa-webhook:0.1.0 cannot be pulled (ImagePullBackOff: Back-off pulling image \"registry.example/gmsa-webhook:0.1.0\")",
                      "push registry.example/gmsa-webhook:0.1.0 to a registry the nodes pull from, or install an image they can pull: kubectl gmsa install --apply --image <ref>"))),
            ("image pull error, image from the spec", Some(&two), vec![err_pull], None,
                Some(("image registry.example/gmsa-webhook:0.1.0 cannot be pulled (ErrImagePull)",
                      "push registry.example/gmsa-webhook:0.1.0 to a registry the nodes pull from, or install an image they can pull: kubectl gmsa install --apply --image <ref>"))),
            ("crash loop", Some(&two), vec![crash_loop], Some(0),
                Some(("the webhook container keeps crashing (pod gmsa-webhook-2: CrashLoopBackOff, last exit code 1 (Error): cannot read /etc/gmsa-webhook/tls/tls.crt: no such file)", logs))),
            ("exited with an error", Some(&two), vec![exited], None,
                Some(("the webhook container keeps crashing (pod gmsa-webhook-3, last exit code 2 (Error))", logs))),
            ("no pod", Some(&two), vec![], Some(0),
                Some(("service gmsa-system/gmsa-webhook has no ready endpoint: no pod matches the Service's selector", &describe))),
            ("pods, none ready", Some(&two), vec![unready.clone(), unready.clone()], Some(0),
                Some(("service gmsa-system/gmsa-webhook has no ready endpoint: 2 pods, none ready", &describe))),
            ("one pod, not ready", Some(&two), vec![unready.clone()], Some(0),
                Some(("service gmsa-system/gmsa-webhook has no ready endpoint: 1 pod, not ready", &describe))),
            ("ready pods, endpoints behind", Some(&two), vec![ready.clone(), unready.clone()], Some(0),
                Some(("service gmsa-system/gmsa-webhook has no ready endpoint: 2 pods, 1 ready but not yet among its endpoints", &describe))),
            ("a clean restart is no crash", Some(&two), vec![restarted_cleanly, ready.clone()], Some(2), None),
            ("no EndpointSlice API", Some(&two), vec![unready], None, None),
            ("everything serves", Some(&two), vec![ready], Some(1), None),
        ];
        for (case, deployment, pods, ready_endpoints, expected) in table {
            let observed = Observed {
                deployment,
                pods: &pods,
                ready_endpoints,
            };
            let found = diagnose(BACKEND, observed, &webhook_mode());
            let expected = expected.map(|(detail, fix)| Cause {
                detail: detail.into(),
                fix: fix.into(),
            });
            assert_eq!(found, expected, "{case}");
        }
    }

    #[test]
    fn install_fixes_keep_doctors_mode_and_name() {
        let pull = pod(
            "p",
            false,
            json!({"name": "webhook", "image": IMAGE, "state": {"waiting": {"reason": "ErrImagePull"}}}),
        );
        for fixes in modes() {
            for pods in [vec![], vec![pull.clone()]] {
                let deployment = (!pods.is_empty()).then(|| deployment(2));
                let observed = Observed {
                    deployment: deployment.as_ref(),
                    pods: &pods,
                    ready_endpoints: Some(0),
                };
                let cause = diagnose(BACKEND, observed, &fixes).unwrap();
                let commands = install_commands(&cause.fix);
                assert_eq!(commands.len(), 1, "{}", cause.fix);
                assert_eq!(
                    accepted_by_install(&commands[0]),
                    fixes.admission,
                    "{}",
                    cause.fix
                );
            }
        }
    }

    #[test]
    fn a_long_message_stays_one_capped_line() {
        let long = "x".repeat(500);
        let line = one_line(&json!(format!("\n  {long}\nsecond"))).unwrap();
        assert_eq!(line.chars().count(), MESSAGE_CAP + 1);
        assert!(line.ends_with('…'));
        assert_eq!(one_line(&json!("  \n")), None);
        assert_eq!(one_line(&Value::Null), None);
    }
}
