//! Running the built `kubectl-gmsa` binary on files in a temporary directory.

#![allow(dead_code, clippy::unwrap_used)] // shared by several test binaries; tests may panic

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// What one run printed and how it ended.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The stdout's YAML documents.
    pub fn docs(&self) -> Vec<Value> {
        serde_saphyr::from_multiple(&self.stdout).unwrap()
    }
}

/// A file of `tests/data`.
pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// Runs the binary in `dir` with `args`, feeding `stdin`, with extra environment.
pub fn run_env(dir: &Path, args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubectl-gmsa"));
    cmd.args(args)
        .current_dir(dir)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// Runs the binary against the cluster of `kubeconfig` (a loopback or node address: no proxy).
pub fn on_cluster(kubeconfig: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-gmsa"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// [`on_cluster`] that must exit 0; otherwise panics with what it printed and `context`.
pub fn on_cluster_ok(kubeconfig: &Path, args: &[&str], context: &str) -> Run {
    let run = on_cluster(kubeconfig, args);
    assert_eq!(
        run.code,
        0,
        "kubectl-gmsa {}\nstdout:\n{}\nstderr:\n{}\n{context}",
        args.join(" "),
        run.stdout,
        run.stderr
    );
    run
}

/// Runs the binary in `dir` with `args`.
pub fn run(dir: &Path, args: &[&str]) -> Run {
    run_env(dir, args, None, &[])
}

/// Runs the binary in `dir` with `args` and `stdin`.
pub fn run_stdin(dir: &Path, args: &[&str], stdin: &[u8]) -> Run {
    run_env(dir, args, Some(stdin), &[])
}

/// Copies a `tests/data` file (or directory, one level) into `dir`.
pub fn copy_data(name: &str, dir: &Path) -> PathBuf {
    let from = data(name);
    let to = dir.join(name);
    if from.is_dir() {
        std::fs::create_dir_all(&to).unwrap();
        for entry in std::fs::read_dir(&from).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    } else {
        std::fs::copy(&from, &to).unwrap();
    }
    to
}

/// Checks built-in objects with `kubernetes-validate --strict` (PyPI `kubernetes-validate`).
pub fn kubernetes_validate_strict(file: &Path) {
    let out = Command::new("kubernetes-validate")
        .arg("--strict")
        .arg(file)
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) => panic!(
            "cannot run kubernetes-validate ({e}): install it with `pip install kubernetes-validate` \
             (hack/test.sh does); this test checks our manifests against the Kubernetes schemas"
        ),
    };
    assert!(
        out.status.success(),
        "kubernetes-validate --strict refused {}:\n{}{}",
        file.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `doctor -o json` finding for `check` about `subject`.
pub fn find<'f>(findings: &'f [Value], check: &str, subject: &str) -> Option<&'f Value> {
    findings
        .iter()
        .find(|f| f["check"] == check && f["subject"] == subject)
}

/// Asserts one finding's status, that its detail says `detail_has`, and that a finding that
/// does not pass carries a fix; returns it.
pub fn expect(
    findings: &[Value],
    check: &str,
    subject: &str,
    status: &str,
    detail_has: &str,
) -> Value {
    let found = find(findings, check, subject)
        .unwrap_or_else(|| {
            panic!(
                "no {check} finding for {subject:?} in:\n{}",
                serde_json::to_string_pretty(findings).unwrap()
            )
        })
        .clone();
    assert_eq!(found["status"], status, "{found:#}");
    let detail = found["detail"].as_str().unwrap();
    assert!(
        detail.contains(detail_has),
        "{check} {subject}: {detail:?} lacks {detail_has:?}"
    );
    if status != "pass" {
        assert!(
            found["fix"].as_str().is_some_and(|f| !f.is_empty()),
            "{found:#}"
        );
    }
    found
}
