//! Syntax of the names and identifiers that credential specs and their RBAC carry: Kubernetes
//! object names, Active Directory GUIDs and SIDs, NetBIOS and DNS domain names, gMSA account
//! names. Each check says what is wrong and what would be right, so callers can show it as is.

use std::fmt;

use thiserror::Error;

/// The longest Kubernetes object name (a DNS-1123 subdomain).
pub const MAX_OBJECT_NAME: usize = 253;
/// The longest namespace name (a DNS-1123 label).
pub const MAX_NAMESPACE: usize = 63;
/// NetBIOS names, and therefore gMSA account names, have at most 15 characters.
pub const MAX_NETBIOS: usize = 15;

/// Characters Active Directory refuses in a sAMAccountName.
const ACCOUNT_FORBIDDEN: &[char] = &[
    '"', '/', '\\', '[', ']', ':', ';', '|', '=', ',', '+', '*', '?', '<', '>', '@',
];
/// Characters Windows refuses in a NetBIOS domain name.
const NETBIOS_FORBIDDEN: &[char] = &['\\', '/', ':', '*', '?', '"', '<', '>', '|'];

/// Why a value is not what it should be. The messages end with what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SyntaxError {
    #[error("{value:?} is not a valid Kubernetes name: names are lowercase DNS-1123 subdomains (a-z, 0-9, '-' and '.', starting and ending with a letter or digit, at most 253 characters){}", Suggestion(.suggestion))]
    ObjectName {
        value: String,
        suggestion: Option<String>,
    },
    #[error("{value:?} is not a valid namespace: namespaces are lowercase DNS-1123 labels (a-z, 0-9 and '-', starting and ending with a letter or digit, at most 63 characters){}", Suggestion(.suggestion))]
    Namespace {
        value: String,
        suggestion: Option<String>,
    },
    #[error("{0:?} is not a GUID: write 32 hexadecimal digits grouped 8-4-4-4-12, such as 244818ae-87ac-4fcd-92ec-e79e5252348a")]
    Guid(String),
    #[error("{0:?} is not a SID: write it as S-1-5-21- followed by three numbers, such as S-1-5-21-2126449477-2524075714-3094792973 (Get-ADDomain shows it as DomainSID)")]
    Sid(String),
    #[error("{value:?} is the SID of an account, not of a domain (it ends in the relative ID {rid}): use the domain's SID {domain}")]
    AccountSid {
        value: String,
        domain: String,
        rid: String,
    },
    #[error("{0:?} is not a domain SID: a domain's SID is S-1-5-21- followed by three numbers, such as S-1-5-21-2126449477-2524075714-3094792973 (Get-ADDomain shows it as DomainSID)")]
    NotDomainSid(String),
    #[error("{value:?} has {len} characters: NetBIOS domain names have at most 15 (Get-ADDomain shows it as NetBIOSName, such as CONTOSO)")]
    NetbiosTooLong { value: String, len: usize },
    #[error("{0:?} is not a NetBIOS domain name: it must be 1 to 15 characters without spaces at either end, none of \\ / : * ? \" < > |, and not start with '.'")]
    Netbios(String),
    #[error("{0:?} is not a DNS domain name: write dot-separated labels of letters, digits and '-', such as contoso.com")]
    DnsDomain(String),
    #[error("{0:?} is not a gMSA account name: write the account's name, such as WebApp1, without the domain, 1 to 15 characters and none of \" / \\ [ ] : ; | = , + * ? < > @")]
    Account(String),
    #[error("{value:?} has {len} characters: gMSA account names have at most 15 (not counting a final '$')")]
    AccountTooLong { value: String, len: usize },
}

/// Formats an optional "; use X" tail.
struct Suggestion<'a>(&'a Option<String>);

impl fmt::Display for Suggestion<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(s) => write!(f, "; use {s:?}"),
            None => Ok(()),
        }
    }
}

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// Whether `s` is a DNS-1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAMESPACE
        && s.chars().all(|c| is_lower_alnum(c) || c == '-')
        && s.starts_with(is_lower_alnum)
        && s.ends_with(is_lower_alnum)
}

/// Whether `s` is a DNS-1123 subdomain, the syntax of most Kubernetes object names
/// (custom resources included).
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= MAX_OBJECT_NAME
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.chars().all(|c| is_lower_alnum(c) || c == '-')
                && label.starts_with(is_lower_alnum)
                && label.ends_with(is_lower_alnum)
        })
}

/// A DNS-1123 subdomain close to `s` (lowercased, other characters turned into '-'), when one
/// exists.
pub fn suggest_dns1123_subdomain(s: &str) -> Option<String> {
    let mapped: String = s
        .trim()
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if is_lower_alnum(c) || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let labels: Vec<&str> = mapped
        .split('.')
        .map(|l| l.trim_matches('-'))
        .filter(|l| !l.is_empty())
        .collect();
    let candidate = labels.join(".");
    (candidate != s && is_dns1123_subdomain(&candidate)).then_some(candidate)
}

/// Checks a Kubernetes object name (a DNS-1123 subdomain).
pub fn object_name(s: &str) -> Result<(), SyntaxError> {
    if is_dns1123_subdomain(s) {
        Ok(())
    } else {
        Err(SyntaxError::ObjectName {
            value: s.to_string(),
            suggestion: suggest_dns1123_subdomain(s),
        })
    }
}

/// Checks a namespace name (a DNS-1123 label).
pub fn namespace(s: &str) -> Result<(), SyntaxError> {
    if is_dns1123_label(s) {
        Ok(())
    } else {
        Err(SyntaxError::Namespace {
            value: s.to_string(),
            suggestion: suggest_dns1123_subdomain(s)
                .map(|n| n.replace('.', "-"))
                .filter(|n| is_dns1123_label(n)),
        })
    }
}

/// Reads a GUID, with or without braces, in any case; returns it as Windows prints a
/// `[Guid]`: lowercase, no braces.
pub fn guid(s: &str) -> Result<String, SyntaxError> {
    let bare = s
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .unwrap_or(s);
    let groups: Vec<&str> = bare.split('-').collect();
    let lengths: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    let ok = lengths == [8, 4, 4, 4, 12]
        && groups
            .iter()
            .all(|g| g.chars().all(|c| c.is_ascii_hexdigit()));
    if ok {
        Ok(bare.to_ascii_lowercase())
    } else {
        Err(SyntaxError::Guid(s.to_string()))
    }
}

/// Checks the general syntax of a SID: `S-1-<authority>-<sub-authority>...`, up to 15
/// sub-authorities of 32 bits each.
pub fn sid(s: &str) -> Result<(), SyntaxError> {
    sid_parts(s)
        .map(|_| ())
        .ok_or_else(|| SyntaxError::Sid(s.to_string()))
}

/// The authority and sub-authorities of a SID.
fn sid_parts(s: &str) -> Option<(u64, Vec<u32>)> {
    let rest = s.strip_prefix("S-1-")?;
    let mut parts = rest.split('-');
    let authority = parts.next()?;
    let authority = match authority
        .strip_prefix("0x")
        .or(authority.strip_prefix("0X"))
    {
        Some(hex) if !hex.is_empty() && hex.len() <= 12 => u64::from_str_radix(hex, 16).ok()?,
        Some(_) => return None,
        None if is_decimal(authority) => authority.parse::<u64>().ok().filter(|a| *a < 1 << 48)?,
        None => return None,
    };
    let subs = parts
        .map(|p| {
            if is_decimal(p) {
                p.parse::<u32>().ok()
            } else {
                None
            }
        })
        .collect::<Option<Vec<u32>>>()?;
    (!subs.is_empty() && subs.len() <= 15).then_some((authority, subs))
}

fn is_decimal(s: &str) -> bool {
    !s.is_empty() && s.len() <= 20 && s.chars().all(|c| c.is_ascii_digit())
}

/// Checks a domain SID: `S-1-5-21-<a>-<b>-<c>`, the only shape Active Directory domains have.
/// An account's SID (the domain's plus a relative ID) is refused with the domain part named.
pub fn domain_sid(s: &str) -> Result<(), SyntaxError> {
    let Some((authority, subs)) = sid_parts(s) else {
        return Err(SyntaxError::Sid(s.to_string()));
    };
    match (authority, subs.as_slice()) {
        (5, [21, _, _, _]) => Ok(()),
        (5, [21, a, b, c, rid]) => Err(SyntaxError::AccountSid {
            value: s.to_string(),
            domain: format!("S-1-5-21-{a}-{b}-{c}"),
            rid: rid.to_string(),
        }),
        _ => Err(SyntaxError::NotDomainSid(s.to_string())),
    }
}

/// Checks a NetBIOS domain name: at most 15 characters, none of `\ / : * ? " < > |`.
pub fn netbios(s: &str) -> Result<(), SyntaxError> {
    let len = s.chars().count();
    if len > MAX_NETBIOS {
        return Err(SyntaxError::NetbiosTooLong {
            value: s.to_string(),
            len,
        });
    }
    let ok = len > 0
        && s.trim() == s
        && !s.starts_with('.')
        && !s.contains(NETBIOS_FORBIDDEN)
        && !s.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(SyntaxError::Netbios(s.to_string()))
    }
}

/// Checks a DNS domain name such as `contoso.com`: labels of letters, digits and '-' (not at
/// either end), at most 63 characters each, 253 in all.
pub fn dns_domain(s: &str) -> Result<(), SyntaxError> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !s.is_empty() && s.len() <= 253 && s.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(SyntaxError::DnsDomain(s.to_string()))
    }
}

/// Checks a gMSA account name (its sAMAccountName without the final `$`) and returns it
/// without that `$`, as New-CredentialSpec writes it.
pub fn account(s: &str) -> Result<&str, SyntaxError> {
    let name = s.strip_suffix('$').unwrap_or(s);
    let len = name.chars().count();
    if len > MAX_NETBIOS {
        return Err(SyntaxError::AccountTooLong {
            value: s.to_string(),
            len,
        });
    }
    let ok = len > 0
        && name.trim() == name
        && !name.contains(ACCOUNT_FORBIDDEN)
        && !name.chars().any(char::is_control);
    if ok {
        Ok(name)
    } else {
        Err(SyntaxError::Account(s.to_string()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;

    #[test]
    fn object_names() {
        for ok in ["gmsa-webapp1", "a", "a.b-c", "0x", &"a".repeat(253)] {
            assert!(object_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "a..b", "A", "a_b", "a.", &"a".repeat(254)] {
            assert!(object_name(bad).is_err(), "{bad}");
        }
        let err = object_name("gmsa-WebApp1").unwrap_err();
        assert_eq!(
            err,
            SyntaxError::ObjectName {
                value: "gmsa-WebApp1".into(),
                suggestion: Some("gmsa-webapp1".into())
            }
        );
        assert!(
            err.to_string().ends_with(r#"; use "gmsa-webapp1""#),
            "{err}"
        );
        assert_eq!(
            suggest_dns1123_subdomain("_My App_.v2"),
            Some("my-app.v2".into())
        );
        assert_eq!(suggest_dns1123_subdomain("---"), None);
    }

    #[test]
    fn namespaces() {
        assert!(namespace("team-c").is_ok());
        assert!(namespace("a.b").is_err());
        assert_eq!(
            namespace("Team_C"),
            Err(SyntaxError::Namespace {
                value: "Team_C".into(),
                suggestion: Some("team-c".into())
            })
        );
    }

    #[test]
    fn guids() {
        assert_eq!(
            guid("244818AE-87ac-4fcd-92ec-e79e5252348a").unwrap(),
            "244818ae-87ac-4fcd-92ec-e79e5252348a"
        );
        assert_eq!(
            guid("{CCC2A336-D7F3-4818-A213-272B7924213E}").unwrap(),
            "ccc2a336-d7f3-4818-a213-272b7924213e"
        );
        for bad in [
            "",
            "244818ae87ac4fcd92ece79e5252348a",
            "244818ae-87ac-4fcd-92ec-e79e5252348",
            "g44818ae-87ac-4fcd-92ec-e79e5252348a",
            "{244818ae-87ac-4fcd-92ec-e79e5252348a",
        ] {
            assert!(guid(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sids() {
        assert!(sid("S-1-5-32-544").is_ok());
        assert!(sid("S-1-0x000000000005-21-1").is_ok());
        for bad in [
            "",
            "S-1-5",
            "s-1-5-21-1",
            "S-2-5-21",
            "S-1-5-x",
            "S-1-5-4294967296",
        ] {
            assert!(sid(bad).is_err(), "{bad}");
        }
        assert!(domain_sid("S-1-5-21-2126449477-2524075714-3094792973").is_ok());
        assert_eq!(
            domain_sid("S-1-5-21-1-2-3-1105"),
            Err(SyntaxError::AccountSid {
                value: "S-1-5-21-1-2-3-1105".into(),
                domain: "S-1-5-21-1-2-3".into(),
                rid: "1105".into()
            })
        );
        assert!(matches!(
            domain_sid("S-1-5-32-544"),
            Err(SyntaxError::NotDomainSid(_))
        ));
        assert!(matches!(
            domain_sid("S-1-5-21"),
            Err(SyntaxError::NotDomainSid(_))
        ));
        assert!(matches!(domain_sid("S-1-5"), Err(SyntaxError::Sid(_))));
    }

    #[test]
    fn netbios_names() {
        assert!(netbios("CONTOSO").is_ok());
        assert!(netbios("ABCDEFGHIJKLMNO").is_ok());
        assert_eq!(
            netbios("ABCDEFGHIJKLMNOP"),
            Err(SyntaxError::NetbiosTooLong {
                value: "ABCDEFGHIJKLMNOP".into(),
                len: 16
            })
        );
        for bad in ["", " CONTOSO", "CON/TOSO", ".CONTOSO"] {
            assert!(netbios(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dns_domains() {
        for ok in ["contoso.com", "CONTOSO.com", "corp", "a-b.c0"] {
            assert!(dns_domain(ok).is_ok(), "{ok}");
        }
        for bad in ["", "contoso.com.", "-a.com", "a_b.com", "a..com", "a b"] {
            assert!(dns_domain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn accounts() {
        assert_eq!(account("WebApp1").unwrap(), "WebApp1");
        assert_eq!(account("WebApp1$").unwrap(), "WebApp1");
        assert_eq!(account("ABCDEFGHIJKLMNO$").unwrap(), "ABCDEFGHIJKLMNO");
        assert!(matches!(
            account("ABCDEFGHIJKLMNOP"),
            Err(SyntaxError::AccountTooLong { len: 16, .. })
        ));
        for bad in ["", "$", "CONTOSO\\WebApp1", "WebApp1@contoso.com", " a"] {
            assert!(account(bad).is_err(), "{bad}");
        }
    }
}
