//! `kubectl gmsa doctor --ad`, run as the built binary against a real Samba AD DC and a real
//! kube-apiserver (v1.37) holding the credential specs and Windows nodes as `Node` objects.
//! Each directory check is first shown failing for its reason, then passing after the fix an
//! administrator would make: password readers granted directly and through a nested group,
//! a KDS root key added (one not yet in effect first), a duplicate SPN removed, the DNS scope
//! added, the DNS host name set, a spec from another domain regenerated, a CCG spec's account.
//!
//! Needs root (Samba binds ports 389/636) and `hack/build-kube-apiserver.sh v1.37.2` plus
//! `hack/build-etcd.sh`; `GMSA_SKIP_SAMBA=1` or `GMSA_SKIP_REAL_APISERVER=1` skips.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

#[path = "support/directory.rs"]
mod directory;
mod support;

use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use directory::{credspec, expect, find, fix, node, Env, CONTOSO};
use gmsa_testkit::real_cluster::{self, RealCluster, ServerVersion};
use gmsa_testkit::samba::{self, SambaDc};
use serde_json::Value;

const SPN: &str = "HTTP/webapp1.contoso.com";

#[test]
fn doctor_ad_against_samba_and_a_real_api_server() {
    if samba::skip_requested() || real_cluster::skip_requested() {
        eprintln!(
            "skipped: {}=1 or {}=1",
            samba::SKIP_ENV,
            real_cluster::SKIP_ENV
        );
        return;
    }
    let began = Instant::now();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dc = SambaDc::start().unwrap_or_else(|e| {
        panic!(
            "cannot start the Samba AD DC ({}=1 skips this test): {e}",
            samba::SKIP_ENV
        )
    });
    let cluster = RealCluster::start(ServerVersion::Current).unwrap_or_else(|e| panic!("{e}"));
    cluster
        .apply_crd(&gmsa_deploy::crd::custom_resource_definition().to_string())
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ad-password"),
        format!("{}\n", dc.admin_password()),
    )
    .unwrap();
    std::fs::write(dir.path().join("wrong-password"), "Not-the-Passw0rd-7f3e\n").unwrap();
    let env = Env {
        dc: &dc,
        cluster: &cluster,
        dir: dir.path().to_path_buf(),
    };
    eprintln!("== DC and API server up after {:?}", began.elapsed());
    let step = |name: &str| eprintln!("== {name} ({:?})", began.elapsed());

    step("a broken directory");
    for (name, os) in [
        ("win-node-1", "windows"),
        ("win-node-2", "windows"),
        ("linux-node-1", "linux"),
    ] {
        env.apply(&node(name, os));
    }
    let win1 = dc.add_computer("WIN-NODE-1").unwrap();
    let win2 = dc.add_computer("WIN-NODE-2").unwrap();
    let inner = dc.add_group("gmsa-hosts").unwrap();
    let outer = dc.add_group("gmsa-outer").unwrap();
    dc.add_member(&inner, &win2).unwrap();
    dc.add_member(&outer, &inner).unwrap();
    let webapp1 = dc.gmsa_dn("WebApp1");
    dc.replace_attribute(&webapp1, "dNSHostName", &[]).unwrap();
    let legacy = dc.add_user("legacy-web").unwrap();
    dc.add_duplicate_spn(&legacy, SPN).unwrap();
    env.apply(&credspec(
        "gmsa-webapp1",
        CONTOSO,
        &[samba::NETBIOS_NAME],
        None,
    ));

    let (code, findings) = env.doctor(&["--ad-only", "--credspec", "gmsa-webapp1"]);
    assert_eq!(code, 1, "{findings:#?}");
    expect(
        &findings,
        "ad-account",
        "gmsa-webapp1",
        "pass",
        "WebApp1$ is an enabled gMSA of contoso.com",
    );
    expect(
        &findings,
        "ad-kds-root-key",
        "contoso.com",
        "fail",
        "no KDS root key found",
    );
    let one = expect(
        &findings,
        "ad-retrieval",
        "gmsa-webapp1 node/win-node-1",
        "fail",
        "WIN-NODE-1$ may not retrieve",
    );
    assert_eq!(
        fix(&one),
        "Set-ADServiceAccount -Identity WebApp1 -PrincipalsAllowedToRetrieveManagedPassword 'WIN-NODE-1$','WIN-NODE-2$'"
    );
    expect(
        &findings,
        "ad-retrieval",
        "gmsa-webapp1 node/win-node-2",
        "fail",
        "allowed are none",
    );
    assert!(find(&findings, "ad-retrieval", "gmsa-webapp1 node/linux-node-1").is_none());
    expect(
        &findings,
        "ad-scopes",
        "gmsa-webapp1",
        "fail",
        "falls back to NTLM",
    );
    let spn = expect(
        &findings,
        "ad-spn",
        "gmsa-webapp1",
        "fail",
        "is also held by legacy-web",
    );
    assert_eq!(fix(&spn), format!("setspn -D {SPN} legacy-web"));
    let dns = expect(
        &findings,
        "ad-dns-host-name",
        "gmsa-webapp1",
        "fail",
        "has no dNSHostName",
    );
    assert_eq!(
        fix(&dns),
        "Set-ADServiceAccount -Identity WebApp1 -DNSHostName webapp1.contoso.com"
    );
    let table = env.doctor_any(
        &dc.ldaps_url(),
        &env.password_file(),
        &["--ad-only", "--credspec", "gmsa-webapp1"],
    );
    eprintln!("{}", table.stdout);
    assert_eq!(table.code, 1);
    assert!(
        table
            .stdout
            .contains(&format!("      fix: setspn -D {SPN} legacy-web\n")),
        "{}",
        table.stdout
    );
    assert!(
        table
            .stdout
            .lines()
            .any(|l| l.starts_with("FAIL  ad-kds-root-key contoso.com")),
        "{}",
        table.stdout
    );
    assert!(
        table.stdout.ends_with("1 passed, 0 warnings, 6 failed\n"),
        "{}",
        table.stdout
    );
    // The cluster-side rows are not there with --ad-only.
    assert!(find(&findings, "crd", &gmsa_deploy::crd::crd_name()).is_none());

    step("a KDS root key that is not in effect yet");
    let tomorrow = SystemTime::now() + Duration::from_secs(24 * 3600);
    dc.add_kds_root_key("7f6c2a0e-0000-4000-8000-000000000001", tomorrow)
        .unwrap();
    let (_, findings) = env.doctor(&["--ad-only", "--credspec", "gmsa-webapp1"]);
    expect(
        &findings,
        "ad-kds-root-key",
        "contoso.com",
        "fail",
        "no KDS root key is in effect yet",
    );

    step(
        "the fixes: readers granted directly and through a nested group, key, SPN, scope, DNS name",
    );
    let win1_sid = dc.sid_of(&win1).unwrap();
    let outer_sid = dc.sid_of(&outer).unwrap();
    dc.set_password_readers("WebApp1", &[&win1_sid, &outer_sid])
        .unwrap();
    let yesterday = SystemTime::now() - Duration::from_secs(11 * 3600);
    dc.add_kds_root_key("7f6c2a0e-0000-4000-8000-000000000002", yesterday)
        .unwrap();
    dc.replace_attribute(&legacy, "servicePrincipalName", &[])
        .unwrap();
    dc.replace_attribute(&webapp1, "dNSHostName", &["webapp1.contoso.com"])
        .unwrap();
    env.apply(&credspec(
        "gmsa-webapp1",
        CONTOSO,
        &[samba::NETBIOS_NAME, samba::DNS_NAME],
        None,
    ));

    let (code, findings) = env.doctor(&["--ad-only", "--credspec", "gmsa-webapp1"]);
    let problems: Vec<&Value> = findings.iter().filter(|f| f["status"] != "pass").collect();
    assert!(
        code == 0 && problems.is_empty(),
        "exit {code}: {problems:#?}"
    );
    expect(
        &findings,
        "ad-retrieval",
        "gmsa-webapp1 node/win-node-1",
        "pass",
        "may retrieve the password of WebApp1$ directly",
    );
    expect(
        &findings,
        "ad-retrieval",
        "gmsa-webapp1 node/win-node-2",
        "pass",
        "through group gmsa-outer, of which it is a nested member",
    );
    expect(
        &findings,
        "ad-kds-root-key",
        "contoso.com",
        "pass",
        "7f6c2a0e-0000-4000-8000-000000000002",
    );
    expect(
        &findings,
        "ad-scopes",
        "gmsa-webapp1",
        "pass",
        "the DNS scope contoso.com and the NetBIOS scope CONTOSO",
    );
    expect(
        &findings,
        "ad-spn",
        "gmsa-webapp1",
        "pass",
        "held by WebApp1$ alone",
    );
    expect(
        &findings,
        "ad-dns-host-name",
        "gmsa-webapp1",
        "pass",
        "webapp1.contoso.com is in contoso.com",
    );

    step("a node that is a direct member of an allowed group; --node narrows");
    let win3 = dc.add_computer("WIN-NODE-3").unwrap();
    env.apply(&node("win-node-3", "windows"));
    let (_, findings) = env.doctor(&["--ad-only", "--node", "win-node-3"]);
    expect(
        &findings,
        "ad-retrieval",
        "gmsa-webapp1 node/win-node-3",
        "fail",
        "may not retrieve",
    );
    dc.add_member(&inner, &win3).unwrap();
    dc.set_password_readers(
        "WebApp1",
        &[&win1_sid, &outer_sid, &dc.sid_of(&inner).unwrap()],
    )
    .unwrap();
    let (code, findings) = env.doctor(&["--ad-only", "--node", "win-node-3"]);
    assert_eq!(code, 0, "{findings:#?}");
    expect(
        &findings,
        "ad-retrieval",
        "gmsa-webapp1 node/win-node-3",
        "pass",
        "of which it is a member",
    );
    assert!(find(&findings, "ad-retrieval", "gmsa-webapp1 node/win-node-1").is_none());

    step("a spec copied from another domain, then regenerated from this one");
    let fabrikam = (
        "fabrikam.com",
        "FABRIKAM",
        "9a7e5b4c-1d2e-4f30-8a1b-2c3d4e5f6a7b",
        "S-1-5-21-1-2-3",
    );
    env.apply(&credspec(
        "gmsa-foreign",
        fabrikam,
        &["fabrikam.com", "FABRIKAM"],
        None,
    ));
    let (code, findings) = env.doctor(&["--ad-only", "--credspec", "gmsa-foreign"]);
    assert_eq!(code, 1);
    let foreign = expect(
        &findings,
        "ad-account",
        "gmsa-foreign",
        "fail",
        "made for another domain",
    );
    let detail = foreign["detail"].as_str().unwrap();
    for field in ["DnsName", "NetBiosName", "Guid", "Sid"] {
        assert!(detail.contains(&format!("{field} is")), "{detail}");
    }
    assert!(
        fix(&foreign).contains("New-CredentialSpec -AccountName WebApp1"),
        "{foreign:#}"
    );
    let mut args = vec![
        "credspec",
        "new",
        "gmsa-foreign",
        "--account",
        "WebApp1",
        "--from-ad",
    ];
    let url = dc.ldaps_url();
    args.push(&url);
    let connection = env.connection(&env.password_file(), dc.ca_path());
    args.extend(connection.iter().map(String::as_str));
    let regenerated = env.gmsa(&args);
    assert_eq!(regenerated.code, 0, "{}", regenerated.stderr);
    cluster
        .apply(&regenerated.stdout)
        .unwrap_or_else(|e| panic!("{e}"));
    let (code, findings) = env.doctor(&["--ad-only", "--credspec", "gmsa-foreign"]);
    assert_eq!(code, 0, "{findings:#?}");
    expect(
        &findings,
        "ad-account",
        "gmsa-foreign",
        "pass",
        "S-1-5-21-287454020",
    );

    step("CCG specs: the plugin's account is checked, or what could not be is said");
    // A plugin credspec validate does not know (its row warns of it), whose input names the
    // account it reads the password as; the Azure Key Vault plugin's input names none, and
    // credspec validate refuses one that is not ObjectId=GUID;SecretUri=URI.
    let ccg_input =
        "Username=ccg-reader@contoso.com;SecretUri=https://contoso.vault.azure.net/secrets/gmsa";
    env.apply(&credspec(
        "gmsa-ccg",
        CONTOSO,
        &[samba::DNS_NAME, samba::NETBIOS_NAME],
        Some(("8019A64C-3F4E-4DE3-AD2B-9A544290E2C3", ccg_input)),
    ));
    let (_, findings) = env.doctor(&["--ad-only", "--credspec", "gmsa-ccg"]);
    expect(
        &findings,
        "ad-retrieval",
        "gmsa-ccg ccg/ccg-reader",
        "fail",
        "which is no account of this domain",
    );
    assert!(find(&findings, "ad-retrieval", "gmsa-ccg node/win-node-1").is_none());
    let reader = dc.add_user("ccg-reader").unwrap();
    let (_, findings) = env.doctor(&["--ad-only", "--credspec", "gmsa-ccg"]);
    let denied = expect(
        &findings,
        "ad-retrieval",
        "gmsa-ccg ccg/ccg-reader",
        "fail",
        "ccg-reader may not retrieve",
    );
    assert!(
        fix(&denied).starts_with("Add-ADGroupMember -Identity 'gmsa-outer' -Members 'ccg-reader'"),
        "{denied:#}"
    );
    dc.add_member(&outer, &reader).unwrap();
    let (code, findings) = env.doctor(&["--ad-only", "--credspec", "gmsa-ccg"]);
    assert_eq!(code, 0, "{findings:#?}");
    expect(
        &findings,
        "ad-retrieval",
        "gmsa-ccg ccg/ccg-reader",
        "pass",
        "through group gmsa-outer",
    );
    env.apply(&credspec(
        "gmsa-akv",
        CONTOSO,
        &[samba::DNS_NAME, samba::NETBIOS_NAME],
        Some((
            gmsa_core::credspec::plugins::AZURE_GUID,
            "ObjectId=6a1d6a8b-2a9e-4e5c-9b1f-0d1a2b3c4d5e;SecretUri=https://contoso.vault.azure.net/secrets/gmsa",
        )),
    ));
    let (code, findings) = env.doctor(&["--ad-only", "--credspec", "gmsa-akv"]);
    assert_eq!(code, 0, "a warning alone exits 0: {findings:#?}");
    expect(
        &findings,
        "ad-retrieval",
        "gmsa-akv ccg/?",
        "warn",
        "could not be checked",
    );

    step("every spec, with the cluster-side checks");
    let (code, findings) = env.doctor(&[]);
    assert_eq!(code, 1, "no webhook is installed, and gmsa-akv warns");
    // The 1 is for the missing webhook: every spec passes credspec validate's checks, and
    // warnings alone (gmsa-ccg's unknown plugin, gmsa-webapp1's missing DNS scope) exit 0.
    let failed: Vec<&Value> = findings
        .iter()
        .filter(|f| f["status"] == "fail" && f["check"] == "credspec")
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    expect(
        &findings,
        "credspec",
        "gmsa-ccg",
        "warn",
        "8019A64C-3F4E-4DE3-AD2B-9A544290E2C3",
    );
    assert!(
        findings
            .iter()
            .any(|f| f["check"] == "webhook-configurations" && f["status"] == "fail"),
        "{findings:#?}"
    );
    assert!(
        find(&findings, "crd", &gmsa_deploy::crd::crd_name()).is_some(),
        "{findings:#?}"
    );
    for spec in ["gmsa-webapp1", "gmsa-foreign", "gmsa-ccg", "gmsa-akv"] {
        assert!(
            find(&findings, "ad-account", spec).is_some(),
            "{spec}: {findings:#?}"
        );
    }
    assert_eq!(
        findings
            .iter()
            .filter(|f| f["check"] == "ad-kds-root-key")
            .count(),
        1
    );

    step("errors exit 2 with what to change");
    let wrong = env.dir.join("wrong-password").display().to_string();
    let out = env.doctor_raw(&dc.ldaps_url(), &wrong, &["--ad-only"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("rejected the credentials") && out.stderr.contains("--bind-upn"),
        "{}",
        out.stderr
    );
    let mut args: Vec<String> = vec![
        "doctor".into(),
        "--ad".into(),
        dc.ldaps_url(),
        "--ad-only".into(),
    ];
    args.extend(env.connection(&env.password_file(), dc.wrong_ca_path()));
    let out = env.gmsa(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("is not trusted") && out.stderr.contains("--ca-file"),
        "{}",
        out.stderr
    );
    let out = env.doctor_raw(
        &dc.ldap_url(),
        &env.password_file(),
        &["--ad-only", "--insecure-plaintext", "--starttls"],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    let out = env.doctor_raw(
        &dc.ldap_url(),
        &env.password_file(),
        &["--ad-only", "--credspec", "gmsa-webapp1"],
    );
    assert_eq!(
        out.code, 0,
        "StartTLS on ldap:// works: {}{}",
        out.stdout, out.stderr
    );
    let out = env.doctor_raw(
        &dc.ldaps_url(),
        &env.password_file(),
        &["--ad-only", "--credspec", "nope"],
    );
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("no GMSACredentialSpec nope"),
        "{}",
        out.stderr
    );
    let out = env.doctor_raw(
        &dc.ldaps_url(),
        &env.password_file(),
        &["--ad-only", "--node", "nope"],
    );
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("no node nope"), "{}", out.stderr);
    let out = env.doctor_raw("ldaps://127.0.0.1:1", &env.password_file(), &["--ad-only"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("cannot reach the domain controller"),
        "{}",
        out.stderr
    );
    eprintln!("== done in {:?}", began.elapsed());
}

#[test]
fn connection_flags_need_ad_and_a_password_file() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_kubectl-gmsa"))
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let out = run(&["doctor", "--bind-upn", "a@contoso.com"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ad <URL>"));
    let out = run(&[
        "doctor",
        "--ad",
        "ldaps://dc1",
        "--bind-upn",
        "a@contoso.com",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--password-file"));
    std::fs::write(dir.path().join("empty"), "").unwrap();
    let out = run(&[
        "doctor",
        "--ad",
        "ldaps://dc1",
        "--bind-upn",
        "a@contoso.com",
        "--password-file",
        "empty",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("password file") && stderr.contains("is empty"),
        "{stderr}"
    );
    let out = run(&[
        "doctor",
        "--ad",
        "ldap://dc1",
        "--bind-upn",
        "a@contoso.com",
        "--password-file",
        "empty",
        "--insecure-plaintext",
        "--starttls",
    ]);
    assert_eq!(out.status.code(), Some(2));
}
