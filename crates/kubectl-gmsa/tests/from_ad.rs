//! `kubectl gmsa credspec new --from-ad`, run as the built binary against a real Samba AD DC
//! (one for the whole binary: Samba's LDAP ports are fixed, and provisioning takes seconds),
//! with and without each CCG plugin, plus the refusals that need no DC.
//!
//! Without Samba installed or startable the DC test fails with the reason;
//! `GMSA_SKIP_SAMBA=1` makes it skip instead.

#![allow(clippy::unwrap_used)] // tests may panic

mod support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use gmsa_testkit::credspecs;
use gmsa_testkit::samba::{self, SambaDc};
use serde_json::json;
use support::{run, run_env, Run};

/// A wrong password that no message may ever show.
const WRONG_PASSWORD: &str = "Not-the-Passw0rd-7f3e";

/// What every `--from-ad` run against the DC shares: the DC, a directory with the password
/// files, and the checks that hold for every run.
struct Fixture<'a> {
    dc: &'a SambaDc,
    dir: &'a Path,
}

impl Fixture<'_> {
    /// `credspec new gmsa-webapp1 --from-ad URL` with `extra` flags; the password file
    /// (`-` = stdin, fed `stdin`) is `--password-file`.
    fn new_from_ad(&self, url: &str, extra: &[&str], stdin: Option<&str>) -> Run {
        let mut argv = vec!["credspec", "new", "gmsa-webapp1", "--from-ad", url];
        argv.extend_from_slice(extra);
        let out = run_env(self.dir, &argv, stdin.map(str::as_bytes), &[]);
        for secret in [self.dc.admin_password(), WRONG_PASSWORD] {
            assert!(
                !out.stdout.contains(secret) && !out.stderr.contains(secret),
                "{argv:?} printed a password:\n{}{}",
                out.stdout,
                out.stderr
            );
        }
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
        out
    }

    fn password_file(&self) -> String {
        self.dir.join("ad-password").display().to_string()
    }

    fn wrong_password_file(&self) -> String {
        self.dir.join("wrong-password").display().to_string()
    }

    fn ca_file(&self) -> String {
        self.dc.ca_path().display().to_string()
    }
}

/// The same spec from flags, with the DC's fixed facts: `--from-ad` must print exactly this.
fn from_flags(dir: &Path, extra: &[&str]) -> String {
    let mut argv = vec![
        "credspec",
        "new",
        "gmsa-webapp1",
        "--domain",
        samba::DNS_NAME,
        "--netbios",
        samba::NETBIOS_NAME,
        "--domain-guid",
        samba::DOMAIN_GUID,
        "--domain-sid",
        samba::DOMAIN_SID,
    ];
    argv.extend_from_slice(extra);
    let out = run(dir, &argv);
    assert_eq!(out.code, 0, "{}", out.stderr);
    out.stdout
}

fn check(condition: bool, message: impl FnOnce() -> String) -> Result<(), String> {
    if condition {
        Ok(())
    } else {
        Err(message())
    }
}

fn failed_with(out: &Run, expected: &[&str]) -> Result<(), String> {
    check(out.code == 2, || {
        format!("exit {} (want 2): {}{}", out.code, out.stdout, out.stderr)
    })?;
    check(out.stdout.is_empty(), || format!("stdout: {}", out.stdout))?;
    for e in expected {
        check(out.stderr.contains(e), || {
            format!("stderr lacks {e:?}: {}", out.stderr)
        })?;
    }
    Ok(())
}

fn ldaps_with_the_ca_file_reads_the_domain(f: &Fixture<'_>) -> Result<(), String> {
    let extra = [
        "--account",
        "WebApp1",
        "--additional-account",
        "Reports",
        "--additional-account",
        "LogReader@fabrikam.com",
    ];
    let (password, ca, upn) = (f.password_file(), f.ca_file(), f.dc.admin_upn());
    let mut argv = extra.to_vec();
    argv.extend([
        "--bind-upn",
        &upn,
        "--password-file",
        &password,
        "--ca-file",
        &ca,
    ]);
    let out = f.new_from_ad(&f.dc.ldaps_url(), &argv, None);
    check(out.code == 0, || out.stderr.clone())?;
    let doc = &out.docs()[0];
    let join = &doc["credspec"]["DomainJoinConfig"];
    check(
        join == &json!({
            "DnsName": samba::DNS_NAME,
            "DnsTreeName": samba::DNS_NAME,
            "Guid": samba::DOMAIN_GUID,
            "MachineAccountName": "WebApp1",
            "NetBiosName": samba::NETBIOS_NAME,
            "Sid": samba::DOMAIN_SID,
        }),
        || format!("DomainJoinConfig {join}"),
    )?;
    let accounts = &doc["credspec"]["ActiveDirectoryConfig"]["GroupManagedServiceAccounts"];
    check(
        accounts
            == &json!([
                {"Name": "WebApp1", "Scope": samba::DNS_NAME},
                {"Name": "WebApp1", "Scope": samba::NETBIOS_NAME},
                {"Name": "Reports", "Scope": samba::DNS_NAME},
                {"Name": "LogReader", "Scope": "fabrikam.com"},
            ]),
        || format!("GroupManagedServiceAccounts {accounts}"),
    )?;
    check(doc["metadata"] == json!({"name": "gmsa-webapp1"}), || {
        format!("metadata {}", doc["metadata"])
    })?;
    let flags = from_flags(f.dir, &extra);
    check(out.stdout == flags, || {
        format!(
            "--from-ad printed\n{}\nthe flags print\n{flags}",
            out.stdout
        )
    })?;
    check(
        out.stderr
            .contains("LogReader@fabrikam.com is not in contoso.com"),
        || format!("no note on the unchecked account: {}", out.stderr),
    )
}

/// The typed flags of each plugin `--plugin` knows, with the shared fixture's inputs.
fn plugin_flags(plugin: &str) -> Vec<&'static str> {
    match plugin {
        "aws" => vec!["--plugin", "aws", "--credential-arn", credspecs::AWS_ARN],
        "azure" => vec![
            "--plugin",
            "azure",
            "--object-id",
            credspecs::AZURE_OBJECT_ID,
            "--secret-uri",
            credspecs::AZURE_SECRET_URI,
        ],
        _ => vec![
            "--plugin",
            "rancher",
            "--secret-namespace",
            credspecs::RANCHER_NAMESPACE,
            "--secret",
            credspecs::RANCHER_SECRET,
        ],
    }
}

/// Every plugin, from the directory: the domain's facts as the DC has them, the plugin's
/// HostAccountConfig as the flags make it, and a spec `credspec validate` accepts.
fn each_plugin_takes_the_directory_facts(f: &Fixture<'_>) -> Result<(), String> {
    let (password, ca, upn) = (f.password_file(), f.ca_file(), f.dc.admin_upn());
    for (plugin, fixture) in credspecs::plugin_specs() {
        let flags = plugin_flags(plugin);
        let mut argv = vec!["--account", "WebApp1"];
        argv.extend(flags.iter().copied());
        let named_flags = argv.clone();
        argv.extend([
            "--bind-upn",
            &upn,
            "--password-file",
            &password,
            "--ca-file",
            &ca,
        ]);
        let out = f.new_from_ad(&f.dc.ldaps_url(), &argv, None);
        check(out.code == 0, || format!("{plugin}: {}", out.stderr))?;
        let doc = &out.docs()[0];
        let join = &doc["credspec"]["DomainJoinConfig"];
        check(
            join == &json!({
                "DnsName": samba::DNS_NAME,
                "DnsTreeName": samba::DNS_NAME,
                "Guid": samba::DOMAIN_GUID,
                "MachineAccountName": "WebApp1",
                "NetBiosName": samba::NETBIOS_NAME,
                "Sid": samba::DOMAIN_SID,
            }),
            || format!("{plugin}: DomainJoinConfig {join}"),
        )?;
        let host = &doc["credspec"]["ActiveDirectoryConfig"]["HostAccountConfig"];
        let expected = &fixture["credspec"]["ActiveDirectoryConfig"]["HostAccountConfig"];
        check(host == expected, || {
            format!("{plugin}: HostAccountConfig {host}, expected {expected}")
        })?;
        let accounts = &doc["credspec"]["ActiveDirectoryConfig"]["GroupManagedServiceAccounts"];
        check(
            accounts
                == &json!([
                    {"Name": "WebApp1", "Scope": samba::DNS_NAME},
                    {"Name": "WebApp1", "Scope": samba::NETBIOS_NAME},
                ]),
            || format!("{plugin}: GroupManagedServiceAccounts {accounts}"),
        )?;
        let flags_print = from_flags(f.dir, &named_flags);
        check(out.stdout == flags_print, || {
            format!(
                "{plugin}: --from-ad printed\n{}\nthe flags print\n{flags_print}",
                out.stdout
            )
        })?;

        let file = format!("{plugin}-from-ad.yaml");
        std::fs::write(f.dir.join(&file), &out.stdout).map_err(|e| e.to_string())?;
        let checked = run(f.dir, &["credspec", "validate", &file]);
        check(checked.code == 0 && checked.stdout.is_empty(), || {
            format!(
                "{plugin}: validate exit {}: {}{}",
                checked.code, checked.stdout, checked.stderr
            )
        })?;
        check(checked.stderr.contains("0 problems, 0 warnings"), || {
            format!("{plugin}: validate said {}", checked.stderr)
        })?;
    }
    Ok(())
}

fn starttls_reads_the_same(f: &Fixture<'_>) -> Result<(), String> {
    let expected = from_flags(f.dir, &["--account", "WebApp1"]);
    let ca = f.ca_file();
    // Implied on ldap://, binding by DN, the password on stdin with a trailing newline.
    let password = format!("{}\n", f.dc.admin_password());
    let dn = f.dc.admin_dn();
    let argv = [
        "--account",
        "WebApp1",
        "--bind-dn",
        &dn,
        "--password-file",
        "-",
        "--ca-file",
        &ca,
    ];
    let out = f.new_from_ad(&f.dc.ldap_url(), &argv, Some(&password));
    check(out.code == 0, || out.stderr.clone())?;
    check(out.stdout == expected, || {
        format!("implied: {}", out.stdout)
    })?;
    // Explicit, by UPN, written to a file.
    let (password, upn) = (f.password_file(), f.dc.admin_upn());
    let written = f.dir.join("starttls.yaml");
    let argv = [
        "--account",
        "WebApp1$",
        "--starttls",
        "--bind-upn",
        &upn,
        "--password-file",
        &password,
        "--ca-file",
        &ca,
        "-o",
        written.to_str().unwrap(),
    ];
    let out = f.new_from_ad(&f.dc.ldap_url(), &argv, None);
    check(out.code == 0 && out.stdout.is_empty(), || {
        format!("{}{}", out.stdout, out.stderr)
    })?;
    let text = std::fs::read_to_string(&written).map_err(|e| e.to_string())?;
    check(text == expected, || format!("explicit: {text}"))
}

fn wrong_password_is_named_and_never_shown(f: &Fixture<'_>) -> Result<(), String> {
    let (wrong, ca, upn) = (f.wrong_password_file(), f.ca_file(), f.dc.admin_upn());
    for url in [f.dc.ldaps_url(), f.dc.ldap_url()] {
        let argv = [
            "--account",
            "WebApp1",
            "--bind-upn",
            &upn,
            "--password-file",
            &wrong,
            "--ca-file",
            &ca,
        ];
        let out = f.new_from_ad(&url, &argv, None);
        failed_with(
            &out,
            &[
                "error: the domain controller rejected the credentials of Administrator@contoso.com (wrong password",
                &format!("check --bind-upn and the password in {wrong}"),
            ],
        )
        .map_err(|e| format!("{url}: {e}"))?;
    }
    Ok(())
}

fn missing_gmsa_lists_close_matches(f: &Fixture<'_>) -> Result<(), String> {
    let (password, ca, upn) = (f.password_file(), f.ca_file(), f.dc.admin_upn());
    let common = [
        "--bind-upn",
        upn.as_str(),
        "--password-file",
        &password,
        "--ca-file",
        &ca,
    ];
    let cases: [(&[&str], &[&str]); 2] = [
        (
            &["--account", "WebApp"],
            &[
                r#"error: --account: no group managed service account "WebApp" (sAMAccountName WebApp$)"#,
                "create it with New-ADServiceAccount or fix the name; did you mean WebApp1?",
            ],
        ),
        (
            &["--account", "WebApp1", "--additional-account", "Report"],
            &[
                r#"error: --additional-account (#1): no group managed service account "Report""#,
                "did you mean Reports?",
            ],
        ),
    ];
    for (accounts, expected) in cases {
        let argv: Vec<&str> = accounts.iter().chain(&common).copied().collect();
        let out = f.new_from_ad(&f.dc.ldaps_url(), &argv, None);
        failed_with(&out, expected).map_err(|e| format!("{accounts:?}: {e}"))?;
    }
    Ok(())
}

fn wrong_ca_is_an_untrusted_certificate(f: &Fixture<'_>) -> Result<(), String> {
    let (password, upn) = (f.password_file(), f.dc.admin_upn());
    let wrong_ca = f.dc.wrong_ca_path().display().to_string();
    for url in [f.dc.ldaps_url(), f.dc.ldap_url()] {
        let argv = [
            "--account",
            "WebApp1",
            "--bind-upn",
            &upn,
            "--password-file",
            &password,
            "--ca-file",
            &wrong_ca,
        ];
        let out = f.new_from_ad(&url, &argv, None);
        failed_with(
            &out,
            &[
                &format!("error: the certificate of {url} is not trusted: it was not issued by a trusted CA (unknown issuer)"),
                &format!("check that --ca-file {wrong_ca} holds the CA that issued it"),
            ],
        )
        .map_err(|e| format!("{url}: {e}"))?;
    }
    Ok(())
}

fn plain_ldap_only_with_insecure_plaintext(f: &Fixture<'_>) -> Result<(), String> {
    let (password, upn) = (f.password_file(), f.dc.admin_upn());
    let argv = [
        "--account",
        "WebApp1",
        "--bind-upn",
        &upn,
        "--password-file",
        &password,
    ];
    // No CA file: without the flag, ldap:// still insists on StartTLS, and the system's trust
    // store does not know the test CA, so nothing is sent in clear.
    let out = f.new_from_ad(&f.dc.ldap_url(), &argv, None);
    failed_with(&out, &["error: ", "--ca-file"])?;
    check(
        out.stderr
            .contains("is not trusted by the system's trust store")
            || out.stderr.contains("no system root certificates"),
        || out.stderr.clone(),
    )?;
    // Nor with --starttls spelled out and plain LDAP asked for too: the flags conflict.
    let mut both = argv.to_vec();
    both.extend(["--starttls", "--insecure-plaintext"]);
    let out = f.new_from_ad(&f.dc.ldap_url(), &both, None);
    failed_with(
        &out,
        &["'--starttls' cannot be used with '--insecure-plaintext'"],
    )?;
    // With the flag, the test DC accepts the plain simple bind.
    let mut plain = argv.to_vec();
    plain.push("--insecure-plaintext");
    let out = f.new_from_ad(&f.dc.ldap_url(), &plain, None);
    check(out.code == 0, || out.stderr.clone())?;
    let expected = from_flags(f.dir, &["--account", "WebApp1"]);
    check(out.stdout == expected, || out.stdout.clone())
}

#[test]
fn against_a_samba_ad_dc() {
    if samba::skip_requested() {
        eprintln!("skipping: {}=1", samba::SKIP_ENV);
        return;
    }
    let dc = match SambaDc::start() {
        Ok(dc) => dc,
        Err(e) => panic!(
            "cannot start the Samba AD DC ({}=1 skips this test): {e}",
            samba::SKIP_ENV
        ),
    };
    eprintln!(
        "Samba AD DC at {} ready in {:?} (provisioning {:?})",
        dc.address(),
        dc.startup_time(),
        dc.provision_time()
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ad-password"),
        format!("{}\n", dc.admin_password()),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("wrong-password"),
        format!("{WRONG_PASSWORD}\n"),
    )
    .unwrap();
    let fixture = Fixture {
        dc: &dc,
        dir: dir.path(),
    };
    type Case = fn(&Fixture<'_>) -> Result<(), String>;
    let cases: [(&str, Case); 7] = [
        (
            "ldaps_with_the_ca_file_reads_the_domain",
            ldaps_with_the_ca_file_reads_the_domain,
        ),
        ("starttls_reads_the_same", starttls_reads_the_same),
        (
            "each_plugin_takes_the_directory_facts",
            each_plugin_takes_the_directory_facts,
        ),
        (
            "wrong_password_is_named_and_never_shown",
            wrong_password_is_named_and_never_shown,
        ),
        (
            "missing_gmsa_lists_close_matches",
            missing_gmsa_lists_close_matches,
        ),
        (
            "wrong_ca_is_an_untrusted_certificate",
            wrong_ca_is_an_untrusted_certificate,
        ),
        (
            "plain_ldap_only_with_insecure_plaintext",
            plain_ldap_only_with_insecure_plaintext,
        ),
    ];
    let mut failures = Vec::new();
    for (name, case) in cases {
        let began = Instant::now();
        match case(&fixture) {
            Ok(()) => eprintln!("  ok   {name} ({:?})", began.elapsed()),
            Err(e) => {
                eprintln!("  FAIL {name}: {e}");
                failures.push(format!("{name}: {e}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of the --from-ad cases failed:\n{}\nSamba log ends:\n{}",
        failures.len(),
        failures.join("\n"),
        dc.log_tail(20)
    );
}

/// A server on `ldap://` that answers StartTLS with protocolError, as one without TLS does.
/// Returns the URL and a handle yielding every byte the client sent.
fn server_without_starttls() -> (String, thread::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let url = format!("ldap://{}", listener.local_addr().unwrap());
    let handle = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut received = Vec::new();
        let mut buf = [0u8; 4096];
        // The StartTLS request: SEQUENCE { messageID INTEGER, [APPLICATION 23] ... }.
        let n = stream.read(&mut buf).unwrap();
        received.extend_from_slice(&buf[..n]);
        let header = if received[1] & 0x80 == 0 {
            2
        } else {
            2 + usize::from(received[1] & 0x7f)
        };
        let id_len = usize::from(received[header + 1]);
        let id = &received[header..header + 2 + id_len];
        let diagnostic = b"StartTLS is not supported";
        // ExtendedResponse [APPLICATION 24] { resultCode protocolError(2), matchedDN "", text }.
        let mut op = vec![0x0a, 0x01, 0x02, 0x04, 0x00, 0x04, diagnostic.len() as u8];
        op.extend_from_slice(diagnostic);
        let mut message = id.to_vec();
        message.push(0x78);
        message.push(op.len() as u8);
        message.extend_from_slice(&op);
        let mut response = vec![0x30, message.len() as u8];
        response.extend_from_slice(&message);
        stream.write_all(&response).unwrap();
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            received.extend_from_slice(&buf[..n]);
        }
        received
    });
    (url, handle)
}

/// Without `--insecure-plaintext`, a server that cannot do StartTLS gets no bind at all: the
/// password never crosses the network.
#[test]
fn a_server_without_starttls_is_refused_before_the_password_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), format!("{WRONG_PASSWORD}\n")).unwrap();
    let (url, server) = server_without_starttls();
    let argv = [
        "credspec",
        "new",
        "gmsa-webapp1",
        "--account",
        "WebApp1",
        "--from-ad",
        &url,
        "--bind-upn",
        "svc@contoso.com",
        "--password-file",
        "pw",
    ];
    let out = run(dir.path(), &argv);
    let received = server.join().unwrap();
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("error: {url} refused StartTLS (LDAP result 2: StartTLS is not supported); use ldaps:// instead; or, if you accept that the bind password crosses the network unencrypted, pass --insecure-plaintext")),
        "{}",
        out.stderr
    );
    assert!(
        !String::from_utf8_lossy(&received).contains(WRONG_PASSWORD),
        "the password reached the server"
    );
    assert!(!out.stderr.contains(WRONG_PASSWORD));
}

/// Errors that need no domain controller: an unreachable one, and bad input found before
/// connecting.
#[test]
fn unreachable_servers_and_bad_input_are_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
    std::fs::write(dir.path().join("empty"), "\n").unwrap();
    let port = {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        listener.local_addr().unwrap().port()
    };
    let closed = format!("ldaps://127.0.0.1:{port}");
    let new = |url: &str, account: &str, password: &str| {
        let out = run(
            dir.path(),
            &[
                "credspec",
                "new",
                "gmsa-webapp1",
                "--account",
                account,
                "--from-ad",
                url,
                "--bind-upn",
                "svc@contoso.com",
                "--password-file",
                password,
            ],
        );
        assert_eq!(out.code, 2, "{}", out.stderr);
        assert_eq!(out.stdout, "");
        assert!(!out.stderr.contains("s3cret"), "{}", out.stderr);
        out.stderr
    };
    let began = Instant::now();
    let stderr = new(&closed, "WebApp1", "pw");
    assert!(
        stderr.contains(&format!(
            "error: cannot reach the domain controller at {closed}"
        )),
        "{stderr}"
    );
    assert!(began.elapsed() < Duration::from_secs(5));
    let stderr = new(&closed, "Web*App", "pw");
    assert!(
        stderr.starts_with("error: --account: \"Web*App\""),
        "{stderr}"
    );
    let stderr = new(&closed, "WebApp1", "empty");
    assert!(
        stderr.contains("the password file empty is empty"),
        "{stderr}"
    );
    let stderr = new(&closed, "WebApp1", "missing");
    assert!(
        stderr.contains("cannot read the password file (--password-file): cannot read missing"),
        "{stderr}"
    );
    let stderr = new("https://dc1", "WebApp1", "pw");
    assert!(stderr.contains("invalid LDAP URL"), "{stderr}");
}

/// The flags that say where the facts come from exclude each other, and the directory needs
/// an identity and a password file.
#[test]
fn from_ad_replaces_the_domain_flags() {
    let dir = tempfile::tempdir().unwrap();
    let base = [
        "credspec",
        "new",
        "gmsa-webapp1",
        "--account",
        "WebApp1",
        "--from-ad",
        "ldaps://dc1",
    ];
    let cases: [(&[&str], &str); 4] = [
        (
            &[
                "--bind-upn",
                "a@b",
                "--password-file",
                "pw",
                "--domain",
                "contoso.com",
            ],
            "'--from-ad <URL>' cannot be used with '--domain <DNS>'",
        ),
        (
            &["--password-file", "pw"],
            "<--bind-dn <DN>|--bind-upn <UPN>>",
        ),
        (&["--bind-upn", "a@b"], "--password-file <FILE>"),
        (
            &[
                "--bind-upn",
                "a@b",
                "--bind-dn",
                "CN=a",
                "--password-file",
                "pw",
            ],
            "'--bind-upn <UPN>' cannot be used with '--bind-dn <DN>'",
        ),
    ];
    for (extra, expected) in cases {
        let argv: Vec<&str> = base.iter().chain(extra).copied().collect();
        let out = run(dir.path(), &argv);
        assert_eq!(out.code, 2, "{argv:?}");
        assert!(out.stderr.contains(expected), "{argv:?}: {}", out.stderr);
    }
    let out = run(
        dir.path(),
        &[
            "credspec",
            "new",
            "x",
            "--account",
            "a",
            "--password-file",
            "pw",
        ],
    );
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("--from-ad <URL>") && out.stderr.contains("--domain <DNS>"),
        "{}",
        out.stderr
    );
}
