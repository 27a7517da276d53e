//! What can go wrong talking to a domain controller, each case worded so the operator knows
//! what to change.

use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

/// An error reading domain facts or checking a gMSA.
#[derive(Debug, Error)]
pub enum AdError {
    /// The URL is not `ldaps://host[:port]` or `ldap://host[:port]`.
    #[error("invalid LDAP URL {url:?}: {reason}; use ldaps://host[:port] or ldap://host[:port]")]
    InvalidUrl { url: String, reason: String },

    /// Plain LDAP was asked for without acknowledging that the password would cross the network
    /// in clear. Raised before any connection is made.
    #[error(
        "refusing to bind over plain LDAP to {url}: the password would be sent unencrypted; \
         use ldaps:// or StartTLS, or set insecure_plaintext if you accept that"
    )]
    PlaintextRefused { url: String },

    /// No bind identity, or an empty password (which Active Directory treats as an anonymous
    /// bind that "succeeds" without checking anything).
    #[error("missing bind credentials: {what}; give a bind DN or UPN and a non-empty password")]
    MissingCredentials { what: &'static str },

    /// The CA file could not be read or holds no certificate.
    #[error("cannot use CA file {path}: {reason}; pass a PEM file with the CA that issued the domain controller's certificate")]
    CaFile { path: PathBuf, reason: String },

    /// No trust anchor was found in the system's certificate store.
    #[error("no system root certificates could be loaded ({reason}); pass the domain's CA with --ca-file")]
    SystemRoots { reason: String },

    /// TCP connection failed or the server did not answer in time.
    #[error(
        "cannot reach the domain controller at {url}: {reason}; check the host name, the port \
         (636 for ldaps://, 389 for ldap://) and any firewall in between"
    )]
    Unreachable { url: String, reason: String },

    /// The server's certificate failed verification.
    #[error(
        "the certificate of {url} is not trusted: {reason}; pass the CA that issued it with \
         --ca-file, and connect by a name or address the certificate lists"
    )]
    UntrustedCertificate { url: String, reason: String },

    /// The TLS handshake failed for a reason other than the certificate.
    #[error("TLS with {url} failed: {reason}; check that the port speaks LDAPS (636) for ldaps:// and plain LDAP (389) for ldap://")]
    Tls { url: String, reason: String },

    /// The server refused the StartTLS extended operation.
    #[error("{url} refused StartTLS (LDAP result {code}: {text}); use ldaps:// instead")]
    StartTlsRefused {
        url: String,
        code: u32,
        text: String,
    },

    /// The server answered but is not an Active Directory domain controller.
    #[error("{url} is not an Active Directory domain controller: {reason}; point the URL at a DC of the domain")]
    NotDomainController { url: String, reason: String },

    /// LDAP result 49: the DN/UPN or password is wrong, or the account cannot log on.
    #[error("the domain controller rejected the credentials of {principal}: {detail}; check the bind DN or UPN and the password file")]
    InvalidCredentials { principal: String, detail: String },

    /// LDAP result 8: the server does not accept a simple bind on this connection.
    #[error(
        "{url} requires a protected connection for simple binds ({text}); use ldaps:// or StartTLS"
    )]
    StrongAuthRequired { url: String, text: String },

    /// The account name cannot be a sAMAccountName.
    #[error("{account:?} is not a valid gMSA account name: {reason}")]
    InvalidAccountName { account: String, reason: String },

    /// No group managed service account with that name exists in the domain.
    #[error(
        "no group managed service account {account:?} (sAMAccountName {account}$) in {domain}; \
         create it with New-ADServiceAccount or fix the name{}",
        suggestion(close_matches)
    )]
    UnknownAccount {
        account: String,
        domain: String,
        /// gMSA names (without `$`) that look like what was asked for, closest first.
        close_matches: Vec<String>,
    },

    /// The directory returned an entry without an attribute every domain has.
    #[error("{dn} has no readable {attribute}; the bind account may lack read access to it")]
    MissingAttribute { dn: String, attribute: &'static str },

    /// An attribute's value could not be decoded.
    #[error("{dn} has a malformed {attribute}: {reason}")]
    Malformed {
        dn: String,
        attribute: &'static str,
        reason: String,
    },

    /// An operation got no answer in time.
    #[error("{url} did not answer the {operation} within {after:?}; the domain controller may be overloaded, or raise the timeout")]
    Timeout {
        url: String,
        operation: &'static str,
        after: Duration,
    },

    /// Any other LDAP failure.
    #[error("LDAP {operation} against {url} failed: {source}")]
    Ldap {
        url: String,
        operation: &'static str,
        #[source]
        source: Box<ldap3::LdapError>,
    },
}

fn suggestion(close_matches: &[String]) -> String {
    if close_matches.is_empty() {
        String::new()
    } else {
        format!("; did you mean {}?", close_matches.join(", "))
    }
}

/// What Active Directory's `data` code in a result-49 diagnostic means.
pub(crate) fn bind_failure_detail(text: &str) -> String {
    let code = text
        .split(", ")
        .find_map(|part| part.trim().strip_prefix("data "))
        .map(|rest| rest.trim().to_ascii_lowercase());
    let meaning = match code.as_deref() {
        Some("525") => "no such user",
        Some("52e") => "wrong password or unknown user",
        Some("530") => "logon not permitted at this time",
        Some("531") => "logon not permitted from this workstation",
        Some("532") => "password expired",
        Some("533") => "account disabled",
        Some("701") => "account expired",
        Some("773") => "password must be reset",
        Some("775") => "account locked out",
        _ => "invalid credentials",
    };
    if text.is_empty() {
        meaning.to_string()
    } else {
        format!("{meaning} ({text})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_active_directory_bind_data_codes() {
        let text = "80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data 52e, v1db1";
        assert!(bind_failure_detail(text).starts_with("wrong password or unknown user ("));
        let text = "80090308: LdapErr: DSID-0C09030B, comment: AcceptSecurityContext error, data 775, v4563";
        assert!(bind_failure_detail(text).starts_with("account locked out"));
        assert_eq!(bind_failure_detail(""), "invalid credentials");
    }

    #[test]
    fn unknown_account_lists_close_matches() {
        let err = AdError::UnknownAccount {
            account: "WebApp".into(),
            domain: "contoso.com".into(),
            close_matches: vec!["WebApp1".into(), "WebApp2".into()],
        };
        let message = err.to_string();
        assert!(
            message.contains("did you mean WebApp1, WebApp2?"),
            "{message}"
        );
        assert!(message.contains("sAMAccountName WebApp$"), "{message}");
    }
}
