#![allow(clippy::unwrap_used)] // tests may panic

use serde_json::json;

use super::*;

const DOMAIN_SID: &str = "S-1-5-21-1-2-3";

fn domain() -> DomainFacts {
    DomainFacts {
        dns_name: "contoso.com".into(),
        forest_dns_name: "contoso.com".into(),
        netbios_name: "CONTOSO".into(),
        guid: "244818ae-87ac-4fcd-92ec-e79e5252348a".into(),
        sid: DOMAIN_SID.into(),
    }
}

fn contents(scopes: &[&str]) -> Value {
    json!({
        "CmsPlugins": ["ActiveDirectory"],
        "DomainJoinConfig": {
            "DnsName": "contoso.com", "DnsTreeName": "contoso.com",
            "Guid": "244818AE-87AC-4FCD-92EC-E79E5252348A", "MachineAccountName": "WebApp1",
            "NetBiosName": "CONTOSO", "Sid": DOMAIN_SID
        },
        "ActiveDirectoryConfig": {
            "GroupManagedServiceAccounts": scopes.iter()
                .map(|s| json!({"Name": "WebApp1", "Scope": s})).collect::<Vec<_>>()
        }
    })
}

fn claims(scopes: &[&str]) -> SpecClaims {
    SpecClaims::from_contents("gmsa-webapp1", &contents(scopes)).unwrap()
}

/// A self-relative descriptor with one ACE (type 0 allow, 1 deny) per entry, as Windows
/// writes PrincipalsAllowedToRetrieveManagedPassword.
fn descriptor(aces: &[(u8, &str)]) -> Vec<u8> {
    let sid_bytes = |sid: &str| windows_sddl::Sid::parse(sid).unwrap().to_bytes();
    let owner = sid_bytes("S-1-5-32-544");
    let mut body = Vec::new();
    for (kind, sid) in aces {
        let sid = sid_bytes(sid);
        body.extend([*kind, 0]);
        body.extend(((8 + sid.len()) as u16).to_le_bytes());
        body.extend(0x000F_01FFu32.to_le_bytes());
        body.extend(sid);
    }
    let mut acl = vec![2, 0];
    acl.extend(((8 + body.len()) as u16).to_le_bytes());
    acl.extend((aces.len() as u16).to_le_bytes());
    acl.extend([0, 0]);
    acl.extend(body);
    let mut sd = vec![1, 0];
    sd.extend(0x8004u16.to_le_bytes());
    sd.extend(20u32.to_le_bytes());
    sd.extend([0; 8]);
    sd.extend(((20 + owner.len()) as u32).to_le_bytes());
    sd.extend(owner);
    sd.extend(acl);
    sd
}

fn gmsa(membership: Option<Vec<u8>>) -> AccountEntry {
    AccountEntry {
        dn: "CN=WebApp1,CN=Managed Service Accounts,DC=contoso,DC=com".into(),
        sam_account_name: "WebApp1$".into(),
        object_classes: vec!["top".into(), "computer".into(), GMSA_CLASS_FOR_TESTS.into()],
        user_account_control: 4096,
        dns_host_name: Some("webapp1.contoso.com".into()),
        spns: vec!["HTTP/webapp1.contoso.com".into()],
        membership,
    }
}

const GMSA_CLASS_FOR_TESTS: &str = crate::facts::GMSA_CLASS;

fn node(name: &str, rid: u32, groups: &[(u32, bool)]) -> Retriever {
    Retriever::Node {
        node: name.into(),
        looked_for: String::new(),
        token: Some(Token {
            sam_account_name: format!("{}$", name.to_uppercase()),
            sid: format!("{DOMAIN_SID}-{rid}"),
            group_sids: groups
                .iter()
                .map(|(g, _)| format!("{DOMAIN_SID}-{g}"))
                .chain([format!("{DOMAIN_SID}-515")])
                .collect(),
            primary_group_sid: Some(format!("{DOMAIN_SID}-515")),
            direct_groups: groups
                .iter()
                .filter(|(_, direct)| *direct)
                .map(|(g, _)| format!("CN=g{g},CN=Users,DC=contoso,DC=com"))
                .collect(),
        }),
    }
}

fn group(rid: u32) -> (String, Principal) {
    (
        format!("{DOMAIN_SID}-{rid}"),
        Principal {
            name: format!("g{rid}"),
            dn: format!("CN=g{rid},CN=Users,DC=contoso,DC=com"),
            is_group: true,
        },
    )
}

fn find<'c>(checks: &'c [Check], name: &str, subject: &str) -> &'c Check {
    checks
        .iter()
        .find(|c| c.name == name && c.subject == subject)
        .unwrap_or_else(|| panic!("no {name} {subject} in {checks:#?}"))
}

#[test]
fn claims_come_from_the_credspec_contents() {
    let c = claims(&["contoso.com", "CONTOSO"]);
    assert_eq!(c.account, "WebApp1");
    assert_eq!(c.scopes, ["contoso.com", "CONTOSO"]);
    assert!(c.ccg_plugin_input.is_none());
    let err = SpecClaims::from_contents("x", &json!({"DomainJoinConfig": {}})).unwrap_err();
    assert!(err.contains("not a credential spec"), "{err}");
}

#[test]
fn retrieval_directly_through_a_group_nested_or_not_at_all() {
    let sd = descriptor(&[
        (0, &format!("{DOMAIN_SID}-1101")),
        (0, &format!("{DOMAIN_SID}-2000")),
    ]);
    let state = AccountState {
        entry: Some(gmsa(Some(sd))),
        principals: [group(2000)].into_iter().collect(),
        retrievers: vec![
            node("win-1", 1101, &[]),
            node("win-2", 1102, &[(2000, true)]),
            node("win-3", 1103, &[(2001, true), (2000, false)]),
            node("win-4", 1104, &[(2001, true)]),
        ],
        spn_holders: vec![],
    };
    let checks = evaluate(&claims(&["contoso.com", "CONTOSO"]), &domain(), &state);
    let r = |n: &str| find(&checks, CHECK_RETRIEVAL, &format!("gmsa-webapp1 node/{n}"));
    assert_eq!(r("win-1").verdict, Verdict::Pass);
    assert!(r("win-1").detail.contains("directly"), "{:?}", r("win-1"));
    assert!(r("win-2")
        .detail
        .contains("through group g2000, of which it is a member"));
    assert!(
        r("win-3").detail.contains("a nested member"),
        "{:?}",
        r("win-3")
    );
    let denied = r("win-4");
    assert_eq!(denied.verdict, Verdict::Fail);
    assert!(denied.detail.contains("may not retrieve"), "{denied:?}");
    // With an allowed group the fix adds the node to it.
    assert!(denied
        .fix
        .as_ref()
        .unwrap()
        .starts_with("Add-ADGroupMember -Identity 'g2000' -Members 'WIN-4$'"));
}

#[test]
fn deny_entries_win_and_empty_descriptors_allow_no_one() {
    let sd = descriptor(&[
        (1, &format!("{DOMAIN_SID}-1101")),
        (0, &format!("{DOMAIN_SID}-515")),
    ]);
    let state = AccountState {
        entry: Some(gmsa(Some(sd))),
        retrievers: vec![node("win-1", 1101, &[]), node("win-2", 1102, &[])],
        ..AccountState::default()
    };
    let checks = evaluate(&claims(&["contoso.com", "CONTOSO"]), &domain(), &state);
    let one = find(&checks, CHECK_RETRIEVAL, "gmsa-webapp1 node/win-1");
    assert_eq!(one.verdict, Verdict::Fail);
    assert!(one.detail.contains("denied"), "{one:?}");
    // Domain Computers is the primary group: a direct membership.
    let two = find(&checks, CHECK_RETRIEVAL, "gmsa-webapp1 node/win-2");
    assert!(two.detail.contains("of which it is a member"), "{two:?}");

    let state = AccountState {
        entry: Some(gmsa(None)),
        retrievers: vec![node("win-1", 1101, &[]), node("win-2", 1102, &[])],
        ..AccountState::default()
    };
    let checks = evaluate(&claims(&["contoso.com", "CONTOSO"]), &domain(), &state);
    // One command for both rows: Set-ADServiceAccount replaces the whole list.
    let two = find(&checks, CHECK_RETRIEVAL, "gmsa-webapp1 node/win-2");
    assert!(
        two.fix.as_ref().unwrap().ends_with("'WIN-1$','WIN-2$'"),
        "{two:?}"
    );
    let one = find(&checks, CHECK_RETRIEVAL, "gmsa-webapp1 node/win-1");
    assert!(one.detail.ends_with("allowed are none"), "{one:?}");
    assert_eq!(
        one.fix.as_deref(),
        Some("Set-ADServiceAccount -Identity WebApp1 -PrincipalsAllowedToRetrieveManagedPassword 'WIN-1$','WIN-2$'")
    );
}

#[test]
fn malformed_descriptors_and_missing_computer_accounts_fail_with_the_reason() {
    let state = AccountState {
        entry: Some(gmsa(Some(vec![1, 0, 4, 0x80]))),
        retrievers: vec![node("win-1", 1101, &[])],
        ..AccountState::default()
    };
    let checks = evaluate(&claims(&["contoso.com", "CONTOSO"]), &domain(), &state);
    assert!(find(&checks, CHECK_RETRIEVAL, "gmsa-webapp1")
        .detail
        .contains("cannot be read"));

    let state = AccountState {
        entry: Some(gmsa(None)),
        retrievers: vec![Retriever::Node {
            node: "win-9".into(),
            looked_for: "looked for sAMAccountName WIN-9$".into(),
            token: None,
        }],
        ..AccountState::default()
    };
    let checks = evaluate(&claims(&["contoso.com", "CONTOSO"]), &domain(), &state);
    let check = find(&checks, CHECK_RETRIEVAL, "gmsa-webapp1 node/win-9");
    assert!(check.detail.contains("not joined"), "{check:?}");
}

#[test]
fn ccg_specs_check_the_plugin_account_or_say_what_could_not_be_checked() {
    assert_eq!(
        ccg_account("Username=ccg-reader@contoso.com;SecretUri=https://v/s").as_deref(),
        Some("ccg-reader")
    );
    assert_eq!(
        ccg_account(r#"{"user": "CONTOSO\\reader"}"#).as_deref(),
        Some("reader")
    );
    assert_eq!(ccg_account("reader@contoso.com").as_deref(), Some("reader"));
    assert_eq!(
        ccg_account("ObjectId=1234;SecretUri=https://contoso.vault.azure.net/secrets/gmsa"),
        None
    );

    let state = AccountState {
        entry: Some(gmsa(None)),
        retrievers: vec![Retriever::Ccg {
            account: None,
            token: None,
        }],
        ..AccountState::default()
    };
    let checks = evaluate(&claims(&["contoso.com", "CONTOSO"]), &domain(), &state);
    let check = find(&checks, CHECK_RETRIEVAL, "gmsa-webapp1 ccg/?");
    assert_eq!(check.verdict, Verdict::Warn);
    assert!(check.detail.contains("could not be checked"), "{check:?}");
}

#[test]
fn the_account_must_be_an_enabled_gmsa_of_the_specs_domain() {
    let ok = AccountState {
        entry: Some(gmsa(None)),
        ..AccountState::default()
    };
    let checks = evaluate(&claims(&["contoso.com", "CONTOSO"]), &domain(), &ok);
    assert_eq!(
        find(&checks, CHECK_ACCOUNT, "gmsa-webapp1").verdict,
        Verdict::Pass
    );

    let mut foreign = claims(&["fabrikam.com"]);
    foreign.sid = "S-1-5-21-9-9-9".into();
    foreign.dns_name = "fabrikam.com".into();
    let check = evaluate(&foreign, &domain(), &ok).remove(0);
    assert_eq!(check.verdict, Verdict::Fail);
    assert!(
        check.detail.contains("Sid is \"S-1-5-21-9-9-9\""),
        "{check:?}"
    );
    assert!(check.detail.contains("DnsName"), "{check:?}");
    assert!(!check.detail.contains("Guid"), "{check:?}");

    let mut disabled = gmsa(None);
    disabled.user_account_control |= 2;
    let state = AccountState {
        entry: Some(disabled),
        ..AccountState::default()
    };
    let check = evaluate(&claims(&[]), &domain(), &state).remove(0);
    assert_eq!(
        check.fix.as_deref(),
        Some("Enable-ADAccount -Identity 'WebApp1$'")
    );

    let mut user = gmsa(None);
    user.object_classes = vec!["top".into(), "user".into()];
    let state = AccountState {
        entry: Some(user),
        ..AccountState::default()
    };
    let checks = evaluate(&claims(&[]), &domain(), &state);
    assert!(
        checks[0].detail.contains("is a user, not a"),
        "{:?}",
        checks[0]
    );
    // Nothing else is judged about an account that is not a gMSA; scopes still are.
    assert_eq!(checks.len(), 2);

    let checks = evaluate(&claims(&[]), &domain(), &AccountState::default());
    assert!(checks[0]
        .detail
        .starts_with("no account WebApp1$ in contoso.com"));
}

#[test]
fn scopes_need_the_dns_name_and_should_have_the_netbios_name() {
    let verdict = |scopes: &[&str]| scopes_of(scopes).verdict;
    assert_eq!(verdict(&["contoso.com", "CONTOSO"]), Verdict::Pass);
    assert_eq!(verdict(&["CONTOSO.COM", "contoso"]), Verdict::Pass);
    assert_eq!(verdict(&["contoso.com"]), Verdict::Warn);
    let only_netbios = scopes_of(&["CONTOSO"]);
    assert_eq!(only_netbios.verdict, Verdict::Fail);
    assert!(only_netbios.detail.contains("falls back to NTLM"));
    assert!(only_netbios
        .fix
        .unwrap()
        .contains(r#""Scope":"contoso.com""#));
}

fn scopes_of(scopes: &[&str]) -> Check {
    let checks = evaluate(&claims(scopes), &domain(), &AccountState::default());
    find(&checks, CHECK_SCOPES, "gmsa-webapp1").clone()
}

#[test]
fn duplicate_spns_and_dns_host_names() {
    let entry = gmsa(None);
    let holder = |dn: &str, sam: &str| SpnHolder {
        spn: "HTTP/webapp1.contoso.com".into(),
        dn: dn.into(),
        sam_account_name: sam.into(),
    };
    let mut state = AccountState {
        entry: Some(entry.clone()),
        spn_holders: vec![holder(&entry.dn, "WebApp1$")],
        ..AccountState::default()
    };
    let c = claims(&["contoso.com", "CONTOSO"]);
    assert_eq!(
        find(&evaluate(&c, &domain(), &state), CHECK_SPN, "gmsa-webapp1").verdict,
        Verdict::Pass
    );
    state
        .spn_holders
        .push(holder("CN=legacy,CN=Users,DC=contoso,DC=com", "legacy"));
    let check = find(&evaluate(&c, &domain(), &state), CHECK_SPN, "gmsa-webapp1").clone();
    assert_eq!(check.verdict, Verdict::Fail);
    assert_eq!(
        check.fix.as_deref(),
        Some("setspn -D HTTP/webapp1.contoso.com legacy")
    );

    for (host, verdict) in [
        (Some("webapp1.contoso.com"), Verdict::Pass),
        (Some("webapp1.fabrikam.com"), Verdict::Fail),
        (Some("contoso.com.evil"), Verdict::Fail),
        (None, Verdict::Fail),
    ] {
        let mut entry = gmsa(None);
        entry.dns_host_name = host.map(str::to_string);
        let state = AccountState {
            entry: Some(entry),
            ..AccountState::default()
        };
        let check = find(
            &evaluate(&c, &domain(), &state),
            CHECK_DNS_HOST_NAME,
            "gmsa-webapp1",
        )
        .clone();
        assert_eq!(check.verdict, verdict, "{host:?}: {check:?}");
    }
}

#[test]
fn a_root_key_must_be_in_effect() {
    let now = filetime_of_unix(1_800_000_000);
    let key = |id: &str, start: i64| RootKey {
        id: id.into(),
        use_start_time: start,
    };
    let none = kds_root_key(&domain(), &[], now);
    assert_eq!(none.verdict, Verdict::Fail);
    assert!(none.fix.unwrap().contains("Add-KdsRootKey"));
    let future = kds_root_key(&domain(), &[key("k1", now + 10_000_000 * 3600)], now);
    assert_eq!(future.verdict, Verdict::Fail);
    assert!(
        future
            .detail
            .contains("takes effect at 2027-01-15T09:00:00Z"),
        "{future:?}"
    );
    let ok = kds_root_key(&domain(), &[key("k1", now + 1), key("k2", now - 1)], now);
    assert_eq!(ok.verdict, Verdict::Pass);
    assert!(ok.detail.contains("k2"), "{ok:?}");
}

#[test]
fn the_closest_allowing_path_is_reported_whatever_the_ace_order() {
    // g2001 (nested) comes before g2000 (direct) in the descriptor.
    let sd = descriptor(&[
        (0, &format!("{DOMAIN_SID}-2001")),
        (0, &format!("{DOMAIN_SID}-2000")),
    ]);
    let state = AccountState {
        entry: Some(gmsa(Some(sd))),
        principals: [group(2000), group(2001)].into_iter().collect(),
        retrievers: vec![node("win-1", 1101, &[(2000, true), (2001, false)])],
        spn_holders: vec![],
    };
    let checks = evaluate(&claims(&["contoso.com", "CONTOSO"]), &domain(), &state);
    let check = find(&checks, CHECK_RETRIEVAL, "gmsa-webapp1 node/win-1");
    assert!(
        check
            .detail
            .contains("through group g2000, of which it is a member"),
        "{check:?}"
    );
}
