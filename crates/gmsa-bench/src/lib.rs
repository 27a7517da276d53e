//! Benchmarks of the GMSA webhook, all on 127.0.0.1 and bounded in count and time: throughput
//! and latency of each backend against a no-op server on the same HTTP/TLS stack, API requests
//! per admission, memory, a large cluster, and instruction counts of the pure decision path.
//! `main.rs` parses arguments; everything else is here so the smoke test can run it.

pub mod admission_modes;
pub mod authz;
pub mod callgrind;
pub mod cluster;
pub mod decision_path;
pub mod in_process;
pub mod load;
pub mod machine;
pub mod real_server;
pub mod report;
pub mod rounds;
pub mod section;
pub mod suite;
pub mod target;
pub mod world;
