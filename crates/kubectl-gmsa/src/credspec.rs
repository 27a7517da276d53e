//! `credspec new`, `credspec convert` and `credspec validate`.

pub mod apply;
pub(crate) mod from_ad;
mod plugin;

use anyhow::bail;
use gmsa_core::credspec::build::{Field, Reason};
use gmsa_core::credspec::{self, build_credential_spec, BuildError, DomainFacts, Problem};
use gmsa_core::names;
use gmsa_core::syntax::{self, SyntaxError};
use serde::Serialize;
use serde_json::Value;

use crate::args::{ApplyArgs, OutputFile};
use crate::cli::{ConvertArgs, DomainArgs, NewArgs, ValidateArgs};
use crate::exit::ExitStatus;
use crate::input::{parse_documents, parse_json, Source};
use crate::{cluster, output};

/// Where the domain facts came from, so build errors name the right source.
#[derive(Debug, Clone, Copy)]
enum Origin<'a> {
    Flags,
    /// A domain controller, by URL.
    Directory(&'a str),
}

/// `credspec new`: build, print or write. The domain facts come from flags or, with
/// `--from-ad`, from a domain controller.
pub fn new(args: &NewArgs) -> anyhow::Result<ExitStatus> {
    // The plugin's flags need no round trip to the domain controller either.
    let ccg = plugin::from_flags(&args.ccg)?;
    let (domain, origin) = match &args.directory.from_ad {
        Some(url) => {
            // Typos in names need no round trip to the domain controller.
            check_names(args).map_err(|e| {
                anyhow::anyhow!(describe_build_error(
                    &args.name,
                    e.field,
                    &e.reason,
                    Origin::Directory(url)
                ))
            })?;
            (from_ad::read_domain(args, url)?, Origin::Directory(url))
        }
        None => (domain_facts(&args.domain)?, Origin::Flags),
    };
    let resource = build_credential_spec(
        &args.name,
        &args.account,
        &domain,
        &args.additional_accounts,
        ccg.as_ref(),
    )
    .map_err(|e| anyhow::anyhow!(describe_build_error(&args.name, e.field, &e.reason, origin)))?;
    emit(&resource, &args.output, &args.apply)
}

/// Prints (or writes) the resource unless it is only applied, and with --apply sends it and
/// publishes its contents, as `grant --apply` prints and sends.
fn emit(
    resource: &impl Serialize,
    out: &OutputFile,
    how: &ApplyArgs,
) -> anyhow::Result<ExitStatus> {
    let yaml = output::yaml_documents(&[resource])?;
    if out.output.is_some() || !how.sends() {
        output::write(out.output.as_deref(), out.force, &yaml)?;
    }
    if !how.sends() {
        return Ok(ExitStatus::Success);
    }
    let resource = serde_json::to_value(resource)?;
    let lines = cluster::runtime()?.block_on(async {
        let client = cluster::client().await?;
        apply::apply(client, &resource, how).await
    })?;
    let mut text = lines.join("\n");
    text.push('\n');
    output::write(None, false, &text)?;
    Ok(ExitStatus::Success)
}

/// The domain facts from flags. Reading them from Active Directory is the other way to get a
/// `DomainFacts`; everything after this point is shared.
fn domain_facts(args: &DomainArgs) -> anyhow::Result<DomainFacts> {
    let given = |value: &Option<String>, flag: &str| {
        value
            .clone()
            .ok_or_else(|| anyhow::anyhow!("give {flag}, or read the domain with --from-ad"))
    };
    let dns_name = given(&args.domain, "--domain")?;
    Ok(DomainFacts {
        forest_dns_name: args.forest.clone().unwrap_or_else(|| dns_name.clone()),
        netbios_name: given(&args.netbios, "--netbios")?,
        guid: given(&args.domain_guid, "--domain-guid")?,
        sid: given(&args.domain_sid, "--domain-sid")?,
        dns_name,
    })
}

/// The checks `build_credential_spec` makes that do not depend on the domain facts.
fn check_names(args: &NewArgs) -> Result<(), BuildError> {
    let at = |field| {
        move |e| BuildError {
            field,
            reason: Reason::Syntax(e),
        }
    };
    syntax::object_name(&args.name).map_err(at(Field::Name))?;
    syntax::account(&args.account).map_err(at(Field::Account))?;
    for (i, extra) in args.additional_accounts.iter().enumerate() {
        syntax::account(&extra.name).map_err(at(Field::AdditionalAccount(i)))?;
        if let Some(domain) = &extra.domain {
            syntax::dns_domain(domain).map_err(at(Field::AdditionalAccountDomain(i)))?;
        }
    }
    Ok(())
}

/// A build error, naming the flag that carries the value, or the directory it was read from.
fn describe_build_error(name: &str, field: Field, reason: &Reason, origin: Origin<'_>) -> String {
    let read = |flag: &str| match origin {
        Origin::Flags => flag.to_string(),
        Origin::Directory(url) => format!("the {field} read from {url}"),
    };
    let flag = match field {
        Field::Name => return name_problem(name, reason.to_string()),
        Field::Account => "--account".to_string(),
        Field::DnsName => read("--domain"),
        Field::ForestDnsName => read("--forest"),
        Field::NetbiosName => read("--netbios"),
        Field::Guid => read("--domain-guid"),
        Field::Sid => read("--domain-sid"),
        Field::AdditionalAccount(i) => format!("--additional-account (#{})", i + 1),
        Field::AdditionalAccountDomain(i) => {
            format!("--additional-account (#{}) domain", i + 1)
        }
        Field::CcgPluginGuid => "--ccg-plugin-guid".to_string(),
        Field::CcgPluginInput => "--ccg-plugin-input".to_string(),
        Field::CcgVersion => "--ccg-version".to_string(),
    };
    format!("{flag}: {reason}")
}

/// The NAME problem, with a word on the documentation's own mixed-case example.
fn name_problem(name: &str, problem: String) -> String {
    let mut message = format!("NAME {problem}");
    if name.chars().any(|c| c.is_ascii_uppercase()) {
        message.push_str(
            ". The API server refuses uppercase letters in names, although the Kubernetes GMSA \
             documentation names its example gmsa-WebApp1",
        );
    }
    message
}

fn check_name(name: &str) -> anyhow::Result<()> {
    syntax::object_name(name)
        .map_err(|e: SyntaxError| anyhow::anyhow!(name_problem(name, e.to_string())))
}

/// A `GMSACredentialSpec` around a credential-spec document, keys in the documentation's
/// order.
#[derive(Serialize)]
struct Resource<'a> {
    #[serde(rename = "apiVersion")]
    api_version: String,
    kind: &'static str,
    metadata: Metadata<'a>,
    credspec: &'a Value,
}

#[derive(Serialize)]
struct Metadata<'a> {
    name: &'a str,
}

/// `credspec convert`: New-CredentialSpec's JSON to a resource.
pub fn convert(args: &ConvertArgs) -> anyhow::Result<ExitStatus> {
    check_name(&args.name)?;
    let source = Source::new(&args.file);
    let name = source.name();
    let text = source.read_text()?;
    let contents = parse_json(&name, &text)?;
    if contents.get(names::CREDSPEC_KEY).is_some() || contents.get("kind").is_some() {
        bail!(
            "{name} is already a Kubernetes object, not the JSON New-CredentialSpec writes: check it with `kubectl gmsa credspec validate {name}`"
        );
    }
    let (warnings, problems): (Vec<Problem>, Vec<Problem>) = credspec::validate_contents(&contents)
        .into_iter()
        .partition(Problem::is_warning);
    for warning in &warnings {
        eprintln!("warning: {name}: {warning}");
    }
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
        bail!(
            "{name} is not a credential spec as New-CredentialSpec writes it:\n{}",
            list.join("\n")
        );
    }
    let resource = Resource {
        api_version: format!("{}/{}", names::GROUP, names::VERSION),
        kind: names::KIND,
        metadata: Metadata { name: &args.name },
        credspec: &contents,
    };
    emit(&resource, &args.output, &args.apply)
}

/// `credspec validate`: one line per problem on stdout; exit 1 if any, 2 if a file could
/// not be read.
pub fn validate(args: &ValidateArgs) -> anyhow::Result<ExitStatus> {
    let mut problems = 0usize;
    let mut warnings = 0usize;
    let mut checked = 0usize;
    let mut unreadable = false;
    let mut lines = Vec::new();
    for path in &args.files {
        let source = Source::new(path);
        let file = source.name();
        let text = match source.read_text() {
            Ok(text) => text,
            Err(e) => {
                eprintln!("error: {e}");
                unreadable = true;
                continue;
            }
        };
        let docs = match parse_documents(&file, &text) {
            Ok(docs) => docs,
            Err(e) => {
                lines.push(e.to_string());
                problems += 1;
                continue;
            }
        };
        for (index, doc) in docs.iter().enumerate() {
            let label = doc
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| format!("document {}", index + 1));
            let found = check_document(doc, &file);
            match found {
                Checked::Skipped(kind) => {
                    eprintln!(
                        "{file}: {label}: skipped, a {kind} is not a {}",
                        names::KIND
                    );
                }
                Checked::Problems(list) => {
                    checked += 1;
                    for line in list {
                        if line.warning {
                            warnings += 1;
                            lines.push(format!("{file}: {label}: warning: {}", line.text));
                        } else {
                            problems += 1;
                            lines.push(format!("{file}: {label}: {}", line.text));
                        }
                    }
                }
            }
        }
    }
    let mut stdout = String::new();
    for line in &lines {
        stdout.push_str(line);
        stdout.push('\n');
    }
    output::write(None, false, &stdout)?;
    eprintln!(
        "{checked} credential spec{} checked, {problems} problem{}, {warnings} warning{}",
        if checked == 1 { "" } else { "s" },
        if problems == 1 { "" } else { "s" },
        if warnings == 1 { "" } else { "s" }
    );
    Ok(if unreadable {
        ExitStatus::Error
    } else if problems > 0 {
        ExitStatus::Refused
    } else {
        ExitStatus::Success
    })
}

enum Checked {
    Skipped(String),
    Problems(Vec<Line>),
}

/// One line of `credspec validate`'s report; warnings do not fail the command.
struct Line {
    text: String,
    warning: bool,
}

impl From<&Problem> for Line {
    fn from(p: &Problem) -> Self {
        Line {
            text: p.to_string(),
            warning: p.is_warning(),
        }
    }
}

fn check_document(doc: &Value, file: &str) -> Checked {
    let kind = doc.get("kind").and_then(Value::as_str);
    let bare = kind.is_none()
        && doc.get(names::CREDSPEC_KEY).is_none()
        && ["CmsPlugins", "DomainJoinConfig", "ActiveDirectoryConfig"]
            .iter()
            .any(|k| doc.get(k).is_some());
    if bare {
        let mut list = vec![Line {
            text: format!(
                "this is the bare JSON New-CredentialSpec writes, not a {} resource: make one with `kubectl gmsa credspec convert {file} --name NAME`",
                names::KIND
            ),
            warning: false,
        }];
        list.extend(credspec::validate_contents(doc).iter().map(Line::from));
        return Checked::Problems(list);
    }
    match kind {
        Some(k) if k != names::KIND => Checked::Skipped(k.to_string()),
        _ => Checked::Problems(credspec::validate(doc).iter().map(Line::from).collect()),
    }
}
