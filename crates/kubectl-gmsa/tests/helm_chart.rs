//! The Helm chart (`charts/gmsa-webhook`) against `kubectl gmsa install -o -`: for the same
//! settings both produce the same objects, compared parsed, certificate bytes aside (each run
//! makes its own). Also `helm lint`, `kubernetes-validate --strict` over the chart's output,
//! and `helm install`/`upgrade` on a real kube-apiserver, where `lookup` reads the live Secret.
//! The chart's admission policies template is generated from gmsa-deploy
//! (`helm_chart/policy_template.rs`), and a test fails when it is not what that generates now.
//!
//! helm comes from `hack/install-helm.sh` (cached under ~/.cache/gmsa-k8s/helm), or `GMSA_HELM`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

#[path = "helm_chart/policy_template.rs"]
mod policy_template;
mod support;

#[path = "support/helm.rs"]
mod helm;

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use helm::{chart, helm_command, run_helm_on};
use serde_json::Value;
use support::kubernetes_validate_strict;

/// Runs helm with its state in a temporary directory, so nothing of the user's is read.
fn run_helm(home: &Path, args: &[&str]) -> String {
    run_helm_on(home, None, args)
}

/// Runs helm where it must fail; its stderr.
fn helm_refuses(home: &Path, args: &[&str]) -> String {
    let out = helm_command(home, args).output().expect("run helm");
    assert!(
        !out.status.success(),
        "helm {} succeeded:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).unwrap()
}

fn run_install(dir: &Path, args: &[&str]) -> String {
    let mut all = vec!["install", "-o", "-"];
    all.extend_from_slice(args);
    let out = support::run(dir, &all);
    assert_eq!(out.code, 0, "install {}: {}", all.join(" "), out.stderr);
    out.stdout
}

/// `Kind/namespace/name` → object, certificate bytes replaced unless `keep_ca_bundle`.
fn objects(yaml: &str, keep_ca_bundle: bool) -> BTreeMap<String, Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml).unwrap();
    let mut out = BTreeMap::new();
    for mut doc in docs.into_iter().filter(|d| d.is_object()) {
        if doc["kind"] == "Secret" {
            for (_, v) in doc["data"].as_object_mut().unwrap().iter_mut() {
                *v = Value::String("<bytes>".into());
            }
        }
        if !keep_ca_bundle {
            if let Some(hooks) = doc["webhooks"].as_array_mut() {
                for hook in hooks {
                    if let Some(config) = hook["clientConfig"].as_object_mut() {
                        if config.contains_key("caBundle") {
                            config.insert("caBundle".into(), Value::String("<bytes>".into()));
                        }
                    }
                }
            }
        }
        let key = format!(
            "{}/{}/{}",
            doc["kind"].as_str().unwrap(),
            doc["metadata"]["namespace"].as_str().unwrap_or(""),
            doc["metadata"]["name"].as_str().unwrap()
        );
        out.insert(key, doc);
    }
    out
}

fn assert_same(case: &str, helm: &BTreeMap<String, Value>, cli: &BTreeMap<String, Value>) {
    let helm_keys: Vec<&String> = helm.keys().collect();
    let cli_keys: Vec<&String> = cli.keys().collect();
    assert_eq!(helm_keys, cli_keys, "{case}: different objects");
    for (key, expected) in cli {
        let got = &helm[key];
        assert!(
            got == expected,
            "{case}: {key} differs\n--- helm ---\n{}\n--- install ---\n{}",
            serde_json::to_string_pretty(got).unwrap(),
            serde_json::to_string_pretty(expected).unwrap()
        );
    }
}

struct Case {
    name: &'static str,
    namespace: &'static str,
    kube: &'static str,
    cli: Vec<String>,
    helm: Vec<String>,
}

fn case(
    name: &'static str,
    namespace: &'static str,
    kube: &'static str,
    cli: &[&str],
    set: &[&str],
) -> Case {
    let mut helm = vec![format!("--set=namespace.create=true")];
    // `file:KEY=PATH` sets KEY to the file's contents (`--set-file`).
    helm.extend(set.iter().map(|s| match s.strip_prefix("file:") {
        Some(file) => format!("--set-file={file}"),
        None => format!("--set={s}"),
    }));
    Case {
        name,
        namespace,
        kube,
        cli: cli.iter().map(|s| s.to_string()).collect(),
        helm,
    }
}

#[test]
fn chart_renders_what_install_renders() {
    let dir = tempfile::tempdir().unwrap();
    let ca = gmsa_tls::CertificateAuthority::generate(
        "test CA",
        gmsa_tls::Validity::starting_now(time::Duration::days(30)),
    )
    .unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.cert_pem()).unwrap();
    let ca_b64 = base64::engine::general_purpose::STANDARD.encode(ca.cert_pem());
    let ca_set = format!("certificates.caBundle={ca_b64}");
    // --set-file keeps the PEM's newlines exactly as install reads them.
    let client_ca_set = format!("file:clientCA={}", dir.path().join("ca.pem").display());
    let cases = [
        case("defaults, Kubernetes 1.30", "gmsa-system", "1.30", &[], &[]),
        case("defaults, Kubernetes 1.20", "gmsa-system", "1.20", &[], &[]),
        case("defaults, Kubernetes 1.28", "gmsa-system", "1.28", &[], &[]),
        case(
            "cert-manager and every option",
            "windows-gmsa",
            "1.31",
            &[
                "--name",
                "gmsa",
                "--certs",
                "cert-manager",
                "--random-hostname",
                "--replicas",
                "3",
                "--image",
                "registry.example/gmsa-webhook:1.2.3",
                "--qps",
                "20",
                "--burst",
                "40",
                "--aggregate-to-view",
                "--no-pdb",
                "--node-setup",
                "--match-conditions",
                "off",
                "--authorization",
                "api",
                "--prometheus-rule",
            ],
            &[
                "name=gmsa",
                "certificates.mode=certManager",
                "randomHostname=true",
                "replicas=3",
                "image.repository=registry.example/gmsa-webhook",
                "image.tag=1.2.3",
                "qps=20",
                "burst=40",
                "aggregateToView=true",
                "pdb.enabled=false",
                "nodeSetup.enabled=true",
                "matchConditions=false",
                "authorization=api",
                "prometheusRule.enabled=true",
            ],
        ),
        case(
            "an existing Secret",
            "gmsa-system",
            "1.29",
            &["--certs", "secret:my-tls", "--ca-bundle", "ca.pem"],
            &[
                "certificates.mode=secret",
                "certificates.secretName=my-tls",
                &ca_set,
            ],
        ),
        case(
            "a client CA, with authorization api",
            "gmsa-system",
            "1.30",
            &["--client-ca", "ca.pem", "--authorization", "api"],
            &[&client_ca_set, "authorization=api"],
        ),
        case(
            "policies, defaults, Kubernetes 1.36",
            "gmsa-system",
            "1.36",
            &["--admission", "policies"],
            &["admission=policies"],
        ),
        // The webhook's options are given too: both leave out the same ones.
        case(
            "policies and every option",
            "windows-gmsa",
            "1.37",
            &[
                "--admission",
                "policies",
                "--name",
                "gmsa",
                "--replicas",
                "3",
                "--image",
                "registry.example/gmsa-webhook:1.2.3",
                "--aggregate-to-view",
                "--certs",
                "cert-manager",
                "--qps",
                "20",
                "--burst",
                "40",
                "--no-pdb",
                "--node-setup",
                "--match-conditions",
                "off",
                "--authorization",
                "api",
                "--prometheus-rule",
                "--client-ca",
                "ca.pem",
            ],
            &[
                "admission=policies",
                "name=gmsa",
                "replicas=3",
                "image.repository=registry.example/gmsa-webhook",
                "image.tag=1.2.3",
                "aggregateToView=true",
                "certificates.mode=certManager",
                "qps=20",
                "burst=40",
                "pdb.enabled=false",
                "nodeSetup.enabled=true",
                "matchConditions=false",
                "authorization=api",
                "prometheusRule.enabled=true",
                &client_ca_set,
            ],
        ),
    ];
    let home = dir.path().join("helm-home");
    let chart = chart();
    let chart = chart.to_str().unwrap();
    for case in &cases {
        let mut cli: Vec<&str> = vec!["--namespace", case.namespace, "--kube-version", case.kube];
        cli.extend(case.cli.iter().map(String::as_str));
        let installed = run_install(dir.path(), &cli);
        let kube = format!("{}.0", case.kube);
        let mut args = vec![
            "template",
            "gmsa-webhook",
            chart,
            "--namespace",
            case.namespace,
            "--include-crds",
            "--kube-version",
            &kube,
        ];
        args.extend(case.helm.iter().map(String::as_str));
        let rendered = run_helm(&home, &args);
        let keep_ca = case.name == "an existing Secret";
        assert_same(
            case.name,
            &objects(&rendered, keep_ca),
            &objects(&installed, keep_ca),
        );
    }
}

/// Both modes lint clean, and their objects pass kubernetes-validate's schemas (which have
/// the admissionregistration.k8s.io/v1 policies from 1.36 on).
#[test]
fn chart_lints_and_passes_schema_validation() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("helm-home");
    let chart = chart();
    let chart = chart.to_str().unwrap();
    let out = run_helm(&home, &["lint", "--strict", chart]);
    assert!(out.contains("0 chart(s) failed"), "{out}");
    let policies = [
        "--kube-version",
        "1.36.0",
        "--set",
        "admission=policies,namespace.create=true,aggregateToView=true",
    ];
    let mut lint = vec!["lint", "--strict", chart];
    lint.extend(policies);
    let out = run_helm(&home, &lint);
    assert!(out.contains("0 chart(s) failed"), "{out}");
    let mut template = vec![
        "template",
        "gmsa-webhook",
        chart,
        "--namespace",
        "gmsa-system",
    ];
    template.extend(policies);
    let rendered = run_helm(&home, &template);
    assert!(
        rendered.contains("kind: MutatingAdmissionPolicy\n"),
        "{rendered}"
    );
    let file = dir.path().join("chart-policies.yaml");
    std::fs::write(&file, rendered).unwrap();
    kubernetes_validate_strict(&file);
    let rendered = run_helm(
        &home,
        &[
            "template",
            "gmsa-webhook",
            chart,
            "--namespace",
            "gmsa-system",
            "--kube-version",
            "1.30.0",
            "--set",
            "namespace.create=true,nodeSetup.enabled=true,aggregateToView=true",
        ],
    );
    let file = dir.path().join("chart.yaml");
    std::fs::write(&file, rendered).unwrap();
    kubernetes_validate_strict(&file);
}

/// Policy mode needs Kubernetes 1.36, and the chart says so as install does.
#[test]
fn chart_refuses_policies_before_1_36() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("helm-home");
    let chart = chart();
    let args = [
        "template",
        "gmsa-webhook",
        chart.to_str().unwrap(),
        "--kube-version",
        "1.35.0",
        "--set",
        "admission=policies",
    ];
    let err = helm_refuses(&home, &args);
    assert!(err.contains("Kubernetes 1.36 or later"), "{err}");
    let out = support::run(
        dir.path(),
        &[
            "install",
            "--admission",
            "policies",
            "--kube-version",
            "1.35",
        ],
    );
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("Kubernetes 1.36 or later"),
        "{}",
        out.stderr
    );
    let args = [
        "template",
        "gmsa-webhook",
        chart.to_str().unwrap(),
        "--set",
        "admission=policy",
    ];
    let err = helm_refuses(&home, &args);
    assert!(
        err.contains("admission must be webhook or policies"),
        "{err}"
    );
}

/// `templates/admission-policies.yaml` is what gmsa-deploy renders now; with
/// `GMSA_WRITE_CHART=1` this test rewrites it instead.
#[test]
fn admission_policies_template_is_generated() {
    let path = chart().join(policy_template::PATH);
    let want = policy_template::generate();
    if std::env::var_os(policy_template::WRITE_ENV).is_some_and(|v| v == "1") {
        // Renamed into place, so tests reading the chart meanwhile see one file or the other.
        let partial = path.with_extension("yaml.partial");
        std::fs::write(&partial, &want).unwrap();
        std::fs::rename(&partial, &path).unwrap();
        eprintln!("wrote {}", path.display());
        return;
    }
    let got = std::fs::read_to_string(&path).unwrap_or_default();
    if got != want {
        let clip = |line: Option<&str>| match line {
            None => "(end of file)".to_string(),
            Some(l) => l.chars().take(160).collect(),
        };
        let lines = got.lines().count().max(want.lines().count());
        let line = (0..lines)
            .find(|&i| got.lines().nth(i) != want.lines().nth(i))
            .unwrap_or(lines);
        panic!(
            "charts/gmsa-webhook/{} is not what gmsa-deploy renders now (first difference on line {}):\n  file:      {}\n  generated: {}\nRegenerate it with\n  {}\nand commit it.",
            policy_template::PATH,
            line + 1,
            clip(got.lines().nth(line)),
            clip(want.lines().nth(line)),
            policy_template::regenerate_command()
        );
    }
}

#[test]
fn install_output_passes_schema_validation() {
    let dir = tempfile::tempdir().unwrap();
    let rendered = run_install(
        dir.path(),
        &[
            "--node-setup",
            "--aggregate-to-view",
            "--random-hostname",
            "--kube-version",
            "1.30",
        ],
    );
    let file = dir.path().join("install.yaml");
    std::fs::write(&file, rendered).unwrap();
    kubernetes_validate_strict(&file);
    let cert_manager = run_install(dir.path(), &["--certs", "cert-manager"]);
    assert!(cert_manager.contains("cert-manager.io/inject-ca-from: gmsa-system/gmsa-webhook-ca"));
}

/// Offline rendering says which Kubernetes version it chose.
#[test]
fn offline_rendering_names_its_kubernetes_version() {
    let dir = tempfile::tempdir().unwrap();
    let out = support::run(dir.path(), &["install"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("rendering for Kubernetes 1.30"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.contains("matchConditions"));
}

/// `helm upgrade` on a real API server (its `lookup` reads the live Secret) keeps a renewal the
/// replicas have under way: the staged pair, the previous CA and its deadline stay in the
/// Secret, and every caBundle trusts the current, staged and previous CAs.
#[test]
fn helm_upgrade_keeps_a_renewal_under_way() {
    use gmsa_testkit::real_cluster::{skip_requested, RealCluster, ServerVersion, SKIP_ENV};
    use gmsa_tls::self_signed::{pem_blocks, Pair, Policy, PREVIOUS_CA_UNTIL_ANNOTATION};

    if skip_requested() {
        eprintln!("skipped: {SKIP_ENV}=1");
        return;
    }
    let cluster = RealCluster::start(ServerVersion::Current).unwrap_or_else(|e| panic!("{e}"));
    let home = tempfile::tempdir().unwrap();
    let helm = |args: &[&str]| {
        run_helm_on(home.path(), Some(cluster.admin_kubeconfig()), args);
    };
    let chart = chart().display().to_string();
    let release = ["gmsa", chart.as_str(), "-n", "gmsa-system"];
    let mut install = vec!["install"];
    install.extend(release);
    install.push("--create-namespace");
    helm(&install);
    let json = |args: &[&str]| -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&cluster.kubectl_ok(&all, None).unwrap()).unwrap()
    };
    let decode = |b64: &Value| {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap_or(""))
            .unwrap();
        String::from_utf8(bytes).unwrap()
    };
    let secret = json(&["get", "secret", "-n", "gmsa-system", "gmsa-webhook-tls"]);
    let installed_ca = decode(&secret["data"]["ca.crt"]);
    assert_eq!(pem_blocks(&installed_ca).len(), 1);

    // What a renewal leaves between its steps: a staged pair, and a previous CA in grace.
    let staged = Pair::issue(&["gmsa-webhook.gmsa-system.svc".into()], &Policy::default()).unwrap();
    let previous =
        Pair::issue(&["gmsa-webhook.gmsa-system.svc".into()], &Policy::default()).unwrap();
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let until = "2099-01-01T00:00:00Z";
    let patch = serde_json::json!({
        "metadata": {"annotations": {PREVIOUS_CA_UNTIL_ANNOTATION: until}},
        "data": {
            "next-ca.crt": b64(&staged.ca_pem),
            "next-tls.crt": b64(&staged.cert_pem),
            "next-tls.key": b64(&staged.key_pem),
            "previous-ca.crt": b64(&previous.ca_pem),
        }
    });
    cluster
        .kubectl_ok(
            &[
                "patch",
                "secret",
                "-n",
                "gmsa-system",
                "gmsa-webhook-tls",
                "--type=merge",
                "-p",
                &patch.to_string(),
            ],
            None,
        )
        .unwrap();
    let before = json(&["get", "secret", "-n", "gmsa-system", "gmsa-webhook-tls"]);

    let mut upgrade = vec!["upgrade"];
    upgrade.extend(release);
    helm(&upgrade);
    let after = json(&["get", "secret", "-n", "gmsa-system", "gmsa-webhook-tls"]);
    assert_eq!(after["data"], before["data"], "the Secret is kept whole");
    assert_eq!(
        after["metadata"]["annotations"][PREVIOUS_CA_UNTIL_ANNOTATION],
        until
    );
    let mut want = pem_blocks(&installed_ca);
    want.extend(pem_blocks(&staged.ca_pem));
    want.extend(pem_blocks(&previous.ca_pem));
    for kind in [
        "mutatingwebhookconfiguration",
        "validatingwebhookconfiguration",
    ] {
        let config = json(&["get", kind, "gmsa-webhook-admission"]);
        for hook in config["webhooks"].as_array().unwrap() {
            assert_eq!(
                pem_blocks(&decode(&hook["clientConfig"]["caBundle"])),
                want,
                "{kind} {}",
                hook["name"]
            );
        }
    }
}

/// Whether `live` holds everything in `sent`: what the API server stores adds defaults and
/// metadata, and changes nothing it was given.
fn holds(live: &Value, sent: &Value) -> bool {
    match (live, sent) {
        (Value::Object(live), Value::Object(sent)) => sent
            .iter()
            .all(|(k, v)| live.get(k).is_some_and(|l| holds(l, v))),
        (Value::Array(live), Value::Array(sent)) => {
            live.len() == sent.len() && live.iter().zip(sent).all(|(l, s)| holds(l, s))
        }
        _ => live == sent,
    }
}

/// `helm install --set admission=policies` on a real API server: it accepts the policies (it
/// compiles their CEL on create) and stores what install renders, so Go's reading of the
/// generated template's YAML is the same as ours.
#[test]
fn helm_installs_the_policies_on_a_real_server() {
    use gmsa_testkit::real_cluster::{skip_requested, RealCluster, ServerVersion, SKIP_ENV};

    if skip_requested() {
        eprintln!("skipped: {SKIP_ENV}=1");
        return;
    }
    let cluster = RealCluster::start(ServerVersion::Current).unwrap_or_else(|e| panic!("{e}"));
    let home = tempfile::tempdir().unwrap();
    let chart = chart().display().to_string();
    run_helm_on(
        home.path(),
        Some(cluster.admin_kubeconfig()),
        &[
            "install",
            "gmsa",
            &chart,
            "-n",
            "gmsa-system",
            "--create-namespace",
            "--set",
            "admission=policies",
        ],
    );
    let settings = gmsa_deploy::Settings {
        admission: gmsa_deploy::Admission::Policies,
        kube_version: gmsa_deploy::KubeVersion::new(1, cluster.version().minor()),
        ..gmsa_deploy::Settings::default()
    };
    let sent = policy_template::policy_objects(&settings);
    assert_eq!(
        sent.len(),
        11,
        "the published contents' CRD, five policies and their bindings"
    );
    for object in &sent {
        let kind = gmsa_deploy::Kind::of(
            object["apiVersion"].as_str().unwrap(),
            object["kind"].as_str().unwrap(),
        );
        let info = kind.unwrap().info();
        let name = object["metadata"]["name"].as_str().unwrap();
        let live = cluster
            .kubectl_ok(&["get", info.plural, name, "-o", "json"], None)
            .unwrap();
        let live: Value = serde_json::from_str(&live).unwrap();
        assert!(
            holds(&live, object),
            "{} {name} as stored differs from install's\n--- stored ---\n{}\n--- install ---\n{}",
            info.kind,
            serde_json::to_string_pretty(&live).unwrap(),
            serde_json::to_string_pretty(object).unwrap()
        );
    }
}
