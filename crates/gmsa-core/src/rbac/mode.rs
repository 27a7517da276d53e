//! The webhook's `--authorization` setting: where its `use` decisions come from.

/// Where the webhook's `use` decisions come from (`--authorization`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthorizationMode {
    /// RBAC from the watch caches; an access review only when RBAC alone does not allow
    /// (another authorizer may).
    #[default]
    Hybrid,
    /// An access review for every decision (cached briefly): for clusters where an authorizer
    /// ahead of RBAC can deny what RBAC allows.
    Api,
    /// RBAC from the watch caches alone; never an access review.
    Local,
}

impl AuthorizationMode {
    /// Every mode, as written on the command line.
    pub const NAMES: [&'static str; 3] = ["hybrid", "api", "local"];

    /// The command-line spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthorizationMode::Hybrid => "hybrid",
            AuthorizationMode::Api => "api",
            AuthorizationMode::Local => "local",
        }
    }
}

impl std::fmt::Display for AuthorizationMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AuthorizationMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "hybrid" => Ok(AuthorizationMode::Hybrid),
            "api" => Ok(AuthorizationMode::Api),
            "local" => Ok(AuthorizationMode::Local),
            _ => Err(format!("{s:?}: write hybrid, api or local")),
        }
    }
}
