//! Command-line arguments. kubectl runs `kubectl-gmsa` for `kubectl gmsa ...`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use gmsa_core::credspec::AdditionalAccount;

use crate::args::{ApplyArgs, ConnectionArgs, OutputFile, DIRECTORY_URL};
use crate::exit::after_help;
use crate::grant::ServiceAccountRef;

const TOP_EXAMPLES: &str = "\
Examples:
  kubectl gmsa credspec new gmsa-webapp1 --account WebApp1 --domain contoso.com --netbios CONTOSO \\
    --domain-guid 244818ae-87ac-4fcd-92ec-e79e5252348a \\
    --domain-sid S-1-5-21-2126449477-2524075714-3094792973 -o gmsa-webapp1.yaml
  kubectl gmsa credspec new gmsa-webapp1 --account WebApp1 --from-ad ldaps://dc1.contoso.com \\
    --bind-upn svc-gmsa@contoso.com --password-file ad-password --ca-file contoso-ca.pem
  kubectl gmsa grant gmsa-webapp1 --service-account default:default
  kubectl gmsa admit -f deployment.yaml --state examples/state
  kubectl gmsa doctor --ad ldaps://dc1.contoso.com --bind-upn svc-gmsa@contoso.com \\
    --password-file ad-password --ca-file contoso-ca.pem
  kubectl gmsa migrate-storage";

/// Operator tools for Windows GMSA credential specs on Kubernetes.
#[derive(Debug, Parser)]
#[command(
    name = "kubectl-gmsa",
    bin_name = "kubectl gmsa",
    version,
    after_help = after_help(TOP_EXAMPLES)
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, convert and check GMSACredentialSpec resources.
    #[command(subcommand, after_help = after_help(CREDSPEC_EXAMPLES))]
    Credspec(CredspecCommand),
    /// Let service accounts use a credential spec: a ClusterRole and one RoleBinding each.
    #[command(after_help = after_help(GRANT_EXAMPLES))]
    Grant(GrantArgs),
    /// Review pods and workload pod templates offline, exactly as the webhook would.
    #[command(after_help = after_help(ADMIT_EXAMPLES))]
    Admit(AdmitArgs),
    /// Install or upgrade the webhook: CRD, RBAC, certificates, Deployment, webhook configurations.
    #[command(after_help = after_help(crate::install::INSTALL_EXAMPLES))]
    Install(Box<crate::install::InstallArgs>),
    /// Remove what install made; the CRD and credential specs stay unless --delete-crd.
    #[command(after_help = after_help(crate::uninstall::UNINSTALL_EXAMPLES))]
    Uninstall(crate::uninstall::UninstallArgs),
    /// Check the cluster side of GMSA (CRD, webhook, certificates, credential specs, pods) and,
    /// with --ad, the directory side (gMSA, password readers, KDS root key, scopes, SPNs).
    #[command(after_help = crate::doctor::doctor_help())]
    Doctor(crate::doctor::DoctorArgs),
    /// Rewrite credential specs stored as v1alpha1 as v1, then drop v1alpha1 from the CRD's
    /// status.storedVersions.
    #[command(after_help = after_help(crate::storage::MIGRATE_STORAGE_EXAMPLES))]
    MigrateStorage(crate::storage::MigrateStorageArgs),
}

const CREDSPEC_EXAMPLES: &str = "\
Examples:
  kubectl gmsa credspec new gmsa-webapp1 --account WebApp1 --domain contoso.com --netbios CONTOSO \\
    --domain-guid 244818ae-87ac-4fcd-92ec-e79e5252348a \\
    --domain-sid S-1-5-21-2126449477-2524075714-3094792973
  kubectl gmsa credspec new gmsa-webapp1 --account WebApp1 --from-ad ldaps://dc1.contoso.com \\
    --bind-upn svc-gmsa@contoso.com --password-file ad-password --ca-file contoso-ca.pem
  kubectl gmsa credspec convert contoso_webapp1.json --name gmsa-webapp1 -o gmsa-webapp1.yaml
  kubectl gmsa credspec convert contoso_webapp1.json --name gmsa-webapp1 --apply
  kubectl gmsa credspec validate gmsa-webapp1.yaml

With --apply, `new` and `convert` apply the GMSACredentialSpec (server-side apply). In policy
mode its credspec cannot change once created (delete the spec and apply it again), and the
keeper publishes its contents in the namespaces whose service accounts may use it.";

#[derive(Debug, Subcommand)]
pub enum CredspecCommand {
    /// Write a GMSACredentialSpec with the credential spec New-CredentialSpec would write.
    #[command(after_help = after_help(NEW_EXAMPLES))]
    New(Box<NewArgs>),
    /// Turn the JSON file New-CredentialSpec wrote into a GMSACredentialSpec.
    #[command(after_help = after_help(CONVERT_EXAMPLES))]
    Convert(ConvertArgs),
    /// Check GMSACredentialSpec resources; one line per problem.
    #[command(after_help = after_help(VALIDATE_EXAMPLES))]
    Validate(ValidateArgs),
}

const NEW_EXAMPLES: &str = "\
The domain facts are what `Get-ADDomain` shows: DNSRoot (--domain), Forest (--forest),
NetBIOSName (--netbios), ObjectGUID (--domain-guid) and DomainSID (--domain-sid). With
--from-ad they are read from a domain controller instead, which also checks that the gMSA (and
each additional account of that domain) exists. The connection is ldaps://, or StartTLS on
ldap://; plain LDAP only with --insecure-plaintext. The bind password is read from
--password-file (one trailing newline is dropped; `-` reads stdin), never from a flag.

Examples:
  # The Kubernetes documentation's WebApp1 in contoso.com:
  kubectl gmsa credspec new gmsa-webapp1 --account WebApp1 --domain contoso.com --netbios CONTOSO \\
    --domain-guid 244818ae-87ac-4fcd-92ec-e79e5252348a \\
    --domain-sid S-1-5-21-2126449477-2524075714-3094792973 -o gmsa-webapp1.yaml

  # The same, applied to the cluster (check first with --dry-run=server):
  kubectl gmsa credspec new gmsa-webapp1 --account WebApp1 --domain contoso.com --netbios CONTOSO \\
    --domain-guid 244818ae-87ac-4fcd-92ec-e79e5252348a \\
    --domain-sid S-1-5-21-2126449477-2524075714-3094792973 --apply

  # For nodes that are not domain-joined, with the CCG plugin of the platform
  # (the domain flags as above, or --from-ad):
  # EKS, the portable identity in AWS Secrets Manager (or an SSM parameter's ARN):
  kubectl gmsa credspec new gmsa-webapp1 --account WebApp1 --domain contoso.com --netbios CONTOSO \\
    --domain-guid 244818ae-87ac-4fcd-92ec-e79e5252348a \\
    --domain-sid S-1-5-21-2126449477-2524075714-3094792973 --plugin aws \\
    --credential-arn arn:aws:secretsmanager:us-east-1:123456789012:secret:gmsa-plugin-input-AbCdEf
  # AKS, the identity in Azure Key Vault, read by the kubelet's managed identity:
  kubectl gmsa credspec new gmsa-webapp1 --account WebApp1 --from-ad ldaps://dc1.contoso.com \\
    --bind-upn svc-gmsa@contoso.com --password-file ad-password --ca-file contoso-ca.pem \\
    --plugin azure --object-id 6a1d6a8b-2a9e-4e5c-9b1f-0d1a2b3c4d5e \\
    --secret-uri https://contoso-gmsa.vault.azure.net/secrets/gmsa-user
  # Rancher's plugin, the identity in a Secret beside its account provider:
  kubectl gmsa credspec new gmsa-webapp1 --account WebApp1 --domain contoso.com --netbios CONTOSO \\
    --domain-guid 244818ae-87ac-4fcd-92ec-e79e5252348a \\
    --domain-sid S-1-5-21-2126449477-2524075714-3094792973 --plugin rancher \\
    --secret-namespace cattle-windows-gmsa-system --secret contoso-gmsa-user
  # Any other plugin, by GUID and input text, with a second gMSA from another domain:
  kubectl gmsa credspec new gmsa-webapp1 --account WebApp1 --domain contoso.com --netbios CONTOSO \\
    --domain-guid 244818ae-87ac-4fcd-92ec-e79e5252348a \\
    --domain-sid S-1-5-21-2126449477-2524075714-3094792973 \\
    --additional-account LogReader@fabrikam.com \\
    --ccg-plugin-guid 8019A64C-3F4E-4DE3-AD2B-9A544290E2C3 --ccg-plugin-input 'plugin text'

  # WebApp1 with the facts read from a domain controller, which also checks that the gMSA
  # exists, trusting the domain's CA:
  kubectl gmsa credspec new gmsa-webapp1 --account WebApp1 --from-ad ldaps://dc1.contoso.com \\
    --bind-upn svc-gmsa@contoso.com --password-file ad-password --ca-file contoso-ca.pem \\
    -o gmsa-webapp1.yaml

  # StartTLS on port 389, binding by DN, the password from a Secret on stdin:
  kubectl get secret ad-bind -o jsonpath='{.data.password}' | base64 -d | \\
    kubectl gmsa credspec new gmsa-webapp1 --account WebApp1 --from-ad ldap://dc1.contoso.com \\
    --bind-dn 'CN=svc-gmsa,CN=Users,DC=contoso,DC=com' --password-file - --ca-file contoso-ca.pem";

/// `credspec new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// Name of the GMSACredentialSpec (a lowercase DNS-1123 name; pods refer to it).
    pub name: String,
    /// The gMSA's account name, such as WebApp1 (a final `$` is dropped).
    #[arg(long, value_name = "ACCOUNT")]
    pub account: String,
    #[command(flatten)]
    pub domain: DomainArgs,
    /// Another gMSA the container may use; DOMAIN (DNS name) defaults to the gMSA's domain.
    /// Repeatable.
    #[arg(long = "additional-account", value_name = "ACCOUNT[@DOMAIN]")]
    pub additional_accounts: Vec<AdditionalAccount>,
    #[command(flatten)]
    pub output: OutputFile,
    #[command(flatten)]
    pub apply: ApplyArgs,
    /// After the headless groups, because its help heading holds for the arguments after it.
    #[command(flatten)]
    pub ccg: CcgArgs,
    /// Last, because its help heading holds for the arguments after it.
    #[command(flatten)]
    pub directory: DirectoryArgs,
}

/// The gMSA's domain, given as flags; [`DirectoryArgs`] reads the same facts from Active
/// Directory instead.
#[derive(Debug, Args)]
pub struct DomainArgs {
    /// The domain's DNS name, such as contoso.com.
    #[arg(
        long,
        value_name = "DNS",
        required_unless_present = DIRECTORY_URL,
        conflicts_with = DIRECTORY_URL
    )]
    pub domain: Option<String>,
    /// The domain's NetBIOS name, such as CONTOSO (at most 15 characters).
    #[arg(
        long,
        value_name = "NETBIOS",
        required_unless_present = DIRECTORY_URL,
        conflicts_with = DIRECTORY_URL
    )]
    pub netbios: Option<String>,
    /// The domain's GUID (Get-ADDomain's ObjectGUID).
    #[arg(
        long = "domain-guid",
        value_name = "GUID",
        required_unless_present = DIRECTORY_URL,
        conflicts_with = DIRECTORY_URL
    )]
    pub domain_guid: Option<String>,
    /// The domain's SID (Get-ADDomain's DomainSID), such as S-1-5-21-1-2-3.
    #[arg(
        long = "domain-sid",
        value_name = "SID",
        required_unless_present = DIRECTORY_URL,
        conflicts_with = DIRECTORY_URL
    )]
    pub domain_sid: Option<String>,
    /// The forest's root domain (DNS name); defaults to --domain.
    #[arg(long, value_name = "DNS", conflicts_with = DIRECTORY_URL)]
    pub forest: Option<String>,
}

/// Reading the domain facts from a domain controller over LDAP, instead of [`DomainArgs`].
#[derive(Debug, Args)]
#[command(next_help_heading = "Reading the domain from Active Directory")]
pub struct DirectoryArgs {
    /// Read the domain facts from this domain controller: ldaps://HOST[:PORT], or
    /// ldap://HOST[:PORT] with StartTLS.
    #[arg(
        id = DIRECTORY_URL,
        long = "from-ad",
        value_name = "URL",
        requires_all = ["bind", "password_file"]
    )]
    pub from_ad: Option<String>,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// The Container Credential Guard plugin, for hosts that are not joined to the domain: one of
/// the plugins users run, by name with typed flags, or any plugin by GUID and input text.
#[derive(Debug, Args)]
#[command(next_help_heading = "CCG plugin, for nodes that are not domain-joined")]
pub struct CcgArgs {
    /// The CCG plugin whose input the typed flags below make: aws (EKS/ECS Windows AMIs:
    /// --credential-arn), azure (AKS Key Vault plugin: --object-id, --secret-uri), rancher
    /// (Rancher's plugin: --secret-namespace, --secret).
    #[arg(
        long,
        value_enum,
        value_name = "PLUGIN",
        conflicts_with = "ccg_plugin_guid"
    )]
    pub plugin: Option<PluginChoice>,
    /// aws: the ARN of the Secrets Manager secret or SSM parameter holding the portable
    /// identity (username, password, domainName).
    #[arg(long, value_name = "ARN", required_if_eq("plugin", "aws"))]
    pub credential_arn: Option<String>,
    /// azure: the object ID of the managed identity that may read the Key Vault secret.
    #[arg(long, value_name = "GUID", required_if_eq("plugin", "azure"))]
    pub object_id: Option<String>,
    /// azure: the Key Vault secret holding DOMAIN\user:password,
    /// https://VAULT.vault.azure.net/secrets/NAME.
    #[arg(long, value_name = "URI", required_if_eq("plugin", "azure"))]
    pub secret_uri: Option<String>,
    /// rancher: the namespace of the account provider (rancher-gmsa-account-provider).
    #[arg(long, value_name = "NAMESPACE", required_if_eq("plugin", "rancher"))]
    pub secret_namespace: Option<String>,
    /// rancher: the Secret there holding domainName, username and password.
    #[arg(long, value_name = "NAME", required_if_eq("plugin", "rancher"))]
    pub secret: Option<String>,
    /// Any other plugin: the GUID of the CCG plugin that fetches the gMSA's password.
    #[arg(long, value_name = "GUID", requires = "ccg_plugin_input")]
    pub ccg_plugin_guid: Option<String>,
    /// Any other plugin: what it needs to find the secret (plugin-specific text).
    #[arg(long, value_name = "TEXT", requires = "ccg_plugin_guid")]
    pub ccg_plugin_input: Option<String>,
    /// The plugin's PortableCcgVersion (1 when not given); only with --plugin or
    /// --ccg-plugin-guid.
    #[arg(long = "ccg-version", value_name = "N")]
    pub ccg_version: Option<String>,
}

/// The CCG plugins `credspec new --plugin` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PluginChoice {
    /// AWS's plugin on the EKS and ECS Windows AMIs (Secrets Manager or SSM Parameter Store).
    Aws,
    /// The Azure Key Vault plugin (AKS).
    Azure,
    /// Rancher's plugin, reading a Kubernetes Secret through its account provider.
    Rancher,
}

const CONVERT_EXAMPLES: &str = "\
Reads the JSON as PowerShell writes it: UTF-8 with or without a BOM, or UTF-16, CRLF or LF.

Examples:
  # On Windows: New-CredentialSpec -AccountName WebApp1 -Path .\\contoso_webapp1.json
  kubectl gmsa credspec convert contoso_webapp1.json --name gmsa-webapp1 -o gmsa-webapp1.yaml
  kubectl gmsa credspec convert contoso_webapp1.json --name gmsa-webapp1 | kubectl apply -f -
  # Applied by server-side apply:
  kubectl gmsa credspec convert contoso_webapp1.json --name gmsa-webapp1 --apply";

/// `credspec convert`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The credential spec JSON file (`-` for stdin).
    pub file: PathBuf,
    /// Name of the GMSACredentialSpec to write.
    #[arg(long)]
    pub name: String,
    #[command(flatten)]
    pub output: OutputFile,
    #[command(flatten)]
    pub apply: ApplyArgs,
}

const VALIDATE_EXAMPLES: &str = "\
Prints `FILE: NAME: problem` for each problem and exits 1 if there is any; `FILE: NAME:
warning: ...` for what may work but is likely a mistake (an unknown CCG plugin, a missing
scope, an account of another domain), which alone exits 0. The PluginInput of the AWS, Azure
Key Vault and Rancher CCG plugins is checked against the format each plugin reads. Documents
of other kinds are skipped.

Examples:
  kubectl gmsa credspec validate gmsa-webapp1.yaml
  kubectl get gmsacredentialspecs -o yaml | kubectl gmsa credspec validate -";

/// `credspec validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// YAML or JSON files, multi-document or `List`s; `-` for stdin.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

const GRANT_EXAMPLES: &str = "\
Examples:
  # Print the ClusterRole and RoleBinding that let default/default use gmsa-webapp1:
  kubectl gmsa grant gmsa-webapp1 --service-account default:default

  # Two service accounts, applied by server-side apply (check first with --dry-run=server):
  kubectl gmsa grant gmsa-webapp1 --service-account default:default \\
    --service-account web:iis --apply --dry-run=server
  kubectl gmsa grant gmsa-webapp1 --service-account default:default --service-account web:iis --apply";

/// `grant`.
#[derive(Debug, Args)]
pub struct GrantArgs {
    /// The GMSACredentialSpec to grant the use of.
    pub spec: String,
    /// A service account as NAMESPACE:NAME (or system:serviceaccount:NAMESPACE:NAME). Repeatable.
    #[arg(
        long = "service-account",
        value_name = "NAMESPACE:NAME",
        required = true
    )]
    pub service_accounts: Vec<ServiceAccountRef>,
    /// Name of the ClusterRole [default: <SPEC>-user].
    #[arg(long = "role-name", value_name = "NAME")]
    pub role_name: Option<String>,
    /// Name of the RoleBindings [default: allow-<SERVICE ACCOUNT>-use-<SPEC>].
    #[arg(long = "binding-name", value_name = "NAME")]
    pub binding_name: Option<String>,
    #[command(flatten)]
    pub output: OutputFile,
    #[command(flatten)]
    pub apply: ApplyArgs,
}

const ADMIT_EXAMPLES: &str = "\
Runs the webhook's mutate and then validate decisions, as the API server calls them, on Pods
and on the pod templates of Deployments, ReplicaSets, StatefulSets, DaemonSets, Jobs, CronJobs
and ReplicationControllers (their pods' creation). The cluster is a directory of manifests:
GMSACredentialSpecs, ClusterRoles, Roles and their bindings. Admitted objects are printed
with the credential specs inlined; one verdict per object goes to stderr, after the webhook's
admission warnings (a GMSA pod's host name longer than 15 characters; a template's pods are
named from generateName, the API server's five characters shown as xxxxx); a warned object is
admitted. Exits 1 if any object is denied.

Examples:
  kubectl gmsa admit -f deployment.yaml --state examples/state
  kubectl gmsa admit -f pod.yaml --old running-pod.yaml --state examples/state
  kubectl get deploy -n web -o yaml | kubectl gmsa admit -f - --state ./cluster -o json";

/// `admit`.
#[derive(Debug, Args)]
pub struct AdmitArgs {
    /// Objects to review: YAML or JSON, multi-document or `List`s; `-` for stdin.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: PathBuf,
    /// Directory of manifests that stands for the cluster.
    #[arg(long, value_name = "DIR")]
    pub state: PathBuf,
    /// The Pods as they are now, for an UPDATE (matched by namespace and name).
    #[arg(long, value_name = "FILE")]
    pub old: Option<PathBuf>,
    /// The operation to review [default: UPDATE with --old, else CREATE].
    #[arg(long, value_enum, value_name = "OP", ignore_case = true)]
    pub operation: Option<Operation>,
    /// Namespace of objects that name none [default: default].
    #[arg(short = 'n', long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Output format of the admitted objects.
    #[arg(short = 'o', long = "output", value_enum, default_value = "yaml")]
    pub output: Format,
}

/// An admission operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "UPPER")]
pub enum Operation {
    Create,
    Update,
}

/// How admitted objects are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// YAML documents separated by `---`.
    Yaml,
    /// One JSON `List`.
    Json,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;
    use crate::exit::ExitStatus;

    /// Every command and subcommand, by its path, with its long help.
    fn helps(command: &mut clap::Command, path: String, out: &mut Vec<(String, String)>) {
        out.push((path.clone(), command.render_long_help().to_string()));
        for sub in command.get_subcommands_mut() {
            if sub.get_name() != "help" {
                let path = format!("{path} {}", sub.get_name());
                helps(sub, path, out);
            }
        }
    }

    #[test]
    fn every_help_has_an_example_and_the_one_exit_status_paragraph() {
        let mut root = Cli::command();
        root.build();
        let mut all = Vec::new();
        helps(&mut root, "kubectl gmsa".into(), &mut all);
        assert!(
            all.len() >= 10,
            "{:?}",
            all.iter().map(|(p, _)| p).collect::<Vec<_>>()
        );
        for (path, help) in &all {
            // clap wraps long lines; compare words.
            let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(
                words(help).contains(&words(ExitStatus::HELP)),
                "{path} --help does not end with the exit statuses:\n{help}"
            );
            assert!(
                help.contains("Examples:") || help.contains("  kubectl gmsa "),
                "{path}:\n{help}"
            );
            let rest = words(help).replacen(&words(ExitStatus::HELP), "", 1);
            assert!(
                !rest.to_lowercase().contains("exit status"),
                "{path} --help states exit statuses a second way:\n{help}"
            );
        }
    }
}
