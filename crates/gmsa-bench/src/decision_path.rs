//! The pure decision path alone, for instruction counts: `Review::read` → `needs` →
//! `Facts::gather` (embedded state) → `decide` → `respond`, N times. `gmsa-bench decide` runs
//! it; `callgrind` counts its instructions.

use anyhow::{anyhow, bail};
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
        let answer = review.decide(&facts, Options::default(), String::new);
        let body = review.respond(&answer);
        std::hint::black_box(&body);
        allowed += u64::from(answer.verdict.is_allowed());
    }
    if allowed != iterations {
        bail!("only {allowed} of {iterations} bench reviews were allowed");
    }
    Ok(allowed)
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
}
