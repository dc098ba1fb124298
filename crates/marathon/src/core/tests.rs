//! Core tests: a scripted master in the loop. Offers come from a fixed set of agents; every
//! launch the core accepts becomes TASK_RUNNING when the test says so; kills become
//! TASK_KILLED. Invariants (health capacity, over-capacity) are checked after every step.

use super::*;
use mantle_api::mesos::{AllocationInfo, Offer};
use mantle_api::scheduler::{Offers, Subscribed, Update};
use mantle_model::OfferId;
use serde_json::json;
use std::time::Duration;

fn config() -> Config {
    Config {
        framework_name: "marathon".into(),
        role: "*".into(),
        user: "root".into(),
        hostname: "localhost".into(),
        webui_url: None,
        strategy: Strategy::Spread,
        seed: 7,
        reconciliation_interval_ms: 600_000,
        task_launch_timeout_ms: 300_000,
    }
}

/// The SUBSCRIBED event of framework `fw-1` from a master on 127.0.0.1:5050.
fn subscribed_event() -> Event {
    let mut e = Event::bare(EventType::Subscribed);
    e.subscribed = Some(Subscribed {
        framework_id: FrameworkId::new("fw-1"),
        heartbeat_interval_seconds: 15.0,
        master_info: serde_json::from_value(json!({
            "id": "m", "ip": 0, "port": 5050, "pid": "master@127.0.0.1:5050",
            "hostname": "localhost", "version": "1.11.0",
            "address": {"ip": "127.0.0.1", "port": 5050}
        }))
        .expect("master info"),
    });
    e
}

struct Sim {
    core: Core,
    now: Now,
    offer_seq: u32,
    /// Tasks launched and not yet reported running.
    staged: Vec<String>,
    /// Every TaskInfo launched.
    launched: Vec<mantle_api::mesos::TaskInfo>,
    kills: Vec<String>,
    writes: Vec<Write>,
    events: Vec<Value>,
}

impl Sim {
    fn new() -> Sim {
        let mut s = Sim {
            core: Core::new(config(), Snapshot::default()),
            now: Now::at(Duration::from_secs(100)),
            offer_seq: 0,
            staged: Vec::new(),
            launched: Vec::new(),
            kills: Vec::new(),
            writes: Vec::new(),
            events: Vec::new(),
        };
        let e = subscribed_event();
        s.core.on_event(e, s.now);
        s.collect();
        s
    }

    fn collect(&mut self) {
        for e in self.core.drain() {
            match e {
                Effect::Store(w) => self.writes.push(w),
                Effect::Event(v) => self.events.push(v),
                Effect::Call(c) => {
                    if let Some(a) = c.accept {
                        for op in a.operations {
                            for t in op.launch.map(|l| l.task_infos).unwrap_or_default() {
                                self.staged.push(t.task_id.as_str().to_string());
                                self.launched.push(t.clone());
                            }
                        }
                    }
                    if let Some(k) = c.kill {
                        self.kills.push(k.task_id.as_str().to_string());
                    }
                }
            }
        }
        self.check_invariants();
    }

    fn check_invariants(&self) {
        for app in self.core.apps() {
            let target = app.instances as usize;
            let live = self
                .core
                .instances_of(&app.id)
                .filter(|i| !i.state.is_terminal() && !i.kill_requested && !i.inactive)
                .count();
            let max = target
                + (target as f64 * app.upgrade_strategy.maximum_over_capacity).floor() as usize;
            assert!(
                live <= max.max(target + 1),
                "{live} live > max {max} for {}",
                app.id
            );
        }
    }

    /// One offer per agent host h1..hn, with plenty of room.
    fn offer(&mut self, hosts: usize) {
        let mut offers = Vec::new();
        for h in 0..hosts {
            self.offer_seq += 1;
            offers.push(Offer {
                id: OfferId::new(format!("o{}", self.offer_seq)),
                framework_id: FrameworkId::new("fw-1"),
                agent_id: AgentId::new(format!("agent-{h}")),
                hostname: format!("h{h}"),
                url: None,
                resources: resources_to_wire(
                    &Resources::parse("cpus:8;mem:8192;disk:1000;ports:[31000-31100]")
                        .expect("res"),
                    Some("*"),
                ),
                attributes: Vec::new(),
                executor_ids: Vec::new(),
                allocation_info: Some(AllocationInfo {
                    role: Some("*".into()),
                }),
            });
        }
        let mut e = Event::bare(EventType::Offers);
        e.offers = Some(Offers { offers });
        self.core.on_event(e, self.now);
        self.collect();
    }

    fn status(&mut self, task: &str, state: TaskState, healthy: Option<bool>) {
        let mut st = TaskStatus::new(TaskId::new(task), state);
        st.agent_id = Some(AgentId::new("agent-0"));
        st.uuid = Some("dXVpZA==".into());
        st.healthy = healthy;
        let mut e = Event::bare(EventType::Update);
        e.update = Some(Update { status: st });
        self.now = self.now.plus(Duration::from_millis(10));
        self.core.on_event(e, self.now);
        self.collect();
    }

    /// Reports every staged task running and every killed task killed.
    fn settle(&mut self, healthy: Option<bool>) {
        for _ in 0..20 {
            let staged = std::mem::take(&mut self.staged);
            let kills = std::mem::take(&mut self.kills);
            if staged.is_empty() && kills.is_empty() {
                return;
            }
            for t in staged {
                self.status(&t, TaskState::Running, healthy);
            }
            for t in kills {
                self.status(&t, TaskState::Killed, None);
            }
            self.offer(3);
        }
    }

    fn running(&self, app: &str) -> usize {
        self.core.instances_of(app).filter(|i| i.running()).count()
    }
}

fn app(id: &str, n: u32, cmd: &str) -> Value {
    json!({"id": id, "cmd": cmd, "instances": n, "cpus": 0.1, "mem": 16})
}

#[test]
fn create_scale_kill_update_delete() {
    let mut s = Sim::new();
    let (def, d) = s
        .core
        .create_app(&app("/web", 3, "sleep 100"), s.now)
        .expect("created");
    s.collect();
    assert_eq!(def.id, "/web");
    assert!(
        s.writes
            .iter()
            .any(|w| matches!(w, Write::App(a) if a.id == "/web")),
        "app stored"
    );
    assert_eq!(s.core.deployments().count(), 1);
    s.offer(3);
    assert_eq!(s.staged.len(), 3, "three launched");
    let hosts: BTreeSet<String> = s
        .core
        .instances_of("/web")
        .map(|i| i.host.clone())
        .collect();
    assert_eq!(hosts.len(), 3, "spread over three hosts");
    s.settle(None);
    assert_eq!(s.running("/web"), 3);
    assert_eq!(
        s.core.deployments().count(),
        0,
        "deployment finished: {:?}",
        s.core.deployments().collect::<Vec<_>>()
    );
    assert!(s
        .events
        .iter()
        .any(|e| e["eventType"] == "deployment_success" && e["id"] == d.id));

    // Scale to 5: same config version, two more tasks, nothing restarted.
    let before: BTreeSet<String> = s
        .core
        .instances_of("/web")
        .map(|i| i.task_id.clone())
        .collect();
    let (_, created) = s
        .core
        .update_app("/web", &json!({"instances": 5}), false, true, s.now)
        .expect("scaled");
    assert!(!created);
    s.collect();
    s.offer(3);
    s.settle(None);
    assert_eq!(s.running("/web"), 5);
    let after: BTreeSet<String> = s
        .core
        .instances_of("/web")
        .map(|i| i.task_id.clone())
        .collect();
    assert!(before.is_subset(&after), "scaling restarted nothing");

    // Kill one: it is replaced.
    let victim = after.iter().next().cloned().expect("a task");
    s.core
        .kill_tasks(std::slice::from_ref(&victim), false, false, false, s.now)
        .expect("killed");
    s.collect();
    s.settle(None);
    assert_eq!(s.running("/web"), 5);
    assert!(s.core.instance(&victim).is_none());

    // Update the command: every task is replaced, never more than 10 live.
    s.core
        .update_app("/web", &json!({"cmd": "sleep 200"}), false, true, s.now)
        .expect("updated");
    s.collect();
    s.offer(3);
    s.settle(None);
    assert_eq!(s.running("/web"), 5);
    let cfg = s
        .core
        .app("/web")
        .map(|a| a.version_info.last_config_change_at.clone())
        .expect("app");
    assert!(s.core.instances_of("/web").all(|i| i.config_version == cfg));
    assert_eq!(s.core.deployments().count(), 0);
    assert_eq!(s.core.versions("/web").map(|v| v.len()), Some(3));

    // Delete: everything is killed, then the app is gone.
    s.core.delete_app("/web", false, s.now).expect("deleted");
    s.collect();
    s.settle(None);
    assert!(s.core.app("/web").is_none());
    assert!(s
        .writes
        .iter()
        .any(|w| matches!(w, Write::DeleteApp(a) if a == "/web")));
}

#[test]
fn rolling_upgrade_keeps_minimum_health_capacity() {
    let mut s = Sim::new();
    let body = json!({"id": "/hc", "cmd": "x", "instances": 4, "cpus": 0.1, "mem": 16,
        "healthChecks": [{"protocol": "MESOS_TCP", "gracePeriodSeconds": 0, "intervalSeconds": 2, "timeoutSeconds": 1}],
        "upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.25}});
    s.core.create_app(&body, s.now).expect("created");
    s.collect();
    s.offer(3);
    s.settle(Some(true));
    assert_eq!(s.running("/hc"), 4);
    s.core
        .update_app("/hc", &json!({"cmd": "y"}), false, true, s.now)
        .expect("updated");
    s.collect();
    // Walk the upgrade by hand, checking the bound after every single status update.
    for _ in 0..50 {
        s.offer(3);
        let staged = std::mem::take(&mut s.staged);
        let kills = std::mem::take(&mut s.kills);
        if staged.is_empty() && kills.is_empty() {
            break;
        }
        for t in kills {
            s.status(&t, TaskState::Killed, None);
            let healthy = s
                .core
                .instances_of("/hc")
                .filter(|i| i.running() && i.healthy == Some(true))
                .count();
            assert!(healthy >= 2, "healthy dropped to {healthy}");
        }
        for t in staged {
            s.status(&t, TaskState::Running, Some(true));
        }
        let live = s
            .core
            .instances_of("/hc")
            .filter(|i| !i.state.is_terminal())
            .count();
        assert!(live <= 5, "over capacity: {live}");
    }
    assert_eq!(s.core.deployments().count(), 0);
    assert_eq!(s.running("/hc"), 4);
}

#[test]
fn failures_back_off_and_conflicts_are_refused() {
    let mut s = Sim::new();
    s.core.create_app(&json!({"id": "/crash", "cmd": "false", "instances": 1, "cpus": 0.1, "mem": 16, "backoffSeconds": 10}), s.now).expect("created");
    s.collect();
    // A second change while the first deployment runs: 409 without force.
    match s
        .core
        .update_app("/crash", &json!({"cmd": "true"}), false, true, s.now)
    {
        Err(ApiError::Conflict { deployments, .. }) => assert_eq!(deployments.len(), 1),
        other => panic!("expected a conflict, got {other:?}"),
    }
    s.offer(1);
    let t = s.staged.pop().expect("launched");
    s.status(&t, TaskState::Failed, None);
    assert!(s.core.last_task_failure("/crash").is_some());
    s.offer(1);
    assert!(s.staged.is_empty(), "backoff holds the relaunch");
    s.now = s.now.plus(Duration::from_secs(11));
    s.offer(1);
    assert_eq!(s.staged.len(), 1, "relaunched after the delay");
}

#[test]
fn rejected_commands_write_nothing() {
    let mut s = Sim::new();
    s.writes.clear();
    assert!(matches!(
        s.core.create_app(&json!({"id": "/BAD", "cmd": "x"}), s.now),
        Err(ApiError::Invalid(_))
    ));
    assert!(matches!(
        s.core.delete_app("/nope", false, s.now),
        Err(ApiError::NotFound(_))
    ));
    assert!(matches!(
        s.core.cancel_deployment("nope", false, s.now),
        Err(ApiError::NotFound(_))
    ));
    s.collect();
    assert!(s.writes.is_empty(), "{:?}", s.writes);
}

#[test]
fn unknown_tasks_are_killed_and_updates_acknowledged() {
    let mut s = Sim::new();
    let mut st = TaskStatus::new(TaskId::new("ghost.1234"), TaskState::Running);
    st.agent_id = Some(AgentId::new("agent-0"));
    st.uuid = Some("dXVpZA==".into());
    let mut e = Event::bare(EventType::Update);
    e.update = Some(Update { status: st });
    s.core.on_event(e, s.now);
    let effects = s.core.drain();
    assert!(effects
        .iter()
        .any(|e| matches!(e, Effect::Call(c) if c.kind == CallType::Acknowledge)));
    assert!(effects
        .iter()
        .any(|e| matches!(e, Effect::Call(c) if c.kind == CallType::Kill)));
}

#[test]
fn cancel_rolls_back_to_the_original() {
    let mut s = Sim::new();
    s.core
        .create_app(&app("/rb", 2, "sleep 1"), s.now)
        .expect("created");
    s.collect();
    s.offer(3);
    s.settle(None);
    let original: BTreeSet<String> = s
        .core
        .instances_of("/rb")
        .map(|i| i.task_id.clone())
        .collect();
    let (d, _) = s
        .core
        .update_app("/rb", &json!({"cmd": "sleep 2"}), false, true, s.now)
        .expect("updated");
    s.collect();
    let back = s
        .core
        .cancel_deployment(&d.id, false, s.now)
        .expect("cancelled");
    s.collect();
    assert!(back.is_some(), "a rollback deployment");
    s.offer(3);
    s.settle(None);
    assert_eq!(
        s.core.app("/rb").and_then(|a| a.cmd.clone()).as_deref(),
        Some("sleep 1")
    );
    assert_eq!(s.running("/rb"), 2);
    let now_running: BTreeSet<String> = s
        .core
        .instances_of("/rb")
        .filter(|i| i.running())
        .map(|i| i.task_id.clone())
        .collect();
    assert_eq!(
        now_running, original,
        "the original tasks were kept, not restarted"
    );
}

#[test]
fn group_deployments_follow_dependencies() {
    // Goal: a group's apps deploy in dependency order, as one deployment; method: web waits
    // (no launch) until db runs, then launches; a group PUT that drops an app stops it.
    let mut s = Sim::new();
    let body = json!({"id": "/shop", "apps": [
        {"id": "web", "cmd": "sleep 9", "instances": 2, "cpus": 0.1, "mem": 16, "dependencies": ["db"]},
        {"id": "db", "cmd": "sleep 9", "instances": 1, "cpus": 0.1, "mem": 16},
    ]});
    let d = s.core.create_group(&body, s.now).expect("created");
    s.collect();
    assert_eq!(d.parts.len(), 2);
    assert_eq!(
        s.core.deployment_json(&d)["totalSteps"],
        3,
        "start, db, web"
    );
    s.offer(3);
    let launched: Vec<String> = s.staged.clone();
    assert_eq!(launched.len(), 1, "only db launches first: {launched:?}");
    assert!(launched[0].starts_with("shop_db."));
    assert_eq!(s.core.waiting("/shop/web"), 0, "web is held by the plan");
    s.settle(None);
    assert_eq!(s.running("/shop/db"), 1);
    assert_eq!(s.running("/shop/web"), 2, "web followed once db ran");
    assert_eq!(s.core.deployments().count(), 0, "one deployment, finished");
    assert_eq!(
        s.core
            .create_group(&body, s.now)
            .err()
            .map(|e| matches!(e, ApiError::Conflict { .. })),
        Some(true)
    );
    // Scale the whole group by 2, then replace its tree without db: db is stopped.
    s.core
        .update_group("/shop", &json!({"scaleBy": 2}), false, s.now)
        .expect("scaled");
    s.collect();
    s.offer(3);
    s.settle(None);
    assert_eq!(s.running("/shop/web"), 4);
    assert_eq!(s.running("/shop/db"), 2);
    let (_, created) = s
        .core
        .update_group(
            "/shop",
            &json!({"apps": [{"id": "web", "cmd": "sleep 9", "instances": 1, "cpus": 0.1, "mem": 16}]}),
            false,
            s.now,
        )
        .expect("updated");
    assert!(!created);
    s.collect();
    s.offer(3);
    s.settle(None);
    assert!(s.core.app("/shop/db").is_none(), "db is gone");
    assert_eq!(s.running("/shop/web"), 1);
    // A cycle is refused and writes nothing.
    s.writes.clear();
    let cyclic = json!({"id": "/cyc", "apps": [
        {"id": "a", "cmd": "x", "dependencies": ["b"]}, {"id": "b", "cmd": "x", "dependencies": ["a"]}]});
    assert!(matches!(
        s.core.create_group(&cyclic, s.now),
        Err(ApiError::Invalid(_))
    ));
    s.collect();
    assert!(s.writes.is_empty(), "{:?}", s.writes);
    // PUT /v2/apps with an array: one deployment for both.
    let d = s
        .core
        .update_apps(
            &json!([{"id": "/shop/web", "instances": 2}, app("/solo", 1, "sleep 5")]),
            false,
            s.now,
        )
        .expect("updated");
    assert_eq!(d.parts.len(), 2);
    s.collect();
    s.offer(3);
    s.settle(None);
    assert_eq!(s.running("/shop/web"), 2);
    assert_eq!(s.running("/solo"), 1);
    // Deleting the group stops everything under it.
    s.core.delete_group("/shop", false, s.now).expect("deleted");
    s.collect();
    s.settle(None);
    assert!(s.core.apps_under("/shop").next().is_none());
    assert!(s.core.app("/solo").is_some());
}

#[test]
fn readiness_checks_gate_deployments_and_replacements() {
    // Goal: a task of the new config is not ready (so the deployment does not finish and old
    // tasks are not killed) until its readiness check passes; method: drive the checks by hand.
    let mut s = Sim::new();
    let mut body = app("/ready", 2, "serve v1");
    body["portDefinitions"] = json!([{"port": 0, "name": "http"}]);
    body["readinessChecks"] =
        json!([{"portName": "http", "path": "/ready", "intervalSeconds": 1, "timeoutSeconds": 0}]);
    assert!(
        matches!(s.core.create_app(&body, s.now), Err(ApiError::Invalid(v)) if v.iter().any(|x| x.path == "/readinessChecks/0/timeoutSeconds")),
        "timeout 0 is refused"
    );
    body["readinessChecks"][0]["timeoutSeconds"] = json!(1);
    body["readinessChecks"][0]["intervalSeconds"] = json!(2);
    let mut bad = body.clone();
    bad["readinessChecks"][0]["portName"] = json!("nope");
    assert!(
        matches!(s.core.create_app(&bad, s.now), Err(ApiError::Invalid(v)) if v.iter().any(|x| x.path == "/readinessChecks/0/portName"))
    );
    s.core.create_app(&body, s.now).expect("created");
    s.collect();
    s.offer(3);
    s.settle(None);
    assert_eq!(s.running("/ready"), 2);
    assert_eq!(s.core.deployments().count(), 1, "not ready yet");
    let targets = s.core.readiness_targets();
    assert_eq!(targets.len(), 2);
    assert!(targets.iter().all(|t| t.3.path == "/ready" && t.2 >= 31000));
    let d = s.core.deployments().next().cloned().expect("deployment");
    let shown = s.core.deployment_json(&d);
    assert_eq!(
        shown["currentActions"][0]["readinessCheckResults"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    assert_eq!(
        shown["currentActions"][0]["readinessCheckResults"][0]["ready"],
        false
    );
    for t in &targets {
        s.core.readiness_result(&t.0, false, s.now);
    }
    s.collect();
    assert_eq!(
        s.core.deployments().count(),
        1,
        "a failed check keeps it waiting"
    );
    for t in &targets {
        s.core.readiness_result(&t.0, true, s.now);
    }
    s.collect();
    assert_eq!(s.core.deployments().count(), 0, "ready: deployment done");
    assert!(
        s.core.readiness_targets().is_empty(),
        "ready tasks are not probed again"
    );
    // A new config: old tasks stay until new ones are ready.
    let old: BTreeSet<String> = s
        .core
        .instances_of("/ready")
        .map(|i| i.task_id.clone())
        .collect();
    s.core
        .update_app("/ready", &json!({"cmd": "serve v2"}), false, true, s.now)
        .expect("updated");
    s.collect();
    s.offer(3);
    s.settle(None);
    let live_old = s
        .core
        .instances_of("/ready")
        .filter(|i| old.contains(&i.task_id) && !i.state.is_terminal())
        .count();
    assert_eq!(
        live_old, 2,
        "old tasks kept while the new ones are not ready"
    );
    for t in s.core.readiness_targets() {
        s.core.readiness_result(&t.0, true, s.now);
    }
    s.collect();
    s.settle(None);
    let live_old = s
        .core
        .instances_of("/ready")
        .filter(|i| old.contains(&i.task_id) && !i.state.is_terminal())
        .count();
    assert_eq!(live_old, 0, "replaced once ready");
    assert_eq!(s.core.deployments().count(), 0);
}

#[test]
fn the_queue_lists_unused_offers_with_reasons() {
    let mut s = Sim::new();
    s.core
        .create_app(
            &json!({"id": "/huge", "cmd": "x", "cpus": 100, "mem": 16}),
            s.now,
        )
        .expect("created");
    s.collect();
    s.offer(2);
    let q = s.core.queue_json(s.now);
    let row = &q["queue"][0];
    assert_eq!(row["count"], 1);
    let unused = row["lastUnusedOffers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(unused.len(), 2, "{unused:?}");
    assert_eq!(unused[0]["reason"], json!(["InsufficientCpus"]));
    assert_eq!(unused[0]["offer"]["hostname"], "h0");
    assert!(unused[0]["offer"]["resources"]
        .as_array()
        .is_some_and(|r| r.iter().any(|x| x["name"] == "cpus" && x["scalar"] == 8.0)));
    for _ in 0..10 {
        s.offer(2);
    }
    let q = s.core.queue_json(s.now);
    assert_eq!(
        q["queue"][0]["lastUnusedOffers"].as_array().map(Vec::len),
        Some(10),
        "bounded"
    );
}

/// Found by the simulator (seed 0): an instance the master answered TASK_UNKNOWN for (neither
/// the task nor its agent known, e.g. the agent restarted empty) stayed live for ever, so
/// its deployment never finished and the app stayed short of an instance.
#[test]
fn an_unknown_task_is_replaced() {
    let mut s = Sim::new();
    s.core
        .create_app(&app("/web", 1, "sleep 100"), s.now)
        .expect("create");
    s.collect();
    s.offer(1);
    s.settle(None);
    assert_eq!(s.running("/web"), 1);
    let task = s
        .core
        .instances_of("/web")
        .next()
        .expect("one")
        .task_id
        .clone();
    s.status(&task, TaskState::Unknown, None);
    assert!(s.core.instance(&task).is_none());
    s.now = s.now.plus(Duration::from_secs(400));
    s.core.tick(s.now);
    s.collect();
    s.offer(1);
    s.settle(None);
    assert_eq!(s.running("/web"), 1);
    assert!(s.core.deployments().next().is_none());
}

/// Found by the simulator (seed 6): a KILL lost with a connection or a master restart was
/// never sent again, so a scale-down or delete waited for ever on a task that kept running.
#[test]
fn kills_are_sent_again_until_the_task_ends() {
    let mut s = Sim::new();
    s.core
        .create_app(&app("/web", 1, "sleep 100"), s.now)
        .expect("create");
    s.collect();
    s.offer(1);
    s.settle(None);
    s.core
        .update_app("/web", &json!({"instances": 0}), false, true, s.now)
        .expect("scale");
    s.collect();
    assert_eq!(s.kills.len(), 1);
    s.kills.clear();
    // The kill is lost: nothing happens for a while, then it is sent again.
    s.now = s.now.plus(Duration::from_secs(5));
    s.core.tick(s.now);
    s.collect();
    assert!(s.kills.is_empty());
    s.now = s.now.plus(Duration::from_secs(6));
    s.core.tick(s.now);
    s.collect();
    assert_eq!(s.kills.len(), 1);
    s.settle(None);
    assert!(s.core.deployments().next().is_none());
}

fn task_of(s: &Sim, app: &str) -> String {
    s.core
        .instances_of(app)
        .next()
        .expect("an instance")
        .task_id
        .clone()
}

fn tick_after(s: &mut Sim, secs: u64) {
    s.now = s.now.plus(Duration::from_secs(secs));
    s.core.tick(s.now);
    s.collect();
}

#[test]
fn unreachable_instances_are_replaced_after_inactive_and_the_surplus_killed_when_they_return() {
    let mut s = Sim::new();
    let mut body = app("/web", 2, "sleep 100");
    body["unreachableStrategy"] = json!({"inactiveAfterSeconds": 60, "expungeAfterSeconds": 600});
    s.core.create_app(&body, s.now).expect("create");
    s.collect();
    s.offer(3);
    s.settle(None);
    assert_eq!(s.running("/web"), 2);
    let lost = task_of(&s, "/web");
    s.status(&lost, TaskState::Unreachable, None);
    // Still counted while unreachable for less than inactiveAfterSeconds.
    tick_after(&mut s, 30);
    s.offer(3);
    assert!(s.staged.is_empty(), "replaced too early: {:?}", s.staged);
    assert!(s.kills.is_empty());
    // Past it: inactive, and replaced.
    tick_after(&mut s, 31);
    assert!(s.core.instance(&lost).is_some_and(|i| i.inactive));
    assert!(s
        .events
        .iter()
        .any(|e| e["condition"] == "UnreachableInactive" && e["instanceId"] == lost.as_str()));
    s.offer(3);
    assert_eq!(s.staged.len(), 1, "one replacement");
    let replacement = s.staged[0].clone();
    s.settle(None);
    assert_eq!(s.running("/web"), 2);
    // The original comes back: it counts again and the younger replacement goes.
    s.status(&lost, TaskState::Running, None);
    assert_eq!(s.kills, vec![replacement.clone()], "the surplus is killed");
    s.settle(None);
    assert_eq!(s.running("/web"), 2);
    let lost_now = s.core.instance(&lost).expect("the original stays");
    assert!(!lost_now.inactive && lost_now.unreachable_since_ms.is_none());
    assert!(s.core.instance(&replacement).is_none());
}

#[test]
fn unreachable_instances_are_expunged_and_killed_if_they_come_back() {
    let mut s = Sim::new();
    let mut body = app("/web", 1, "sleep 100");
    body["unreachableStrategy"] = json!({"inactiveAfterSeconds": 10, "expungeAfterSeconds": 20});
    s.core.create_app(&body, s.now).expect("create");
    s.collect();
    s.offer(1);
    s.settle(None);
    let lost = task_of(&s, "/web");
    // Mesos's unreachable_time counts, not the time the update arrives.
    let mut st = TaskStatus::new(TaskId::new(lost.clone()), TaskState::Unreachable);
    st.agent_id = Some(AgentId::new("agent-0"));
    let since_ns = (s.now.wall_secs - 15.0) * 1e9;
    st.extra.insert(
        "unreachable_time".into(),
        json!({"nanoseconds": since_ns as i64}),
    );
    let mut e = Event::bare(EventType::Update);
    e.update = Some(Update { status: st });
    s.core.on_event(e, s.now);
    s.collect();
    assert!(
        s.core.instance(&lost).is_some_and(|i| i.inactive),
        "15 s unreachable is past inactiveAfterSeconds"
    );
    s.offer(1);
    s.settle(None);
    assert_eq!(s.running("/web"), 1);
    tick_after(&mut s, 6);
    assert!(s.core.instance(&lost).is_none(), "expunged after 20 s");
    assert!(s
        .writes
        .iter()
        .any(|w| matches!(w, Write::DeleteInstance(t) if *t == lost)));
    // It comes back: a task we no longer know, so it is killed.
    s.status(&lost, TaskState::Running, None);
    assert_eq!(s.kills, vec![lost.clone()]);
    assert_eq!(s.running("/web"), 1);
}

#[test]
fn the_default_strategy_replaces_at_once_and_disabled_never() {
    let mut s = Sim::new();
    s.core
        .create_app(&app("/dflt", 1, "sleep 100"), s.now)
        .expect("create");
    let mut body = app("/off", 1, "sleep 100");
    body["unreachableStrategy"] = json!("disabled");
    let (def, _) = s.core.create_app(&body, s.now).expect("create");
    assert_eq!(
        s.core.app_json(&def, &[])["unreachableStrategy"],
        "disabled"
    );
    let dflt = s.core.app("/dflt").cloned().expect("app");
    assert_eq!(
        s.core.app_json(&dflt, &[])["unreachableStrategy"],
        json!({"inactiveAfterSeconds": 0, "expungeAfterSeconds": 0})
    );
    s.collect();
    s.offer(2);
    s.settle(None);
    let a = task_of(&s, "/dflt");
    let b = task_of(&s, "/off");
    s.status(&a, TaskState::Unreachable, None);
    s.status(&b, TaskState::Unreachable, None);
    assert!(s.core.instance(&a).is_none(), "0/0: expunged at once");
    tick_after(&mut s, 100_000);
    assert!(s.core.instance(&b).is_some_and(|i| !i.inactive));
    s.offer(2);
    assert_eq!(s.staged.len(), 1, "only /dflt is replaced: {:?}", s.staged);
    s.settle(None);
    assert_eq!(s.running("/dflt"), 1);
    assert_eq!(s.running("/off"), 0);
    // Deleting an app whose instance is unreachable does not wait for its agent.
    s.core.delete_app("/off", false, s.now).expect("delete");
    s.collect();
    assert_eq!(
        s.kills,
        vec![b.clone()],
        "the kill still goes to the master"
    );
    assert!(s.core.app("/off").is_none(), "deleted without waiting");
    assert!(s
        .core
        .deployments()
        .all(|d| d.parts.iter().all(|p| p.app_id != "/off")));
}

#[test]
fn unreachable_strategy_json_is_checked() {
    for (bad, field) in [
        (json!("sometimes"), "unreachableStrategy"),
        (
            json!({"inactiveAfterSeconds": -1, "expungeAfterSeconds": 5}),
            "inactiveAfterSeconds",
        ),
        (
            json!({"inactiveAfterSeconds": 10, "expungeAfterSeconds": 5}),
            "expungeAfterSeconds",
        ),
    ] {
        let mut s = Sim::new();
        let mut body = app("/web", 1, "x");
        body["unreachableStrategy"] = bad.clone();
        let err = s.core.create_app(&body, s.now).expect_err("refused");
        let text = format!("{err:?}");
        assert!(text.contains(field), "{bad}: {text}");
    }
}

/// Found by the simulator (seed 6): a REVIVE lost with a failed POST left the framework
/// suppressed at the master, and a new app's deployment waited for offers for ever.
#[test]
fn revive_is_sent_again_while_instances_wait_and_no_offer_comes() {
    let mut s = Sim::new();
    let revives = |s: &mut Sim| {
        s.core
            .drain()
            .into_iter()
            .filter(|e| matches!(e, Effect::Call(c) if c.kind == CallType::Revive))
            .count()
    };
    // Nothing wanted: suppressed.
    tick_after(&mut s, 1);
    s.core
        .create_app(&app("/web", 1, "sleep 100"), s.now)
        .expect("create");
    assert_eq!(revives(&mut s), 1, "the first REVIVE");
    // It is lost: no offer comes. Within the repeat interval, nothing more.
    s.now = s.now.plus(Duration::from_millis(REVIVE_REPEAT_MS - 1000));
    s.core.tick(s.now);
    assert_eq!(revives(&mut s), 0);
    s.now = s.now.plus(Duration::from_millis(1000));
    s.core.tick(s.now);
    assert_eq!(revives(&mut s), 1, "sent again");
    // Offers arriving (even unusable) keep it quiet.
    s.offer(1);
    s.settle(None);
    s.now = s.now.plus(Duration::from_millis(REVIVE_REPEAT_MS * 3));
    s.core.tick(s.now);
    assert_eq!(revives(&mut s), 0, "nothing waits any more");
}

/// The calls of one step, drained by hand (so `Sim::collect` does not see them).
fn reconcile_calls(core: &mut Core) -> Vec<Reconcile> {
    core.drain()
        .into_iter()
        .filter_map(|e| match e {
            Effect::Call(c) if c.kind == CallType::Reconcile => c.reconcile,
            _ => None,
        })
        .collect()
}

/// Marathon's `--reconciliation_interval`: besides every SUBSCRIBED, the core reconciles
/// when the interval has passed since the last reconciliation, only while subscribed.
#[test]
fn reconciliation_runs_every_interval_while_subscribed() {
    let mut s = Sim::new();
    s.core
        .create_app(&app("/web", 2, "sleep 100"), s.now)
        .expect("create");
    s.collect();
    s.offer(2);
    s.settle(None);
    assert_eq!(s.running("/web"), 2);
    // Sim::new subscribed (and reconciled) at 100 s; settling took well under a second.
    let start = Now::at(Duration::from_secs(100));
    s.core.tick(start.plus(Duration::from_millis(599_999)));
    assert!(reconcile_calls(&mut s.core).is_empty(), "not due yet");
    s.core.tick(start.plus(Duration::from_secs(600)));
    let calls = reconcile_calls(&mut s.core);
    assert_eq!(calls.len(), 2, "explicit and implicit: {calls:?}");
    assert_eq!(calls[0].tasks.len(), 2, "every live task explicitly");
    assert!(calls[1].tasks.is_empty(), "then implicitly");
    s.core.tick(start.plus(Duration::from_secs(601)));
    assert!(reconcile_calls(&mut s.core).is_empty(), "once per interval");
    // Disconnected: nothing is sent (the next SUBSCRIBED reconciles anyway).
    s.core.disconnected();
    s.core.tick(start.plus(Duration::from_secs(1300)));
    assert!(reconcile_calls(&mut s.core).is_empty());

    // An interval of 0 leaves reconciliation to the caller.
    let mut cfg = config();
    cfg.reconciliation_interval_ms = 0;
    let mut core = Core::new(cfg, Snapshot::default());
    let e = subscribed_event();
    core.on_event(e, start);
    assert_eq!(reconcile_calls(&mut core).len(), 1, "SUBSCRIBED reconciles");
    core.tick(start.plus(Duration::from_secs(10_000)));
    assert!(reconcile_calls(&mut core).is_empty());
}

/// Marathon's `--task_launch_timeout`: a task still STAGING that long after it was staged is
/// killed and replaced at once (no backoff); RUNNING and STARTING tasks are not touched.
#[test]
fn overdue_staging_tasks_are_killed_and_replaced() {
    let mut s = Sim::new();
    s.core
        .create_app(&app("/web", 3, "sleep 100"), s.now)
        .expect("create");
    s.collect();
    s.offer(3);
    assert_eq!(s.staged.len(), 3);
    let staged = std::mem::take(&mut s.staged);
    s.status(&staged[0], TaskState::Running, None);
    s.status(&staged[2], TaskState::Starting, None);
    let launched = s.now;
    s.core.tick(launched.plus(Duration::from_millis(299_000)));
    s.collect();
    assert!(s.kills.is_empty(), "not overdue yet");
    s.now = launched.plus(Duration::from_secs(301));
    s.core.tick(s.now);
    s.collect();
    assert_eq!(s.kills, vec![staged[1].clone()], "only the stuck one");
    assert!(s.core.deployments().next().is_some(), "still deploying");
    // The replacement goes out with the next offer, before the kill is even confirmed.
    s.offer(3);
    assert_eq!(s.staged.len(), 1, "replaced at once");
    s.status(&staged[2], TaskState::Running, None);
    s.settle(None);
    assert_eq!(s.running("/web"), 3);
    assert!(
        s.core.instance(&staged[0]).is_some(),
        "the running task stays"
    );
    assert!(
        s.core.instance(&staged[2]).is_some(),
        "so does the late starter"
    );
    assert!(s.core.instance(&staged[1]).is_none());
    assert!(s.core.deployments().next().is_none(), "deployment done");
    assert_eq!(s.core.delay("/web", s.now).0, 0.0, "no backoff");
}

/// After a restart the stored states may be stale: a task stored STAGING long ago may run by
/// now. It is not judged overdue until the reconciliation answers had time to arrive.
#[test]
fn a_restarted_core_waits_for_reconciliation_before_killing_overdue_tasks() {
    let mut s = Sim::new();
    s.core
        .create_app(&app("/web", 1, "sleep 100"), s.now)
        .expect("create");
    s.collect();
    s.offer(1);
    let task = s.staged.pop().expect("staged");
    let snapshot = Snapshot {
        framework_id: Some("fw-1".into()),
        apps: s.core.apps().cloned().collect(),
        versions: s
            .core
            .apps()
            .flat_map(|a| s.core.version(&a.id, &a.version).cloned())
            .collect(),
        instances: s.core.instances().cloned().collect(),
        deployments: s.core.deployments().cloned().collect(),
    };
    // The scheduler was down for ten minutes; the task started meanwhile.
    let later = s.now.plus(Duration::from_secs(600));
    let mut core = Core::new(config(), snapshot);
    let e = subscribed_event();
    core.on_event(e, later);
    core.tick(later.plus(Duration::from_secs(1)));
    let kills = |core: &mut Core| {
        core.drain()
            .into_iter()
            .filter(|e| matches!(e, Effect::Call(c) if c.kind == CallType::Kill))
            .count()
    };
    assert_eq!(kills(&mut core), 0, "settling after SUBSCRIBED");
    let mut st = TaskStatus::new(TaskId::new(task.clone()), TaskState::Running);
    st.agent_id = Some(AgentId::new("agent-0"));
    let mut e = Event::bare(EventType::Update);
    e.update = Some(Update { status: st });
    core.on_event(e, later.plus(Duration::from_secs(2)));
    core.tick(later.plus(Duration::from_secs(30)));
    assert_eq!(kills(&mut core), 0, "a running task is never overdue");
    assert!(
        core.deployments().next().is_none(),
        "the deployment finished"
    );
}

#[test]
fn a_bridge_networked_docker_app_gets_host_ports_mapped_to_its_container_ports() {
    let mut s = Sim::new();
    let body = json!({"id": "/web", "cmd": "httpd", "instances": 1, "cpus": 0.1, "mem": 16,
        "networks": [{"mode": "container/bridge"}],
        "container": {"type": "DOCKER", "docker": {"image": "nginx"},
            "portMappings": [{"containerPort": 80, "name": "http"},
                             {"containerPort": 0, "hostPort": 31050, "protocol": "udp,tcp"}]},
        "healthChecks": [{"protocol": "MESOS_HTTP", "portIndex": 0, "path": "/"}]});
    s.core.create_app(&body, s.now).expect("created");
    s.collect();
    s.offer(1);
    assert_eq!(s.launched.len(), 1);
    let t = &s.launched[0];
    let container = &t.extra["container"];
    assert_eq!(container["docker"]["network"], "BRIDGE", "{container}");
    // The first mapping got the lowest free host port; container port 0 means the host port.
    assert_eq!(
        container["docker"]["port_mappings"],
        json!([{"host_port": 31000, "container_port": 80, "protocol": "tcp"},
               {"host_port": 31050, "container_port": 31050, "protocol": "udp"},
               {"host_port": 31050, "container_port": 31050, "protocol": "tcp"}])
    );
    let ports: Vec<(u64, u64)> = t
        .resources
        .iter()
        .filter(|r| r.name == "ports")
        .flat_map(|r| {
            r.ranges
                .iter()
                .flat_map(|rs| rs.range.iter().map(|r| (r.begin, r.end)))
        })
        .collect();
    assert_eq!(ports, [(31000, 31000), (31050, 31050)]);
    let env: BTreeMap<String, String> = t
        .command
        .as_ref()
        .and_then(|c| c.environment.as_ref())
        .map(|e| {
            e.variables
                .iter()
                .map(|v| (v.name.clone(), v.value.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(env["PORT0"], "31000");
    assert_eq!(env["PORT_80"], "31000");
    assert_eq!(env["PORT_HTTP"], "31000");
    assert_eq!(env["PORT1"], "31050");
    // The executor checks inside the container's network, at the container port.
    assert_eq!(
        t.extra["health_check"]["http"]["port"], 80,
        "{:?}",
        t.extra["health_check"]
    );
    let inst = s.core.instances_of("/web").next().expect("instance");
    assert_eq!(inst.ports, [31000, 31050]);
    // Service ports are given to the mappings, as to port definitions.
    let app = s.core.apps().find(|a| a.id == "/web").expect("app");
    let service: Vec<u32> = app.port_mappings().iter().map(|m| m.service_port).collect();
    assert_eq!(service, [10000, 10001]);
    assert_eq!(
        app.to_json()["container"]["portMappings"][1]["servicePort"],
        10001
    );
}

#[test]
fn a_mesos_app_on_a_cni_network_joins_it_and_reports_the_tasks_own_addresses() {
    let mut s = Sim::new();
    let body = json!({"id": "/web", "cmd": "serve", "instances": 1, "cpus": 0.1, "mem": 16,
        "networks": [{"mode": "container", "name": "isolated", "labels": {"tier": "web"}}],
        "container": {"type": "MESOS", "portMappings": [{"containerPort": 8080, "name": "http"}]},
        "healthChecks": [{"protocol": "MESOS_HTTP", "portIndex": 0, "path": "/"},
                         {"protocol": "HTTP", "portIndex": 0, "path": "/"}]});
    s.core.create_app(&body, s.now).expect("created");
    s.collect();
    s.offer(1);
    assert_eq!(s.launched.len(), 1);
    let t = s.launched[0].clone();
    assert_eq!(
        t.extra["container"],
        json!({"type": "MESOS", "network_infos": [{"name": "isolated",
            "labels": {"labels": [{"key": "tier", "value": "web"}]},
            "port_mappings": [{"host_port": 31000, "container_port": 8080, "protocol": "tcp"}]}]})
    );
    // The executor checks in the container's network, at the container port.
    assert_eq!(t.extra["health_check"]["http"]["port"], 8080);
    // Until a status says otherwise the task's address is its host's, and the scheduler's
    // own HTTP check goes to the host port.
    s.status(t.task_id.as_str(), TaskState::Running, None);
    let inst = s
        .core
        .instances_of("/web")
        .next()
        .expect("instance")
        .clone();
    assert_eq!(
        inst.ip_addresses(),
        json!([{"ipAddress": inst.host, "protocol": "IPv4"}])
    );
    let targets = |s: &Sim| -> Vec<(String, u32)> {
        s.core
            .health_targets()
            .into_iter()
            .map(|(_, host, port, _)| (host, port))
            .collect()
    };
    assert_eq!(targets(&s), [(inst.host.clone(), 31000)]);
    let mut st = TaskStatus::new(t.task_id.clone(), TaskState::Running);
    st.agent_id = Some(AgentId::new("agent-0"));
    st.extra.insert(
        "container_status".into(),
        json!({"network_infos": [{"name": "isolated", "ip_addresses": [
            {"ip_address": "fd00::5", "protocol": "IPv6"}, {"protocol": "IPv4", "ip_address": "10.1.0.5"}]}]}),
    );
    let mut e = Event::bare(EventType::Update);
    e.update = Some(Update { status: st });
    s.core.on_event(e, s.now);
    s.collect();
    let inst = s.core.instances_of("/web").next().expect("instance");
    assert_eq!(
        inst.ip_addresses(),
        json!([{"ipAddress": "fd00::5", "protocol": "IPv6"}, {"ipAddress": "10.1.0.5", "protocol": "IPv4"}])
    );
    // Then to the task's own (IPv4) address at the container port, as Marathon does.
    assert_eq!(targets(&s), [("10.1.0.5".to_string(), 8080)]);

    // `container/bridge` is Mesos's `mesos-bridge` network.
    let bridged = json!({"id": "/b", "cmd": "serve", "instances": 1, "cpus": 0.1, "mem": 16,
        "networks": [{"mode": "container/bridge"}], "container": {"type": "MESOS"}});
    s.core.create_app(&bridged, s.now).expect("created");
    s.collect();
    s.offer(1);
    let t = s.launched.last().expect("launched");
    assert_eq!(
        t.extra["container"],
        json!({"type": "MESOS", "network_infos": [{"name": "mesos-bridge"}]})
    );
    // Several container networks: one NetworkInfo each, with the mappings that name it (or
    // name none).
    let multi = json!({"id": "/m", "cmd": "serve", "instances": 1, "cpus": 0.1, "mem": 16,
        "networks": [{"mode": "container", "name": "front", "labels": {"side": "a"}},
                     {"mode": "container", "name": "back"}],
        "container": {"type": "MESOS", "portMappings": [
            {"containerPort": 80, "hostPort": 31080, "networkNames": ["front"]},
            {"containerPort": 9000}]}});
    s.core.create_app(&multi, s.now).expect("created");
    s.collect();
    s.offer(1);
    let t = s.launched.last().expect("launched");
    let infos = t.extra["container"]["network_infos"]
        .as_array()
        .expect("infos")
        .clone();
    assert_eq!(infos.len(), 2, "{infos:?}");
    assert_eq!(infos[0]["name"], "front");
    assert_eq!(
        infos[0]["labels"],
        json!({"labels": [{"key": "side", "value": "a"}]})
    );
    let inside = |i: &Value| -> Vec<u64> {
        i["port_mappings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["container_port"].as_u64())
            .collect()
    };
    assert_eq!(inside(&infos[0]), [80, 9000]);
    assert_eq!(infos[1]["name"], "back");
    assert_eq!(inside(&infos[1]), [9000]);
    assert_eq!(infos[0]["port_mappings"][0]["host_port"], 31080);
    // No container given: Marathon's default MESOS one, with one mapping (to the same port).
    let plain = json!({"id": "/p", "cmd": "serve", "instances": 1, "cpus": 0.1, "mem": 16,
        "networks": [{"mode": "container", "name": "isolated"}]});
    s.core.create_app(&plain, s.now).expect("created");
    s.collect();
    s.offer(1);
    let t = s.launched.last().expect("launched");
    let info = &t.extra["container"]["network_infos"][0];
    assert_eq!(info["name"], "isolated");
    let host = info["port_mappings"][0]["host_port"]
        .as_u64()
        .expect("a host port");
    assert_eq!(info["port_mappings"][0]["container_port"], host);
    // A Docker image for the mesos containerizer is asked for as Marathon does (no DockerInfo).
    let image = json!({"id": "/i", "cmd": "serve", "instances": 1, "cpus": 0.1, "mem": 16,
        "container": {"type": "MESOS", "docker": {"image": "busybox"}}});
    s.core.create_app(&image, s.now).expect("created");
    s.collect();
    s.offer(1);
    let t = s.launched.last().expect("launched");
    assert_eq!(
        t.extra["container"],
        json!({"type": "MESOS", "mesos": {"image": {"type": "DOCKER", "docker": {"name": "busybox"}}}})
    );
}

#[test]
fn a_partial_update_moves_an_app_off_the_host_network_without_its_port_definitions() {
    let mut s = Sim::new();
    s.core
        .create_app(&app("/web", 1, "sleep 100"), s.now)
        .expect("created");
    s.collect();
    // The stored app has the default port definition; a PATCH that only changes the network
    // and the container does not carry it into container networking (which would be refused).
    let patch = json!({"networks": [{"mode": "container/bridge"}],
        "container": {"type": "DOCKER", "docker": {"image": "nginx"},
            "portMappings": [{"containerPort": 80}]}});
    s.core
        .update_app("/web", &patch, true, true, s.now)
        .expect("the partial update is valid");
    s.collect();
    let app = s.core.apps().find(|a| a.id == "/web").expect("app");
    assert!(app.port_definitions.is_empty());
    assert_eq!(app.port_count(), 1);
    // Naming port definitions with container networking is still refused.
    let bad = json!({"portDefinitions": [{"port": 0}]});
    assert!(matches!(
        s.core.update_app("/web", &bad, true, true, s.now),
        Err(ApiError::Invalid(_))
    ));
}

#[test]
fn an_update_in_marathon_1_4_terms_moves_an_app_to_bridge_networking() {
    let mut s = Sim::new();
    s.core
        .create_app(&app("/web", 1, "sleep 100"), s.now)
        .expect("created");
    s.collect();
    // As marathon-python sends it: the whole app, with the network inside `docker`.
    let legacy = json!({"id": "/web", "cmd": "sleep 100", "instances": 1, "cpus": 0.1, "mem": 16,
        "container": {"type": "DOCKER", "docker": {"image": "nginx", "network": "BRIDGE",
            "portMappings": [{"containerPort": 80, "hostPort": 0}]}}});
    s.core
        .update_app("/web", &legacy, true, true, s.now)
        .expect("valid");
    let app = s.core.apps().find(|a| a.id == "/web").expect("app");
    assert_eq!(app.network(), crate::app::Network::Bridge);
    assert_eq!(app.port_count(), 1);
}
