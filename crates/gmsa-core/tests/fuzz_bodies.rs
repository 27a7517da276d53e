//! The fuzz targets' bodies (`fuzz/src/lib.rs`) as a plain test on stable: every seed, every
//! prefix of it, and every seed with single bytes replaced at a stride. `hack/fuzz.sh` runs the
//! same bodies under libFuzzer.

#[path = "../../../fuzz/src/lib.rs"]
mod bodies;

use std::path::Path;

fn seeds(kind: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds")
        .join(kind);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

/// Each seed, its prefixes, and copies with one byte replaced by a JSON/YAML metacharacter.
fn variants(seed: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    let prefixes = (0..seed.len()).step_by(3).map(|n| seed[..n].to_vec());
    let flips = (0..seed.len()).step_by(7).flat_map(move |i| {
        [b'"', b'{', b']', b'\\', 0xff, b':', b'-', b'&'].map(|b| {
            let mut v = seed.to_vec();
            v[i] = b;
            v
        })
    });
    std::iter::once(seed.to_vec()).chain(prefixes).chain(flips)
}

#[test]
fn review_bodies_hold_on_seeds_and_their_variants() {
    let mut runs = 0;
    for seed in seeds("review") {
        for input in variants(&seed) {
            bodies::review(&input);
            runs += 1;
        }
    }
    println!("review body: {runs} inputs");
    assert!(runs > 100);
}

#[test]
fn manifest_bodies_hold_on_seeds_and_their_variants() {
    let mut runs = 0;
    for seed in seeds("manifests").into_iter().chain(seeds("review")) {
        for input in variants(&seed) {
            bodies::manifests(&input);
            runs += 1;
        }
    }
    println!("manifests body: {runs} inputs");
    assert!(runs > 100);
}
