//! Continuous pod creation against an API server while something else happens (a rollout,
//! a restart, a renewal, a mode switch), counting every answer: what users of a webhook
//! feel during operations is the count of pods refused or let through unchecked.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::real_cluster::{https_request, RealCluster};

/// How many refusal messages a tally keeps (the first ones).
const KEPT_MESSAGES: usize = 8;

/// The counts of one load run.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Created (or dry-run created) with the expected contents.
    pub admitted: u64,
    /// Created without the expected contents: let through unchecked.
    pub unchecked: u64,
    /// Refused, or no answer.
    pub failed: u64,
    /// The first refusal messages, with the time since the start.
    pub messages: Vec<String>,
    /// How long the load ran.
    pub elapsed: Duration,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.admitted += other.admitted;
        self.unchecked += other.unchecked;
        self.failed += other.failed;
        for message in other.messages {
            if self.messages.len() < KEPT_MESSAGES {
                self.messages.push(message);
            }
        }
        self.elapsed = self.elapsed.max(other.elapsed);
    }

    /// Every request made.
    pub fn total(&self) -> u64 {
        self.admitted + self.unchecked + self.failed
    }
}

/// Workers creating one pod manifest over and over until stopped.
#[derive(Debug)]
pub struct PodLoad {
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<Tally>>,
}

impl PodLoad {
    /// Starts `workers` threads POSTing `pod` (JSON, without a name: `generateName` is set
    /// here) to `namespace` as the admin, with `dryRun=All` when `dry_run` (admission runs
    /// the same; nothing is stored). An answer of 201 whose body contains `marker` counts as
    /// admitted, 201 without it as unchecked, anything else as failed.
    pub fn start(
        cluster: &RealCluster,
        namespace: &str,
        pod: &serde_json::Value,
        marker: &str,
        dry_run: bool,
        workers: usize,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut pod = pod.clone();
        pod["metadata"]["generateName"] = serde_json::Value::from("load-");
        let body = pod.to_string();
        let url = format!(
            "{}/api/v1/namespaces/{namespace}/pods{}",
            cluster.url(),
            if dry_run { "?dryRun=All" } else { "" }
        );
        let handles = (0..workers)
            .map(|_| {
                let stop = Arc::clone(&stop);
                let (url, body, marker) = (url.clone(), body.clone(), marker.to_string());
                let ca = cluster.ca_pem().to_string();
                let token = cluster.admin_token().to_string();
                thread::spawn(move || {
                    let began = Instant::now();
                    let mut tally = Tally::default();
                    while !stop.load(Ordering::Relaxed) {
                        match https_request("POST", &url, &ca, Some(&token), Some(&body)) {
                            Ok((201, answer)) if answer.contains(&marker) => tally.admitted += 1,
                            Ok((201, _)) => tally.unchecked += 1,
                            Ok((status, answer)) => {
                                tally.failed += 1;
                                if tally.messages.len() < KEPT_MESSAGES {
                                    tally.messages.push(format!(
                                        "+{:.1}s HTTP {status}: {}",
                                        began.elapsed().as_secs_f64(),
                                        message_of(&answer)
                                    ));
                                }
                            }
                            Err(e) => {
                                tally.failed += 1;
                                if tally.messages.len() < KEPT_MESSAGES {
                                    tally.messages.push(format!(
                                        "+{:.1}s {e}",
                                        began.elapsed().as_secs_f64()
                                    ));
                                }
                            }
                        }
                    }
                    tally.elapsed = began.elapsed();
                    tally
                })
            })
            .collect();
        Self {
            stop,
            workers: handles,
        }
    }

    /// Stops the workers and adds up their counts.
    pub fn stop(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = Tally::default();
        for worker in self.workers {
            if let Ok(tally) = worker.join() {
                total.add(tally);
            }
        }
        total
    }
}

/// The `message` of a `Status` body, else the body's start.
fn message_of(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.chars().take(300).collect())
}
