//! A real Active Directory domain controller (Samba 4 AD DC) on loopback, for tests of the
//! LDAP code that a fake could not make honest: referrals, binary attributes, result codes,
//! LDAPS and StartTLS with a real certificate.
//!
//! [`SambaDc::start`] provisions the domain `CONTOSO.COM` (NetBIOS `CONTOSO`) with a fixed SID
//! and GUID in a temporary directory, with its own `smb.conf` so nothing on the host (its
//! `/etc/samba`, `/var/lib/samba`, its DNS resolver) is read or written. Samba's LDAP ports
//! are fixed (389, 636, 3268, 3269), so each DC listens on its own random address in
//! `127.0.0.0/8` instead of sharing `127.0.0.1`; test runs on the same machine do not clash.
//! The server certificate (issued by a test CA) lists that address, `127.0.0.1` and
//! `localhost`.
//!
//! Samba runs in its single-process model, in its own process group, which is terminated (then
//! killed) on drop; with `setpriv` installed it also gets `SIGKILL` if the thread that
//! started it dies, and it stops itself after an hour regardless. Start and drop the DC on
//! the same thread (a `#[test]` function does). Samba binds privileged ports, so the tests
//! need root.
//!
//! Packages: see [`PACKAGES`]; `hack/install-test-deps.sh` installs them.

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File};
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ldap3::{LdapConnAsync, LdapConnSettings};
use rand::Rng as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;
use thiserror::Error;

mod objects;
mod provision;
mod tls;

use provision::{provision, smb_conf, spawn_samba};
use tls::{client_config, connect_and_bind, TestTls};

/// Environment variable that, set to `1`, lets Samba tests skip instead of fail.
pub const SKIP_ENV: &str = "GMSA_SKIP_SAMBA";
/// Environment variable that, set to `1`, keeps the DC's directory (logs, config, database).
pub const KEEP_DIR_ENV: &str = "GMSA_KEEP_SAMBA_DIR";
/// Debian packages the DC needs.
pub const PACKAGES: &[&str] = &[
    "samba",
    "samba-ad-dc",
    "samba-ad-provision",
    "ldb-tools",
    "ldap-utils",
    "krb5-user",
];

/// The domain's Kerberos realm.
pub const REALM: &str = "CONTOSO.COM";
/// The domain's DNS name (what its crossRef's `dnsRoot` says).
pub const DNS_NAME: &str = "contoso.com";
/// The domain's NetBIOS name.
pub const NETBIOS_NAME: &str = "CONTOSO";
/// The domain's distinguished name.
pub const DOMAIN_DN: &str = "DC=contoso,DC=com";
/// The fixed domain SID. Its binary form is all ASCII bytes, so LDAP clients that sort values
/// into text and binary by UTF-8 validity see it as text: a trap worth testing.
pub const DOMAIN_SID: &str = "S-1-5-21-287454020-1432778616-169552957";
/// The fixed objectGUID of the domain object.
pub const DOMAIN_GUID: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
/// The gMSAs every DC starts with (`sAMAccountName` is the name plus `$`).
pub const GMSA_ACCOUNTS: &[&str] = &["WebApp1", "Reports"];

const HOST_NAME: &str = "DC1";
const LDAP_PORT: u16 = 389;
const LDAPS_PORT: u16 = 636;
/// Every port Samba's LDAP server binds (LDAP, LDAPS, and the global catalog's two).
const LDAP_SERVER_PORTS: &[u16] = &[LDAP_PORT, LDAPS_PORT, 3268, 3269];
const PROVISION_TIMEOUT: Duration = Duration::from_secs(180);
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const LDAP_OPERATION_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_RUNTIME_SECS: u32 = 3600;
const INSTALL_HINT: &str =
    "run hack/install-test-deps.sh (Debian: samba samba-ad-dc samba-ad-provision ldb-tools ldap-utils krb5-user)";

/// Why a DC could not be started.
#[derive(Debug, Error)]
pub enum SambaError {
    #[error("{tool} is not installed; {INSTALL_HINT}")]
    MissingTool { tool: &'static str },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("generating the test certificates: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error(
        "cannot bind {address}: {source}; Samba's LDAP ports (389, 636) are privileged, so the \
         tests must run as root or with CAP_NET_BIND_SERVICE"
    )]
    CannotBind {
        address: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "no loopback address had ports 389, 636, 3268 and 3269 free after {tried} tries; is \
         another LDAP server listening on all addresses?"
    )]
    NoAddress { tried: usize },
    #[error("samba-tool domain provision failed ({status}); output ends:\n{output_tail}")]
    Provision { status: String, output_tail: String },
    #[error("samba exited ({status}) before answering LDAPS{hint}; log ends:\n{log_tail}")]
    Exited {
        status: ExitStatus,
        hint: String,
        log_tail: String,
    },
    #[error("samba did not answer LDAPS at {url} within {timeout:?} (last: {last}); log ends:\n{log_tail}")]
    NotReady {
        url: String,
        timeout: Duration,
        last: String,
        log_tail: String,
    },
    #[error("LDAP {what}: {reason}")]
    Ldap { what: String, reason: String },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> SambaError {
    let context = context.into();
    move |source| SambaError::Io { context, source }
}

/// Whether `GMSA_SKIP_SAMBA=1` asks Samba tests to skip rather than fail.
pub fn skip_requested() -> bool {
    std::env::var(SKIP_ENV).is_ok_and(|v| v == "1")
}

/// A running Samba AD DC; stopped and its directory removed on drop.
pub struct SambaDc {
    process: Child,
    address: Ipv4Addr,
    admin_password: String,
    ca_pem: String,
    ca_path: PathBuf,
    wrong_ca_path: PathBuf,
    path: PathBuf,
    log_path: PathBuf,
    dir: Option<tempfile::TempDir>,
    provision_time: Duration,
    startup_time: Duration,
}

impl fmt::Debug for SambaDc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SambaDc")
            .field("pid", &self.process.id())
            .field("address", &self.address)
            .field("dir", &self.path)
            .finish_non_exhaustive()
    }
}

impl SambaDc {
    /// Provisions the domain, starts Samba, waits until LDAPS accepts the administrator's
    /// bind, and adds the [`GMSA_ACCOUNTS`]. Takes several seconds (provisioning dominates).
    pub fn start() -> Result<Self, SambaError> {
        let began = Instant::now();
        let samba = find_tool("samba")?;
        let samba_tool = find_tool("samba-tool")?;

        let dir = tempfile::Builder::new()
            .prefix("gmsa-samba-")
            .tempdir()
            .map_err(io_err("creating the DC's temporary directory"))?;
        let path = dir.path().to_path_buf();
        for sub in [
            "etc", "private", "lock", "state", "cache", "pid", "log", "tls", "sysvol", "bind-dns",
        ] {
            fs::create_dir_all(path.join(sub)).map_err(io_err(format!("creating {sub}/")))?;
        }

        let address = free_loopback_address()?;
        let tls = TestTls::generate(&path.join("tls"), address)?;
        let config_path = path.join("etc/smb.conf");
        write(&config_path, &smb_conf(&path, address, &tls))?;

        let admin_password = random_password();
        provision(&samba_tool, &config_path, &path, address, &admin_password)?;
        let provision_time = began.elapsed();

        let log_path = path.join("log/samba.out");
        let process = spawn_samba(&samba, &config_path, &log_path)?;
        let mut dc = Self {
            process,
            address,
            admin_password,
            ca_pem: tls.ca_pem,
            ca_path: tls.ca_path,
            wrong_ca_path: tls.wrong_ca_path,
            path,
            log_path,
            dir: Some(dir),
            provision_time,
            startup_time: Duration::ZERO,
        };
        dc.wait_ready()?;
        for name in GMSA_ACCOUNTS {
            dc.add_gmsa(name)?;
        }
        dc.startup_time = began.elapsed();
        Ok(dc)
    }

    /// The loopback address the DC listens on.
    pub fn address(&self) -> Ipv4Addr {
        self.address
    }

    /// `ldaps://ADDRESS:636`.
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://{}:{LDAPS_PORT}", self.address)
    }

    /// `ldap://ADDRESS:389` (StartTLS, or plain simple binds: the DC allows both).
    pub fn ldap_url(&self) -> String {
        format!("ldap://{}:{LDAP_PORT}", self.address)
    }

    /// The administrator's DN.
    pub fn admin_dn(&self) -> String {
        format!("CN=Administrator,CN=Users,{DOMAIN_DN}")
    }

    /// The administrator's UPN.
    pub fn admin_upn(&self) -> String {
        format!("Administrator@{DNS_NAME}")
    }

    /// The administrator's password (random per DC).
    pub fn admin_password(&self) -> &str {
        &self.admin_password
    }

    /// The PEM file of the CA that issued the DC's certificate.
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    /// That CA as PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A PEM file with a different CA, which did not issue the DC's certificate.
    pub fn wrong_ca_path(&self) -> &Path {
        &self.wrong_ca_path
    }

    /// The DC's directory (config, database, logs).
    pub fn dir(&self) -> &Path {
        &self.path
    }

    /// How long provisioning took.
    pub fn provision_time(&self) -> Duration {
        self.provision_time
    }

    /// How long [`SambaDc::start`] took in all, provisioning included.
    pub fn startup_time(&self) -> Duration {
        self.startup_time
    }

    /// The last `lines` lines of Samba's output.
    pub fn log_tail(&self, lines: usize) -> String {
        tail_of_file(&self.log_path, lines)
    }

    /// Adds a group managed service account `NAME$` under `CN=Managed Service Accounts` by an
    /// LDAP add, the way Samba 4.17 allows (it has no `samba-tool service-account`).
    pub fn add_gmsa(&self, name: &str) -> Result<(), SambaError> {
        let host = format!("{}.{DNS_NAME}", name.to_lowercase());
        let dn = format!("CN={name},CN=Managed Service Accounts,{DOMAIN_DN}");
        let attributes: Vec<(String, Vec<String>)> = vec![
            (
                "objectClass".into(),
                vec!["msDS-GroupManagedServiceAccount".into()],
            ),
            ("cn".into(), vec![name.into()]),
            ("sAMAccountName".into(), vec![format!("{name}$")]),
            ("dNSHostName".into(), vec![host.clone()]),
            ("servicePrincipalName".into(), vec![format!("HTTP/{host}")]),
            ("msDS-ManagedPasswordInterval".into(), vec!["30".into()]),
            ("userAccountControl".into(), vec!["4096".into()]),
            ("msDS-SupportedEncryptionTypes".into(), vec!["28".into()]),
        ];
        let (url, config) = (self.ldaps_url(), client_config(&self.ca_pem)?);
        let (upn, password) = (self.admin_upn(), self.admin_password.clone());
        on_own_runtime(async move {
            let mut ldap = connect_and_bind(&url, config, &upn, &password).await?;
            let attributes: Vec<(String, HashSet<String>)> = attributes
                .into_iter()
                .map(|(name, values)| (name, values.into_iter().collect()))
                .collect();
            let result = ldap
                .with_timeout(LDAP_OPERATION_TIMEOUT)
                .add(&dn, attributes)
                .await
                .map_err(|e| e.to_string())?;
            let _ = ldap.unbind().await;
            result.success().map(|_| ()).map_err(|e| e.to_string())
        })
        .map_err(|reason| SambaError::Ldap {
            what: format!("adding gMSA {name}$"),
            reason,
        })
    }

    fn wait_ready(&mut self) -> Result<(), SambaError> {
        let url = self.ldaps_url();
        let config = client_config(&self.ca_pem)?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self
                .process
                .try_wait()
                .map_err(io_err("checking on samba"))?
            {
                return Err(SambaError::Exited {
                    status,
                    hint: root_hint(),
                    log_tail: self.log_tail(40),
                });
            }
            let (attempt_url, attempt_config) = (url.clone(), config.clone());
            let (upn, password) = (self.admin_upn(), self.admin_password.clone());
            let last = match on_own_runtime(async move {
                let mut ldap =
                    connect_and_bind(&attempt_url, attempt_config, &upn, &password).await?;
                let _ = ldap.unbind().await;
                Ok(())
            }) {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(SambaError::NotReady {
                    url,
                    timeout: READY_TIMEOUT,
                    last,
                    log_tail: self.log_tail(40),
                });
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// Terminates Samba's process group, then kills it if it lingers.
    fn stop(&mut self) {
        if let Ok(None) = self.process.try_wait() {
            signal_group(self.process.id(), "TERM");
            let deadline = Instant::now() + STOP_TIMEOUT;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.process.try_wait() {
                    break;
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
        // Anything left in the group (should Samba ever fork) goes too.
        signal_group(self.process.id(), "KILL");
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Drop for SambaDc {
    fn drop(&mut self) {
        self.stop();
        if std::env::var(KEEP_DIR_ENV).is_ok_and(|v| v == "1") {
            if let Some(dir) = self.dir.take() {
                eprintln!("keeping the Samba DC directory {}", dir.keep().display());
            }
        }
    }
}

fn signal_group(pgid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args(["-s", signal, "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Finds a program in `PATH` or the sbin directories (`samba` lives in `/usr/sbin`).
fn find_tool(tool: &'static str) -> Result<PathBuf, SambaError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
        .ok_or(SambaError::MissingTool { tool })
}

/// A random `127.x.y.z` (outside `127.0.0.0/16` and `127.0.1.0/24`, which hosts use) whose
/// LDAP ports are free.
fn free_loopback_address() -> Result<Ipv4Addr, SambaError> {
    const TRIES: usize = 32;
    let mut rng = rand::rng();
    for _ in 0..TRIES {
        let address = Ipv4Addr::new(
            127,
            rng.random_range(100..=250),
            rng.random_range(1..=254),
            rng.random_range(1..=254),
        );
        let mut free = true;
        for port in LDAP_SERVER_PORTS {
            match TcpListener::bind((address, *port)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => free = false,
                Err(source) => {
                    return Err(SambaError::CannotBind {
                        address: format!("{address}:{port}"),
                        source,
                    })
                }
            }
        }
        if free {
            return Ok(address);
        }
    }
    Err(SambaError::NoAddress { tried: TRIES })
}

fn root_hint() -> String {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let is_root = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .is_some_and(|effective| effective == "0");
    if is_root {
        String::new()
    } else {
        " (it must run as root to bind ports 389 and 636)".to_string()
    }
}

/// Password meeting AD's complexity rules: upper, lower, digit and symbol.
fn random_password() -> String {
    let mut rng = rand::rng();
    let hex: String = (0..16)
        .map(|_| format!("{:x}", rng.random_range(0..16u8)))
        .collect();
    format!("Gm!{hex}x9Z")
}

/// Runs `future` to completion on a fresh single-threaded runtime in its own thread, so
/// callers may be inside an async runtime or not.
fn on_own_runtime<T: Send>(
    future: impl Future<Output = Result<T, String>> + Send,
) -> Result<T, String> {
    thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("building a runtime: {e}"))?
                    .block_on(future)
            })
            .join()
            .unwrap_or_else(|_| Err("the LDAP thread panicked".to_string()))
    })
}

fn write(path: &Path, contents: &str) -> Result<(), SambaError> {
    fs::write(path, contents).map_err(io_err(format!("writing {}", path.display())))
}

fn tail_of_file(path: &Path, lines: usize) -> String {
    let text = fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_meet_complexity_rules() {
        let password = random_password();
        assert!(password.chars().any(|c| c.is_ascii_uppercase()));
        assert!(password.chars().any(|c| c.is_ascii_lowercase()));
        assert!(password.chars().any(|c| c.is_ascii_digit()));
        assert!(password.chars().any(|c| !c.is_ascii_alphanumeric()));
        assert_ne!(password, random_password());
    }

    #[test]
    fn config_keeps_everything_inside_the_directory() {
        let dir = Path::new("/tmp/gmsa-samba-x");
        let tls = TestTls {
            ca_pem: String::new(),
            ca_path: dir.join("tls/ca.pem"),
            wrong_ca_path: dir.join("tls/wrong-ca.pem"),
            cert_path: dir.join("tls/dc1.pem"),
            key_path: dir.join("tls/dc1.key"),
        };
        let conf = smb_conf(dir, Ipv4Addr::new(127, 200, 1, 2), &tls);
        assert!(conf.contains("interfaces = 127.200.1.2/8"));
        assert!(conf.contains("bind interfaces only = yes"));
        let paths: Vec<&str> = conf
            .lines()
            .filter_map(|line| line.split_once(" = ").map(|(_, value)| value))
            .filter(|value| value.starts_with('/'))
            .collect();
        assert!(paths.len() >= 14, "{paths:?}");
        for path in paths {
            assert!(path.starts_with("/tmp/gmsa-samba-x/"), "{path}");
        }
    }

    #[test]
    fn test_certificates_chain_to_the_test_ca_only() {
        let dir = tempfile::tempdir().unwrap();
        let address = Ipv4Addr::new(127, 201, 3, 4);
        let tls = TestTls::generate(dir.path(), address).unwrap();
        let mode = fs::metadata(&tls.key_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "key readable by others");
        assert!(client_config(&tls.ca_pem).is_ok());
        let wrong = fs::read_to_string(&tls.wrong_ca_path).unwrap();
        assert_ne!(wrong, tls.ca_pem);
    }
}
