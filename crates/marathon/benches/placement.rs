//! Benchmark: the service scheduler placing a whole app from one batch of offers, through
//! the real core (fit, constraints, offer order, TaskInfo building), for both cluster-wide
//! strategies. Marathon takes the first offer that fits; Mantle orders every offer per
//! launch, so this shows what that choice costs.
//!
//! Run: `cargo bench -p mantle-marathon --bench placement`

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use mantle_api::convert::resources_to_wire;
use mantle_api::mesos::{AllocationInfo, Offer};
use mantle_api::scheduler::{Event, EventType, Offers, Subscribed};
use mantle_marathon::core::{Config, Core, Effect, Snapshot};
use mantle_marathon::placement::Strategy;
use mantle_model::{AgentId, FrameworkId, Now, OfferId, Resources};
use serde_json::json;
use std::time::Duration;

fn core_with_app(strategy: Strategy, instances: u32, unique: bool) -> (Core, Now) {
    let config = Config {
        framework_name: "marathon".into(),
        role: "*".into(),
        user: "root".into(),
        hostname: "localhost".into(),
        webui_url: None,
        strategy,
        seed: 7,
        reconciliation_interval_ms: 600_000,
        task_launch_timeout_ms: 300_000,
    };
    let mut core = Core::new(config, Snapshot::default());
    let now = Now::at(Duration::from_secs(100));
    let mut e = Event::bare(EventType::Subscribed);
    e.subscribed = Some(Subscribed {
        framework_id: FrameworkId::new("fw-1"),
        heartbeat_interval_seconds: 15.0,
        master_info: serde_json::from_value(json!({
            "id": "m", "ip": 0, "port": 5050, "pid": "master@127.0.0.1:5050",
            "hostname": "localhost", "version": "1.11.0",
            "address": {"ip": "127.0.0.1", "port": 5050}
        }))
        .expect("static master info"),
    });
    core.on_event(e, now);
    let mut app = json!({"id": "/bench/web", "cmd": "sleep 100", "instances": instances,
                         "cpus": 0.1, "mem": 32});
    if unique {
        app["constraints"] = json!([["hostname", "UNIQUE"]]);
    }
    core.create_app(&app, now).expect("static app is valid");
    core.drain();
    (core, now)
}

fn offers(agents: usize) -> Event {
    let res = Resources::parse("cpus:16;mem:65536;disk:100000;ports:[31000-32000]")
        .expect("static resources parse");
    let wire = resources_to_wire(&res, Some("*"));
    let offers = (0..agents)
        .map(|i| Offer {
            id: OfferId::new(format!("o{i}")),
            framework_id: FrameworkId::new("fw-1"),
            agent_id: AgentId::new(format!("agent-{i:05}")),
            hostname: format!("host-{i:05}"),
            url: None,
            resources: wire.clone(),
            attributes: Vec::new(),
            executor_ids: Vec::new(),
            allocation_info: Some(AllocationInfo {
                role: Some("*".into()),
            }),
        })
        .collect();
    let mut e = Event::bare(EventType::Offers);
    e.offers = Some(Offers { offers });
    e
}

fn launched(effects: &[Effect]) -> usize {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Call(c) => c.accept.as_ref(),
            _ => None,
        })
        .flat_map(|a| a.operations.iter())
        .filter_map(|op| op.launch.as_ref())
        .map(|l| l.task_infos.len())
        .sum()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("place_app");
    group.sample_size(20);
    // (agents, instances, UNIQUE hostname)
    for (agents, instances, unique) in [(100, 1_000, false), (1_000, 1_000, true)] {
        for strategy in [Strategy::Spread, Strategy::BinPack] {
            let name = format!(
                "{strategy:?}/{instances}_instances_{agents}_offers{}",
                if unique { "_unique" } else { "" }
            );
            // Check once, outside the timing, that the batch places the whole app.
            let (mut core, now) = core_with_app(strategy, instances, unique);
            core.on_event(offers(agents), now);
            let placed = launched(&core.drain());
            assert_eq!(placed, instances as usize, "{name}: every instance placed");
            group.bench_with_input(BenchmarkId::from_parameter(name), &agents, |b, &agents| {
                b.iter_batched(
                    || (core_with_app(strategy, instances, unique), offers(agents)),
                    |((mut core, now), event)| {
                        core.on_event(event, now);
                        core.drain()
                    },
                    BatchSize::LargeInput,
                );
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
