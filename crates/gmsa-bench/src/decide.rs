//! The pure decision path alone, for instruction counts: `Review::read` → `needs` →
//! `Facts::gather` (embedded state) → `decide` → `respond`, N times. Run under
//! `valgrind --tool=callgrind` twice with different N; the difference divided by the difference
//! in N is the cost of one admission, with start-up cancelled out.

use std::path::Path;
use std::process::Command;

use anyhow::{anyhow, bail, Context};
use gmsa_core::admission::Review;
use gmsa_core::state::State;
use gmsa_core::{Facts, Hook, Options};

use crate::world;

/// Decides `iterations` reviews for a pod with `refs` references; returns how many were
/// allowed (all of them, unless something is wrong).
pub fn run(iterations: u64, hook: Hook, refs: usize) -> anyhow::Result<u64> {
    let mut state = State::default();
    state
        .add_yaml("bench", &world::state_yaml(10, 10))
        .map_err(|e| anyhow!("bench state: {e}"))?;
    let body = world::review(hook, refs, "705ab4f5-6393-11e8-b7cc-42010a800002");
    let mut allowed = 0;
    for _ in 0..iterations {
        let review = Review::read(hook, std::hint::black_box(&body));
        let needs = review.needs();
        let facts = Facts::gather(&needs, &state);
        let verdict = review.decide(&facts, Options::default(), String::new);
        let answer = review.respond(&verdict);
        std::hint::black_box(&answer);
        allowed += u64::from(verdict.is_allowed());
    }
    if allowed != iterations {
        bail!("only {allowed} of {iterations} bench reviews were allowed");
    }
    Ok(allowed)
}

/// Everything counted with callgrind.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Counts {
    /// The pure decision path.
    pub decide: Vec<InstructionCount>,
    /// The whole server process, per request.
    pub server: Vec<crate::suite::ServerInstructions>,
}

/// Instructions per admission, measured with callgrind over `n1` and `n2` iterations.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InstructionCount {
    pub hook: &'static str,
    pub refs: usize,
    pub n1: u64,
    pub n2: u64,
    pub instructions_n1: u64,
    pub instructions_n2: u64,
    pub per_admission: u64,
}

/// Runs `exe decide` under callgrind for `n1` and `n2` iterations.
pub fn callgrind(
    exe: &Path,
    hook: Hook,
    refs: usize,
    n1: u64,
    n2: u64,
) -> anyhow::Result<InstructionCount> {
    let dir = tempfile::tempdir()?;
    let mut counts = [0u64; 2];
    for (slot, n) in counts.iter_mut().zip([n1, n2]) {
        let out = dir.path().join(format!("callgrind.{n}.out"));
        let status = Command::new("valgrind")
            .arg("--tool=callgrind")
            .arg(format!("--callgrind-out-file={}", out.display()))
            .arg(exe)
            .args(["decide", "--iterations", &n.to_string()])
            .args(["--hook", hook.as_str(), "--refs", &refs.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .context("cannot run valgrind (apt-get install valgrind)")?;
        if !status.success() {
            bail!("valgrind failed: {status}");
        }
        *slot = total_instructions(&std::fs::read_to_string(&out)?)
            .context("no instruction total in the callgrind output")?;
    }
    Ok(InstructionCount {
        hook: hook.as_str(),
        refs,
        n1,
        n2,
        instructions_n1: counts[0],
        instructions_n2: counts[1],
        per_admission: counts[1].saturating_sub(counts[0]) / (n2 - n1).max(1),
    })
}

/// The `summary:` (or `totals:`) line of a callgrind output file: instructions executed.
pub(crate) fn total_instructions(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bench_review_is_allowed() {
        for hook in [Hook::Mutate, Hook::Validate] {
            for refs in [1, 10] {
                assert_eq!(run(3, hook, refs).expect("decides"), 3);
            }
        }
    }

    #[test]
    fn reads_the_callgrind_total() {
        assert_eq!(
            total_instructions("events: Ir\nsummary: 12345\n"),
            Some(12345)
        );
        assert_eq!(total_instructions("totals: 77\n"), Some(77));
        assert_eq!(total_instructions("nothing"), None);
    }
}
