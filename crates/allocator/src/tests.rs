//! Allocator tests: DRF order, weights, filters, suppress/revive, and property checks that
//! nothing is over-committed.

use super::*;
use proptest::prelude::*;

fn res(text: &str) -> Resources {
    Resources::parse(text).unwrap()
}
fn fw(n: &str) -> FrameworkId {
    FrameworkId::new(n)
}
fn ag(n: &str) -> AgentId {
    AgentId::new(n)
}
fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}
fn star() -> Vec<String> {
    vec!["*".to_string()]
}

#[test]
fn each_agent_goes_to_the_framework_with_the_lowest_dominant_share() {
    // Goal: DRF order. Method: f1 already holds half the cluster's cpus, so both free agents
    // go to f2 in turn until its share passes f1's.
    let mut a = Allocator::new(1, BTreeMap::new());
    a.add_agent(
        ag("a1"),
        res("cpus:4;mem:4096"),
        &[(fw("f1"), "*".into(), res("cpus:4;mem:1024"))],
    );
    a.add_agent(ag("a2"), res("cpus:2;mem:2048"), &[]);
    a.add_agent(ag("a3"), res("cpus:2;mem:2048"), &[]);
    a.add_framework(fw("f1"), &star(), &[], true);
    a.add_framework(fw("f2"), &star(), &[], true);
    let offers = a.allocate(secs(0));
    // a1 has 3072 mem free (cpus 0 but mem >= 32): f2 (share 0) gets the first agent it
    // sees, then its share is compared with f1's (0.5) for the next one.
    assert_eq!(offers.len(), 3);
    let f2_agents: Vec<_> = offers
        .iter()
        .filter(|o| o.framework_id == fw("f2"))
        .collect();
    assert!(f2_agents.len() >= 2, "{offers:?}");
}

#[test]
fn weights_favour_heavier_roles() {
    // Goal: a role with weight 3 gets about 3 times the agents of a weight-1 role.
    let weights = BTreeMap::from([("heavy".to_string(), 3.0)]);
    let mut a = Allocator::new(7, weights);
    for i in 0..40 {
        a.add_agent(ag(&format!("a{i:02}")), res("cpus:1;mem:1024"), &[]);
    }
    a.add_framework(fw("light"), &["light".to_string()], &[], true);
    a.add_framework(fw("heavy"), &["heavy".to_string()], &[], true);
    let offers = a.allocate(secs(0));
    let heavy = offers.iter().filter(|o| o.role == "heavy").count();
    let light = offers.iter().filter(|o| o.role == "light").count();
    assert_eq!(heavy + light, 40);
    assert_eq!((heavy, light), (30, 10));
}

#[test]
fn declined_resources_are_not_reoffered_before_the_filter_expires() {
    let mut a = Allocator::new(1, BTreeMap::new());
    a.add_agent(ag("a1"), res("cpus:2;mem:1024"), &[]);
    a.add_framework(fw("f1"), &star(), &[], true);
    let offers = a.allocate(secs(0));
    assert_eq!(offers.len(), 1);
    a.recover(
        &fw("f1"),
        "*",
        &ag("a1"),
        &offers[0].resources,
        Some((secs(0), secs(5))),
    );
    assert!(a.allocate(secs(1)).is_empty());
    assert!(a.allocate(secs(4)).is_empty());
    assert_eq!(a.next_filter_expiry(), Some(secs(5)));
    assert_eq!(a.allocate(secs(5)).len(), 1);
}

#[test]
fn a_filter_does_not_hide_more_resources_than_were_refused() {
    // Mesos filters cover the refused resources: if more become free, the agent is offered.
    let mut a = Allocator::new(1, BTreeMap::new());
    a.add_agent(
        ag("a1"),
        res("cpus:2;mem:1024"),
        &[(fw("f1"), "*".into(), res("cpus:1;mem:512"))],
    );
    a.add_framework(fw("f1"), &star(), &[], true);
    let offers = a.allocate(secs(0));
    a.recover(
        &fw("f1"),
        "*",
        &ag("a1"),
        &offers[0].resources,
        Some((secs(0), secs(5))),
    );
    a.recover(&fw("f1"), "*", &ag("a1"), &res("cpus:1;mem:512"), None);
    let again = a.allocate(secs(1));
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].resources, res("cpus:2;mem:1024"));
}

#[test]
fn suppressed_frameworks_get_nothing_until_revived() {
    let mut a = Allocator::new(1, BTreeMap::new());
    a.add_agent(ag("a1"), res("cpus:2;mem:1024"), &[]);
    a.add_framework(fw("f1"), &star(), &[], true);
    a.suppress(&fw("f1"), &[]);
    assert!(a.allocate(secs(0)).is_empty());
    a.revive(&fw("f1"), &[]);
    assert_eq!(a.allocate(secs(0)).len(), 1);
}

#[test]
fn revive_clears_refusal_filters() {
    let mut a = Allocator::new(1, BTreeMap::new());
    a.add_agent(ag("a1"), res("cpus:2;mem:1024"), &[]);
    a.add_framework(fw("f1"), &star(), &[], true);
    let offers = a.allocate(secs(0));
    a.recover(
        &fw("f1"),
        "*",
        &ag("a1"),
        &offers[0].resources,
        Some((secs(0), secs(3600))),
    );
    assert!(a.allocate(secs(1)).is_empty());
    a.revive(&fw("f1"), &[]);
    assert_eq!(a.allocate(secs(1)).len(), 1);
}

#[test]
fn inactive_frameworks_and_agents_are_skipped() {
    let mut a = Allocator::new(1, BTreeMap::new());
    a.add_agent(ag("a1"), res("cpus:2;mem:1024"), &[]);
    a.add_framework(fw("f1"), &star(), &[], false);
    assert!(a.allocate(secs(0)).is_empty());
    a.set_framework_active(&fw("f1"), true);
    a.set_agent_active(&ag("a1"), false);
    assert!(a.allocate(secs(0)).is_empty());
    a.set_agent_active(&ag("a1"), true);
    assert_eq!(a.allocate(secs(0)).len(), 1);
}

#[test]
fn agents_below_the_minimum_are_not_offered() {
    let mut a = Allocator::new(1, BTreeMap::new());
    a.add_agent(ag("a1"), res("cpus:0.005;mem:16;disk:100"), &[]);
    a.add_framework(fw("f1"), &star(), &[], true);
    assert!(a.allocate(secs(0)).is_empty());
}

#[derive(Debug, Clone)]
enum Op {
    Allocate(u64),
    Decline(usize, u64),
    Finish(usize),
    Suppress(usize),
    Revive(usize),
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u64..20).prop_map(Op::Allocate),
        (0usize..64, 0u64..10).prop_map(|(i, s)| Op::Decline(i, s)),
        (0usize..64).prop_map(Op::Finish),
        (0usize..4).prop_map(Op::Suppress),
        (0usize..4).prop_map(Op::Revive),
    ]
}

proptest! {
    #[test]
    fn never_over_commits_and_never_offers_twice(seed in 0u64..1000, ops in prop::collection::vec(arb_op(), 1..60)) {
        // Goal: whatever the sequence of cycles, declines, finishes, suppresses and revives,
        // per agent the held resources never exceed the total and each offer's resources
        // were free when made. Method: a reference ledger of outstanding holdings.
        let mut a = Allocator::new(seed, BTreeMap::new());
        let totals: Vec<Resources> = (0..6).map(|i| res(&format!("cpus:{};mem:{};ports:[1-{}]", i + 1, 512 * (i + 1), 10 * (i + 1)))).collect();
        for (i, t) in totals.iter().enumerate() {
            a.add_agent(ag(&format!("a{i}")), t.clone(), &[]);
        }
        let fws: Vec<FrameworkId> = (0..4).map(|i| fw(&format!("f{i}"))).collect();
        for f in &fws {
            a.add_framework(f.clone(), &star(), &[], true);
        }
        let mut held: Vec<Allocation> = Vec::new();
        let mut now = 0u64;
        for op in ops {
            match op {
                Op::Allocate(dt) => {
                    now += dt;
                    for o in a.allocate(secs(now)) {
                        held.push(o);
                    }
                }
                Op::Decline(i, s) if !held.is_empty() => {
                    let o = held.remove(i % held.len());
                    a.recover(&o.framework_id, &o.role, &o.agent_id, &o.resources, Some((secs(now), secs(s))));
                }
                Op::Finish(i) if !held.is_empty() => {
                    let o = held.remove(i % held.len());
                    a.recover(&o.framework_id, &o.role, &o.agent_id, &o.resources, None);
                }
                Op::Suppress(i) => a.suppress(&fws[i], &[]),
                Op::Revive(i) => a.revive(&fws[i], &[]),
                _ => {}
            }
            for (i, t) in totals.iter().enumerate() {
                let id = ag(&format!("a{i}"));
                let mut sum = Resources::new();
                for o in held.iter().filter(|o| o.agent_id == id) {
                    // No two holdings overlap on ranges: the sum then counts every port once.
                    prop_assert_eq!(sum.ranges("ports").map(|r| r.count()).unwrap_or(0)
                        + o.resources.ranges("ports").map(|r| r.count()).unwrap_or(0),
                        sum.plus(&o.resources).ranges("ports").map(|r| r.count()).unwrap_or(0));
                    sum.add(&o.resources);
                }
                prop_assert!(t.contains(&sum), "agent a{} over-committed: {} > {}", i, sum, t);
                prop_assert_eq!(a.available(&id).unwrap(), t.minus(&sum));
            }
        }
    }
}
