//! `doctor`'s flags and the help text after them: the cluster checks', then, with `--ad`, the
//! directory's.

use clap::{Args, ValueEnum};
use gmsa_deploy::names;

use crate::args::{ConnectionArgs, DIRECTORY_URL};

/// `doctor --help` after the flags, for the cluster checks: what they check, examples.
pub const DOCTOR_EXAMPLES: &str = "\
Checks, each a row PASS, WARN or FAIL with a fix: the CRD and its versions; the webhook
configurations; that their caBundle verifies the webhook's serving certificate (the Secret's,
or what a URL-registered webhook presents) and when it expires (WARN under 30 days); that the
webhook answers /readyz and /info (through the API server's service proxy); that every
GMSACredentialSpec is well formed; and for each pod that names a credential spec: the spec
exists, its service account may `use` it, the contents were inlined and still match, the pod
targets Windows nodes, and no other pod with the same spec shares its NetBIOS host name (the
first 15 characters of its host name): FAIL when both run, WARN while one is still Pending.
A reference webhook or an install with another --name beside this one is a WARN.
In policy mode the webhook rows give way to the policies and their bindings, the namespaces'
published contents (current or behind), the largest namespace's contents (WARN beyond 1 MiB)
and the keeper.
Fixes are install commands for the mode found (webhook or policies) and its namespace.

Exits 0 when every check passes or only warns, 1 when one fails, 2 when the cluster (or, with
--ad, the directory) cannot be read or a flag is wrong.

Examples:
  kubectl gmsa doctor
  kubectl gmsa doctor -n web --pod iis-7776966999-n5nzr --node-steps
  kubectl gmsa doctor -o json";

/// The same for the directory checks of `--ad`.
pub const AD_EXAMPLES: &str = "\
With --ad URL, doctor also checks Active Directory for every credential spec (or --credspec)
and every Windows node (or --node): the gMSA exists, is enabled and is in the spec's domain
(ad-account); each node's computer account, or a CCG spec's plugin account, may retrieve its
password, directly or through nested groups (ad-retrieval); a KDS root key is in effect
(ad-kds-root-key); the spec lists the DNS and the NetBIOS scope (ad-scopes); no other account
holds its SPNs (ad-spn); its dNSHostName is in the domain (ad-dns-host-name). The connection
flags are those of `credspec new --from-ad`: ldaps://, or StartTLS on ldap://, never plain
unless --insecure-plaintext. Each fix is the PowerShell (or kubectl) command to run. An
untrusted certificate, rejected credentials, an unknown --credspec or --node are errors (2).

  kubectl gmsa doctor --ad ldaps://dc1.contoso.com --bind-upn svc-gmsa@contoso.com \\
    --password-file ad-password --ca-file contoso-ca.pem
  kubectl gmsa doctor --ad ldap://dc1.contoso.com --bind-upn svc-gmsa@contoso.com \\
    --password-file ad-password --ca-file contoso-ca.pem \\
    --credspec gmsa-webapp1 --node win-node-1 --ad-only -o json";

/// `doctor --help`'s text after the flags: the cluster checks', the directory's, the exit
/// statuses.
pub fn doctor_help() -> String {
    crate::exit::after_help(&format!("{DOCTOR_EXAMPLES}\n\n{AD_EXAMPLES}"))
}

/// `doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Namespace of the pods to check [default: all namespaces; `default` with --pod].
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Check only this pod.
    #[arg(long, value_name = "NAME")]
    pub pod: Option<String>,
    /// Print the documentation's node-side checks as kubectl exec command lines.
    #[arg(long = "node-steps")]
    pub node_steps: bool,
    /// Name given to install (its webhook configurations are <NAME>-admission).
    #[arg(long, default_value = names::DEFAULT_NAME)]
    pub name: String,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub output: DoctorFormat,
    /// Last, because its help heading holds for the arguments after it.
    #[command(flatten)]
    pub ad: AdArgs,
}

/// How findings are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DoctorFormat {
    Table,
    Json,
}

/// `doctor --ad` and its scope.
#[derive(Debug, Args)]
#[command(next_help_heading = "Checking Active Directory (--ad)")]
pub struct AdArgs {
    /// Also check the directory side through this domain controller: ldaps://HOST[:PORT], or
    /// ldap://HOST[:PORT] with StartTLS.
    #[arg(
        id = DIRECTORY_URL,
        long = "ad",
        value_name = "URL",
        requires_all = ["bind", "password_file"]
    )]
    pub url: Option<String>,
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Check only this GMSACredentialSpec [default: every one in the cluster].
    #[arg(long = "credspec", value_name = "NAME", requires = DIRECTORY_URL)]
    pub credspec: Option<String>,
    /// Check only this node [default: every node labelled kubernetes.io/os=windows].
    #[arg(long = "node", value_name = "NAME", requires = DIRECTORY_URL)]
    pub node: Option<String>,
    /// Run only the directory checks (the cluster is still read for specs and nodes).
    #[arg(long = "ad-only", requires = DIRECTORY_URL)]
    pub ad_only: bool,
}
