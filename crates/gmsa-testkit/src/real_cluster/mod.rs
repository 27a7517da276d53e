//! A real kube-apiserver and etcd on loopback, in each [`ServerVersion`] the tier covers
//! (built by `hack/build-kube-apiserver.sh` and `hack/build-etcd.sh`), for end-to-end tests
//! that the fake API server cannot make honest: real RBAC, real admission chain, real webhook
//! calls.
//!
//! Everything lives in one temporary directory (certificates, tokens, kubeconfigs, etcd data,
//! process logs) that is removed when the [`RealCluster`] is dropped, after both processes are
//! killed. Both processes are started with `setpriv --pdeathsig KILL` when available, so a test
//! process that dies without unwinding does not leave them running.
//!
//! The child processes are tied to the thread that starts them: create and drop the cluster
//! on the same thread (a `#[test]` function does). A directory left behind by a test process
//! killed outright is removed by the next [`RealCluster::start`].

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use thiserror::Error;

mod server;
pub use server::{Feature, ServerVersion, CURRENT_ETCD_VERSION, DEBIAN_ETCD_PATH};

/// Environment variable that, set to `1`, lets real-API-server tests skip instead of fail.
pub const SKIP_ENV: &str = "GMSA_SKIP_REAL_APISERVER";
/// Environment variable that, set to `1`, keeps the cluster's directory (logs, configs).
pub const KEEP_DIR_ENV: &str = "GMSA_KEEP_REAL_CLUSTER_DIR";
/// The kubectl the helpers run.
pub const KUBECTL_PATH: &str = "/usr/bin/kubectl";
/// The user the webhook kubeconfig authenticates as; it has no permissions until a test grants them.
pub const WEBHOOK_USER: &str = "gmsa-webhook";
/// The admin user; member of `system:masters`.
pub const ADMIN_USER: &str = "gmsa-admin";

/// How long the API server gets to answer `/readyz` with 200.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on every single HTTP request and kubectl call the helpers make.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the cluster (or a helper process) could not be brought up or used.
#[derive(Debug, Error)]
pub enum ClusterError {
    #[error(
        "kube-apiserver {version} not found at {}: run hack/build-kube-apiserver.sh {version} \
         (it builds and caches it), or set {} to a kube-apiserver binary; \
         set {SKIP_ENV}=1 to skip the real API server tests",
        path.display(),
        version.apiserver_env()
    )]
    MissingApiServer {
        version: ServerVersion,
        path: PathBuf,
    },
    #[error(
        "etcd for kube-apiserver {version} not found at {}: {}, or set {} to an etcd binary",
        path.display(),
        version.etcd_hint(),
        version.etcd_env()
    )]
    MissingEtcd {
        version: ServerVersion,
        path: PathBuf,
    },
    #[error("kubectl not found at {KUBECTL_PATH}")]
    MissingKubectl,
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("certificate generation failed: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("{what} exited early ({status}); last log lines:\n{log_tail}")]
    Exited {
        what: String,
        status: ExitStatus,
        log_tail: String,
    },
    #[error("{what} was not ready within {timeout:?} (last answer: {last}); last log lines:\n{log_tail}")]
    NotReady {
        what: String,
        timeout: Duration,
        last: String,
        log_tail: String,
    },
    #[error("kubectl {args} failed ({status}): {stderr}")]
    Kubectl {
        args: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error("HTTPS request to {url} failed: {reason}")]
    Https { url: String, reason: String },
}

impl ClusterError {
    /// Whether a process could not bind its port (another process took it first).
    fn is_port_clash(&self) -> bool {
        match self {
            Self::Exited { log_tail, .. } | Self::NotReady { log_tail, .. } => {
                log_tail.contains("address already in use")
            }
            _ => false,
        }
    }
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> ClusterError {
    let context = context.into();
    move |source| ClusterError::Io { context, source }
}

/// Whether the environment asks to skip real-API-server tests (`GMSA_SKIP_REAL_APISERVER=1`).
pub fn skip_requested() -> bool {
    std::env::var(SKIP_ENV).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// A loopback port that was free a moment ago (the OS picked it; we released it).
pub fn free_port() -> Result<u16, ClusterError> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io_err("binding a free port"))?;
    let port = listener
        .local_addr()
        .map_err(io_err("reading a free port"))?
        .port();
    Ok(port)
}

/// A private CA and a serving certificate it signed for `127.0.0.1` and `localhost`,
/// written as PEM files (ECDSA P-256, valid from an hour ago for a week).
#[derive(Debug, Clone)]
pub struct LoopbackTls {
    /// The CA certificate, PEM; what clients trust (a webhook's `caBundle`, a kubeconfig's CA).
    pub ca_pem: String,
    pub ca_path: PathBuf,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

impl LoopbackTls {
    /// Generates the CA and serving certificate into `dir` as `<prefix>-ca.crt`,
    /// `<prefix>.crt` and `<prefix>.key`.
    pub fn generate(dir: &Path, prefix: &str) -> Result<Self, ClusterError> {
        let now = time::OffsetDateTime::now_utc();
        let not_before = now - time::Duration::hours(1);
        let not_after = now + time::Duration::days(7);

        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::default();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("{prefix} test CA"));
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca_params.not_before = not_before;
        ca_params.not_after = not_after;
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let key = KeyPair::generate()?;
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
        params.distinguished_name.push(DnType::CommonName, prefix);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params.signed_by(&key, &issuer)?;

        let tls = Self {
            ca_pem: ca_cert.pem(),
            ca_path: dir.join(format!("{prefix}-ca.crt")),
            cert_path: dir.join(format!("{prefix}.crt")),
            key_path: dir.join(format!("{prefix}.key")),
        };
        write_file(&tls.ca_path, &tls.ca_pem)?;
        write_file(&tls.cert_path, &cert.pem())?;
        write_file(&tls.key_path, &key.serialize_pem())?;
        Ok(tls)
    }

    /// The CA as a webhook `caBundle` (base64 of the PEM).
    pub fn ca_bundle(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.ca_pem)
    }
}

fn write_file(path: &Path, contents: &str) -> Result<(), ClusterError> {
    fs::write(path, contents).map_err(io_err(format!("writing {}", path.display())))
}

/// A child process whose output goes to a log file; killed (and reaped) on drop.
pub struct ManagedProcess {
    name: String,
    child: Child,
    log_path: PathBuf,
}

impl fmt::Debug for ManagedProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedProcess")
            .field("name", &self.name)
            .field("pid", &self.child.id())
            .field("log_path", &self.log_path)
            .finish()
    }
}

impl ManagedProcess {
    /// Starts `command` with stdout and stderr appended to `log_path`, stdin closed. When
    /// `setpriv` exists the process also gets `SIGKILL` if its parent thread dies.
    pub fn spawn(name: &str, command: Command, log_path: PathBuf) -> Result<Self, ClusterError> {
        let log =
            File::create(&log_path).map_err(io_err(format!("creating {}", log_path.display())))?;
        let log_err = log
            .try_clone()
            .map_err(io_err("duplicating a log handle"))?;
        let mut command = with_parent_death_signal(command);
        command.stdin(Stdio::null()).stdout(log).stderr(log_err);
        let child = command.spawn().map_err(io_err(format!(
            "starting {name} ({:?})",
            command.get_program()
        )))?;
        Ok(Self {
            name: name.to_string(),
            child,
            log_path,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where stdout and stderr go.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The whole log so far (lossy UTF-8).
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log(), lines)
    }

    /// `Err(Exited)` with the log tail when the process has already ended.
    pub fn check_running(&mut self) -> Result<(), ClusterError> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(ClusterError::Exited {
                what: self.name.clone(),
                status,
                log_tail: self.log_tail(40),
            }),
            Ok(None) => Ok(()),
            Err(e) => Err(ClusterError::Io {
                context: format!("checking on {}", self.name),
                source: e,
            }),
        }
    }

    /// Kills the process and waits for it; harmless when it already ended.
    pub fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }

    /// Waits until `addr` accepts TCP connections, while checking that this process is
    /// still alive; bounded by `timeout`.
    pub fn wait_tcp(&mut self, addr: SocketAddr, timeout: Duration) -> Result<(), ClusterError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_running()?;
            let last = match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                Ok(_) => return Ok(()),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(ClusterError::NotReady {
                    what: format!("{} at {addr}", self.name),
                    timeout,
                    last,
                    log_tail: self.log_tail(40),
                });
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Polls `url` (HTTPS, trusting `ca_pem`) until it answers 200, while checking that this
    /// process is still alive; bounded by `timeout`.
    pub fn wait_https_ok(
        &mut self,
        url: &str,
        ca_pem: &str,
        bearer: Option<&str>,
        timeout: Duration,
    ) -> Result<(), ClusterError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_running()?;
            let last = match https_get(url, ca_pem, bearer) {
                Ok((200, _)) => return Ok(()),
                Ok((status, body)) => format!("HTTP {status}: {}", tail(&body, 5)),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(ClusterError::NotReady {
                    what: format!("{} at {url}", self.name),
                    timeout,
                    last,
                    log_tail: self.log_tail(40),
                });
            }
            thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Wraps `command` in `setpriv --pdeathsig KILL` when setpriv is installed (util-linux).
fn with_parent_death_signal(command: Command) -> Command {
    const SETPRIV: &str = "/usr/bin/setpriv";
    if !Path::new(SETPRIV).is_file() {
        return command;
    }
    let mut wrapped = Command::new(SETPRIV);
    wrapped
        .arg("--pdeathsig")
        .arg("KILL")
        .arg("--")
        .arg(command.get_program())
        .args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// One HTTPS GET; see [`https_request`].
pub fn https_get(
    url: &str,
    ca_pem: &str,
    bearer: Option<&str>,
) -> Result<(u16, String), ClusterError> {
    https_request("GET", url, ca_pem, bearer, None)
}

/// One HTTP/1.1 request to a loopback `https://IP:port/path` URL, trusting only `ca_pem`;
/// `body` is sent as `application/json`. Returns the status code and the (de-chunked) body.
/// Enough for probes and for reading the exact `Status` of a refused request, without curl.
pub fn https_request(
    method: &str,
    url: &str,
    ca_pem: &str,
    bearer: Option<&str>,
    body: Option<&str>,
) -> Result<(u16, String), ClusterError> {
    let fail = |reason: String| ClusterError::Https {
        url: url.to_string(),
        reason,
    };
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| fail("only https:// URLs are supported".into()))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr: SocketAddr = authority
        .parse()
        .map_err(|e| fail(format!("expected an IP:port authority: {e}")))?;

    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| fail(format!("bad CA PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| fail(format!("bad CA certificate: {e}")))?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| fail(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let server_name = ServerName::IpAddress(addr.ip().into());
    let connection = rustls::ClientConnection::new(Arc::new(config), server_name)
        .map_err(|e| fail(e.to_string()))?;

    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| fail(e.to_string()))?;
    tcp.set_read_timeout(Some(REQUEST_TIMEOUT))
        .and_then(|()| tcp.set_write_timeout(Some(REQUEST_TIMEOUT)))
        .map_err(|e| fail(e.to_string()))?;
    let mut stream = rustls::StreamOwned::new(connection, tcp);

    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nAccept: application/json\r\n"
    );
    if let Some(token) = bearer {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || method != "GET" {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream
        .write_all(request.as_bytes())
        .map_err(|e| fail(e.to_string()))?;

    let mut response = Vec::new();
    if let Err(e) = stream.read_to_end(&mut response) {
        // Servers may close without a TLS close_notify; what arrived is still the answer.
        if e.kind() != io::ErrorKind::UnexpectedEof || response.is_empty() {
            return Err(fail(e.to_string()));
        }
    }
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| fail(format!("not an HTTP response: {}", tail(&text, 3))))?;
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().replace(' ', "") == "transfer-encoding:chunked");
    let body = if chunked {
        dechunk(body).ok_or_else(|| fail("malformed chunked body".into()))?
    } else {
        body.to_string()
    };
    Ok((status, body))
}

/// Decodes an HTTP/1.1 chunked body (no trailers expected).
fn dechunk(mut rest: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size_line, after) = rest.split_once("\r\n")?;
        let size = usize::from_str_radix(size_line.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(after.get(..size)?);
        rest = after.get(size..)?.strip_prefix("\r\n")?;
    }
}

/// A running etcd + kube-apiserver pair on loopback, with an admin and a webhook identity.
#[derive(Debug)]
pub struct RealCluster {
    // Field order is drop order: the API server goes before etcd, the directory last.
    version: ServerVersion,
    apiserver: ManagedProcess,
    etcd: ManagedProcess,
    url: String,
    tls: LoopbackTls,
    admin_token: String,
    webhook_token: String,
    admin_kubeconfig: PathBuf,
    webhook_kubeconfig: PathBuf,
    startup: Duration,
    dir: Option<tempfile::TempDir>,
    dir_path: PathBuf,
}

impl RealCluster {
    /// Starts etcd and kube-apiserver in a fresh temporary directory and waits (up to 60 s)
    /// for `/readyz`. Also creates the `default` ServiceAccount of namespace `default`, which
    /// the missing controller-manager would otherwise create. Retries (twice) with new ports
    /// when a port picked as free was taken by someone else in the meantime.
    pub fn start(version: ServerVersion) -> Result<Self, ClusterError> {
        let began = Instant::now();
        let mut attempt = 1;
        loop {
            match Self::start_once(version, began) {
                Err(e) if attempt < 3 && e.is_port_clash() => attempt += 1,
                result => return result,
            }
        }
    }

    fn start_once(version: ServerVersion, began: Instant) -> Result<Self, ClusterError> {
        let apiserver_bin = version.apiserver_path()?;
        let etcd_bin = version.etcd_path()?;
        if !Path::new(KUBECTL_PATH).is_file() {
            return Err(ClusterError::MissingKubectl);
        }

        remove_abandoned_dirs();
        let dir = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir()
            .map_err(io_err("creating the cluster's temporary directory"))?;
        let root = dir.path().to_path_buf();
        write_file(&root.join(OWNER_FILE), &std::process::id().to_string())?;

        let tls = LoopbackTls::generate(&root, "apiserver")?;
        let sa_key = KeyPair::generate()?;
        let sa_key_path = root.join("service-account.key");
        let sa_pub_path = root.join("service-account.pub");
        write_file(&sa_key_path, &sa_key.serialize_pem())?;
        // 1.20 reads verification keys only as PKIX "PUBLIC KEY" (or RSA/EC private key) blocks.
        write_file(&sa_pub_path, &sa_key.public_key_pem())?;

        let admin_token = random_token()?;
        let webhook_token = random_token()?;
        let tokens_path = root.join("tokens.csv");
        write_file(
            &tokens_path,
            &format!(
                "{admin_token},{ADMIN_USER},uid-admin,\"system:masters\"\n\
                 {webhook_token},{WEBHOOK_USER},uid-gmsa-webhook\n"
            ),
        )?;

        let etcd_client_port = free_port()?;
        let etcd_peer_port = free_port()?;
        let apiserver_port = free_port()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_client_port}");
        let url = format!("https://127.0.0.1:{apiserver_port}");

        let mut etcd_cmd = Command::new(&etcd_bin);
        etcd_cmd
            .arg("--name=gmsa-test")
            .arg(format!("--data-dir={}", root.join("etcd").display()))
            .arg(format!("--listen-client-urls={etcd_url}"))
            .arg(format!("--advertise-client-urls={etcd_url}"))
            .arg(format!(
                "--listen-peer-urls=http://127.0.0.1:{etcd_peer_port}"
            ))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer_port}"
            ))
            .arg(format!(
                "--initial-cluster=gmsa-test=http://127.0.0.1:{etcd_peer_port}"
            ))
            .arg("--log-level=warn");
        let mut etcd = ManagedProcess::spawn("etcd", etcd_cmd, root.join("etcd.log"))?;
        etcd.wait_tcp(
            SocketAddr::from((Ipv4Addr::LOCALHOST, etcd_client_port)),
            Duration::from_secs(20),
        )?;

        let mut apiserver_cmd = Command::new(&apiserver_bin);
        apiserver_cmd
            .arg(format!("--etcd-servers={etcd_url}"))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            .arg(format!("--secure-port={apiserver_port}"))
            .arg(format!("--cert-dir={}", root.join("certs").display()))
            .arg(format!("--tls-cert-file={}", tls.cert_path.display()))
            .arg(format!("--tls-private-key-file={}", tls.key_path.display()))
            .arg(format!("--token-auth-file={}", tokens_path.display()))
            .arg("--authorization-mode=RBAC")
            .arg("--anonymous-auth=false")
            .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
            .arg(format!(
                "--service-account-key-file={}",
                sa_pub_path.display()
            ))
            .arg(format!(
                "--service-account-signing-key-file={}",
                sa_key_path.display()
            ))
            .arg("--service-cluster-ip-range=10.96.0.0/24")
            .arg("--endpoint-reconciler-type=none")
            .arg("--profiling=false")
            .arg("--v=0");
        if version.has_insecure_port() {
            apiserver_cmd.arg("--insecure-port=0");
        }
        let mut apiserver = ManagedProcess::spawn(
            "kube-apiserver",
            apiserver_cmd,
            root.join("kube-apiserver.log"),
        )?;

        let readyz = format!("{url}/readyz");
        let waited =
            apiserver.wait_https_ok(&readyz, &tls.ca_pem, Some(&admin_token), READY_TIMEOUT);
        if let Err(e) = waited {
            // etcd dying is the more likely root cause; say so with its log.
            return Err(etcd.check_running().err().unwrap_or(e));
        }

        let admin_kubeconfig = root.join("admin.kubeconfig");
        let webhook_kubeconfig = root.join("webhook.kubeconfig");
        write_file(
            &admin_kubeconfig,
            &kubeconfig(&url, &tls.ca_pem, ADMIN_USER, &admin_token),
        )?;
        write_file(
            &webhook_kubeconfig,
            &kubeconfig(&url, &tls.ca_pem, WEBHOOK_USER, &webhook_token),
        )?;

        let mut cluster = Self {
            version,
            apiserver,
            etcd,
            url,
            tls,
            admin_token,
            webhook_token,
            admin_kubeconfig,
            webhook_kubeconfig,
            startup: Duration::ZERO,
            dir_path: root,
            dir: Some(dir),
        };
        cluster.create_service_account("default", "default")?;
        cluster.startup = began.elapsed();
        Ok(cluster)
    }

    /// The kube-apiserver version running.
    pub fn version(&self) -> ServerVersion {
        self.version
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The CA that signed the API server's serving certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.tls.ca_pem
    }

    /// The same CA as a file.
    pub fn ca_path(&self) -> &Path {
        &self.tls.ca_path
    }

    /// The cluster's temporary directory; tests may put their own files (certificates, logs) here.
    pub fn dir(&self) -> &Path {
        &self.dir_path
    }

    /// Kubeconfig of the `system:masters` admin.
    pub fn admin_kubeconfig(&self) -> &Path {
        &self.admin_kubeconfig
    }

    /// Kubeconfig of user [`WEBHOOK_USER`], which starts with no permissions at all.
    pub fn webhook_kubeconfig(&self) -> &Path {
        &self.webhook_kubeconfig
    }

    /// The admin's bearer token.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The webhook user's bearer token.
    pub fn webhook_token(&self) -> &str {
        &self.webhook_token
    }

    /// How long [`RealCluster::start`] took, up to a ready API server.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// Runs `/usr/bin/kubectl` as the admin with `args`, feeding `stdin` when given.
    /// Every call is bounded by a 30 s request timeout.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        self.kubectl_as(&self.admin_kubeconfig, args, stdin)
    }

    /// Runs kubectl with another kubeconfig (e.g. [`RealCluster::webhook_kubeconfig`]).
    pub fn kubectl_as(&self, kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
        let mut command = Command::new(KUBECTL_PATH);
        command
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg(format!(
                "--cache-dir={}",
                self.dir_path.join("kubectl-cache").display()
            ))
            .arg(format!("--request-timeout={}s", REQUEST_TIMEOUT.as_secs()))
            .args(args)
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut run = || -> io::Result<Output> {
            let mut child = command.spawn()?;
            if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
                pipe.write_all(input.as_bytes())?;
            }
            child.wait_with_output()
        };
        run().unwrap_or_else(|e| Output {
            status: failed_status(),
            stdout: Vec::new(),
            stderr: format!("could not run {KUBECTL_PATH}: {e}").into_bytes(),
        })
    }

    /// Like [`RealCluster::kubectl`], but a failure is an error carrying kubectl's stderr;
    /// returns stdout.
    pub fn kubectl_ok(&self, args: &[&str], stdin: Option<&str>) -> Result<String, ClusterError> {
        let output = self.kubectl(args, stdin);
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(ClusterError::Kubectl {
                args: args.join(" "),
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            })
        }
    }

    /// One request to the API server as the admin (`path` like `/api/v1/namespaces/x/pods`),
    /// with an optional JSON body. Returns the status code and the body, e.g. the exact
    /// `Status` (code, message) of a refused request, which kubectl only paraphrases.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<(u16, String), ClusterError> {
        https_request(
            method,
            &format!("{}{path}", self.url),
            &self.tls.ca_pem,
            Some(&self.admin_token),
            body,
        )
    }

    /// `kubectl apply -f -` with `manifest` (YAML or JSON) as the admin.
    pub fn apply(&self, manifest: &str) -> Result<String, ClusterError> {
        self.kubectl_ok(&["apply", "-f", "-"], Some(manifest))
    }

    /// Applies a CustomResourceDefinition (`manifest`, YAML or JSON) and waits (60 s) until the
    /// API server serves it, so objects of its kind can be created right after.
    pub fn apply_crd(&self, manifest: &str) -> Result<(), ClusterError> {
        let name = self.kubectl_ok(&["apply", "-f", "-", "-o", "name"], Some(manifest))?;
        self.kubectl_ok(
            &[
                "wait",
                "--for=condition=established",
                "--timeout=60s",
                name.trim(),
            ],
            None,
        )
        .map(drop)
    }

    /// Creates `namespace` (if missing) and a ServiceAccount in it that mounts no token
    /// (there is no controller-manager to create token secrets).
    pub fn create_service_account(&self, namespace: &str, name: &str) -> Result<(), ClusterError> {
        let manifest = format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {namespace}\n---\n\
             apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {name}\n  namespace: {namespace}\n\
             automountServiceAccountToken: false\n"
        );
        self.apply(&manifest).map(drop)
    }

    /// The last `lines` lines of the etcd and kube-apiserver logs.
    pub fn log_tails(&self, lines: usize) -> String {
        format!(
            "--- etcd ({}) ---\n{}\n--- kube-apiserver ({}) ---\n{}",
            self.etcd.log_path().display(),
            self.etcd.log_tail(lines),
            self.apiserver.log_path().display(),
            self.apiserver.log_tail(lines)
        )
    }

    /// Starts a helper process (e.g. the webhook under test) logging to `<dir>/<name>.log`;
    /// it is killed when the returned handle drops.
    pub fn spawn(&self, name: &str, command: Command) -> Result<ManagedProcess, ClusterError> {
        ManagedProcess::spawn(name, command, self.dir_path.join(format!("{name}.log")))
    }
}

impl Drop for RealCluster {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "real cluster in {} (kept: {}):\n{}",
                self.dir_path.display(),
                keep_dir(),
                self.log_tails(30)
            );
        }
        self.apiserver.stop();
        self.etcd.stop();
        if keep_dir() {
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                eprintln!("kept the real cluster's directory: {}", kept.display());
            }
        }
    }
}

/// Prefix of every cluster directory under the system's temporary directory.
const DIR_PREFIX: &str = "gmsa-real-cluster-";
/// File in a cluster directory holding the pid of the test process that owns it.
const OWNER_FILE: &str = "owner.pid";

/// Removes cluster directories left by test processes that were killed outright (their
/// processes died with them through the parent-death signal; the directory could not).
fn remove_abandoned_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_ours = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with(DIR_PREFIX));
        let owner = fs::read_to_string(path.join(OWNER_FILE)).ok();
        let owner_gone = owner
            .as_deref()
            .and_then(|pid| pid.trim().parse::<u32>().ok())
            .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
        if is_ours && owner_gone {
            let _ = fs::remove_dir_all(&path);
        }
    }
}

fn keep_dir() -> bool {
    std::env::var(KEEP_DIR_ENV).is_ok_and(|v| v == "1")
}

/// An exit status that reads as a failure, for a kubectl that could not even start.
fn failed_status() -> ExitStatus {
    std::os::unix::process::ExitStatusExt::from_raw(1 << 8)
}

/// 32 hex characters from the kernel's random source.
fn random_token() -> Result<String, ClusterError> {
    let mut bytes = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(io_err("reading /dev/urandom"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn kubeconfig(url: &str, ca_pem: &str, user: &str, token: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: real\n  cluster:\n    server: {url}\n    \
         certificate-authority-data: {ca}\nusers:\n- name: {user}\n  user:\n    token: {token}\n\
         contexts:\n- name: {user}@real\n  context:\n    cluster: real\n    user: {user}\n\
         current-context: {user}@real\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_20_starts_with_admin_and_unprivileged_webhook_user() {
        starts_with_admin_and_unprivileged_webhook_user(ServerVersion::V1_20);
    }

    #[test]
    fn current_starts_with_admin_and_unprivileged_webhook_user() {
        starts_with_admin_and_unprivileged_webhook_user(ServerVersion::Current);
    }

    /// The cluster comes up in the version asked for, the admin is an admin, and the webhook
    /// identity is a distinct, unprivileged user: what every end-to-end test builds on.
    fn starts_with_admin_and_unprivileged_webhook_user(version: ServerVersion) {
        if skip_requested() {
            eprintln!("skipped: {SKIP_ENV}=1");
            return;
        }
        let cluster = match RealCluster::start(version) {
            Ok(cluster) => cluster,
            Err(e) => panic!("{e}"),
        };
        eprintln!("real cluster ready in {:?}", cluster.startup_time());
        assert!(cluster.url().starts_with("https://127.0.0.1:"));

        let version = cluster.kubectl_ok(&["version", "-o", "json"], None);
        let version = version.unwrap_or_else(|e| panic!("{e}"));
        let expected = format!(r#""gitVersion": "{}""#, cluster.version().git_version());
        let server = version
            .split("\"serverVersion\"")
            .nth(1)
            .unwrap_or_default();
        assert!(server.contains(&expected), "{version}");

        let sa = cluster.kubectl_ok(&["get", "serviceaccount", "default", "-o", "name"], None);
        assert_eq!(
            sa.unwrap_or_else(|e| panic!("{e}")).trim(),
            "serviceaccount/default"
        );

        let denied = cluster.kubectl_as(cluster.webhook_kubeconfig(), &["get", "pods"], None);
        let stderr = String::from_utf8_lossy(&denied.stderr);
        assert!(!denied.status.success());
        assert!(
            stderr.contains(&format!(
                "User \"{WEBHOOK_USER}\" cannot list resource \"pods\""
            )),
            "{stderr}"
        );

        let (status, _) = https_get(&format!("{}/readyz", cluster.url()), cluster.ca_pem(), None)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(status, 401, "anonymous requests are refused");
    }

    #[test]
    fn dechunks_bodies() {
        assert_eq!(
            dechunk("4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\n\r\n").as_deref(),
            Some("Wikipedia")
        );
        assert_eq!(dechunk("5\r\nWiki"), None);
    }

    #[test]
    fn only_bind_failures_count_as_port_clashes() {
        let not_ready = |log_tail: &str| ClusterError::NotReady {
            what: "etcd".into(),
            timeout: Duration::ZERO,
            last: String::new(),
            log_tail: log_tail.into(),
        };
        assert!(
            not_ready("listen tcp 127.0.0.1:2379: bind: address already in use").is_port_clash()
        );
        assert!(!not_ready("etcdserver: request timed out").is_port_clash());
        let missing = ClusterError::MissingEtcd {
            version: ServerVersion::Current,
            path: PathBuf::from("/nowhere/etcd"),
        };
        assert!(!missing.is_port_clash());
        assert!(
            missing.to_string().contains("hack/build-etcd.sh"),
            "{missing}"
        );
    }

    #[test]
    fn missing_binary_names_the_build_script() {
        let err = ClusterError::MissingApiServer {
            version: ServerVersion::Current,
            path: PathBuf::from("/nowhere/kube-apiserver"),
        };
        let text = err.to_string();
        assert!(
            text.contains("hack/build-kube-apiserver.sh v1.37.2"),
            "{text}"
        );
        assert!(text.contains("GMSA_KUBE_APISERVER_CURRENT"), "{text}");
        assert!(text.contains(SKIP_ENV), "{text}");
    }
}
