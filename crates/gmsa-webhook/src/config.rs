//! Command line and environment, turned into a typed [`Config`] that tests build directly.
//!
//! The reference's environment variables keep their names, defaults and parse rules so a
//! deployment of it can switch to this binary unchanged.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use thiserror::Error;

mod launch;

pub use launch::{KeeperOnly, Launch};

/// Version string printed by `--version` and served at `/info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

const AFTER_HELP: &str = "\
Examples:
  # Local try-out: embedded state and self-made certificates (prints the CA path)
  gmsa-webhook --state-dir examples/state --dev-certs /tmp/gmsa-dev --port 8443

  # In a cluster (what the Deployment runs): certificates from a Secret volume
  TLS_CRT=/tls/tls.crt TLS_KEY=/tls/tls.key gmsa-webhook

  # Policy mode (Kubernetes 1.36+, admission policies instead of webhooks): no admission
  # server, only the specs' published contents; probes and metrics on plain HTTP
  gmsa-webhook --keep-published-contents --no-admission --probe-port 8080

Environment (as the reference webhook reads them):
  TLS_CRT, TLS_KEY   serving certificate and key (PEM); reloaded whenever they change
  HTTPS_PORT         port to listen on (default 443)
  LOG_LEVEL          panic|fatal|error|warn|info|debug|trace (default info)
  QPS, BURST         Kubernetes client rate limit (default 5 and 10)
  RANDOM_HOSTNAME    true: give GMSA pods without a hostname a random 15-character one
  KUBECONFIG         kubeconfig to use outside a cluster";

/// The GMSA admission webhook: inlines GMSA credential specs into Windows pods and checks
/// that pods may use them.
#[derive(Debug, Parser)]
#[command(name = "gmsa-webhook", disable_version_flag = true, after_help = AFTER_HELP)]
pub struct Args {
    /// Print `windows-gmsa-webhook v<version>` and exit.
    #[arg(long)]
    pub version: bool,

    /// Serving certificate chain (PEM).
    #[arg(long, env = "TLS_CRT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// Serving private key (PEM).
    #[arg(long, env = "TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// Require client certificates signed by this CA (PEM), re-read every
    /// --cert-poll-interval. Pair it with --probe-port: kubelet probes have no certificate.
    #[arg(long, value_name = "FILE")]
    pub client_ca: Option<PathBuf>,

    /// Local use: create (or reuse) a CA and a certificate for localhost and 127.0.0.1 in DIR
    /// (ca.crt, tls.crt, tls.key) and serve with it.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["tls_cert", "tls_key"])]
    pub dev_certs: Option<PathBuf>,

    /// Port to listen on.
    #[arg(long, env = "HTTPS_PORT", default_value_t = 443)]
    pub port: u16,

    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,

    /// Also serve /health, /readyz, /info and /metrics over plain HTTP on this port (same
    /// address), never admissions: what kubelet probes and scrapers use when --client-ca
    /// makes the main port require a client certificate.
    #[arg(long, value_name = "N")]
    pub probe_port: Option<u16>,

    /// Use a directory of YAML manifests (credential specs and RBAC) as the cluster instead of
    /// the Kubernetes API. Reloaded when files change.
    #[arg(long, value_name = "DIR", conflicts_with = "kubeconfig")]
    pub state_dir: Option<PathBuf>,

    /// Kubeconfig for the Kubernetes API (default: in-cluster configuration).
    #[arg(long, env = "KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// How long an allowed access review is reused (0 disables).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub allow_cache_ttl: Duration,

    /// How long a denied access review is reused (0 disables).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub deny_cache_ttl: Duration,

    /// Disable every cache: one GET and one access review per reference per admission, as the
    /// reference webhook does. For benchmarks.
    #[arg(long)]
    pub no_cache: bool,

    /// Where `use` decisions come from: `hybrid` finds RBAC grants in the watch caches and asks
    /// the API server (an access review) only when RBAC alone says no; `api` asks it every time
    /// (answers cached briefly), for clusters where an authorizer ahead of RBAC can deny what
    /// RBAC allows; `local` never asks.
    #[arg(long, value_name = "MODE", default_value = "hybrid", value_parser = str::parse::<Authorization>)]
    pub authorization: Authorization,

    /// A replica whose credential-spec or RBAC watch has failed to resync for this long
    /// reports not ready (`/readyz` 503) until it has, so the Service sends reviews to replicas
    /// whose caches follow the cluster.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub watch_stale_after: Duration,

    /// After SIGTERM, keep serving (with /readyz failing) this long before draining.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// Give up on a request whose headers have not arrived after this long.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// Give up on a request whose body has not fully arrived this long after its headers
    /// (HTTP/1.1 and HTTP/2 alike): a client that stalls mid-body is answered 408 and, on
    /// HTTP/1.1, disconnected.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub body_read_timeout: Duration,

    /// How often certificate files are checked when change notifications are missed.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub cert_poll_interval: Duration,

    /// Renew the self-signed certificates kept in this Secret (of --namespace) before they
    /// expire, from inside the cluster: replicas stage a new CA and certificate in the Secret,
    /// add the CA to every caBundle of --renew-webhook-configuration, then serve it, keeping
    /// the old CA trusted for --previous-ca-grace. `kubectl gmsa install` sets this up.
    #[arg(long, value_name = "NAME", requires = "renew_webhook_configuration")]
    pub renew_certs_secret: Option<String>,

    /// The mutating and validating webhook configurations (both have this name) whose
    /// caBundle the renewal keeps.
    #[arg(long, value_name = "NAME", requires = "renew_certs_secret")]
    pub renew_webhook_configuration: Option<String>,

    /// Namespace of --renew-certs-secret (default: the kubeconfig's or the pod's).
    #[arg(long, env = "POD_NAMESPACE", value_name = "NS")]
    pub namespace: Option<String>,

    /// Renew when the certificate or its CA expires within this.
    #[arg(long, default_value = "30d", value_parser = parse_duration)]
    pub renew_before: Duration,

    /// Lifetime of renewed serving certificates (their CA lasts ten times as long, at least
    /// --renew-before more).
    #[arg(long, default_value = "365d", value_parser = parse_duration)]
    pub renewed_cert_lifetime: Duration,

    /// How long the replaced CA stays trusted after a renewal: longer than the kubelet takes
    /// to deliver a Secret update to every replica (about a minute).
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    pub previous_ca_grace: Duration,

    /// Time between renewal rounds (jittered).
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    pub renew_check_interval: Duration,

    /// Keep policy mode's published contents: in each namespace, a GMSANamespaceContents
    /// object (policy.gmsa.dev) holding the contents of every credential spec its service
    /// accounts may `use`, encoded as the webhook inlines them, which the admission policies
    /// read. Also adds and removes the specs' policy.gmsa.dev/withdraw-contents finalizer.
    /// Run one at a time (install's keeper Deployment has one replica, recreated on change):
    /// two keepers deciding from different observations could race. Needs what install grants
    /// the keeper.
    #[arg(long, conflicts_with = "state_dir")]
    pub keep_published_contents: bool,

    /// The install whose objects --keep-published-contents keeps: the name of its
    /// GMSANamespaceContents objects and of its `<name>-elsewhere` policy binding.
    #[arg(
        long,
        default_value = "gmsa-webhook",
        requires = "keep_published_contents"
    )]
    pub install_name: String,

    /// The namespace of that install: --keep-published-contents always writes its
    /// GMSANamespaceContents object there (empty when no service account there may use a
    /// spec), so install can tell the API server reads these objects.
    #[arg(
        long,
        default_value = "gmsa-system",
        requires = "keep_published_contents"
    )]
    pub install_namespace: String,

    /// Serve no admissions, only --keep-published-contents (policy mode): no certificate is
    /// needed, and /health, /readyz (the watch has listed every spec), /info and /metrics are
    /// served over plain HTTP on --probe-port if given.
    #[arg(
        long,
        requires = "keep_published_contents",
        conflicts_with_all = ["dev_certs", "client_ca", "renew_certs_secret"]
    )]
    pub no_admission: bool,

    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Accepted for compatibility with the reference; reloading is always on.
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true")]
    pub cert_reload: Option<String>,
}

/// Where `use` decisions come from (`--authorization`).
pub use gmsa_core::rbac::AuthorizationMode as Authorization;

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where the serving certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    Files { cert: PathBuf, key: PathBuf },
    Dev { dir: PathBuf },
}

/// Which cluster backs the decisions.
#[derive(Debug, Clone, PartialEq)]
pub enum ClusterSource {
    StateDir(PathBuf),
    Kubernetes {
        kubeconfig: Option<PathBuf>,
        qps: f32,
        burst: u32,
        allow_ttl: Duration,
        deny_ttl: Duration,
        caches: bool,
        authorization: Authorization,
        stale_after: Duration,
    },
}

/// Everything the server needs, independent of how it was given.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub listen: std::net::SocketAddr,
    /// The plain-HTTP probe port's address (`--probe-port`), if any.
    pub probe_listen: Option<std::net::SocketAddr>,
    pub certs: CertSource,
    pub client_ca: Option<PathBuf>,
    pub cluster: ClusterSource,
    pub random_hostname: bool,
    pub shutdown_grace: Duration,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub cert_poll_interval: Duration,
    /// Largest request body accepted (3 MiB, as the API server's own limit for objects).
    pub max_body_bytes: usize,
    pub log_level: tracing::Level,
    pub log_format: LogFormat,
    /// In-cluster renewal of self-signed certificates, when asked for.
    pub renewal: Option<Renewal>,
}

/// `--renew-certs-secret` and its settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Renewal {
    /// `None`: the kubeconfig's (or the pod's) namespace.
    pub namespace: Option<String>,
    pub secret: String,
    pub configuration: String,
    pub policy: gmsa_tls::self_signed::Policy,
    pub interval: Duration,
}

/// Start-up problems the operator must fix.
#[derive(Debug, Error, PartialEq)]
pub enum ConfigError {
    #[error("TLS_CRT env var not found: set TLS_CRT and TLS_KEY (or --tls-cert and --tls-key) to the serving certificate and key, or pass --dev-certs DIR to make local ones")]
    NoCertificate,
    #[error("TLS_KEY env var not found: set TLS_KEY (or --tls-key) to the key of {0}")]
    NoKey(PathBuf),
    #[error("TLS_CRT env var not found: set TLS_CRT (or --tls-cert) to the certificate for {0}")]
    NoCert(PathBuf),
    #[error("unable to parse environment variable RANDOM_HOSTNAME with value {0} to bool")]
    RandomHostname(String),
    #[error("--renew-certs-secret renews a Secret through the Kubernetes API: drop --state-dir and --dev-certs")]
    RenewalWithoutCluster,
    #[error("--{0} is out of range")]
    DurationRange(&'static str),
    #[error("--renew-before ({renew_before}) must be shorter than --renewed-cert-lifetime ({lifetime}), or every renewed certificate would be renewed again at once")]
    RenewBeforeLifetime {
        renew_before: String,
        lifetime: String,
    },
}

/// Reads an environment variable, treating unset and empty alike.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Config {
    /// Builds the configuration from parsed flags and the environment. Returns warnings to be
    /// logged once logging is up (bad `LOG_LEVEL`, `QPS`, `BURST` fall back to defaults, as in
    /// the reference).
    pub fn from_args(args: Args) -> Result<(Self, Vec<String>), ConfigError> {
        Self::from_args_and_env(args, env_var)
    }

    /// As [`Config::from_args`], with the environment given (for tests).
    pub fn from_args_and_env(
        args: Args,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(Self, Vec<String>), ConfigError> {
        let mut warnings = Vec::new();
        let certs = match (args.dev_certs, args.tls_cert, args.tls_key) {
            (Some(dir), _, _) => CertSource::Dev { dir },
            (None, Some(cert), Some(key)) => CertSource::Files { cert, key },
            (None, Some(cert), None) => return Err(ConfigError::NoKey(cert)),
            (None, None, Some(key)) => return Err(ConfigError::NoCert(key)),
            (None, None, None) => return Err(ConfigError::NoCertificate),
        };
        let log_level = log_level(&env, &mut warnings);
        let qps = parse_env_or(&env, "QPS", 5.0_f32, "5", &mut warnings);
        let burst = parse_env_or(&env, "BURST", 10_u32, "10", &mut warnings);
        let random_hostname = match env("RANDOM_HOSTNAME") {
            None => false,
            Some(v) => parse_go_bool(&v).ok_or(ConfigError::RandomHostname(v))?,
        };
        let renewal = match (args.renew_certs_secret, args.renew_webhook_configuration) {
            (Some(_), _) if args.state_dir.is_some() || matches!(certs, CertSource::Dev { .. }) => {
                return Err(ConfigError::RenewalWithoutCluster)
            }
            (Some(secret), Some(configuration)) => {
                let span = |d: Duration, flag| {
                    time::Duration::try_from(d).map_err(|_| ConfigError::DurationRange(flag))
                };
                let renew_before = span(args.renew_before, "renew-before")?;
                let cert_lifetime = span(args.renewed_cert_lifetime, "renewed-cert-lifetime")?;
                if !(Duration::from_secs(1)..=Duration::from_secs(86_400))
                    .contains(&args.renew_check_interval)
                {
                    return Err(ConfigError::DurationRange(
                        "renew-check-interval (1s to 1d)",
                    ));
                }
                if renew_before >= cert_lifetime {
                    return Err(ConfigError::RenewBeforeLifetime {
                        renew_before: format!("{renew_before}"),
                        lifetime: format!("{cert_lifetime}"),
                    });
                }
                let policy = gmsa_tls::self_signed::Policy {
                    renew_before,
                    cert_lifetime,
                    ca_lifetime: cert_lifetime
                        .saturating_mul(10)
                        .max(cert_lifetime.saturating_add(renew_before)),
                    previous_ca_grace: span(args.previous_ca_grace, "previous-ca-grace")?,
                };
                Some(Renewal {
                    namespace: args.namespace,
                    secret,
                    configuration,
                    policy,
                    interval: args.renew_check_interval,
                })
            }
            _ => None,
        };
        let cluster = match args.state_dir {
            Some(dir) => ClusterSource::StateDir(dir),
            None => ClusterSource::Kubernetes {
                kubeconfig: args.kubeconfig,
                qps,
                burst,
                allow_ttl: args.allow_cache_ttl,
                deny_ttl: args.deny_cache_ttl,
                caches: !args.no_cache,
                authorization: args.authorization,
                stale_after: args.watch_stale_after,
            },
        };
        Ok((
            Self {
                listen: std::net::SocketAddr::new(args.bind_address, args.port),
                probe_listen: args
                    .probe_port
                    .map(|port| std::net::SocketAddr::new(args.bind_address, port)),
                certs,
                client_ca: args.client_ca,
                cluster,
                random_hostname,
                shutdown_grace: args.shutdown_grace,
                header_read_timeout: args.header_read_timeout,
                body_read_timeout: args.body_read_timeout,
                cert_poll_interval: args.cert_poll_interval,
                max_body_bytes: 3 * 1024 * 1024,
                log_level,
                log_format: args.log_format,
                renewal,
            },
            warnings,
        ))
    }
}

/// `LOG_LEVEL`, read as the reference reads it.
fn log_level(env: &impl Fn(&str) -> Option<String>, warnings: &mut Vec<String>) -> tracing::Level {
    match env("LOG_LEVEL") {
        None => tracing::Level::INFO,
        Some(v) => match v.to_ascii_lowercase().as_str() {
            "panic" | "fatal" | "error" => tracing::Level::ERROR,
            "warn" | "warning" => tracing::Level::WARN,
            "info" => tracing::Level::INFO,
            "debug" => tracing::Level::DEBUG,
            "trace" => tracing::Level::TRACE,
            _ => {
                warnings.push(format!(
                    "unable to parse environment variable LOG_LEVEL with value {v}; using default value info"
                ));
                tracing::Level::INFO
            }
        },
    }
}

fn parse_env_or<T: std::str::FromStr>(
    env: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: T,
    default_text: &str,
    warnings: &mut Vec<String>,
) -> T {
    match env(name) {
        None => default,
        Some(v) => v.trim().parse().unwrap_or_else(|_| {
            warnings.push(format!(
                "unable to parse environment variable {name} with value {v}; using default value {default_text}"
            ));
            default
        }),
    }
}

/// Go's `strconv.ParseBool`.
pub fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Durations as `500ms`, `5s`, `2m`, `1h`, or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration: write e.g. 500ms, 5s, 2m"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => {
            return Err(format!(
                "{s:?} has an unknown unit {unit:?}: use ms, s, m, h or d"
            ))
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut all = vec!["gmsa-webhook"];
        all.extend_from_slice(extra);
        Args::try_parse_from(all).unwrap()
    }

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn refuses_to_start_without_certificates() {
        let err = Config::from_args_and_env(args(&["--state-dir", "x"]), env_of(&[])).unwrap_err();
        assert_eq!(err, ConfigError::NoCertificate);
        assert!(err.to_string().contains("--dev-certs"));
    }

    #[test]
    fn reference_env_rules() {
        let (cfg, warnings) = Config::from_args_and_env(
            args(&["--tls-cert", "c", "--tls-key", "k"]),
            env_of(&[
                ("QPS", "fast"),
                ("BURST", "20"),
                ("LOG_LEVEL", "DEBUG"),
                ("RANDOM_HOSTNAME", "T"),
            ]),
        )
        .unwrap();
        assert_eq!(
            warnings,
            vec!["unable to parse environment variable QPS with value fast; using default value 5"]
        );
        assert_eq!(cfg.log_level, tracing::Level::DEBUG);
        assert!(cfg.random_hostname);
        match cfg.cluster {
            ClusterSource::Kubernetes {
                qps, burst, caches, ..
            } => {
                assert_eq!((qps, burst, caches), (5.0, 20, true));
            }
            other => panic!("unexpected {other:?}"),
        }
        let err = Config::from_args_and_env(
            args(&["--tls-cert", "c", "--tls-key", "k"]),
            env_of(&[("RANDOM_HOSTNAME", "yes")]),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "unable to parse environment variable RANDOM_HOSTNAME with value yes to bool"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86400)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn renewal_needs_the_cluster_and_both_names() {
        let base = ["--tls-cert", "c", "--tls-key", "k"];
        let (cfg, _) = Config::from_args_and_env(args(&base), env_of(&[])).unwrap();
        assert_eq!(cfg.renewal, None);
        let mut with = base.to_vec();
        with.extend([
            "--renew-certs-secret",
            "gmsa-webhook-tls",
            "--renew-webhook-configuration",
            "gmsa-webhook-admission",
            "--renewed-cert-lifetime",
            "90s",
            "--renew-before",
            "60s",
        ]);
        let (cfg, _) = Config::from_args_and_env(args(&with), env_of(&[])).unwrap();
        let renewal = cfg.renewal.unwrap();
        assert_eq!(renewal.secret, "gmsa-webhook-tls");
        assert_eq!(renewal.policy.cert_lifetime, time::Duration::seconds(90));
        assert_eq!(renewal.policy.ca_lifetime, time::Duration::seconds(900));
        assert_eq!(
            renewal.policy.previous_ca_grace,
            time::Duration::minutes(15)
        );
        assert!(Args::try_parse_from(["gmsa-webhook", "--renew-certs-secret", "s"]).is_err());
        let looping: Vec<&str> = with
            .iter()
            .map(|a| if *a == "60s" { "90s" } else { a })
            .collect();
        let err = Config::from_args_and_env(args(&looping), env_of(&[])).unwrap_err();
        assert!(err.to_string().contains("must be shorter"), "{err}");
        with.extend(["--state-dir", "x"]);
        let err = Config::from_args_and_env(args(&with), env_of(&[])).unwrap_err();
        assert_eq!(err, ConfigError::RenewalWithoutCluster);
    }

    #[test]
    fn cert_reload_flag_is_accepted() {
        let a = args(&["--cert-reload", "--dev-certs", "d"]);
        assert_eq!(a.cert_reload.as_deref(), Some("true"));
    }
}
