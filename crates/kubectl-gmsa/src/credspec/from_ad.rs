//! `credspec new --from-ad`: the domain facts read from a domain controller over LDAP, and the
//! gMSAs checked to exist there; the build that follows is the same as with flags.

use anyhow::{anyhow, Context as _};
use gmsa_ad::{Directory, DirectoryConfig};
use gmsa_core::credspec::{AdditionalAccount, DomainFacts};

use crate::cli::NewArgs;
use crate::directory::{connection, describe, Failure};

/// Connects to the domain controller at `url`, reads the domain facts, and checks that
/// `--account` and every `--additional-account` of that domain are gMSAs there.
pub(super) fn read_domain(args: &NewArgs, url: &str) -> anyhow::Result<DomainFacts> {
    let (config, flags) = connection(&args.directory.connection, url, "--from-ad")?;

    let facts = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(read_and_check(
            &config,
            &args.account,
            &args.additional_accounts,
        ))
        .map_err(|failure| anyhow!(describe(&failure, &flags)))?;
    for (i, extra) in args.additional_accounts.iter().enumerate() {
        if !in_domain(extra, &facts) {
            eprintln!(
                "note: --additional-account (#{}) {}@{} is not in {}, so it was not checked",
                i + 1,
                extra.name,
                extra.domain.as_deref().unwrap_or_default(),
                facts.dns_name
            );
        }
    }
    Ok(facts)
}

/// Whether an additional account belongs to the domain that was read (then it is checked).
fn in_domain(account: &AdditionalAccount, facts: &DomainFacts) -> bool {
    account
        .domain
        .as_deref()
        .is_none_or(|domain| domain.eq_ignore_ascii_case(&facts.dns_name))
}

async fn read_and_check(
    config: &DirectoryConfig,
    account: &str,
    additional: &[AdditionalAccount],
) -> Result<DomainFacts, Failure> {
    let mut directory = Directory::connect(config).await?;
    let facts = directory.domain_facts().await?;
    let mut accounts = vec![("--account".to_string(), account)];
    accounts.extend(
        additional
            .iter()
            .enumerate()
            .filter(|(_, extra)| in_domain(extra, &facts))
            .map(|(i, extra)| {
                (
                    format!("--additional-account (#{})", i + 1),
                    extra.name.as_str(),
                )
            }),
    );
    for (flag, name) in accounts {
        directory.check_gmsa(name).await.map_err(|error| Failure {
            account: Some(flag),
            error,
        })?;
    }
    directory.close().await;
    Ok(facts)
}
