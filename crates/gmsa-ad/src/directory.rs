//! A bound LDAP connection to an Active Directory domain controller: LDAPS, or StartTLS on
//! `ldap://`, with plain LDAP only on explicit request. Every network step is bounded by the
//! configured timeout.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{ldap_escape, Ldap, LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry};
use secrecy::{ExposeSecret as _, SecretString};
use tokio::task::JoinHandle;
use tracing::debug;

use crate::account::{account_name, close_matches};
use crate::error::{bind_failure_detail, AdError};
use crate::facts::{domain_names, CrossRef, DomainFacts, RootDse, GMSA_CLASS};
use crate::identifiers::{guid_from_bytes, sid_from_bytes};

mod tls;

use tls::{client_config, connect_error};

/// How long one network step (connect with TLS, one search, the bind) may take by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Page size for searches that may return many entries (AD's limit is 1000 per page).
const PAGE_SIZE: i32 = 500;
/// LDAP result codes this module tells apart (RFC 4511, appendix A).
const RESULT_STRONGER_AUTH_REQUIRED: u32 = 8;
const RESULT_INVALID_CREDENTIALS: u32 = 49;
const RESULT_NO_SUCH_OBJECT: u32 = 32;

/// Which certificates the domain controller's TLS certificate must chain to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The CA certificates in this PEM file (`--ca-file`), and nothing else.
    CaFile(PathBuf),
    /// The operating system's trust store.
    SystemRoots,
}

/// Who binds: a DN (`CN=svc,CN=Users,DC=contoso,DC=com`) or a UPN (`svc@contoso.com`), and the
/// password, which is never logged or shown by `Debug`.
#[derive(Debug, Clone)]
pub struct BindCredentials {
    pub principal: String,
    pub password: SecretString,
}

impl BindCredentials {
    /// Credentials for a simple bind.
    pub fn new(principal: impl Into<String>, password: impl Into<SecretString>) -> Self {
        Self {
            principal: principal.into(),
            password: password.into(),
        }
    }
}

/// How to reach and authenticate to a domain controller.
#[derive(Debug, Clone)]
pub struct DirectoryConfig {
    /// `ldaps://host[:port]` (TLS from the start) or `ldap://host[:port]`.
    pub url: String,
    /// What the server's certificate must chain to.
    pub trust: Trust,
    /// On `ldap://` URLs, upgrade with StartTLS before binding (the default). Ignored for
    /// `ldaps://`.
    pub starttls: bool,
    /// Acknowledges that turning StartTLS off sends the password in clear; without it a
    /// plain-LDAP configuration is refused before connecting.
    pub insecure_plaintext: bool,
    pub credentials: BindCredentials,
    /// Bound on each network step.
    pub timeout: Duration,
}

impl DirectoryConfig {
    /// A configuration with the safe defaults: StartTLS on `ldap://`, no plaintext,
    /// [`DEFAULT_TIMEOUT`].
    pub fn new(url: impl Into<String>, trust: Trust, credentials: BindCredentials) -> Self {
        Self {
            url: url.into(),
            trust,
            starttls: true,
            insecure_plaintext: false,
            credentials,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `ldaps://`: TLS from the first byte.
    Ldaps,
    /// `ldap://` upgraded with the StartTLS extended operation.
    StartTls,
    /// `ldap://` without TLS; only when explicitly accepted.
    Plaintext,
}

impl Transport {
    /// Decides the transport from the URL and the flags, refusing plaintext unless accepted.
    /// Pure, so a refusal provably happens before any connection.
    pub fn choose(
        url: &str,
        starttls: bool,
        insecure_plaintext: bool,
    ) -> Result<Transport, AdError> {
        let invalid = |reason: &str| AdError::InvalidUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| invalid("no scheme"))?;
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#']) {
            return Err(invalid(
                "it has a path or query; the base DN is read from the rootDSE",
            ));
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| invalid("an IPv6 address lacks its closing ']'"))?;
            match after {
                "" => (host, None),
                _ => (
                    host,
                    Some(
                        after
                            .strip_prefix(':')
                            .ok_or_else(|| invalid("unexpected text after the IPv6 address"))?,
                    ),
                ),
            }
        } else {
            match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() || host.contains('@') {
            return Err(invalid("no host name or address"));
        }
        if let Some(port) = port {
            if port.parse::<u16>().map_or(true, |p| p == 0) {
                return Err(invalid("the port is not a number from 1 to 65535"));
            }
        }
        match scheme.to_ascii_lowercase().as_str() {
            "ldaps" => Ok(Transport::Ldaps),
            "ldap" if starttls => Ok(Transport::StartTls),
            "ldap" if insecure_plaintext => Ok(Transport::Plaintext),
            "ldap" => Err(AdError::PlaintextRefused {
                url: url.to_string(),
            }),
            _ => Err(invalid("the scheme is neither ldaps nor ldap")),
        }
    }

    fn uses_tls(self) -> bool {
        self != Transport::Plaintext
    }
}

/// A connection to a domain controller, bound with the configured credentials.
#[derive(Debug)]
pub struct Directory {
    pub(crate) session: Session,
    root: RootDse,
}

impl Directory {
    /// Connects, checks that the server is an AD domain controller (from its rootDSE, before
    /// any password is sent), and binds.
    pub async fn connect(config: &DirectoryConfig) -> Result<Self, AdError> {
        let url = config.url.trim().to_string();
        let transport = Transport::choose(&url, config.starttls, config.insecure_plaintext)?;
        if config.credentials.principal.trim().is_empty() {
            return Err(AdError::MissingCredentials {
                what: "the bind DN or UPN is empty",
            });
        }
        if config.credentials.password.expose_secret().is_empty() {
            return Err(AdError::MissingCredentials {
                what: "the password is empty (AD would treat it as an anonymous bind)",
            });
        }

        let mut settings = LdapConnSettings::new().set_conn_timeout(config.timeout);
        if transport.uses_tls() {
            settings = settings
                .set_config(client_config(&url, &config.trust)?)
                .set_starttls(transport == Transport::StartTls);
        }
        debug!(url = %url, ?transport, "connecting to domain controller");
        let context = Context {
            url,
            timeout: config.timeout,
        };
        let (conn, ldap) = LdapConnAsync::with_settings(settings, &context.url)
            .await
            .map_err(|e| connect_error(&context, transport, e))?;
        let driver = tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                debug!(error = %e, "LDAP connection ended");
            }
        });
        let mut session = Session {
            ldap,
            driver,
            context,
        };
        let root = session.read_root_dse().await?;
        session.bind(&config.credentials).await?;
        Ok(Self { session, root })
    }

    /// The naming contexts from the rootDSE.
    pub fn root_dse(&self) -> &RootDse {
        &self.root
    }

    /// Reads the domain's DNS, forest and NetBIOS names, GUID and SID.
    pub async fn domain_facts(&mut self) -> Result<DomainFacts, AdError> {
        let domain_dn = &self.root.default_naming_context;
        let domain = self
            .session
            .search(
                "domain object read",
                domain_dn,
                Scope::Base,
                "(objectClass=*)",
                &["objectGUID", "objectSid"],
            )
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| AdError::MissingAttribute {
                dn: domain_dn.clone(),
                attribute: "objectGUID",
            })?;
        let guid = decode(&domain, "objectGUID", guid_from_bytes)?;
        let sid = decode(&domain, "objectSid", sid_from_bytes)?;

        let cross_refs: Vec<CrossRef> = self
            .session
            .search(
                "crossRef search",
                &self.root.partitions_dn(),
                Scope::OneLevel,
                "(&(objectClass=crossRef)(nCName=*))",
                &["nCName", "dnsRoot", "nETBIOSName"],
            )
            .await?
            .iter()
            .map(|entry| CrossRef {
                dn: entry.dn.clone(),
                nc_name: first(entry, "nCName").unwrap_or_default(),
                dns_root: first(entry, "dnsRoot"),
                netbios_name: first(entry, "nETBIOSName"),
            })
            .collect();
        let names = domain_names(&self.root, &cross_refs).map_err(|reason| {
            AdError::NotDomainController {
                url: self.session.context.url.clone(),
                reason: format!("{reason} (or the bind account cannot read it)"),
            }
        })?;
        Ok(DomainFacts {
            dns_name: names.dns_name,
            forest_dns_name: names.forest_dns_name,
            netbios_name: names.netbios_name,
            guid,
            sid,
        })
    }

    /// Checks that `account` (with or without the trailing `$`) is a group managed service
    /// account of this domain; if not, the error lists gMSAs with similar names.
    pub async fn check_gmsa(&mut self, account: &str) -> Result<(), AdError> {
        let name = account_name(account).map_err(|reason| AdError::InvalidAccountName {
            account: account.to_string(),
            reason,
        })?;
        let base = &self.root.default_naming_context;
        let filter = format!(
            "(&(objectClass={GMSA_CLASS})(sAMAccountName={}$))",
            ldap_escape(&name)
        );
        let found = self
            .session
            .search(
                "gMSA lookup",
                base,
                Scope::Subtree,
                &filter,
                &["sAMAccountName"],
            )
            .await?;
        if !found.is_empty() {
            return Ok(());
        }
        let existing: Vec<String> = self
            .session
            .paged_search(
                "gMSA listing",
                base,
                &format!("(objectClass={GMSA_CLASS})"),
                &["sAMAccountName"],
            )
            .await?
            .iter()
            .filter_map(|entry| first(entry, "sAMAccountName"))
            .collect();
        Err(AdError::UnknownAccount {
            close_matches: close_matches(&name, existing.iter().map(String::as_str)),
            account: name,
            domain: base.clone(),
        })
    }

    /// Unbinds and closes the connection.
    pub async fn close(mut self) {
        let timeout = self.session.context.timeout;
        let _ = tokio::time::timeout(timeout, self.session.ldap.unbind()).await;
    }
}

/// The LDAP handle, the task driving its connection, and what errors need to name.
#[derive(Debug)]
pub(crate) struct Session {
    ldap: Ldap,
    driver: JoinHandle<()>,
    pub(crate) context: Context,
}

/// What error messages and timeouts need to know about the connection.
#[derive(Debug)]
pub(crate) struct Context {
    pub(crate) url: String,
    timeout: Duration,
}

impl Session {
    async fn read_root_dse(&mut self) -> Result<RootDse, AdError> {
        let entry = self
            .search(
                "rootDSE read",
                "",
                Scope::Base,
                "(objectClass=*)",
                &[
                    "defaultNamingContext",
                    "rootDomainNamingContext",
                    "configurationNamingContext",
                    "supportedCapabilities",
                ],
            )
            .await?
            .into_iter()
            .next();
        let not_dc = |reason: String| AdError::NotDomainController {
            url: self.context.url.clone(),
            reason,
        };
        let entry = entry.ok_or_else(|| not_dc("it returned no rootDSE".to_string()))?;
        RootDse::from_attributes(|name| values(&entry, name)).map_err(not_dc)
    }

    async fn bind(&mut self, credentials: &BindCredentials) -> Result<(), AdError> {
        debug!(principal = %credentials.principal, "binding to domain controller");
        let result = timed(
            &self.context,
            "bind",
            self.ldap
                .simple_bind(&credentials.principal, credentials.password.expose_secret()),
        )
        .await?;
        match result.rc {
            0 => Ok(()),
            RESULT_INVALID_CREDENTIALS => Err(AdError::InvalidCredentials {
                principal: credentials.principal.clone(),
                detail: bind_failure_detail(&result.text),
            }),
            RESULT_STRONGER_AUTH_REQUIRED => Err(AdError::StrongAuthRequired {
                url: self.context.url.clone(),
                text: result.text,
            }),
            _ => Err(AdError::Ldap {
                url: self.context.url.clone(),
                operation: "bind",
                source: Box::new(LdapError::from(result)),
            }),
        }
    }

    /// A search that drops referrals (other partitions, DNS zones) and accepts a
    /// result-code-10 (referral) answer.
    pub(crate) async fn search(
        &mut self,
        operation: &'static str,
        base: &str,
        scope: Scope,
        filter: &str,
        attributes: &[&str],
    ) -> Result<Vec<SearchEntry>, AdError> {
        self.search_in(operation, base, scope, filter, attributes, false)
            .await
    }

    /// The entries right below `base` that match, none when `base` does not exist: for a
    /// container that only some directories have (noSuchObject is not an error here).
    pub(crate) async fn children_if_exists(
        &mut self,
        operation: &'static str,
        base: &str,
        filter: &str,
        attributes: &[&str],
    ) -> Result<Vec<SearchEntry>, AdError> {
        let scope = Scope::OneLevel;
        self.search_in(operation, base, scope, filter, attributes, true)
            .await
    }

    async fn search_in(
        &mut self,
        operation: &'static str,
        base: &str,
        scope: Scope,
        filter: &str,
        attributes: &[&str],
        base_may_be_missing: bool,
    ) -> Result<Vec<SearchEntry>, AdError> {
        let result = timed(
            &self.context,
            operation,
            self.ldap.search(base, scope, filter, attributes.to_vec()),
        )
        .await?;
        if base_may_be_missing && result.1.rc == RESULT_NO_SUCH_OBJECT {
            return Ok(Vec::new());
        }
        let (entries, _) = result
            .non_error()
            .map_err(|e| ldap_error(&self.context, operation, e))?;
        Ok(entries.into_iter().map(SearchEntry::construct).collect())
    }

    /// A subtree search in pages, for result sets beyond the server's size limit; referrals
    /// are dropped as in [`Session::search`].
    pub(crate) async fn paged_search(
        &mut self,
        operation: &'static str,
        base: &str,
        filter: &str,
        attributes: &[&str],
    ) -> Result<Vec<SearchEntry>, AdError> {
        let attributes: Vec<String> = attributes.iter().map(|a| a.to_string()).collect();
        let ldap = &mut self.ldap;
        let all = async move {
            let adapters: Vec<Box<dyn Adapter<'_, String, Vec<String>>>> = vec![
                Box::new(EntriesOnly::new()),
                Box::new(PagedResults::new(PAGE_SIZE)),
            ];
            let mut stream = ldap
                .streaming_search_with(adapters, base, Scope::Subtree, filter, attributes)
                .await?;
            let mut entries = Vec::new();
            while let Some(entry) = stream.next().await? {
                entries.push(SearchEntry::construct(entry));
            }
            stream.finish().await.non_error()?;
            Ok::<_, LdapError>(entries)
        };
        timed(&self.context, operation, all).await
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Runs one LDAP step within the timeout.
async fn timed<T>(
    context: &Context,
    operation: &'static str,
    step: impl Future<Output = Result<T, LdapError>>,
) -> Result<T, AdError> {
    match tokio::time::timeout(context.timeout, step).await {
        Ok(result) => result.map_err(|e| ldap_error(context, operation, e)),
        Err(_) => Err(AdError::Timeout {
            url: context.url.clone(),
            operation,
            after: context.timeout,
        }),
    }
}

fn ldap_error(context: &Context, operation: &'static str, error: LdapError) -> AdError {
    match error {
        LdapError::Timeout { .. } => AdError::Timeout {
            url: context.url.clone(),
            operation,
            after: context.timeout,
        },
        source => AdError::Ldap {
            url: context.url.clone(),
            operation,
            source: Box::new(source),
        },
    }
}

/// An attribute's values, matching the name case-insensitively (servers may echo another
/// capitalisation than the one asked for).
pub(crate) fn values<'a>(entry: &'a SearchEntry, name: &str) -> &'a [String] {
    entry
        .attrs
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
        .unwrap_or(&[])
}

pub(crate) fn first(entry: &SearchEntry, name: &str) -> Option<String> {
    values(entry, name).first().cloned()
}

/// A binary attribute's first value. ldap3 files a value under `attrs` when its bytes happen
/// to be valid UTF-8, so a GUID or SID may be in either map.
pub(crate) fn first_bytes(entry: &SearchEntry, name: &str) -> Option<Vec<u8>> {
    entry
        .bin_attrs
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.first().cloned())
        .or_else(|| values(entry, name).first().map(|s| s.as_bytes().to_vec()))
}

pub(crate) fn decode(
    entry: &SearchEntry,
    attribute: &'static str,
    parse: fn(&[u8]) -> Result<String, String>,
) -> Result<String, AdError> {
    let bytes = first_bytes(entry, attribute).ok_or_else(|| AdError::MissingAttribute {
        dn: entry.dn.clone(),
        attribute,
    })?;
    parse(&bytes).map_err(|reason| AdError::Malformed {
        dn: entry.dn.clone(),
        attribute,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn transport_follows_the_url_and_refuses_unacknowledged_plaintext() {
        let choose = |url, starttls, insecure| Transport::choose(url, starttls, insecure);
        assert_eq!(
            choose("ldaps://dc1.contoso.com", true, false).unwrap(),
            Transport::Ldaps
        );
        assert_eq!(
            choose("LDAPS://dc1:3269/", false, false).unwrap(),
            Transport::Ldaps
        );
        assert_eq!(
            choose("ldap://dc1.contoso.com", true, false).unwrap(),
            Transport::StartTls
        );
        // Accepting plaintext does not downgrade a StartTLS configuration.
        assert_eq!(
            choose("ldap://dc1:389", true, true).unwrap(),
            Transport::StartTls
        );
        assert_eq!(
            choose("ldap://dc1:389", false, true).unwrap(),
            Transport::Plaintext
        );
        assert!(matches!(
            choose("ldap://dc1", false, false),
            Err(AdError::PlaintextRefused { .. })
        ));
        assert_eq!(
            choose("ldaps://[::1]:636", true, false).unwrap(),
            Transport::Ldaps
        );
    }

    #[test]
    fn malformed_urls_are_rejected() {
        for url in [
            "dc1.contoso.com",
            "https://dc1",
            "ldapi://%2Fvar%2Frun%2Fldapi",
            "ldaps://",
            "ldaps://:636",
            "ldaps://dc1:0",
            "ldaps://dc1:99999",
            "ldaps://dc1:port",
            "ldaps://dc1/DC=contoso,DC=com",
            "ldaps://user@dc1",
        ] {
            assert!(
                matches!(
                    Transport::choose(url, true, false),
                    Err(AdError::InvalidUrl { .. })
                ),
                "{url} accepted"
            );
        }
    }

    #[test]
    fn binary_attributes_are_found_in_either_map() {
        let mut entry = SearchEntry {
            dn: "DC=contoso,DC=com".into(),
            attrs: HashMap::new(),
            bin_attrs: HashMap::new(),
        };
        entry
            .bin_attrs
            .insert("objectGUID".into(), vec![vec![0x87; 16]]);
        // A SID whose bytes are all ASCII arrives as a string.
        entry.attrs.insert(
            "objectsid".into(),
            vec![String::from_utf8(vec![1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]).unwrap()],
        );
        assert_eq!(
            decode(&entry, "objectGUID", guid_from_bytes).unwrap(),
            "87878787-8787-8787-8787-878787878787"
        );
        assert_eq!(
            decode(&entry, "objectSid", sid_from_bytes).unwrap(),
            "S-1-1-0"
        );
        assert!(matches!(
            decode(&entry, "nETBIOSName", sid_from_bytes),
            Err(AdError::MissingAttribute { .. })
        ));
    }

    #[test]
    fn missing_or_empty_ca_files_are_named() {
        let missing = Trust::CaFile(PathBuf::from("/nonexistent/ca.pem"));
        assert!(matches!(
            client_config("ldaps://dc1", &missing),
            Err(AdError::CaFile { .. })
        ));
        let empty =
            std::env::temp_dir().join(format!("gmsa-ad-empty-ca-{}.pem", std::process::id()));
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let result = client_config("ldaps://dc1", &Trust::CaFile(empty.clone()));
        let _ = std::fs::remove_file(&empty);
        match result {
            Err(AdError::CaFile { reason, .. }) => assert!(reason.contains("no PEM"), "{reason}"),
            other => panic!("expected a CA file error, got {other:?}"),
        }
    }
}
