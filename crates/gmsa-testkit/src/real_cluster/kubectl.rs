//! Driving the cluster with kubectl, as a user would, each call bounded.

use std::io::{self, Write};
use std::path::Path;
use std::process::{Command, ExitStatus, Output, Stdio};

use super::https::REQUEST_TIMEOUT;
use super::{ClusterError, RealCluster, KUBECTL_PATH};

impl RealCluster {
    /// Runs `/usr/bin/kubectl` as the admin with `args`, feeding `stdin` when given.
    /// Every call is bounded by a 30 s request timeout.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        self.kubectl_as(&self.admin_kubeconfig, args, stdin)
    }

    /// Runs kubectl with another kubeconfig (e.g. [`RealCluster::webhook_kubeconfig`]).
    pub fn kubectl_as(&self, kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
        let mut command = Command::new(KUBECTL_PATH);
        command
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg(format!(
                "--cache-dir={}",
                self.dir_path.join("kubectl-cache").display()
            ))
            .arg(format!("--request-timeout={}s", REQUEST_TIMEOUT.as_secs()))
            .args(args)
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut run = || -> io::Result<Output> {
            let mut child = command.spawn()?;
            if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
                pipe.write_all(input.as_bytes())?;
            }
            child.wait_with_output()
        };
        run().unwrap_or_else(|e| Output {
            status: failed_status(),
            stdout: Vec::new(),
            stderr: format!("could not run {KUBECTL_PATH}: {e}").into_bytes(),
        })
    }

    /// Like [`RealCluster::kubectl`], but a failure is an error carrying kubectl's stderr;
    /// returns stdout.
    pub fn kubectl_ok(&self, args: &[&str], stdin: Option<&str>) -> Result<String, ClusterError> {
        let output = self.kubectl(args, stdin);
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(ClusterError::Kubectl {
                args: args.join(" "),
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            })
        }
    }

    /// `kubectl apply -f -` with `manifest` (YAML or JSON) as the admin.
    pub fn apply(&self, manifest: &str) -> Result<String, ClusterError> {
        self.kubectl_ok(&["apply", "-f", "-"], Some(manifest))
    }

    /// Applies a CustomResourceDefinition (`manifest`, YAML or JSON) and waits (60 s) until the
    /// API server serves it, so objects of its kind can be created right after.
    pub fn apply_crd(&self, manifest: &str) -> Result<(), ClusterError> {
        let name = self.kubectl_ok(&["apply", "-f", "-", "-o", "name"], Some(manifest))?;
        self.kubectl_ok(
            &[
                "wait",
                "--for=condition=established",
                "--timeout=60s",
                name.trim(),
            ],
            None,
        )?;
        // Established is not yet served: the kind's handler answers 503 for a moment. A list
        // goes through the same handler.
        let resource = name
            .trim()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            match self.kubectl_ok(&["get", &resource, "-A", "-o", "name"], None) {
                Ok(_) => return Ok(()),
                Err(e) if std::time::Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(200)),
            }
        }
    }

    /// Creates `namespace` (if missing) and a ServiceAccount in it that mounts no token
    /// (there is no controller-manager to create token secrets).
    pub fn create_service_account(&self, namespace: &str, name: &str) -> Result<(), ClusterError> {
        let manifest = format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {namespace}\n---\n\
             apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {name}\n  namespace: {namespace}\n\
             automountServiceAccountToken: false\n"
        );
        self.apply(&manifest).map(drop)
    }
}

/// An exit status that reads as a failure, for a kubectl that could not even start.
fn failed_status() -> ExitStatus {
    std::os::unix::process::ExitStatusExt::from_raw(1 << 8)
}
