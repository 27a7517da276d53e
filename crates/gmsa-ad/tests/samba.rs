//! gmsa-ad against a real Samba AD DC (one per test binary: Samba's LDAP ports are fixed, and
//! provisioning takes seconds), plus the connection failures that need no DC at all.
//!
//! Without Samba installed or startable the DC test fails with the reason;
//! `GMSA_SKIP_SAMBA=1` makes it skip instead.

use std::future::Future;
use std::net::{Ipv4Addr, TcpListener};
use std::pin::Pin;
use std::time::{Duration, Instant};

use gmsa_ad::{AdError, BindCredentials, Directory, DirectoryConfig, DomainFacts, Trust};
use gmsa_testkit::real_cluster::LoopbackTls;
use gmsa_testkit::samba::{self, SambaDc};

fn expected_facts() -> DomainFacts {
    DomainFacts {
        dns_name: samba::DNS_NAME.to_string(),
        forest_dns_name: samba::DNS_NAME.to_string(),
        netbios_name: samba::NETBIOS_NAME.to_string(),
        guid: samba::DOMAIN_GUID.to_string(),
        sid: samba::DOMAIN_SID.to_string(),
    }
}

fn config(dc: &SambaDc, url: String) -> DirectoryConfig {
    DirectoryConfig::new(
        url,
        Trust::CaFile(dc.ca_path().to_path_buf()),
        BindCredentials::new(dc.admin_upn(), dc.admin_password().to_string()),
    )
}

async fn read_facts(config: &DirectoryConfig) -> Result<DomainFacts, AdError> {
    let mut directory = Directory::connect(config).await?;
    let facts = directory.domain_facts().await?;
    directory.close().await;
    Ok(facts)
}

type Case<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + 'a>>;

fn check(condition: bool, message: impl FnOnce() -> String) -> Result<(), String> {
    if condition {
        Ok(())
    } else {
        Err(message())
    }
}

async fn ldaps_with_the_ca_reads_the_domain_facts(dc: &SambaDc) -> Result<(), String> {
    let facts = read_facts(&config(dc, dc.ldaps_url()))
        .await
        .map_err(|e| e.to_string())?;
    check(facts == expected_facts(), || format!("read {facts:?}"))
}

async fn binding_by_dn_works_too(dc: &SambaDc) -> Result<(), String> {
    let mut config = config(dc, dc.ldaps_url());
    config.credentials.principal = dc.admin_dn();
    let facts = read_facts(&config).await.map_err(|e| e.to_string())?;
    check(facts == expected_facts(), || format!("read {facts:?}"))
}

async fn starttls_on_ldap_reads_the_domain_facts(dc: &SambaDc) -> Result<(), String> {
    let config = config(dc, dc.ldap_url());
    check(config.starttls && !config.insecure_plaintext, || {
        "StartTLS is not the default".into()
    })?;
    let facts = read_facts(&config).await.map_err(|e| e.to_string())?;
    check(facts == expected_facts(), || format!("read {facts:?}"))
}

async fn plaintext_needs_the_insecure_flag(dc: &SambaDc) -> Result<(), String> {
    let mut config = config(dc, dc.ldap_url());
    config.starttls = false;
    match read_facts(&config).await {
        Err(AdError::PlaintextRefused { .. }) => {}
        other => return Err(format!("without the flag: {other:?}")),
    }
    // The test DC accepts plain simple binds, so with the flag the same read succeeds.
    config.insecure_plaintext = true;
    let facts = read_facts(&config).await.map_err(|e| e.to_string())?;
    check(facts == expected_facts(), || format!("read {facts:?}"))
}

async fn wrong_password_is_named(dc: &SambaDc) -> Result<(), String> {
    for url in [dc.ldaps_url(), dc.ldap_url()] {
        let mut config = config(dc, url);
        config.credentials = BindCredentials::new(dc.admin_upn(), "not-the-password");
        match Directory::connect(&config).await {
            Err(AdError::InvalidCredentials { principal, detail }) => {
                check(principal == dc.admin_upn(), || principal.clone())?;
                check(detail.contains("wrong password"), || detail.clone())?;
            }
            other => return Err(format!("{}: {other:?}", config.url)),
        }
    }
    Ok(())
}

async fn existing_gmsas_are_found_with_or_without_dollar(dc: &SambaDc) -> Result<(), String> {
    let mut directory = Directory::connect(&config(dc, dc.ldaps_url()))
        .await
        .map_err(|e| e.to_string())?;
    for account in ["WebApp1", "WebApp1$", "webapp1", "Reports"] {
        directory
            .check_gmsa(account)
            .await
            .map_err(|e| format!("{account}: {e}"))?;
    }
    directory.close().await;
    Ok(())
}

async fn missing_gmsa_lists_close_matches(dc: &SambaDc) -> Result<(), String> {
    let mut directory = Directory::connect(&config(dc, dc.ldaps_url()))
        .await
        .map_err(|e| e.to_string())?;
    let result = directory.check_gmsa("WebApp").await;
    let err = match result {
        Err(err @ AdError::UnknownAccount { .. }) => err,
        other => return Err(format!("WebApp: {other:?}")),
    };
    let message = err.to_string();
    if let AdError::UnknownAccount { close_matches, .. } = &err {
        check(close_matches == &["WebApp1".to_string()], || {
            format!("close matches {close_matches:?}")
        })?;
    }
    check(message.contains("did you mean WebApp1?"), || {
        message.clone()
    })?;
    // Filter metacharacters that a sAMAccountName may hold are escaped, not interpreted.
    match directory.check_gmsa("WebApp1)(cn").await {
        Err(AdError::UnknownAccount { .. }) => {}
        other => return Err(format!("WebApp1)(cn: {other:?}")),
    }
    // An account that is not a gMSA (the administrator is a user) is not accepted either.
    match directory.check_gmsa("Administrator").await {
        Err(AdError::UnknownAccount { .. }) => {}
        other => return Err(format!("Administrator: {other:?}")),
    }
    directory.close().await;
    Ok(())
}

async fn wrong_ca_is_an_untrusted_certificate(dc: &SambaDc) -> Result<(), String> {
    for url in [dc.ldaps_url(), dc.ldap_url()] {
        let mut config = config(dc, url);
        config.trust = Trust::CaFile(dc.wrong_ca_path().to_path_buf());
        match Directory::connect(&config).await {
            Err(AdError::UntrustedCertificate { reason, .. }) => {
                check(reason.contains("unknown issuer"), || reason.clone())?
            }
            other => return Err(format!("{}: {other:?}", config.url)),
        }
    }
    Ok(())
}

async fn system_roots_do_not_trust_the_test_ca(dc: &SambaDc) -> Result<(), String> {
    let mut config = config(dc, dc.ldaps_url());
    config.trust = Trust::SystemRoots;
    match Directory::connect(&config).await {
        Err(AdError::UntrustedCertificate { .. } | AdError::SystemRoots { .. }) => Ok(()),
        other => Err(format!("{other:?}")),
    }
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
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    macro_rules! cases {
        ($($case:ident),* $(,)?) => {
            vec![$((stringify!($case), Box::pin($case(&dc)) as Case<'_>)),*]
        };
    }
    let cases: Vec<(&str, Case<'_>)> = cases![
        ldaps_with_the_ca_reads_the_domain_facts,
        binding_by_dn_works_too,
        starttls_on_ldap_reads_the_domain_facts,
        plaintext_needs_the_insecure_flag,
        wrong_password_is_named,
        existing_gmsas_are_found_with_or_without_dollar,
        missing_gmsa_lists_close_matches,
        wrong_ca_is_an_untrusted_certificate,
        system_roots_do_not_trust_the_test_ca,
    ];
    let mut failures = Vec::new();
    for (name, case) in cases {
        let began = Instant::now();
        match runtime.block_on(case) {
            Ok(()) => eprintln!("  ok   {name} ({:?})", began.elapsed()),
            Err(e) => {
                eprintln!("  FAIL {name}: {e}");
                failures.push(format!("{name}: {e}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of the Samba cases failed:\n{}\nSamba log ends:\n{}",
        failures.len(),
        failures.join("\n"),
        dc.log_tail(20)
    );
}

fn unused_config(url: String) -> DirectoryConfig {
    DirectoryConfig::new(
        url,
        Trust::CaFile("/nonexistent/ca.pem".into()),
        BindCredentials::new("Administrator@contoso.com", "secret"),
    )
}

#[tokio::test]
async fn plaintext_is_refused_before_connecting() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let mut config = unused_config(format!("ldap://{}", listener.local_addr().unwrap()));
    config.starttls = false;
    let err = Directory::connect(&config).await.unwrap_err();
    assert!(matches!(err, AdError::PlaintextRefused { .. }), "{err:?}");
    assert!(err.to_string().contains("insecure_plaintext"), "{err}");
    assert!(
        listener.accept().is_err(),
        "a connection was made although plain LDAP was refused"
    );
}

#[tokio::test]
async fn empty_password_is_refused_before_connecting() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let mut config = unused_config(format!("ldaps://{}", listener.local_addr().unwrap()));
    config.credentials = BindCredentials::new("Administrator@contoso.com", "");
    let err = Directory::connect(&config).await.unwrap_err();
    assert!(matches!(err, AdError::MissingCredentials { .. }), "{err:?}");
    assert!(listener.accept().is_err(), "a connection was made");
}

#[tokio::test]
async fn closed_port_is_unreachable_quickly() {
    let port = {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut config = unused_config(format!("ldap://127.0.0.1:{port}"));
    config.starttls = false;
    config.insecure_plaintext = true;
    config.timeout = Duration::from_secs(2);
    let began = Instant::now();
    let err = Directory::connect(&config).await.unwrap_err();
    assert!(matches!(err, AdError::Unreachable { .. }), "{err:?}");
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "{:?}",
        began.elapsed()
    );
}

#[tokio::test]
async fn silent_server_is_unreachable_within_the_timeout() {
    // Accepts TCP connections (the kernel does, from the backlog) but never answers.
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = LoopbackTls::generate(dir.path(), "silent").unwrap().ca_path;
    for url in [
        format!("ldaps://{}", listener.local_addr().unwrap()),
        format!("ldap://{}", listener.local_addr().unwrap()),
    ] {
        let mut config = unused_config(url.clone());
        config.trust = Trust::CaFile(ca.clone());
        config.timeout = Duration::from_millis(700);
        let began = Instant::now();
        let err = Directory::connect(&config).await.unwrap_err();
        assert!(matches!(err, AdError::Unreachable { .. }), "{url}: {err:?}");
        assert!(err.to_string().contains("no answer within"), "{err}");
        assert!(
            began.elapsed() < Duration::from_secs(3),
            "{url}: {:?}",
            began.elapsed()
        );
    }
}
