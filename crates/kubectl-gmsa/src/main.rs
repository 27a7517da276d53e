//! `kubectl-gmsa`: kubectl runs it for `kubectl gmsa ...`.

use std::process::ExitCode;

use clap::Parser;
use kubectl_gmsa::cli::Cli;
use kubectl_gmsa::exit::ExitStatus;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match kubectl_gmsa::run(cli) {
        Ok(status) => status.into(),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitStatus::Error.into()
        }
    }
}
