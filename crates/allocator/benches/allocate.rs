//! Benchmark: one allocation cycle over a whole cluster (10,000 agents x 1,000 frameworks,
//! the figure Mesos 1.8 needed about 1.1 s for), plus 1k and 5k agents to show growth.
//!
//! Run: `cargo bench -p mantle-allocator --bench allocate`

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use mantle_allocator::Allocator;
use mantle_model::{AgentId, FrameworkId, Resources};
use std::collections::BTreeMap;
use std::time::Duration;

fn cluster(agents: usize, frameworks: usize) -> Allocator {
    let mut a = Allocator::new(42, BTreeMap::new());
    let total = Resources::parse("cpus:16;mem:65536;disk:100000;ports:[31000-32000]")
        .expect("static resources parse");
    for i in 0..agents {
        a.add_agent(AgentId::new(format!("agent-{i:05}")), total.clone(), &[]);
    }
    for i in 0..frameworks {
        let role = format!("role-{}", i % 10);
        a.add_framework(
            FrameworkId::new(format!("framework-{i:04}")),
            &[role],
            &[],
            true,
        );
    }
    a
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("allocate_cycle");
    group.sample_size(20);
    for agents in [1_000usize, 5_000, 10_000] {
        let base = cluster(agents, 1_000);
        group.bench_with_input(
            BenchmarkId::new("agents_x_1000_frameworks", agents),
            &base,
            |b, base| {
                b.iter_batched(
                    || base.clone(),
                    |mut a| {
                        let offers = a.allocate(Duration::from_secs(1));
                        // Hand the allocator back so dropping it stays out of the timing.
                        (a, offers)
                    },
                    BatchSize::LargeInput,
                )
            },
        );
    }
    // A steady-state cycle: everything is already offered, nothing is free.
    let mut busy = cluster(10_000, 1_000);
    busy.allocate(Duration::from_secs(0));
    group.bench_function("steady_state_10000_agents", |b| {
        b.iter(|| busy.allocate(Duration::from_secs(1)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
