//! Reads what a credential spec needs to know about a domain straight from Active Directory
//! over LDAP, and checks that a group managed service account exists.
//!
//! ```no_run
//! # async fn example() -> Result<(), gmsa_ad::AdError> {
//! use gmsa_ad::{BindCredentials, Directory, DirectoryConfig, Trust};
//!
//! let password = std::fs::read_to_string("/run/secrets/ad-password").unwrap_or_default();
//! let config = DirectoryConfig::new(
//!     "ldaps://dc1.contoso.com",
//!     Trust::CaFile("/etc/gmsa/contoso-ca.pem".into()),
//!     BindCredentials::new("svc-gmsa@contoso.com", password.trim_end().to_string()),
//! );
//! let mut directory = Directory::connect(&config).await?;
//! directory.check_gmsa("WebApp1").await?;
//! let facts = directory.domain_facts().await?;
//! println!("{} {} {}", facts.netbios_name, facts.guid, facts.sid);
//! directory.close().await;
//! # Ok(())
//! # }
//! ```
//!
//! Security defaults: `ldaps://` or StartTLS on `ldap://`; plain LDAP only with
//! [`DirectoryConfig::insecure_plaintext`] and StartTLS turned off; the server must advertise the
//! Active Directory capability in its rootDSE before any password is sent; every step is
//! bounded by [`DirectoryConfig::timeout`].

pub mod account;
pub mod directory;
pub mod error;
pub mod facts;
pub mod identifiers;
pub mod inspect;
pub mod readiness;

pub use directory::{
    BindCredentials, Directory, DirectoryConfig, Transport, Trust, DEFAULT_TIMEOUT,
};
pub use error::AdError;
pub use facts::{DomainFacts, RootDse};
pub use secrecy::SecretString;
