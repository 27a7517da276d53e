//! What the process runs: the admission server (the default, unchanged), the contents keeper
//! beside it (`--keep-published-contents`), or the keeper alone (`--no-admission`, policy
//! mode), which needs no certificate.

use std::net::SocketAddr;
use std::time::Duration;

use super::{env_var, log_level, Args, Config, ConfigError, LogFormat};
use crate::keeper::KeeperSettings;

/// The process as the flags describe it.
#[derive(Debug, Clone, PartialEq)]
pub enum Launch {
    /// The admission server, and the keeper in the same process when asked for.
    Server {
        config: Box<Config>,
        keeper: Option<KeeperSettings>,
    },
    /// Only the keeper.
    Keeper(KeeperOnly),
}

/// `--no-admission`: the keeper, and plain-HTTP status endpoints if a port is given.
#[derive(Debug, Clone, PartialEq)]
pub struct KeeperOnly {
    pub keeper: KeeperSettings,
    /// `--probe-port` on `--bind-address`; nothing listens without it.
    pub listen: Option<SocketAddr>,
    pub header_read_timeout: Duration,
    pub log_level: tracing::Level,
    pub log_format: LogFormat,
}

impl Launch {
    /// Builds the launch from parsed flags and the environment; returns warnings to log once
    /// logging is up, as [`Config::from_args`] does.
    pub fn from_args(args: Args) -> Result<(Self, Vec<String>), ConfigError> {
        Self::from_args_and_env(args, env_var)
    }

    /// As [`Launch::from_args`], with the environment given (for tests).
    pub fn from_args_and_env(
        args: Args,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(Self, Vec<String>), ConfigError> {
        let keeper = args.keep_published_contents.then(|| KeeperSettings {
            kubeconfig: args.kubeconfig.clone(),
            stale_after: args.watch_stale_after,
            install: args.install_name.clone(),
            install_namespace: args.install_namespace.clone(),
        });
        match keeper {
            Some(keeper) if args.no_admission => {
                let mut warnings = Vec::new();
                let only = KeeperOnly {
                    keeper,
                    listen: args
                        .probe_port
                        .map(|port| SocketAddr::new(args.bind_address, port)),
                    header_read_timeout: args.header_read_timeout,
                    log_level: log_level(&env, &mut warnings),
                    log_format: args.log_format,
                };
                Ok((Launch::Keeper(only), warnings))
            }
            keeper => {
                let (config, warnings) = Config::from_args_and_env(args, env)?;
                Ok((
                    Launch::Server {
                        config: Box::new(config),
                        keeper,
                    },
                    warnings,
                ))
            }
        }
    }

    pub fn log_level(&self) -> tracing::Level {
        match self {
            Launch::Server { config, .. } => config.log_level,
            Launch::Keeper(only) => only.log_level,
        }
    }

    pub fn log_format(&self) -> LogFormat {
        match self {
            Launch::Server { config, .. } => config.log_format,
            Launch::Keeper(only) => only.log_format,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;
    use clap::Parser;

    fn launch(
        extra: &[&str],
        env: &'static [(&'static str, &'static str)],
    ) -> Result<Launch, ConfigError> {
        let mut all = vec!["gmsa-webhook"];
        all.extend_from_slice(extra);
        let args = Args::try_parse_from(all).unwrap();
        let env = |k: &str| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        Launch::from_args_and_env(args, env).map(|(launch, _)| launch)
    }

    #[test]
    fn by_default_the_server_runs_alone_and_still_needs_its_certificate() {
        let certs = ["--tls-cert", "c", "--tls-key", "k"];
        match launch(&certs, &[]).unwrap() {
            Launch::Server { keeper, .. } => assert_eq!(keeper, None),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(launch(&[], &[]), Err(ConfigError::NoCertificate));
        assert_eq!(
            launch(&["--keep-published-contents"], &[]),
            Err(ConfigError::NoCertificate)
        );
    }

    #[test]
    fn the_keeper_runs_beside_the_server() {
        let args = [
            "--tls-cert",
            "c",
            "--tls-key",
            "k",
            "--keep-published-contents",
            "--kubeconfig",
            "kc",
            "--watch-stale-after",
            "30s",
            "--install-name",
            "gw",
        ];
        match launch(&args, &[]).unwrap() {
            Launch::Server { keeper, .. } => assert_eq!(
                keeper,
                Some(KeeperSettings {
                    kubeconfig: Some("kc".into()),
                    stale_after: Duration::from_secs(30),
                    install: "gw".into(),
                    install_namespace: "gmsa-system".into(),
                })
            ),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn without_admissions_no_certificate_is_needed() {
        let args = [
            "--keep-published-contents",
            "--no-admission",
            "--probe-port",
            "8080",
            "--bind-address",
            "127.0.0.1",
            "--log-format",
            "json",
        ];
        let launched = launch(&args, &[("LOG_LEVEL", "debug")]).unwrap();
        assert_eq!(launched.log_level(), tracing::Level::DEBUG);
        assert_eq!(launched.log_format(), LogFormat::Json);
        match launched {
            Launch::Keeper(only) => {
                assert_eq!(only.listen, Some("127.0.0.1:8080".parse().unwrap()));
                assert_eq!(only.keeper.stale_after, Duration::from_secs(60));
                assert_eq!(
                    only.keeper.install, "gmsa-webhook",
                    "the default install's name"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        let Launch::Keeper(quiet) =
            launch(&["--keep-published-contents", "--no-admission"], &[]).unwrap()
        else {
            panic!("keeper expected");
        };
        assert_eq!(quiet.listen, None);
    }

    #[test]
    fn nonsense_combinations_are_refused() {
        for args in [
            &["gmsa-webhook", "--no-admission"][..],
            &["gmsa-webhook", "--install-name", "gw"],
            &[
                "gmsa-webhook",
                "--keep-published-contents",
                "--state-dir",
                "x",
            ],
            &[
                "gmsa-webhook",
                "--keep-published-contents",
                "--no-admission",
                "--dev-certs",
                "d",
            ],
        ] {
            assert!(Args::try_parse_from(args).is_err(), "{args:?}");
        }
    }
}
