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
    37, 39, 54, 90, 101, 109, 121, 123, 149, 150, 166, 176, 185, 191, 204, 227, 237, 259, 272, 292,
    341, 378, 393, 398, 432, 434, 435, 442, 444, 456, 516, 527, 535, 549, 556, 559, 566, 585, 586,
    592, 618, 631, 649, 681, 721, 748, 762, 763, 777, 784, 828, 835, 841, 865, 878, 905, 974,
];
/// Since agents answer PINGs, partitions longer than the ping window (the simulator's run up
/// to 150 s) make the master mark agents unreachable; the service scheduler does not act on
/// TASK_UNREACHABLE yet (no `unreachableStrategy`), which accounts for part of both lists.
/// convergence: a lost REVIVE leaves the scheduler believing it is revived while the master
/// keeps it suppressed (no offers, deployments never finish); and others not yet analysed.
/// Since the master resends its own unacknowledged updates to a re-subscribing framework
/// (issue #5), the scheduler often answers a TASK_GONE that arrives right after SUBSCRIBED with
/// a REVIVE that crosses the SUPPRESS it sent for SUBSCRIBED (755), or is lost.
const KNOWN_CONVERGENCE: &[u64] = &[
    6, 30, 31, 32, 40, 67, 77, 94, 117, 129, 145, 251, 294, 305, 316, 337, 357, 387, 396, 424, 436,
    500, 521, 539, 541, 553, 563, 679, 680, 706, 707, 715, 722, 730, 732, 746, 755, 787, 790, 798,
    842, 871, 876, 894, 903, 919, 927, 931, 950,
];
/// no-lost-update: explicit reconciliation answers TASK_GONE for a task unknown on a known
/// agent, and a later KILL of it answers TASK_UNKNOWN; not yet fixed. Likewise a TASK_GONE the
/// master resends on re-subscription, acknowledged, then a TASK_UNKNOWN answer to an explicit
/// reconciliation of the completed task sent before the update was seen (162); and a KILL
/// answered TASK_UNKNOWN after TASK_DROPPED for invalid offers (902).
const KNOWN_LOST_UPDATE: &[u64] = &[162, 343, 481, 902];
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
