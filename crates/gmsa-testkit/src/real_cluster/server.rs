//! Which kube-apiserver (and which etcd) a [`super::RealCluster`] runs, where their binaries
//! are, and what each version can do. The tier runs every scenario on each
//! [`ServerVersion`]; a scenario that needs a newer feature asks [`ServerVersion::has`].

use std::fmt;
use std::path::PathBuf;

use super::ClusterError;

/// The kube-apiserver versions the real-API-server tier runs against. Each is built and
/// cached by `hack/build-kube-apiserver.sh VERSION`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerVersion {
    /// v1.20.2 from Debian's source package, on Debian's etcd 3.4: the oldest we support.
    V1_20,
    /// The current release from the `k8s.io/kubernetes` module (`hack/kubernetes/go.mod`),
    /// on etcd 3.6 from `go.etcd.io/etcd/server/v3` (`hack/etcd/go.mod`).
    Current,
}

/// What a scenario may need that not every tested server has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    /// CEL `matchConditions` on admission webhooks (on by default from 1.28).
    MatchConditions,
    /// The `pods/ephemeralcontainers` subresource taking a whole Pod (GA in 1.25).
    EphemeralContainers,
    /// Init containers with `restartPolicy: Always` (on by default from 1.29).
    NativeSidecars,
}

/// etcd for the current server, as pinned in `hack/etcd/go.mod`.
pub const CURRENT_ETCD_VERSION: &str = "v3.6.16";
/// Where Debian's `etcd-server` package installs etcd (3.4 on bookworm), used with v1.20.2.
pub const DEBIAN_ETCD_PATH: &str = "/usr/bin/etcd";

impl ServerVersion {
    /// Every version, oldest first.
    pub const ALL: [ServerVersion; 2] = [ServerVersion::V1_20, ServerVersion::Current];

    /// The version the server reports as `gitVersion`, and the build script's argument.
    pub const fn git_version(self) -> &'static str {
        match self {
            ServerVersion::V1_20 => "v1.20.2",
            ServerVersion::Current => "v1.37.2",
        }
    }

    /// The minor version (`20`, `37`).
    pub const fn minor(self) -> u32 {
        match self {
            ServerVersion::V1_20 => 20,
            ServerVersion::Current => 37,
        }
    }

    /// Whether this server has `feature`.
    pub const fn has(self, feature: Feature) -> bool {
        let since = match feature {
            Feature::MatchConditions => 28,
            Feature::EphemeralContainers => 25,
            Feature::NativeSidecars => 29,
        };
        self.minor() >= since
    }

    /// Environment variable naming this version's kube-apiserver binary (overrides the cache).
    pub const fn apiserver_env(self) -> &'static str {
        match self {
            ServerVersion::V1_20 => "GMSA_KUBE_APISERVER",
            ServerVersion::Current => "GMSA_KUBE_APISERVER_CURRENT",
        }
    }

    /// Environment variable naming this version's etcd binary (overrides the default).
    pub const fn etcd_env(self) -> &'static str {
        match self {
            ServerVersion::V1_20 => "GMSA_ETCD",
            ServerVersion::Current => "GMSA_ETCD_CURRENT",
        }
    }

    /// `--insecure-port` exists before 1.24 and must be turned off there; later it is gone.
    pub(super) const fn has_insecure_port(self) -> bool {
        self.minor() < 24
    }

    /// The kube-apiserver binary: `$<apiserver_env>`, else the build script's cache path.
    pub fn apiserver_path(self) -> Result<PathBuf, ClusterError> {
        let path = env_path(self.apiserver_env()).unwrap_or_else(|| {
            cache_dir()
                .join(format!("kube-apiserver-{}", self.git_version()))
                .join("kube-apiserver")
        });
        if path.is_file() {
            Ok(path)
        } else {
            Err(ClusterError::MissingApiServer {
                version: self,
                path,
            })
        }
    }

    /// The etcd binary: `$<etcd_env>`, else Debian's (v1.20.2) or the build script's cache path.
    pub fn etcd_path(self) -> Result<PathBuf, ClusterError> {
        let path = env_path(self.etcd_env()).unwrap_or_else(|| match self {
            ServerVersion::V1_20 => PathBuf::from(DEBIAN_ETCD_PATH),
            ServerVersion::Current => cache_dir()
                .join(format!("etcd-{CURRENT_ETCD_VERSION}"))
                .join("etcd"),
        });
        if path.is_file() {
            Ok(path)
        } else {
            Err(ClusterError::MissingEtcd {
                version: self,
                path,
            })
        }
    }

    /// How to get this version's etcd, for error messages.
    pub const fn etcd_hint(self) -> &'static str {
        match self {
            ServerVersion::V1_20 => "install the Debian packages etcd-server and etcd-client",
            ServerVersion::Current => "run hack/build-etcd.sh (it builds and caches it)",
        }
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.git_version())
    }
}

pub(crate) fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

/// `${GMSA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gmsa-k8s}`, as the build scripts use it.
pub(crate) fn cache_dir() -> PathBuf {
    if let Some(dir) = env_path("GMSA_CACHE_DIR") {
        return dir;
    }
    if let Some(dir) = env_path("XDG_CACHE_HOME") {
        return dir.join("gmsa-k8s");
    }
    PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
        .join(".cache/gmsa-k8s")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pinned(go_mod: &str, module: &str) -> String {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../hack/").to_string() + go_mod;
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        text.lines()
            .find_map(|line| {
                let mut words = line.split_whitespace();
                let first = words.next()?;
                let (name, version) = if first == "require" {
                    (words.next()?, words.next()?)
                } else {
                    (first, words.next()?)
                };
                (name == module).then(|| version.to_string())
            })
            .unwrap_or_else(|| panic!("{path} does not require {module}"))
    }

    /// The versions the tests expect are the ones the build scripts build.
    #[test]
    fn versions_match_the_pinned_modules() {
        assert_eq!(
            pinned("kubernetes/go.mod", "k8s.io/kubernetes"),
            ServerVersion::Current.git_version()
        );
        assert_eq!(
            pinned("etcd/go.mod", "go.etcd.io/etcd/server/v3"),
            CURRENT_ETCD_VERSION
        );
        let minor: u32 = ServerVersion::Current.git_version()[3..5]
            .parse()
            .unwrap_or(0);
        assert_eq!(minor, ServerVersion::Current.minor());
    }

    #[test]
    fn features_follow_the_minor_version() {
        assert!(!ServerVersion::V1_20.has(Feature::MatchConditions));
        assert!(!ServerVersion::V1_20.has(Feature::EphemeralContainers));
        assert!(ServerVersion::Current.has(Feature::NativeSidecars));
        assert!(ServerVersion::V1_20.has_insecure_port());
        assert!(!ServerVersion::Current.has_insecure_port());
    }
}
