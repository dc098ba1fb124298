//! The pinned seeds CI runs, and the replay property: one seed, one run.

use mantle_sim::{run, Options};

/// Seeds that once found a bug (now fixed) stay here, ahead of the pinned range.
const REGRESSIONS: &[u64] = &[0, 6, 10, 19, 36];
/// Pinned seeds that still fail on open bugs (see ARCHITECTURE.md, `crates/sim`). The test
/// fails when one of them starts passing, so the list shrinks as bugs are fixed.
/// bounded-duplicates: a scale-up while killed instances still run, not yet analysed; since
/// the master restarts from its registry (issue #5), also an agent that returns from a
/// partition with instances the scheduler had already replaced (90, 526): the check fires
/// the moment they become visible again, before the scheduler kills the surplus.
const KNOWN_DUPLICATES: &[u64] = &[
    30, 41, 90, 97, 101, 122, 123, 131, 135, 138, 152, 176, 192, 219, 223, 244, 251, 259, 274, 284,
    324, 346, 357, 387, 393, 435, 469, 495, 500, 523, 526, 549, 586, 592, 610, 611, 660, 698, 707,
    725, 740, 749, 762, 794, 849, 868, 893, 895, 926, 954, 974,
];
/// convergence: a lost REVIVE leaves the scheduler believing it is revived while the master
/// keeps it suppressed (no offers, deployments never finish); and others not yet analysed.
const KNOWN_CONVERGENCE: &[u64] = &[
    16, 53, 63, 64, 84, 114, 119, 121, 133, 156, 201, 216, 226, 229, 237, 276, 292, 354, 401, 411,
    492, 504, 557, 594, 596, 646, 678, 690, 797, 802, 816, 851, 862, 880, 907, 910, 932,
];
/// no-lost-update: explicit reconciliation answers TASK_GONE for a task unknown on a known
/// agent, and a later KILL of it answers TASK_UNKNOWN (968); not yet fixed.
const KNOWN_LOST_UPDATE: &[u64] = &[968];
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
    let mut fixed = Vec::new();
    for seed in REGRESSIONS.iter().copied().chain(0..PINNED) {
        let known = KNOWN_DUPLICATES.contains(&seed)
            || KNOWN_CONVERGENCE.contains(&seed)
            || KNOWN_LOST_UPDATE.contains(&seed);
        match run(seed, &o) {
            Err(f) if !known => failures.push(f.to_string()),
            Ok(_) if known => fixed.push(seed),
            _ => {}
        }
        if failures.len() >= 3 {
            break;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        fixed.is_empty(),
        "known-failing seeds now pass, remove them from the lists: {fixed:?}"
    );
}
