//! A tiny run of the benchmark in process (about two seconds): the report has every key, every
//! request was answered correctly, and a warm cache sent no request to the API server. Speed
//! is never asserted.

use gmsa_bench::machine::Machine;
use gmsa_bench::report;
use gmsa_bench::suite::{self, Placement, Plan};

#[test]
fn a_tiny_benchmark_reports_every_key_and_no_api_calls_on_a_warm_cache() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let results = runtime
        .block_on(suite::run(&Plan::smoke(Placement::InProcess)))
        .expect("the benchmark runs");
    let json = report::json(&results, &Machine::detect(), &Default::default(), "smoke");
    for key in [
        "mutate_rps",
        "validate_rps",
        "noop_rps",
        "mutate_p99_ms",
        "validate_p99_ms",
        "api_calls_per_admission",
    ] {
        assert!(json[key].is_number(), "{key} missing: {json}");
    }
    assert_eq!(
        json["api_calls_per_admission"].as_f64(),
        Some(0.0),
        "{json}"
    );
    for row in &results.rows {
        assert!(row.requests > 0, "{row:?}");
        assert_eq!(row.failures, 0, "{row:?}");
    }
}
