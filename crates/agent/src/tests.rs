//! Agent core tests: launch through the built-in executor, ordered and retried status
//! updates, kills and executor exits.

use super::*;
use mantle_api::executor::{Call, CallType, CallUpdate};
use serde_json::json;

fn at(s: u64) -> Now {
    Now::at(Duration::from_secs(s))
}

fn agent() -> Agent {
    let mut a = Agent::new(
        Config {
            hostname: "127.0.0.2".into(),
            port: 5051,
            resources: Resources::parse("cpus:2;mem:1024").unwrap(),
            attributes: vec![],
            sandbox_root: "/w/slaves".into(),
            status_update_retry_min: Duration::from_secs(10),
            seed: 1,
        },
        at(0),
    );
    a.from_master(
        at(0),
        MasterToAgent::Registered {
            agent_id: AgentId::new("A1"),
            stream_id: "s".into(),
        },
    );
    a.take_outputs();
    a
}

fn run_command_task(a: &mut Agent, id: &str) -> String {
    let framework: FrameworkInfo = serde_json::from_value(
        json!({"user": "u", "name": "f", "id": {"value": "F"}, "checkpoint": true}),
    )
    .unwrap();
    let task: TaskInfo = serde_json::from_value(
        json!({"name": "t", "task_id": {"value": id}, "agent_id": {"value": "A1"},
        "resources": [], "command": {"value": "sleep 1"}}),
    )
    .unwrap();
    a.from_master(at(0), MasterToAgent::RunTask { framework, task });
    let outs = a.take_outputs();
    match &outs[0] {
        Output::LaunchExecutor {
            container_id,
            directory,
            kind,
            ..
        } => {
            assert_eq!(*kind, ExecutorKind::Builtin);
            assert!(
                directory.starts_with(&format!("/w/slaves/A1/frameworks/F/executors/{id}/runs/"))
            );
            container_id.clone()
        }
        o => panic!("unexpected {o:?}"),
    }
}

fn update(id: &str, state: &str, uuid: &str) -> Call {
    Call {
        executor_id: ExecutorId::new(id),
        framework_id: FrameworkId::new("F"),
        kind: CallType::Update,
        subscribe: None,
        update: Some(CallUpdate {
            status: serde_json::from_value(
                json!({"task_id": {"value": id}, "state": state, "uuid": uuid}),
            )
            .unwrap(),
        }),
        message: None,
    }
}

const U1: &str = "AAAAAAAAAAAAAAAAAAAAAQ==";
const U2: &str = "AAAAAAAAAAAAAAAAAAAAAg==";

#[test]
fn queued_task_is_launched_when_the_executor_subscribes() {
    let mut a = agent();
    run_command_task(&mut a, "t1");
    let sub = Call {
        kind: CallType::Subscribe,
        ..update("t1", "TASK_RUNNING", U1)
    };
    let ev = a.executor_subscribe(at(0), 7, &sub).unwrap();
    assert_eq!(ev.kind, ExecEventType::Subscribed);
    let outs = a.take_outputs();
    assert!(
        matches!(&outs[0], Output::ToExecutor { conn: 7, event } if event.kind == ExecEventType::Launch)
    );
}

#[test]
fn updates_go_one_at_a_time_per_task_and_retry_until_acknowledged() {
    let mut a = agent();
    run_command_task(&mut a, "t1");
    a.executor_subscribe(
        at(0),
        7,
        &Call {
            kind: CallType::Subscribe,
            ..update("t1", "TASK_RUNNING", U1)
        },
    )
    .unwrap();
    a.take_outputs();
    a.executor_call(at(1), update("t1", "TASK_RUNNING", U1))
        .unwrap();
    a.executor_call(at(1), update("t1", "TASK_FINISHED", U2))
        .unwrap();
    let outs = a.take_outputs();
    let sent: Vec<_> = outs
        .iter()
        .filter_map(|o| match o {
            Output::ToMaster(AgentToMaster::StatusUpdate { status, .. }) => Some(status.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(sent.len(), 1, "only the first is in flight");
    assert_eq!(sent[0].agent_id, Some(AgentId::new("A1")));
    assert_eq!(sent[0].executor_id, Some(ExecutorId::new("t1")));
    assert_eq!(sent[0].source.as_deref(), Some("SOURCE_EXECUTOR"));
    // No ack: resent after 10 s, then after 20 s more.
    a.tick(at(10));
    assert!(a.take_outputs().is_empty());
    a.tick(at(11));
    assert_eq!(a.take_outputs().len(), 1);
    a.tick(at(30));
    assert!(a.take_outputs().is_empty());
    a.tick(at(31));
    assert_eq!(a.take_outputs().len(), 1);
    // A stale ack changes nothing; the right one releases the next update.
    a.from_master(
        at(32),
        MasterToAgent::AckStatusUpdate {
            framework_id: FrameworkId::new("F"),
            task_id: TaskId::new("t1"),
            uuid: U2.into(),
        },
    );
    assert!(a.take_outputs().is_empty());
    a.from_master(
        at(32),
        MasterToAgent::AckStatusUpdate {
            framework_id: FrameworkId::new("F"),
            task_id: TaskId::new("t1"),
            uuid: U1.into(),
        },
    );
    let outs = a.take_outputs();
    assert!(outs.iter().any(|o| matches!(o, Output::ToExecutor { event, .. } if event.kind == ExecEventType::Acknowledged)));
    assert!(outs.iter().any(|o| matches!(o, Output::ToMaster(AgentToMaster::StatusUpdate { status, .. }) if status.state == TaskState::Finished)));
    assert_eq!(a.pending_updates().len(), 1);
}

#[test]
fn executor_exit_fails_unfinished_tasks_or_kills_them_after_a_kill() {
    let mut a = agent();
    let c1 = run_command_task(&mut a, "t1");
    let c2 = run_command_task(&mut a, "t2");
    for (id, conn) in [("t1", 1), ("t2", 2)] {
        a.executor_subscribe(
            at(0),
            conn,
            &Call {
                kind: CallType::Subscribe,
                ..update(id, "TASK_RUNNING", U1)
            },
        )
        .unwrap();
    }
    a.from_master(
        at(1),
        MasterToAgent::KillTask {
            framework_id: FrameworkId::new("F"),
            task_id: TaskId::new("t2"),
            kill_policy: None,
        },
    );
    a.take_outputs();
    a.executor_exited(at(2), &c1, Some(1));
    a.executor_exited(at(2), &c2, Some(-15));
    let states: Vec<TaskState> = a
        .pending_updates()
        .into_iter()
        .map(|(_, s)| s.state)
        .collect();
    assert_eq!(states, vec![TaskState::Failed, TaskState::Killed]);
    assert_eq!(
        a.state()["frameworks"][0]["completed_executors"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn executor_calls_are_validated() {
    let mut a = agent();
    run_command_task(&mut a, "t1");
    // Not subscribed yet.
    assert!(matches!(
        a.executor_call(at(1), update("t1", "TASK_RUNNING", U1)),
        Err(CallError::Forbidden(_))
    ));
    a.executor_subscribe(
        at(0),
        7,
        &Call {
            kind: CallType::Subscribe,
            ..update("t1", "TASK_RUNNING", U1)
        },
    )
    .unwrap();
    assert!(a
        .executor_call(at(1), update("t1", "TASK_RUNNING", "bad"))
        .is_err());
    assert!(a
        .executor_call(at(1), update("t1", "TASK_STAGING", U1))
        .is_err());
    assert!(a
        .executor_call(at(1), update("other", "TASK_RUNNING", U1))
        .is_err());
    let mut foreign = update("t1", "TASK_RUNNING", U1);
    foreign.update.as_mut().unwrap().status.task_id = TaskId::new("not-mine");
    assert!(a.executor_call(at(1), foreign).is_err());
}

#[test]
fn a_container_is_sized_to_its_tasks_plus_the_builtin_executor() {
    let mut a = agent();
    let framework: FrameworkInfo = serde_json::from_value(
        json!({"user": "u", "name": "f", "id": {"value": "F"}, "checkpoint": true}),
    )
    .unwrap();
    let task: TaskInfo = serde_json::from_value(json!({"name": "t", "task_id": {"value": "t1"},
        "agent_id": {"value": "A1"}, "command": {"value": "sleep 1"},
        "resources": [
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.5}},
            {"name": "mem", "type": "SCALAR", "scalar": {"value": 64}},
            {"name": "mem", "type": "SCALAR", "scalar": {"value": -5}}]}))
    .unwrap();
    a.from_master(at(0), MasterToAgent::RunTask { framework, task });
    match &a.take_outputs()[0] {
        Output::LaunchExecutor { limits, .. } => {
            assert!((limits.cpus - 0.6).abs() < 1e-9, "{limits:?}");
            assert!((limits.mem_mb - 96.0).abs() < 1e-9, "{limits:?}");
        }
        o => panic!("unexpected {o:?}"),
    }
}

#[test]
fn a_container_limitation_fails_its_tasks_with_the_reason_and_drops_late_words() {
    let mut a = agent();
    let container = run_command_task(&mut a, "t1");
    a.executor_subscribe(
        at(0),
        7,
        &Call {
            kind: CallType::Subscribe,
            ..update("t1", "TASK_RUNNING", U1)
        },
    )
    .unwrap();
    a.executor_call(at(1), update("t1", "TASK_RUNNING", U1))
        .unwrap();
    a.take_outputs();
    a.container_failed(
        at(2),
        &container,
        "REASON_CONTAINER_LIMITATION_MEMORY",
        "Memory limit exceeded",
    );
    let outs = a.take_outputs();
    assert!(
        outs.iter().any(
            |o| matches!(o, Output::KillExecutor { container_id } if *container_id == container)
        ),
        "{outs:?}"
    );
    // The RUNNING update is still in flight; acknowledge it and the failure follows.
    a.from_master(
        at(3),
        MasterToAgent::AckStatusUpdate {
            framework_id: FrameworkId::new("F"),
            task_id: TaskId::new("t1"),
            uuid: U1.into(),
        },
    );
    let outs = a.take_outputs();
    let failed = outs
        .iter()
        .find_map(|o| match o {
            Output::ToMaster(AgentToMaster::StatusUpdate { status, .. }) => Some(status.clone()),
            _ => None,
        })
        .expect("the failure is sent");
    assert_eq!(failed.state, TaskState::Failed);
    assert_eq!(failed.source.as_deref(), Some("SOURCE_AGENT"));
    assert_eq!(
        failed.reason.as_deref(),
        Some("REASON_CONTAINER_LIMITATION_MEMORY")
    );
    // The executor's own word on the killed task comes late: acknowledged, never forwarded.
    a.executor_call(at(4), update("t1", "TASK_FAILED", U2))
        .unwrap();
    let outs = a.take_outputs();
    assert!(
        outs.iter()
            .all(|o| !matches!(o, Output::ToMaster(AgentToMaster::StatusUpdate { .. }))),
        "{outs:?}"
    );
    assert!(outs.iter().any(|o| matches!(o, Output::ToExecutor { conn: 7, event } if event.kind == ExecEventType::Acknowledged)));
    // And the executor's exit adds nothing.
    a.executor_exited(at(5), &container, Some(-9));
    let outs = a.take_outputs();
    assert!(
        outs.iter()
            .all(|o| !matches!(o, Output::ToMaster(AgentToMaster::StatusUpdate { .. }))),
        "{outs:?}"
    );
}

/// Found by the simulator (seed 10): after a master restart the agent re-registered without
/// a task that had ended but whose updates were not acknowledged, so the new master answered
/// reconciliation with TASK_GONE, and the task's queued TASK_STARTING reached the scheduler
/// after that terminal state. A task is reported while it has unacknowledged updates, in the
/// state of the oldest one.
#[test]
fn registration_reports_tasks_in_the_state_of_their_oldest_unacknowledged_update() {
    let mut a = agent();
    let container = run_command_task(&mut a, "t1");
    let sub = Call {
        kind: CallType::Subscribe,
        ..update("t1", "TASK_RUNNING", U1)
    };
    a.executor_subscribe(at(0), 7, &sub).unwrap();
    a.executor_call(at(1), update("t1", "TASK_STARTING", U1))
        .unwrap();
    a.executor_call(at(1), update("t1", "TASK_RUNNING", U2))
        .unwrap();
    let reg = a.registration();
    assert_eq!(reg.tasks.len(), 1);
    assert_eq!(reg.tasks[0].state, TaskState::Starting);
    // The task ends and its executor exits; nothing is acknowledged yet.
    a.executor_call(
        at(2),
        update("t1", "TASK_FINISHED", "AAAAAAAAAAAAAAAAAAAAAw=="),
    )
    .unwrap();
    a.executor_exited(at(3), &container, Some(0));
    let reg = a.registration();
    assert_eq!(reg.tasks.len(), 1, "{reg:?}");
    assert_eq!(reg.tasks[0].state, TaskState::Starting);
    // Once every update is acknowledged, the task is no longer reported.
    for u in [U1, U2, "AAAAAAAAAAAAAAAAAAAAAw=="] {
        a.from_master(
            at(4),
            MasterToAgent::AckStatusUpdate {
                framework_id: FrameworkId::new("F"),
                task_id: TaskId::new("t1"),
                uuid: u.into(),
            },
        );
    }
    assert!(a.registration().tasks.is_empty());
}

#[test]
fn a_checkpoint_round_trips_and_recovery_keeps_live_executors_and_ends_dead_ones() {
    let mut a = agent();
    let c1 = run_command_task(&mut a, "t1");
    let c2 = run_command_task(&mut a, "t2");
    for (conn, id) in [(7, "t1"), (8, "t2")] {
        a.executor_subscribe(
            at(0),
            conn,
            &Call {
                kind: CallType::Subscribe,
                ..update(id, "TASK_RUNNING", U1)
            },
        )
        .unwrap();
        a.executor_call(at(1), update(id, "TASK_RUNNING", U1))
            .unwrap();
    }
    a.take_outputs();
    let text = serde_json::to_string(&a.checkpoint()).unwrap();
    let cp: Checkpoint = serde_json::from_str(&text).unwrap();
    assert_eq!(cp, a.checkpoint());
    let config = a.config.clone();
    // t1's executor survived the agent; t2's did not.
    let mut b = Agent::recover(config, at(100), cp, |c| c == c1);
    assert_eq!(b.agent_id(), Some(&AgentId::new("A1")));
    let reg = b.registration();
    let ids: Vec<&str> = reg.tasks.iter().map(|t| t.task.task_id.as_str()).collect();
    assert!(ids.contains(&"t1") && ids.contains(&"t2"), "{ids:?}");
    b.from_master(
        at(100),
        MasterToAgent::Registered {
            agent_id: AgentId::new("A1"),
            stream_id: "s2".into(),
        },
    );
    let sent: Vec<TaskStatus> = b
        .take_outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::ToMaster(AgentToMaster::StatusUpdate { status, .. }) => Some(status),
            _ => None,
        })
        .collect();
    // Both RUNNING updates were never acknowledged: both are resent, with their uuids.
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent
        .iter()
        .all(|s| s.state == TaskState::Running && s.uuid.as_deref() == Some(U1)));
    // The live executor subscribes again; a resent update it already gave is not doubled.
    b.executor_subscribe(
        at(100),
        9,
        &Call {
            kind: CallType::Subscribe,
            ..update("t1", "TASK_RUNNING", U1)
        },
    )
    .unwrap();
    b.executor_call(at(101), update("t1", "TASK_RUNNING", U1))
        .unwrap();
    assert!(b
        .take_outputs()
        .iter()
        .all(|o| !matches!(o, Output::ToMaster(AgentToMaster::StatusUpdate { .. }))));
    // t2's end follows its RUNNING once that is acknowledged.
    b.from_master(
        at(102),
        MasterToAgent::AckStatusUpdate {
            framework_id: FrameworkId::new("F"),
            task_id: TaskId::new("t2"),
            uuid: U1.into(),
        },
    );
    let next: Vec<TaskStatus> = b
        .take_outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::ToMaster(AgentToMaster::StatusUpdate { status, .. }) => Some(status),
            _ => None,
        })
        .collect();
    assert_eq!(next.len(), 1, "{next:?}");
    assert_eq!(next[0].state, TaskState::Failed);
    assert_eq!(
        next[0].reason.as_deref(),
        Some("REASON_EXECUTOR_TERMINATED")
    );
    let _ = c2;
}

/// A scheduler that was away (restarted, failed over) gets what it missed at once, not at
/// the next retry: the master sends UPDATE_FRAMEWORK when it subscribes again.
#[test]
fn update_framework_resends_that_frameworks_pending_updates_at_once() {
    let mut a = agent();
    run_command_task(&mut a, "t1");
    a.executor_subscribe(
        at(0),
        7,
        &Call {
            kind: CallType::Subscribe,
            ..update("t1", "TASK_RUNNING", U1)
        },
    )
    .unwrap();
    a.take_outputs();
    a.executor_call(at(1), update("t1", "TASK_RUNNING", U1))
        .unwrap();
    assert_eq!(a.take_outputs().len(), 1, "the update goes to the master");
    // Next retry is at 11 s; at 3 s nothing is due.
    a.tick(at(3));
    assert!(a.take_outputs().is_empty());
    // Another framework's word changes nothing.
    a.from_master(
        at(3),
        MasterToAgent::UpdateFramework {
            framework_id: FrameworkId::new("other"),
        },
    );
    assert!(a.take_outputs().is_empty());
    a.from_master(
        at(3),
        MasterToAgent::UpdateFramework {
            framework_id: FrameworkId::new("F"),
        },
    );
    let outs = a.take_outputs();
    assert!(
        matches!(outs.as_slice(), [Output::ToMaster(AgentToMaster::StatusUpdate { status, .. })] if status.uuid.as_deref() == Some(U1)),
        "{outs:?}"
    );
}

/// A valid update uuid from a number.
fn uuid_of(n: u32) -> String {
    let mut b = [0u8; 16];
    b[12..].copy_from_slice(&n.to_be_bytes());
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[test]
fn the_journal_replayed_onto_an_earlier_checkpoint_gives_the_later_one() {
    use rand::Rng;
    for seed in 0..20u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut a = agent();
        let ids = ["t1", "t2", "t3"];
        for (conn, id) in ids.iter().enumerate() {
            run_command_task(&mut a, id);
            let sub = Call {
                kind: CallType::Subscribe,
                ..update(id, "TASK_RUNNING", U1)
            };
            a.executor_subscribe(at(0), conn as ConnId, &sub).unwrap();
            a.take_outputs();
        }
        a.take_outputs();
        a.take_journal();
        let mut replayed = a.checkpoint();
        let mut next_uuid = 10;
        let mut sends = [0u32; 3];
        for step in 0..60 {
            let i = rng.gen_range(0..3);
            let id = ids[i];
            if rng.gen_bool(0.5) {
                // The executor's next update: RUNNING a few times, then FINISHED.
                sends[i] += 1;
                let state = if sends[i] < 5 {
                    "TASK_RUNNING"
                } else {
                    "TASK_FINISHED"
                };
                next_uuid += 1;
                let _ = a.executor_call(at(1 + step), update(id, state, &uuid_of(next_uuid)));
            } else if let Some(head) = a
                .pending_updates()
                .into_iter()
                .find(|(_, s)| s.task_id.as_str() == id)
            {
                a.from_master(
                    at(1 + step),
                    MasterToAgent::AckStatusUpdate {
                        framework_id: FrameworkId::new("F"),
                        task_id: TaskId::new(id),
                        uuid: head.1.uuid.unwrap(),
                    },
                );
            }
            a.take_outputs();
            for entry in a.take_journal() {
                replayed.apply(entry);
            }
            let mut want = a.checkpoint();
            want.sort_updates();
            replayed.sort_updates();
            assert_eq!(replayed, want, "seed {seed}, step {step}");
        }
    }
}

#[test]
fn an_update_that_waited_in_the_queue_past_its_retry_is_sent_once_when_its_turn_comes() {
    let mut a = agent();
    run_command_task(&mut a, "t1");
    let sub = Call {
        kind: CallType::Subscribe,
        ..update("t1", "TASK_RUNNING", U1)
    };
    a.executor_subscribe(at(0), 7, &sub).unwrap();
    a.executor_call(at(1), update("t1", "TASK_RUNNING", U1))
        .unwrap();
    a.executor_call(at(1), update("t1", "TASK_FINISHED", U2))
        .unwrap();
    a.take_outputs();
    // U1 is acknowledged only after U2 has waited 30 s, past its first retry.
    a.from_master(
        at(31),
        MasterToAgent::AckStatusUpdate {
            framework_id: FrameworkId::new("F"),
            task_id: TaskId::new("t1"),
            uuid: U1.into(),
        },
    );
    let to_master = |outs: Vec<Output>| {
        outs.into_iter()
            .filter(|o| matches!(o, Output::ToMaster(AgentToMaster::StatusUpdate { .. })))
            .count()
    };
    assert_eq!(to_master(a.take_outputs()), 1, "U2 goes at once");
    a.tick(at(31));
    assert_eq!(to_master(a.take_outputs()), 0, "and not again at once");
    a.tick(at(41));
    assert_eq!(
        to_master(a.take_outputs()),
        1,
        "but 10 s later, unacknowledged"
    );
}

#[test]
fn a_task_that_ended_with_updates_unacknowledged_is_still_reported_after_a_restart() {
    let mut a = agent();
    let c1 = run_command_task(&mut a, "t1");
    let sub = Call {
        kind: CallType::Subscribe,
        ..update("t1", "TASK_RUNNING", U1)
    };
    a.executor_subscribe(at(0), 7, &sub).unwrap();
    a.executor_call(at(1), update("t1", "TASK_RUNNING", U1))
        .unwrap();
    a.executor_call(at(1), update("t1", "TASK_FINISHED", U2))
        .unwrap();
    a.executor_exited(at(2), &c1, Some(0));
    a.take_outputs();
    // Nothing acknowledged yet: the agent restarts; the executor is gone.
    let cp: Checkpoint =
        serde_json::from_str(&serde_json::to_string(&a.checkpoint()).unwrap()).unwrap();
    let b = Agent::recover(a.config.clone(), at(10), cp, |_| false);
    let reg = b.registration();
    let t1 = reg
        .tasks
        .iter()
        .find(|t| t.task.task_id.as_str() == "t1")
        .expect("t1 is reported while its updates are on their way");
    assert_eq!(
        t1.state,
        TaskState::Running,
        "in its oldest pending update's state"
    );
    let pending: Vec<TaskState> = b.pending_updates().iter().map(|(_, s)| s.state).collect();
    assert_eq!(pending, vec![TaskState::Running, TaskState::Finished]);
}

#[test]
fn a_staging_task_its_executor_never_got_is_dropped_when_the_executor_returns() {
    let mut a = agent();
    run_command_task(&mut a, "t1");
    let sub = Call {
        kind: CallType::Subscribe,
        ..update("t1", "TASK_RUNNING", U1)
    };
    // The agent hands t1 over and dies before the LAUNCH reaches the executor.
    a.executor_subscribe(at(0), 7, &sub).unwrap();
    a.take_outputs();
    let cp: Checkpoint =
        serde_json::from_str(&serde_json::to_string(&a.checkpoint()).unwrap()).unwrap();
    let mut b = Agent::recover(a.config.clone(), at(10), cp.clone(), |_| true);
    b.executor_subscribe(at(11), 8, &sub).unwrap();
    let pending = b.pending_updates();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0].1.state, TaskState::Lost, "not partition-aware");
    assert_eq!(
        pending[0].1.reason.as_deref(),
        Some("REASON_AGENT_RESTARTED")
    );
    // An executor that names the task keeps it.
    let mut c = Agent::recover(a.config.clone(), at(10), cp, |_| true);
    let mut known = sub.clone();
    let task: TaskInfo = serde_json::from_value(
        json!({"name": "t", "task_id": {"value": "t1"}, "agent_id": {"value": "A1"}}),
    )
    .unwrap();
    known.subscribe = Some(exec::Subscribe {
        unacknowledged_tasks: vec![task],
        unacknowledged_updates: vec![],
    });
    c.executor_subscribe(at(11), 8, &known).unwrap();
    assert!(c.pending_updates().is_empty());
}

#[test]
fn a_framework_without_checkpointing_is_left_out_of_the_checkpoint() {
    let mut a = agent();
    let framework: FrameworkInfo =
        serde_json::from_value(json!({"user": "u", "name": "g", "id": {"value": "G"}})).unwrap();
    let task: TaskInfo = serde_json::from_value(
        json!({"name": "t", "task_id": {"value": "g1"}, "agent_id": {"value": "A1"},
        "resources": [], "command": {"value": "sleep 1"}}),
    )
    .unwrap();
    a.from_master(at(0), MasterToAgent::RunTask { framework, task });
    let sub = Call {
        framework_id: FrameworkId::new("G"),
        kind: CallType::Subscribe,
        ..update("g1", "TASK_RUNNING", U1)
    };
    a.executor_subscribe(at(0), 7, &sub).unwrap();
    a.executor_call(
        at(1),
        Call {
            framework_id: FrameworkId::new("G"),
            ..update("g1", "TASK_RUNNING", U1)
        },
    )
    .unwrap();
    assert_eq!(
        a.pending_updates().len(),
        1,
        "its update is queued and sent"
    );
    assert!(a.take_journal().is_empty(), "but not journaled");
    let cp = a.checkpoint();
    assert!(
        cp.frameworks.is_empty() && cp.executors.is_empty() && cp.updates.is_empty(),
        "{cp:?}"
    );
}
