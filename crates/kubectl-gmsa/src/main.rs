//! `kubectl-gmsa`: kubectl runs it for `kubectl gmsa ...`.

use std::process::ExitCode;

use clap::Parser;
use kubectl_gmsa::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match kubectl_gmsa::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
