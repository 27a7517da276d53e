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

use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

use thiserror::Error;

mod https;
mod kubeconfig;
mod kubectl;
mod pki;
mod process;
mod server;

pub use https::{https_get, https_request};
pub use pki::{ClientCa, LoopbackTls};
pub use process::{free_port, ManagedProcess};
pub(crate) use server::{cache_dir, env_path};
pub use server::{Feature, ServerVersion, CURRENT_ETCD_VERSION, DEBIAN_ETCD_PATH};

use kubeconfig::token_file;
pub(crate) use kubeconfig::{kubeconfig, random_token};
use pki::ServiceAccountKey;

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
    #[error("{command} failed ({status}): {stderr}")]
    Command {
        command: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error("{what}: {hint}")]
    Missing { what: String, hint: String },
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

fn write_file(path: &Path, contents: &str) -> Result<(), ClusterError> {
    fs::write(path, contents).map_err(io_err(format!("writing {}", path.display())))
}

/// How the API server is set up beyond the loopback defaults: what the node tier changes to
/// run a kubelet, controllers and pods against it.
#[derive(Debug, Clone)]
pub struct ApiServerOptions {
    /// The address the API server binds and advertises, in its certificate with
    /// `extra_names`; the URL of every kubeconfig.
    pub address: Ipv4Addr,
    /// More names (IP addresses, DNS names) for the serving certificate.
    pub extra_names: Vec<String>,
    /// More identities of the token file: `(token, user, groups)`.
    pub extra_tokens: Vec<(String, String, Vec<String>)>,
    /// More command-line flags (they may repeat a default one: the last wins).
    pub extra_args: Vec<String>,
    /// `--service-cluster-ip-range`.
    pub service_cidr: String,
    /// `--authorization-mode` (a list flag: given once, here).
    pub authorization_mode: String,
    /// Whether to create the `default` ServiceAccount by hand (no controller-manager), or
    /// leave it to a controller-manager.
    pub create_default_service_account: bool,
}

impl Default for ApiServerOptions {
    fn default() -> Self {
        Self {
            address: Ipv4Addr::LOCALHOST,
            extra_names: Vec::new(),
            extra_tokens: Vec::new(),
            extra_args: vec!["--endpoint-reconciler-type=none".into()],
            service_cidr: "10.96.0.0/24".into(),
            authorization_mode: "RBAC".into(),
            create_default_service_account: true,
        }
    }
}

/// A process's command line, kept to start it again (a whole-cluster restart).
#[derive(Debug, Clone)]
struct CommandLine {
    program: PathBuf,
    args: Vec<String>,
}

impl CommandLine {
    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args);
        command
    }
}

/// A running etcd + kube-apiserver pair on loopback, with an admin and a webhook identity.
#[derive(Debug)]
pub struct RealCluster {
    // Field order is drop order: the API server goes before etcd, the directory last.
    version: ServerVersion,
    apiserver: ManagedProcess,
    etcd: ManagedProcess,
    apiserver_line: CommandLine,
    etcd_line: CommandLine,
    etcd_addr: SocketAddr,
    url: String,
    tls: LoopbackTls,
    admin_token: String,
    webhook_token: String,
    admin_kubeconfig: PathBuf,
    webhook_kubeconfig: PathBuf,
    service_account_key: PathBuf,
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
        Self::start_with(version, &ApiServerOptions::default())
    }

    /// [`RealCluster::start`] with the API server set up as `options` say.
    pub fn start_with(
        version: ServerVersion,
        options: &ApiServerOptions,
    ) -> Result<Self, ClusterError> {
        let began = Instant::now();
        let mut attempt = 1;
        loop {
            match Self::start_once(version, options, began) {
                Err(e) if attempt < 3 && e.is_port_clash() => attempt += 1,
                result => return result,
            }
        }
    }

    fn start_once(
        version: ServerVersion,
        options: &ApiServerOptions,
        began: Instant,
    ) -> Result<Self, ClusterError> {
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

        let mut names = options.extra_names.clone();
        if !options.address.is_loopback() {
            names.push(options.address.to_string());
        }
        let tls = LoopbackTls::generate_for(&root, "apiserver", &names)?;
        let sa_key = ServiceAccountKey::generate(&root)?;

        let admin_token = random_token()?;
        let webhook_token = random_token()?;
        let tokens_path = root.join("tokens.csv");
        let mut tokens = token_file(&admin_token, &webhook_token);
        for (token, user, groups) in &options.extra_tokens {
            tokens.push_str(&format!(
                "{token},{user},uid-{user},\"{}\"\n",
                groups.join(",")
            ));
        }
        write_file(&tokens_path, &tokens)?;

        let etcd_client_port = free_port()?;
        let etcd_peer_port = free_port()?;
        let apiserver_port = free_port()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_client_port}");
        let address = options.address;
        let url = format!("https://{address}:{apiserver_port}");

        let etcd_line = CommandLine {
            program: etcd_bin,
            args: vec![
                "--name=gmsa-test".into(),
                format!("--data-dir={}", root.join("etcd").display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer_port}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer_port}"),
                format!("--initial-cluster=gmsa-test=http://127.0.0.1:{etcd_peer_port}"),
                "--log-level=warn".into(),
            ],
        };
        let etcd_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, etcd_client_port));

        let mut apiserver_args: Vec<String> = vec![
            format!("--etcd-servers={etcd_url}"),
            format!("--bind-address={address}"),
            format!("--advertise-address={address}"),
            format!("--secure-port={apiserver_port}"),
            format!("--cert-dir={}", root.join("certs").display()),
            format!("--tls-cert-file={}", tls.cert_path.display()),
            format!("--tls-private-key-file={}", tls.key_path.display()),
            format!("--token-auth-file={}", tokens_path.display()),
            format!("--authorization-mode={}", options.authorization_mode),
            "--anonymous-auth=false".into(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!(
                "--service-account-key-file={}",
                sa_key.public_path.display()
            ),
            format!(
                "--service-account-signing-key-file={}",
                sa_key.private_path.display()
            ),
            format!("--service-cluster-ip-range={}", options.service_cidr),
            "--profiling=false".into(),
            "--v=0".into(),
        ];
        if version.has_insecure_port() {
            apiserver_args.push("--insecure-port=0".into());
        }
        apiserver_args.extend(options.extra_args.iter().cloned());
        let apiserver_line = CommandLine {
            program: apiserver_bin,
            args: apiserver_args,
        };

        let (etcd, apiserver) = start_control_plane(
            &root,
            &etcd_line,
            etcd_addr,
            &apiserver_line,
            &url,
            &tls.ca_pem,
            &admin_token,
        )?;

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

        let cluster = Self {
            version,
            apiserver,
            etcd,
            apiserver_line,
            etcd_line,
            etcd_addr,
            url,
            tls,
            admin_token,
            webhook_token,
            admin_kubeconfig,
            webhook_kubeconfig,
            service_account_key: sa_key.private_path.clone(),
            startup: Duration::ZERO,
            dir_path: root,
            dir: Some(dir),
        };
        let mut cluster = cluster;
        if options.create_default_service_account {
            cluster.create_service_account("default", "default")?;
        }
        cluster.startup = began.elapsed();
        Ok(cluster)
    }

    /// Stops the API server, then etcd (their data stays): half of a whole-cluster restart.
    pub fn stop_control_plane(&mut self) {
        self.apiserver.stop();
        self.etcd.stop();
    }

    /// Starts etcd and the API server again with the same data, ports and flags, and waits
    /// for `/readyz`.
    pub fn start_control_plane(&mut self) -> Result<(), ClusterError> {
        let (etcd, apiserver) = start_control_plane(
            &self.dir_path,
            &self.etcd_line,
            self.etcd_addr,
            &self.apiserver_line,
            &self.url,
            &self.tls.ca_pem,
            &self.admin_token,
        )?;
        self.etcd = etcd;
        self.apiserver = apiserver;
        Ok(())
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

    /// The key that signs service account tokens (PEM): a controller-manager's
    /// `--service-account-private-key-file`.
    pub fn service_account_key(&self) -> &Path {
        &self.service_account_key
    }

    /// The admin's bearer token.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The webhook user's bearer token.
    pub fn webhook_token(&self) -> &str {
        &self.webhook_token
    }

    /// The kube-apiserver's process id: benchmarks read its CPU time from `/proc`.
    pub fn apiserver_pid(&self) -> u32 {
        self.apiserver.pid()
    }

    /// etcd's process id.
    pub fn etcd_pid(&self) -> u32 {
        self.etcd.pid()
    }

    /// How long [`RealCluster::start`] took, up to a ready API server.
    pub fn startup_time(&self) -> Duration {
        self.startup
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

/// Starts etcd, waits for its port, starts the API server and waits for `/readyz` as the admin.
fn start_control_plane(
    root: &Path,
    etcd_line: &CommandLine,
    etcd_addr: SocketAddr,
    apiserver_line: &CommandLine,
    url: &str,
    ca_pem: &str,
    admin_token: &str,
) -> Result<(ManagedProcess, ManagedProcess), ClusterError> {
    let mut etcd = ManagedProcess::spawn("etcd", etcd_line.command(), root.join("etcd.log"))?;
    etcd.wait_tcp(etcd_addr, Duration::from_secs(20))?;
    let mut apiserver = ManagedProcess::spawn(
        "kube-apiserver",
        apiserver_line.command(),
        root.join("kube-apiserver.log"),
    )?;
    let readyz = format!("{url}/readyz");
    if let Err(e) = apiserver.wait_https_ok(&readyz, ca_pem, Some(admin_token), READY_TIMEOUT) {
        // etcd dying is the more likely root cause; say so with its log.
        return Err(etcd.check_running().err().unwrap_or(e));
    }
    Ok((etcd, apiserver))
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
