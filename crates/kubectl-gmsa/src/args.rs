//! Arguments more than one command takes: where output goes, how far a dry run goes, and how
//! to bind to a domain controller. Each command's own arguments live with the command tree
//! (`cli`) or with the command; these sit apart so commands never import the tree.

use std::path::PathBuf;

use clap::{ArgGroup, Args, ValueEnum};

/// Where to write, and whether an existing file may be replaced.
#[derive(Debug, Args)]
pub struct OutputFile {
    /// Write to FILE instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Overwrite FILE if it exists.
    #[arg(long)]
    pub force: bool,
}

/// Where a dry run stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DryRun {
    /// The API server checks and answers, but stores nothing.
    Server,
    /// Nothing is sent; the objects are printed.
    Client,
}

/// Sending a command's objects to the cluster instead of only printing them.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Apply the objects to the cluster (server-side apply, field manager kubectl-gmsa).
    #[arg(long)]
    pub apply: bool,
    /// With --apply: `server` sends a dry run, `client` only prints.
    #[arg(long = "dry-run", value_enum, value_name = "MODE", requires = "apply")]
    pub dry_run: Option<DryRun>,
    /// With --apply: take over fields another manager owns.
    #[arg(long = "force-conflicts", requires = "apply")]
    pub force_conflicts: bool,
}

impl ApplyArgs {
    /// Whether anything goes to the API server (`--dry-run=client` sends nothing).
    pub fn sends(&self) -> bool {
        self.apply && self.dry_run != Some(DryRun::Client)
    }

    /// Whether the API server is asked for a dry run.
    pub fn server_dry_run(&self) -> bool {
        self.dry_run == Some(DryRun::Server)
    }
}

/// The clap id of the URL flag that [`ConnectionArgs`] go with (`--from-ad`, `doctor --ad`).
pub const DIRECTORY_URL: &str = "directory_url";

/// How to bind to a domain controller; shared by `credspec new --from-ad` and `doctor --ad`,
/// whose URL flag has the id [`DIRECTORY_URL`].
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("bind").args(["bind_dn", "bind_upn"])))]
pub struct ConnectionArgs {
    /// Bind as this DN, such as CN=svc-gmsa,CN=Users,DC=contoso,DC=com.
    #[arg(long = "bind-dn", value_name = "DN", requires = DIRECTORY_URL)]
    pub bind_dn: Option<String>,
    /// Bind as this user principal name, such as svc-gmsa@contoso.com.
    #[arg(long = "bind-upn", value_name = "UPN", requires = DIRECTORY_URL)]
    pub bind_upn: Option<String>,
    /// The file holding the bind password (`-` for stdin).
    #[arg(long = "password-file", value_name = "FILE", requires = DIRECTORY_URL)]
    pub password_file: Option<PathBuf>,
    /// PEM file of the CA that issued the domain controller's certificate
    /// [default: the system's trust store].
    #[arg(long = "ca-file", value_name = "FILE", requires = DIRECTORY_URL)]
    pub ca_file: Option<PathBuf>,
    /// On ldap://: upgrade the connection with StartTLS (the default).
    #[arg(long, requires = DIRECTORY_URL, conflicts_with = "insecure_plaintext")]
    pub starttls: bool,
    /// On ldap://: no TLS at all; the bind password crosses the network in clear.
    #[arg(long = "insecure-plaintext", requires = DIRECTORY_URL)]
    pub insecure_plaintext: bool,
}
