//! `kubectl gmsa`: create, convert and check GMSA credential specs, grant service accounts
//! their use, and review pods offline with the webhook's own decisions. The domain logic is
//! `gmsa-core`'s; this crate reads files, prints and talks to the cluster.

pub mod admit;
pub mod apply;
pub mod args;
pub mod cli;
pub mod cluster;
pub mod credspec;
pub mod direct;
pub mod directory;
pub mod doctor;
pub mod exit;
pub mod grant;
pub mod input;
pub mod install;
pub mod output;
pub mod reference;
pub mod rollout;
pub mod storage;
pub mod uninstall;

use crate::exit::ExitStatus;
use cli::{Cli, Command, CredspecCommand, GrantArgs};

/// Runs one command. `Ok` carries the exit status ([`ExitStatus::Refused`] when a check said
/// no); an error means the command could not do its work, and the caller exits
/// [`ExitStatus::Error`].
pub fn run(cli: Cli) -> anyhow::Result<ExitStatus> {
    match cli.command {
        Command::Credspec(CredspecCommand::New(args)) => credspec::new(&args),
        Command::Credspec(CredspecCommand::Convert(args)) => credspec::convert(&args),
        Command::Credspec(CredspecCommand::Validate(args)) => credspec::validate(&args),
        Command::Grant(args) => run_grant(&args),
        Command::Admit(args) => admit::admit(&args),
        Command::Install(args) => install::install(&args),
        Command::Uninstall(args) => uninstall::uninstall(&args),
        Command::Doctor(args) => doctor::doctor(&args),
        Command::MigrateStorage(args) => storage::migrate_storage(&args),
    }
}

fn run_grant(args: &GrantArgs) -> anyhow::Result<ExitStatus> {
    let grant = grant::grant(
        &args.spec,
        &args.service_accounts,
        args.role_name.as_deref(),
        args.binding_name.as_deref(),
    )?;
    let yaml = grant.to_yaml()?;
    let sends = args.apply.sends();
    if args.output.output.is_some() || !sends {
        output::write(args.output.output.as_deref(), args.output.force, &yaml)?;
    }
    if !sends {
        return Ok(ExitStatus::Success);
    }
    let lines = cluster::runtime()?.block_on(async {
        let client = cluster::client().await?;
        grant
            .apply(
                client,
                args.apply.server_dry_run(),
                args.apply.force_conflicts,
            )
            .await
    })?;
    let mut text = lines.join("\n");
    text.push('\n');
    output::write(None, false, &text)?;
    Ok(ExitStatus::Success)
}
