//! A tiny run of the admission-mode benchmark on the real current kube-apiserver (about half a
//! minute): every mode takes effect and goes away again, every create is admitted, the pods are
//! stored as the mode says (the benchmark reads one back and fails otherwise), and the report
//! has a row per cell. Speed is never asserted. `GMSA_SKIP_REAL_APISERVER=1` skips.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use gmsa_bench::admission_modes::{self, Mode, Plan};
use gmsa_bench::section::ADMISSION_MODES;
use gmsa_testkit::real_cluster::{skip_requested, SKIP_ENV};

#[test]
fn every_mode_admits_every_pod_and_the_report_has_a_row_per_cell() {
    if skip_requested() {
        eprintln!("skipped: {SKIP_ENV}=1");
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let plan = Plan {
        spec_counts: vec![1, 3],
        pods: 12,
        warmup: 2,
        connections: 2,
        rounds: 1,
        ..Plan::quick(env!("CARGO_BIN_EXE_gmsa-bench").into())
    };
    let rows = admission_modes::run(&plan).expect("the benchmark runs");
    let cells: Vec<(usize, &str)> = rows.iter().map(|r| (r.specs, r.mode)).collect();
    assert_eq!(
        cells,
        [
            (1, "none"),
            (1, "webhook"),
            (1, "policies"),
            (3, "none"),
            (3, "webhook"),
            (3, "policies")
        ]
    );
    for row in &rows {
        assert_eq!(
            (row.pods, row.failures),
            (12, 0),
            "{row:?}: every create is admitted"
        );
        assert!(row.p50_ms > 0.0 && row.p99_ms >= row.p50_ms, "{row:?}");
        assert_eq!(
            row.webhook_cpu_ms.is_some(),
            row.mode == Mode::Webhook.name(),
            "{row:?}: only the webhook mode has a webhook process"
        );
    }
    let section = admission_modes::markdown(&rows, &plan, "test");
    assert!(section.starts_with(ADMISSION_MODES.begin), "{section}");
    assert!(
        section.trim_end().ends_with(ADMISSION_MODES.end),
        "{section}"
    );
    assert_eq!(
        section.matches("\n| 3 | policies |").count(),
        1,
        "{section}"
    );
    assert!(section.contains("going from 1 to 3 specs"), "{section}");
}
