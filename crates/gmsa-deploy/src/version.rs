//! The Kubernetes version objects are rendered for: it decides which API versions and fields
//! the API server accepts.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// A Kubernetes `major.minor` version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KubeVersion {
    pub major: u32,
    pub minor: u32,
}

impl KubeVersion {
    /// The version rendered for when none is given and no cluster is asked: the first release
    /// where `matchConditions` is GA, so offline output uses every feature we know of.
    pub const OFFLINE_DEFAULT: KubeVersion = KubeVersion::new(1, 30);
    /// `matchConditions` on admission webhooks: beta and on by default from 1.28, GA in 1.30.
    pub const MATCH_CONDITIONS: KubeVersion = KubeVersion::new(1, 28);
    /// `policy/v1` PodDisruptionBudget, and the `kubernetes.io/metadata.name` namespace label.
    pub const POLICY_V1: KubeVersion = KubeVersion::new(1, 21);
    /// HostProcess containers (GA).
    pub const HOST_PROCESS: KubeVersion = KubeVersion::new(1, 26);
    /// ValidatingAdmissionPolicy is GA (`admissionregistration.k8s.io/v1`): the uninstall
    /// guard needs it.
    pub const VALIDATING_POLICIES: KubeVersion = KubeVersion::new(1, 30);
    /// MutatingAdmissionPolicy is GA (`admissionregistration.k8s.io/v1`).
    pub const ADMISSION_POLICIES: KubeVersion = KubeVersion::new(1, 36);

    /// `major.minor`.
    pub const fn new(major: u32, minor: u32) -> Self {
        Self { major, minor }
    }

    /// Reads the `major` and `minor` of a `/version` answer, where providers append text
    /// (`"28+"`).
    pub fn from_version_info(major: &str, minor: &str) -> Result<Self, KubeVersionError> {
        let digits = |s: &str| -> Result<u32, KubeVersionError> {
            let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            s[..end]
                .parse()
                .map_err(|_| KubeVersionError(format!("{major}.{minor}")))
        };
        Ok(Self::new(digits(major)?, digits(minor)?))
    }

    /// Whether this version has at least `other`'s features.
    pub fn at_least(self, other: KubeVersion) -> bool {
        self >= other
    }
}

impl fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// A version that is not `X.Y`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0:?} is not a Kubernetes version: write MAJOR.MINOR, such as 1.30 (or v1.30.2)")]
pub struct KubeVersionError(pub String);

impl FromStr for KubeVersion {
    type Err = KubeVersionError;

    /// Reads `1.30`, `v1.30` or `v1.30.2` (patch and suffixes ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bare = s.trim().trim_start_matches('v');
        let mut parts = bare.split(['.', '-', '+']);
        let major = parts.next().and_then(|p| p.parse().ok());
        let minor = parts.next().and_then(|p| p.parse().ok());
        match (major, minor) {
            (Some(major), Some(minor)) => Ok(Self::new(major, minor)),
            _ => Err(KubeVersionError(s.to_string())),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_versions() {
        assert_eq!(
            "1.30".parse::<KubeVersion>().unwrap(),
            KubeVersion::new(1, 30)
        );
        assert_eq!(
            "v1.20.2".parse::<KubeVersion>().unwrap(),
            KubeVersion::new(1, 20)
        );
        assert!("1".parse::<KubeVersion>().is_err());
        assert!("one.two".parse::<KubeVersion>().is_err());
        assert_eq!(
            KubeVersion::from_version_info("1", "28+").unwrap(),
            KubeVersion::new(1, 28)
        );
        assert!(KubeVersion::new(1, 28).at_least(KubeVersion::MATCH_CONDITIONS));
        assert!(!KubeVersion::new(1, 20).at_least(KubeVersion::MATCH_CONDITIONS));
        assert!(KubeVersion::new(2, 0) > KubeVersion::new(1, 99));
    }
}
