//! Binding to a domain controller as the connection flags say, for `credspec new --from-ad` and
//! `doctor --ad`: the password read from its file, TLS as asked, and error messages that name
//! the flag or file to change.

use std::path::PathBuf;

use anyhow::anyhow;
use gmsa_ad::{AdError, BindCredentials, DirectoryConfig, SecretString, Trust};

use crate::args::ConnectionArgs;
use crate::input::{InputError, Source};

/// What error messages name besides the error itself: the flags and files the user gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Flags {
    /// `--bind-dn` or `--bind-upn`.
    principal_flag: &'static str,
    /// The password file as messages name it (`<stdin>` for `-`).
    password_file: String,
    ca_file: Option<PathBuf>,
}

/// What went wrong, and with which of the accounts when it was a gMSA check.
#[derive(Debug)]
pub(crate) struct Failure {
    /// `--account` or `--additional-account (#N)`, with the name, for account checks.
    pub(crate) account: Option<String>,
    pub(crate) error: AdError,
}

impl From<AdError> for Failure {
    fn from(error: AdError) -> Self {
        Self {
            account: None,
            error,
        }
    }
}

/// How to reach the domain controller at `url` as the connection flags say, and what error
/// messages should name; `url_flag` is the flag that gave the URL (`--from-ad`, `--ad`).
pub(crate) fn connection(
    args: &ConnectionArgs,
    url: &str,
    url_flag: &str,
) -> anyhow::Result<(DirectoryConfig, Flags)> {
    let (principal_flag, principal) = match (&args.bind_dn, &args.bind_upn) {
        (Some(dn), _) => ("--bind-dn", dn.clone()),
        (None, Some(upn)) => ("--bind-upn", upn.clone()),
        (None, None) => return Err(anyhow!("{url_flag} needs --bind-dn or --bind-upn")),
    };
    let password_path = args
        .password_file
        .as_deref()
        .ok_or_else(|| anyhow!("{url_flag} needs --password-file"))?;
    let password_source = Source::new(password_path);
    let flags = Flags {
        principal_flag,
        password_file: password_source.name(),
        ca_file: args.ca_file.clone(),
    };
    let password = read_password(&password_source)?;
    Ok((
        config(args, url, BindCredentials::new(principal, password)),
        flags,
    ))
}

/// The connection settings the flags ask for: StartTLS on `ldap://` unless plain LDAP was
/// accepted with `--insecure-plaintext`.
fn config(args: &ConnectionArgs, url: &str, credentials: BindCredentials) -> DirectoryConfig {
    let trust = match &args.ca_file {
        Some(path) => Trust::CaFile(path.clone()),
        None => Trust::SystemRoots,
    };
    let mut config = DirectoryConfig::new(url, trust, credentials);
    config.starttls = !args.insecure_plaintext;
    config.insecure_plaintext = args.insecure_plaintext;
    config
}

/// The password: the file's text without one trailing newline. Messages never quote it.
fn read_password(source: &Source) -> anyhow::Result<SecretString> {
    let name = source.name();
    let text = source.read_text().map_err(|e| match e {
        InputError::Encoding { .. } => {
            anyhow!("the password file {name} is neither UTF-8 nor UTF-16 text (--password-file)")
        }
        other => anyhow!("cannot read the password file (--password-file): {other}"),
    })?;
    let password = strip_one_newline(text);
    if password.is_empty() {
        return Err(anyhow!(
            "the password file {name} is empty (--password-file): put the bind password in it; \
             an empty password would be an anonymous bind"
        ));
    }
    Ok(SecretString::from(password))
}

fn strip_one_newline(mut text: String) -> String {
    if text.ends_with("\r\n") {
        text.truncate(text.len() - 2);
    } else if text.ends_with('\n') {
        text.truncate(text.len() - 1);
    }
    text
}

/// The message for a directory error, naming the flag or file to change.
pub(crate) fn describe_error(error: AdError, flags: &Flags) -> String {
    describe(
        &Failure {
            account: None,
            error,
        },
        flags,
    )
}

/// The message for a failure, naming the flag or file to change.
pub(crate) fn describe(failure: &Failure, flags: &Flags) -> String {
    let message = match &failure.error {
        AdError::PlaintextRefused { url } => format!(
            "refusing plain LDAP to {url}: the bind password would cross the network \
             unencrypted; use ldaps:// or StartTLS (the default on ldap://), or pass \
             --insecure-plaintext if you accept that"
        ),
        AdError::StartTlsRefused { .. } => format!(
            "{}; or, if you accept that the bind password crosses the network unencrypted, \
             pass --insecure-plaintext",
            failure.error
        ),
        AdError::InvalidCredentials { principal, detail } => format!(
            "the domain controller rejected the credentials of {principal} ({detail}): check \
             {} and the password in {}",
            flags.principal_flag, flags.password_file
        ),
        AdError::UntrustedCertificate { url, reason } => match &flags.ca_file {
            Some(path) => format!(
                "the certificate of {url} is not trusted: {reason}; check that --ca-file {} \
                 holds the CA that issued it, and connect by a name or address the \
                 certificate lists",
                path.display()
            ),
            None => format!(
                "the certificate of {url} is not trusted by the system's trust store: {reason}; \
                 pass the CA that issued it with --ca-file, and connect by a name or address \
                 the certificate lists"
            ),
        },
        other => other.to_string(),
    };
    match &failure.account {
        Some(flag) => format!("{flag}: {message}"),
        None => message,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;

    fn flags(ca_file: Option<&str>) -> Flags {
        Flags {
            principal_flag: "--bind-upn",
            password_file: "ad-password".into(),
            ca_file: ca_file.map(PathBuf::from),
        }
    }

    #[test]
    fn one_trailing_newline_is_dropped() {
        assert_eq!(strip_one_newline("s3cret\n".into()), "s3cret");
        assert_eq!(strip_one_newline("s3cret\r\n".into()), "s3cret");
        assert_eq!(strip_one_newline("s3cret\n\n".into()), "s3cret\n");
        assert_eq!(strip_one_newline(" s3cret ".into()), " s3cret ");
    }

    #[test]
    fn empty_password_files_are_refused_without_quoting_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "\n").unwrap();
        let err = read_password(&Source::new(&path)).unwrap_err().to_string();
        assert!(err.contains("is empty"), "{err}");
        std::fs::write(&path, [0xff, 0xfe, 0x00, 0xd8]).unwrap();
        let err = read_password(&Source::new(&path)).unwrap_err().to_string();
        assert!(err.contains("neither UTF-8 nor UTF-16"), "{err}");
    }

    #[test]
    fn plaintext_only_when_accepted() {
        let args = |insecure_plaintext| ConnectionArgs {
            bind_dn: None,
            bind_upn: Some("svc@contoso.com".into()),
            password_file: Some("pw".into()),
            ca_file: None,
            starttls: false,
            insecure_plaintext,
        };
        let credentials = || BindCredentials::new("svc@contoso.com", "x".to_string());
        let safe = config(&args(false), "ldap://dc1", credentials());
        assert!(safe.starttls && !safe.insecure_plaintext);
        assert_eq!(safe.trust, Trust::SystemRoots);
        let plain = config(&args(true), "ldap://dc1", credentials());
        assert!(!plain.starttls && plain.insecure_plaintext);
    }

    #[test]
    fn messages_name_the_flag_to_change() {
        let failure = |error| Failure {
            account: None,
            error,
        };
        let wrong = describe(
            &failure(AdError::InvalidCredentials {
                principal: "svc@contoso.com".into(),
                detail: "wrong password or unknown user".into(),
            }),
            &flags(None),
        );
        assert!(
            wrong.contains("rejected the credentials of svc@contoso.com")
                && wrong.contains("check --bind-upn and the password in ad-password"),
            "{wrong}"
        );
        let untrusted = |ca| {
            describe(
                &failure(AdError::UntrustedCertificate {
                    url: "ldaps://dc1".into(),
                    reason: "unknown issuer".into(),
                }),
                &flags(ca),
            )
        };
        assert!(untrusted(None).contains("pass the CA that issued it with --ca-file"));
        assert!(untrusted(Some("ca.pem")).contains("check that --ca-file ca.pem holds the CA"));
        let plain = describe(
            &failure(AdError::PlaintextRefused {
                url: "ldap://dc1".into(),
            }),
            &flags(None),
        );
        assert!(plain.contains("--insecure-plaintext"), "{plain}");
        let unknown = describe(
            &Failure {
                account: Some("--additional-account (#2)".into()),
                error: AdError::UnknownAccount {
                    account: "Report".into(),
                    domain: "DC=contoso,DC=com".into(),
                    close_matches: vec!["Reports".into()],
                },
            },
            &flags(None),
        );
        assert!(
            unknown.starts_with("--additional-account (#2): no group managed service account")
                && unknown.ends_with("did you mean Reports?"),
            "{unknown}"
        );
    }
}
