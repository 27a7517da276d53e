//! `kubectl gmsa credspec new|convert|validate`, run as the built binary on files in a
//! temporary directory.

#![allow(clippy::unwrap_used)] // tests may panic

mod support;

use serde_json::{json, Value};
use support::{copy_data, data, run, run_stdin};

const NEW_WEBAPP1: &[&str] = &[
    "credspec",
    "new",
    "gmsa-webapp1",
    "--account",
    "WebApp1",
    "--domain",
    "contoso.com",
    "--netbios",
    "CONTOSO",
    "--domain-guid",
    "244818ae-87ac-4fcd-92ec-e79e5252348a",
    "--domain-sid",
    "S-1-5-21-2126449477-2524075714-3094792973",
];

/// What New-CredentialSpec writes for the documentation's WebApp1 in contoso.com
/// (`tests/data/contoso_webapp1.json`: ConvertTo-Json layout, CRLF line ends).
fn new_credential_spec_json() -> Value {
    let text = std::fs::read_to_string(data("contoso_webapp1.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn webapp1_resource() -> Value {
    json!({
        "apiVersion": "windows.k8s.io/v1",
        "kind": "GMSACredentialSpec",
        "metadata": {"name": "gmsa-webapp1"},
        "credspec": new_credential_spec_json(),
    })
}

fn args<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    base.iter().chain(extra).copied().collect()
}

/// `base` with flags replaced (or added) by `changes`, given as flag, value pairs.
fn with<'a>(base: &[&'a str], changes: &[&'a str]) -> Vec<&'a str> {
    let mut out = base.to_vec();
    for pair in changes.chunks(2) {
        match out.iter().position(|a| *a == pair[0]) {
            Some(i) if pair[0] != "--additional-account" => out[i + 1] = pair[1],
            _ => out.extend_from_slice(pair),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// new
// ---------------------------------------------------------------------------------------------

#[test]
fn new_writes_what_new_credential_spec_writes() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), NEW_WEBAPP1);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.docs(), [webapp1_resource()]);
    // The credspec is the JSON New-CredentialSpec wrote, account order included.
    assert_eq!(out.docs()[0]["credspec"], new_credential_spec_json());
    assert!(
        out.stdout.starts_with(
            "apiVersion: windows.k8s.io/v1\nkind: GMSACredentialSpec\nmetadata:\n  name: gmsa-webapp1\ncredspec:\n"
        ),
        "{}",
        out.stdout
    );
}

#[test]
fn apply_with_a_client_dry_run_only_prints() {
    let dir = tempfile::tempdir().unwrap();
    let plain = run(dir.path(), NEW_WEBAPP1);
    let dry = run(
        dir.path(),
        &args(NEW_WEBAPP1, &["--apply", "--dry-run=client"]),
    );
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert_eq!(dry.stdout, plain.stdout);
    let refused = run(dir.path(), &args(NEW_WEBAPP1, &["--dry-run=server"]));
    assert_eq!(refused.code, 2, "--dry-run needs --apply");
}

#[test]
fn new_with_forest_additional_accounts_and_ccg() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        dir.path(),
        &with(
            NEW_WEBAPP1,
            &[
                "--account",
                "WebApp1$",
                "--forest",
                "corp.contoso.com",
                "--additional-account",
                "LogReader",
                "--additional-account",
                "Reports$@fabrikam.com",
                "--ccg-plugin-guid",
                "859e1386-bdb4-49e8-85c7-3070b13920e1",
                "--ccg-plugin-input",
                "contoso.com:gmsa-secret",
            ],
        ),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let credspec = &out.docs()[0]["credspec"];
    assert_eq!(
        credspec["DomainJoinConfig"]["DnsTreeName"],
        "corp.contoso.com"
    );
    assert_eq!(
        credspec["DomainJoinConfig"]["MachineAccountName"],
        "WebApp1"
    );
    assert_eq!(
        credspec["ActiveDirectoryConfig"],
        json!({
            "GroupManagedServiceAccounts": [
                {"Name": "WebApp1", "Scope": "contoso.com"},
                {"Name": "WebApp1", "Scope": "CONTOSO"},
                {"Name": "LogReader", "Scope": "contoso.com"},
                {"Name": "Reports", "Scope": "fabrikam.com"}
            ],
            "HostAccountConfig": {
                "PortableCcgVersion": "1",
                "PluginGUID": "{859E1386-BDB4-49E8-85C7-3070B13920E1}",
                "PluginInput": "contoso.com:gmsa-secret"
            }
        })
    );
    // A plugin needs both its GUID and its input.
    let out = run(
        dir.path(),
        &args(
            NEW_WEBAPP1,
            &["--ccg-plugin-guid", "859e1386-bdb4-49e8-85c7-3070b13920e1"],
        ),
    );
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("--ccg-plugin-input"), "{}", out.stderr);
}

#[test]
fn new_refuses_bad_inputs_naming_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let mut docs_name = NEW_WEBAPP1.to_vec();
    docs_name[2] = "gmsa-WebApp1";
    let cases: [(Vec<&str>, &[&str]); 6] = [
        (
            docs_name,
            &[
                r#"error: NAME "gmsa-WebApp1" is not a valid Kubernetes name"#,
                r#"use "gmsa-webapp1""#,
                "documentation names its example gmsa-WebApp1",
            ],
        ),
        (
            with(NEW_WEBAPP1, &["--domain-guid", "244818ae-87ac-4fcd-92ec"]),
            &[r#"error: --domain-guid: "244818ae-87ac-4fcd-92ec" is not a GUID"#],
        ),
        (
            with(NEW_WEBAPP1, &["--domain-sid", "S-1-5-21-2126449477-x"]),
            &[r#"error: --domain-sid: "S-1-5-21-2126449477-x" is not a SID"#],
        ),
        (
            with(
                NEW_WEBAPP1,
                &[
                    "--domain-sid",
                    "S-1-5-21-2126449477-2524075714-3094792973-1105",
                ],
            ),
            &["use the domain's SID S-1-5-21-2126449477-2524075714-3094792973"],
        ),
        (
            with(NEW_WEBAPP1, &["--netbios", "CONTOSOCORPORATE"]),
            &[
                r#"error: --netbios: "CONTOSOCORPORATE" has 16 characters: NetBIOS domain names have at most 15"#,
            ],
        ),
        (
            with(NEW_WEBAPP1, &["--additional-account", "Log@not a domain"]),
            &[
                r#"error: --additional-account (#1) domain: "not a domain" is not a DNS domain name"#,
            ],
        ),
    ];
    for (argv, expected) in cases {
        let out = run(dir.path(), &argv);
        assert_eq!(out.code, 2, "{argv:?}: {}", out.stderr);
        assert_eq!(out.stdout, "", "{argv:?}");
        for e in expected {
            assert!(
                out.stderr.contains(e),
                "{argv:?}: {:?} lacks {e:?}",
                out.stderr
            );
        }
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    }
}

#[test]
fn new_never_overwrites_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("spec.yaml");
    std::fs::write(&file, "keep me\n").unwrap();
    let out = run(dir.path(), &args(NEW_WEBAPP1, &["-o", "spec.yaml"]));
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("spec.yaml already exists: pass --force to overwrite it"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me\n");

    let out = run(
        dir.path(),
        &args(NEW_WEBAPP1, &["-o", "spec.yaml", "--force"]),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "");
    let written: Vec<Value> =
        serde_saphyr::from_multiple(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(written, [webapp1_resource()]);

    let out = run(dir.path(), &args(NEW_WEBAPP1, &["-o", "new.yaml"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(dir.path().join("new.yaml").is_file());
}

// ---------------------------------------------------------------------------------------------
// convert
// ---------------------------------------------------------------------------------------------

/// The same file in the encodings PowerShell writes.
fn encodings() -> Vec<(&'static str, Vec<u8>)> {
    let crlf = std::fs::read_to_string(data("contoso_webapp1.json")).unwrap();
    assert!(crlf.contains("\r\n"), "the fixture keeps PowerShell's CRLF");
    let lf = crlf.replace("\r\n", "\n");
    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend(crlf.as_bytes());
    let mut utf16 = vec![0xFF, 0xFE];
    utf16.extend(crlf.encode_utf16().flat_map(u16::to_le_bytes));
    // Keys in another order, as a hashtable may come out.
    let reordered = serde_json::to_string_pretty(&new_credential_spec_json()).unwrap();
    vec![
        ("crlf.json", crlf.into_bytes()),
        ("lf.json", lf.into_bytes()),
        ("bom.json", bom),
        ("utf16.json", utf16),
        ("sorted.json", reordered.into_bytes()),
    ]
}

#[test]
fn convert_reads_every_encoding_powershell_writes() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in encodings() {
        std::fs::write(dir.path().join(name), &bytes).unwrap();
        let out = run(
            dir.path(),
            &["credspec", "convert", name, "--name", "gmsa-webapp1"],
        );
        assert_eq!(out.code, 0, "{name}: {}", out.stderr);
        assert_eq!(out.docs(), [webapp1_resource()], "{name}");
    }
    let (_, utf16) = encodings().remove(3);
    let out = run_stdin(
        dir.path(),
        &["credspec", "convert", "-", "--name", "gmsa-webapp1"],
        &utf16,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.docs(), [webapp1_resource()]);
}

#[test]
fn convert_writes_files_with_force_rules() {
    let dir = tempfile::tempdir().unwrap();
    copy_data("contoso_webapp1.json", dir.path());
    let argv = [
        "credspec",
        "convert",
        "contoso_webapp1.json",
        "--name",
        "gmsa-webapp1",
        "-o",
        "out.yaml",
    ];
    assert_eq!(run(dir.path(), &argv).code, 0);
    let out = run(dir.path(), &argv);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("--force"), "{}", out.stderr);
    assert_eq!(run(dir.path(), &args(&argv, &["--force"])).code, 0);
    let written: Vec<Value> =
        serde_saphyr::from_multiple(&std::fs::read_to_string(dir.path().join("out.yaml")).unwrap())
            .unwrap();
    assert_eq!(written, [webapp1_resource()]);
}

#[test]
fn convert_refuses_what_is_not_a_credential_spec() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write("other.json", r#"{"name": "web", "replicas": 2}"#);
    write("resource.json", &webapp1_resource().to_string());
    write("broken.json", "{\"CmsPlugins\": [");
    write(
        "partial.json",
        r#"{"CmsPlugins": ["ActiveDirectory"], "DomainJoinConfig": {}}"#,
    );
    copy_data("contoso_webapp1.json", dir.path());
    let cases: [(&[&str], &str); 6] = [
        (
            &["credspec", "convert", "other.json", "--name", "x"],
            "other.json is not a credential spec as New-CredentialSpec writes it:\n  CmsPlugins: is missing",
        ),
        (
            &["credspec", "convert", "resource.json", "--name", "x"],
            "resource.json is already a Kubernetes object",
        ),
        (
            &["credspec", "convert", "broken.json", "--name", "x"],
            "broken.json: not valid JSON",
        ),
        (
            &["credspec", "convert", "partial.json", "--name", "x"],
            "  DomainJoinConfig.DnsName: is missing",
        ),
        (
            &["credspec", "convert", "missing.json", "--name", "x"],
            "cannot read missing.json",
        ),
        (
            &["credspec", "convert", "contoso_webapp1.json", "--name", "WebApp1"],
            r#"use "webapp1""#,
        ),
    ];
    for (argv, expected) in cases {
        let out = run(dir.path(), argv);
        assert_eq!(out.code, 2, "{argv:?}");
        assert_eq!(out.stdout, "", "{argv:?}");
        assert!(out.stderr.contains(expected), "{argv:?}: {:?}", out.stderr);
    }
}

// ---------------------------------------------------------------------------------------------
// validate
// ---------------------------------------------------------------------------------------------

#[test]
fn validate_passes_good_specs() {
    let dir = tempfile::tempdir().unwrap();
    copy_data("state", dir.path());
    let out = run(
        dir.path(),
        &[
            "credspec",
            "validate",
            "state/gmsa-webapp1.yaml",
            "state/rbac.yaml",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr.contains("1 credential spec checked, 0 problems"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(
            "state/rbac.yaml: webapp1-role: skipped, a ClusterRole is not a GMSACredentialSpec"
        ),
        "{}",
        out.stderr
    );
    // What `new` writes validates.
    let new = run(dir.path(), NEW_WEBAPP1);
    let out = run_stdin(
        dir.path(),
        &["credspec", "validate", "-"],
        new.stdout.as_bytes(),
    );
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{}", out.stderr);
}

#[test]
fn validate_prints_one_line_per_problem() {
    let dir = tempfile::tempdir().unwrap();
    let specs = r#"
apiVersion: windows.k8s.io/v1
kind: GMSACredentialSpec
metadata:
  name: gmsa-WebApp1
credspec:
  ActiveDirectoryConfig:
    GroupManagedServiceAccounts:
    - {Name: WebApp1, Scope: CONTOSO}
    HostAccountConfig: {PluginGUID: "{859E1386-BDB4-49E8-85C7-3070B13920E1}"}
  CmsPlugins: [ActiveDirectory]
  DomainJoinConfig:
    DnsName: contoso.com
    DnsTreeName: contoso.com
    Guid: 244818ae-87ac-4fcd-92ec-e79e5252348a
    MachineAccountName: WebApp1
    NetBiosName: CONTOSO
    Sid: S-1-5-21-2126449477-2524075714-3094792973
---
apiVersion: windows.k8s.io/v1
kind: GMSACredentialSpec
metadata: {name: empty}
credspec: {}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: other}
"#;
    std::fs::write(dir.path().join("specs.yaml"), specs).unwrap();
    let list = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "windows.k8s.io/v1", "kind": "GMSACredentialSpec", "metadata": {"name": "guid"},
         "credspec": {"CmsPlugins": ["ActiveDirectory"],
            "DomainJoinConfig": {"DnsName": "contoso.com", "DnsTreeName": "contoso.com", "Guid": "{nope}",
                "MachineAccountName": "WebApp1", "NetBiosName": "CONTOSO", "Sid": "S-1-5-21-1-2-3"},
            "ActiveDirectoryConfig": {"GroupManagedServiceAccounts": [{"Name": "WebApp1", "Scope": "contoso.com"}]}}}
    ]});
    std::fs::write(dir.path().join("list.json"), list.to_string()).unwrap();
    copy_data("contoso_webapp1.json", dir.path());

    let out = run(
        dir.path(),
        &[
            "credspec",
            "validate",
            "specs.yaml",
            "list.json",
            "contoso_webapp1.json",
        ],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            r#"specs.yaml: gmsa-WebApp1: metadata.name: "gmsa-WebApp1" is not a valid Kubernetes name: names are lowercase DNS-1123 subdomains (a-z, 0-9, '-' and '.', starting and ending with a letter or digit, at most 253 characters); use "gmsa-webapp1""#,
            r#"specs.yaml: gmsa-WebApp1: warning: credspec.ActiveDirectoryConfig.GroupManagedServiceAccounts: "WebApp1" is scoped to "CONTOSO" but not to the domain's DNS name "contoso.com": add {Name: WebApp1, Scope: contoso.com}, as New-CredentialSpec does"#,
            "specs.yaml: gmsa-WebApp1: credspec.ActiveDirectoryConfig.HostAccountConfig: has PluginGUID but not PortableCcgVersion and PluginInput: a CCG plugin needs all of PortableCcgVersion, PluginGUID and PluginInput, a domain-joined host none",
            "specs.yaml: empty: credspec.CmsPlugins: is missing: write CmsPlugins: [ActiveDirectory]",
            "specs.yaml: empty: credspec.DomainJoinConfig: is missing: give DnsName, DnsTreeName, Guid, MachineAccountName, NetBiosName and Sid",
            "specs.yaml: empty: credspec.ActiveDirectoryConfig: is missing: it lists the gMSAs under GroupManagedServiceAccounts",
            r#"list.json: guid: credspec.DomainJoinConfig.Guid: "{nope}" is not a GUID: write 32 hexadecimal digits grouped 8-4-4-4-12, such as 244818ae-87ac-4fcd-92ec-e79e5252348a"#,
            r#"list.json: guid: warning: credspec.ActiveDirectoryConfig.GroupManagedServiceAccounts: "WebApp1" is scoped to "contoso.com" but not to the domain's NetBIOS name "CONTOSO": add {Name: WebApp1, Scope: CONTOSO}, as New-CredentialSpec does"#,
            "contoso_webapp1.json: document 1: this is the bare JSON New-CredentialSpec writes, not a GMSACredentialSpec resource: make one with `kubectl gmsa credspec convert contoso_webapp1.json --name NAME`",
        ]
    );
    assert!(
        out.stderr
            .contains("specs.yaml: other: skipped, a ConfigMap"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("4 credential specs checked, 7 problems, 2 warnings"),
        "{}",
        out.stderr
    );
}

#[test]
fn validate_reports_unreadable_and_unparsable_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.yaml"), "kind: [unclosed\n").unwrap();
    let out = run(dir.path(), &["credspec", "validate", "bad.yaml"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.starts_with("bad.yaml: not valid YAML or JSON: "),
        "{}",
        out.stdout
    );
    let out = run(dir.path(), &["credspec", "validate", "missing.yaml"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("cannot read missing.yaml"),
        "{}",
        out.stderr
    );
    let out = run(dir.path(), &["credspec", "validate"]);
    assert_eq!(out.code, 2, "a file is required");
}

#[test]
fn every_command_has_help_with_an_example() {
    let dir = tempfile::tempdir().unwrap();
    for argv in [
        &["--help"][..],
        &["credspec", "--help"],
        &["credspec", "new", "--help"],
        &["credspec", "convert", "--help"],
        &["credspec", "validate", "--help"],
        &["grant", "--help"],
        &["admit", "--help"],
    ] {
        let out = run(dir.path(), argv);
        assert_eq!(out.code, 0, "{argv:?}");
        assert!(out.stdout.contains("Usage: kubectl gmsa"), "{argv:?}");
        assert!(
            out.stdout.contains("Examples:\n  "),
            "{argv:?} has no example:\n{}",
            out.stdout
        );
    }
}
