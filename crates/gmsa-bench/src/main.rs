//! `gmsa-bench`: run the benchmark suite (or one of its parts) and print one JSON object.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use gmsa_bench::callgrind::{self, Counts};
use gmsa_bench::decision_path;
use gmsa_bench::machine::Machine;
use gmsa_bench::report;
use gmsa_bench::section;
use gmsa_bench::suite::{self, Placement, Plan};
use gmsa_bench::target::{self, TargetKind, TargetSpec};
use gmsa_core::Hook;

/// `--features mimalloc`: every allocation of the suite and of the targets it spawns.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Benchmarks the GMSA webhook on 127.0.0.1 and prints one JSON object on standard output
/// (progress on standard error).
#[derive(Debug, Parser)]
#[command(name = "gmsa-bench")]
struct Args {
    /// Short cells (under a minute in all), for CI.
    #[arg(long)]
    quick: bool,
    /// Write the report as Markdown to FILE (default BENCHMARKS.md).
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "BENCHMARKS.md")]
    write_report: Option<PathBuf>,
    /// Skip the large-cluster part.
    #[arg(long)]
    no_scale: bool,
    /// Also count instructions per admission with valgrind (callgrind).
    #[arg(long)]
    callgrind: bool,
    /// Log level of the targets (production logs each admission at info); `off` for none.
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Run the targets in this process instead of child processes.
    #[arg(long)]
    in_process: bool,
    /// Only these targets (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    targets: Vec<TargetKind>,
    /// Only these concurrencies (default 1,16,64).
    #[arg(long, value_delimiter = ',')]
    concurrency: Vec<usize>,
    /// Only these reference counts (default 1,10).
    #[arg(long, value_delimiter = ',')]
    refs: Vec<usize>,
    /// Length of each measured window, seconds.
    #[arg(long)]
    seconds: Option<f64>,
    /// Rounds per cell (the median counts).
    #[arg(long)]
    rounds: Option<usize>,
    #[command(subcommand)]
    command: Option<Part>,
}

#[derive(Debug, Subcommand)]
enum Part {
    /// Serve one target until standard input closes (used by the suite).
    Target {
        #[arg(long, value_enum)]
        kind: TargetKind,
        #[arg(long)]
        certs: PathBuf,
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        #[arg(long)]
        state_dir: Option<PathBuf>,
        #[arg(long, default_value = "info")]
        log_level: String,
    },
    /// Run the pure decision path N times (for callgrind).
    Decide {
        #[arg(long)]
        iterations: u64,
        #[arg(long, value_parser = parse_hook, default_value = "mutate")]
        hook: Hook,
        #[arg(long, default_value_t = 1)]
        refs: usize,
    },
    /// Access decisions on a real kube-apiserver (v1.37.2, built by
    /// hack/build-kube-apiserver.sh): --authorization api against hybrid, quiet, under RBAC
    /// churn, with many service accounts and in a burst of new ones. With --write-report the
    /// section of BENCHMARKS.md is replaced. Example:
    /// cargo run --release -p gmsa-bench -- authorization --write-report
    Authorization {
        /// Short windows and fewer keys.
        #[arg(long)]
        quick: bool,
        /// Replace the section in FILE (default BENCHMARKS.md).
        #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "BENCHMARKS.md")]
        write_report: Option<PathBuf>,
        /// The modes to compare, in order.
        #[arg(long, value_delimiter = ',', default_value = "api,hybrid", value_parser = str::parse::<gmsa_webhook::config::Authorization>)]
        modes: Vec<gmsa_webhook::config::Authorization>,
    },
    /// Pod creation on a real kube-apiserver (v1.37.2, built by hack/build-kube-apiserver.sh)
    /// with no GMSA admission, the webhook and the admission policies, with 1, 100, 1,000 and
    /// 10,000 credential specs: latency, API-server CPU per created pod and the API server's
    /// heap (about 20 minutes). With --write-report the section of BENCHMARKS.md is replaced.
    /// Example:
    /// cargo run --release -p gmsa-bench -- policies --write-report
    Policies {
        /// Two small spec counts, few pods, one round.
        #[arg(long)]
        quick: bool,
        /// Replace the section in FILE (default BENCHMARKS.md).
        #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "BENCHMARKS.md")]
        write_report: Option<PathBuf>,
        /// The spec counts, in order (default 1,100,1000,10000).
        #[arg(long, value_delimiter = ',')]
        specs: Vec<usize>,
        /// The modes, in the order each round runs them (default none,webhook,policies).
        #[arg(long, value_enum, value_delimiter = ',')]
        modes: Vec<gmsa_bench::admission_modes::Mode>,
        /// Measured pods per cell.
        #[arg(long)]
        pods: Option<usize>,
        /// Rounds per spec count (the median counts).
        #[arg(long)]
        rounds: Option<usize>,
        /// Specs the pods' service account may use, so its namespace's published contents hold
        /// that many (default 10).
        #[arg(long)]
        namespace_specs: Option<usize>,
    },
    /// Instructions per admission: `decide` under callgrind at two iteration counts.
    Callgrind {
        #[arg(long, default_value_t = 1000)]
        n1: u64,
        #[arg(long, default_value_t = 11000)]
        n2: u64,
    },
}

fn parse_hook(s: &str) -> Result<Hook, String> {
    match s {
        "mutate" => Ok(Hook::Mutate),
        "validate" => Ok(Hook::Validate),
        _ => Err(format!("{s:?}: expected mutate or validate")),
    }
}

/// The decision path at `n1` and `n2` iterations, and the whole server at 500 and 2,500
/// requests per target, under callgrind.
fn instruction_counts(n1: u64, n2: u64, log_level: &str) -> anyhow::Result<Counts> {
    let exe = std::env::current_exe()?;
    let mut counts = Counts::default();
    for hook in [Hook::Mutate, Hook::Validate] {
        for refs in [1, 10] {
            let count = callgrind::decision_path(&exe, hook, refs, n1, n2)?;
            eprintln!(
                "callgrind: {} refs={refs}: {} instructions per admission (decision path)",
                hook.as_str(),
                count.per_admission
            );
            counts.decide.push(count);
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    counts.server = runtime.block_on(callgrind::server_instructions(
        &exe,
        &[
            TargetKind::Noop,
            TargetKind::KubeCached,
            TargetKind::Embedded,
        ],
        500,
        2500,
        log_level,
    ))?;
    Ok(counts)
}

/// How this run was started, as the report quotes it.
fn command_line() -> String {
    std::env::args().skip(1).fold(
        "cargo run --release -p gmsa-bench --".to_string(),
        |mut c, a| {
            c.push(' ');
            c.push_str(&a);
            c
        },
    )
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    match args.command {
        Some(Part::Target {
            kind,
            certs,
            kubeconfig,
            state_dir,
            log_level,
        }) => {
            return target::run_child(TargetSpec {
                kind,
                kubeconfig,
                state_dir,
                certs,
                log_level,
            })
        }
        Some(Part::Decide {
            iterations,
            hook,
            refs,
        }) => {
            let allowed = decision_path::run(iterations, hook, refs)?;
            println!("{allowed}");
            return Ok(());
        }
        Some(Part::Authorization {
            quick,
            write_report,
            modes,
        }) => {
            let mut plan = if quick {
                gmsa_bench::authz::Plan::quick()
            } else {
                gmsa_bench::authz::Plan::full()
            };
            plan.modes = modes;
            let rows = gmsa_bench::authz::run(&plan)?;
            println!("{}", serde_json::to_string(&rows)?);
            if let Some(path) = write_report {
                let command = format!(
                    "cargo run --release -p gmsa-bench -- authorization{}",
                    if quick { " --quick" } else { "" }
                );
                section::ACCESS_DECISIONS
                    .write_into(&path, &gmsa_bench::authz::markdown(&rows, &command))
                    .with_context(|| format!("cannot write {}", path.display()))?;
                eprintln!("section written to {}", path.display());
            }
            return Ok(());
        }
        Some(Part::Policies {
            quick,
            write_report,
            specs,
            modes,
            pods,
            rounds,
            namespace_specs,
        }) => {
            use gmsa_bench::admission_modes::{self, Plan as ModesPlan};
            let exe = std::env::current_exe()?;
            let mut plan = if quick {
                ModesPlan::quick(exe)
            } else {
                ModesPlan::full(exe)
            };
            if !specs.is_empty() {
                plan.spec_counts = specs;
            }
            if !modes.is_empty() {
                plan.modes = modes;
            }
            plan.pods = pods.unwrap_or(plan.pods);
            plan.rounds = rounds.unwrap_or(plan.rounds);
            plan.namespace_specs = namespace_specs.unwrap_or(plan.namespace_specs);
            let rows = admission_modes::run(&plan)?;
            println!("{}", serde_json::to_string(&rows)?);
            if let Some(path) = write_report {
                section::ADMISSION_MODES
                    .write_into(
                        &path,
                        &admission_modes::markdown(&rows, &plan, &command_line()),
                    )
                    .with_context(|| format!("cannot write {}", path.display()))?;
                eprintln!("section written to {}", path.display());
            }
            return Ok(());
        }
        Some(Part::Callgrind { n1, n2 }) => {
            let counts = instruction_counts(n1, n2, &args.log_level)?;
            println!("{}", serde_json::to_string_pretty(&counts)?);
            return Ok(());
        }
        None => {}
    }

    let placement = if args.in_process {
        Placement::InProcess
    } else {
        Placement::Child(std::env::current_exe()?)
    };
    let mut plan = if args.quick {
        Plan::quick(placement)
    } else {
        Plan::full(placement)
    };
    if args.no_scale {
        plan.scale = None;
    }
    plan.log_level = args.log_level.clone();
    if !args.targets.is_empty() {
        plan.targets = args.targets.clone();
    }
    if !args.concurrency.is_empty() {
        plan.concurrencies = args.concurrency.clone();
    }
    if !args.refs.is_empty() {
        plan.refs = args.refs.clone();
    }
    if let Some(s) = args.seconds {
        plan.duration = std::time::Duration::from_secs_f64(s);
    }
    if let Some(r) = args.rounds {
        plan.rounds = r;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let results = runtime.block_on(suite::run(&plan))?;
    drop(runtime);
    let instructions = if args.callgrind {
        instruction_counts(1000, 11000, &args.log_level)?
    } else {
        Counts::default()
    };
    let machine = Machine::detect();
    let mode = if args.quick { "quick" } else { "full" };
    let json = report::json(&results, &machine, &instructions, mode);
    println!("{}", serde_json::to_string(&json)?);
    if let Some(path) = &args.write_report {
        let command = command_line();
        // The sections other parts write (and the allocator comparison, measured by hand with
        // two builds) are kept.
        let mut text = report::markdown(&results, &machine, &instructions, &command);
        if let Ok(old) = std::fs::read_to_string(path) {
            for kept in section::KEPT {
                text = kept.keep(&text, &old);
            }
        }
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("report written to {}", path.display());
    }
    Ok(())
}
