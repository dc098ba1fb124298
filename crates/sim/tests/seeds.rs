//! The pinned seeds CI runs, and the replay property: one seed, one run.

use mantle_sim::{run, Options};

/// Seeds that once found a bug stay here, ahead of the pinned range.
const REGRESSIONS: &[u64] = &[];
/// How many consecutive seeds CI runs after the regressions.
const PINNED: u64 = 1000;

#[test]
fn same_seed_same_trace() {
    let o = Options::default();
    for seed in [1u64, 42, 0xdead_beef] {
        let a = run(seed, &o);
        let b = run(seed, &o);
        let hash = |r: &Result<mantle_sim::Summary, mantle_sim::Failure>| match r {
            Ok(s) => s.trace_hash,
            Err(f) => f.trace_hash,
        };
        assert_eq!(hash(&a), hash(&b), "seed {seed} did not replay identically");
    }
}

#[test]
fn pinned_seeds() {
    let o = Options::default();
    let mut failures = Vec::new();
    for seed in REGRESSIONS.iter().copied().chain(0..PINNED) {
        if let Err(f) = run(seed, &o) {
            failures.push(f.to_string());
            if failures.len() >= 3 {
                break;
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
