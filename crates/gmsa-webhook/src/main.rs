//! `gmsa-webhook`: parse flags and environment, start logging, serve (or keep published
//! contents) until SIGTERM/SIGINT.

use clap::Parser;
use gmsa_webhook::config::{Args, Launch, LogFormat, VERSION};

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.version {
        println!("windows-gmsa-webhook v{VERSION}");
        return Ok(());
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (launch, warnings) = Launch::from_args(args)?;
    init_logging(launch.log_level(), launch.log_format());
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(gmsa_webhook::launch(launch, shutdown_signal()))
}

fn init_logging(level: tracing::Level, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::builder()
        .with_default_directive(level.into())
        .parse_lossy(format!(
            "{level},hyper=warn,rustls=warn,kube=warn,tower=warn"
        ));
    // Colour codes only on a terminal: in a pod they would litter the logs, and writing them
    // costs time on every admission.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Completes on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
