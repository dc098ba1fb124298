//! Master core tests: the launch loop and its error paths, driven through the public API
//! with explicit times (no sockets, no clock).

use super::*;
use mantle_api::internal::{AgentEnvelope, AgentToMaster, RegisterAgent};
use mantle_api::scheduler::{Call, CallType, EventType, Subscribe};
use serde_json::json;

fn at(s: u64) -> Now {
    Now::at(Duration::from_secs(s))
}

fn master() -> Master {
    Master::new(Config::new(std::net::Ipv4Addr::LOCALHOST, 5050, 7), at(0))
}

fn register_agent(m: &mut Master, conn: ConnId, host: &str) -> (AgentId, String) {
    let reg = RegisterAgent {
        agent_id: None,
        hostname: host.into(),
        port: 5051,
        resources: mantle_api::resources_to_wire(
            &Resources::parse("cpus:2;mem:1024;ports:[31000-31009]").unwrap(),
            None,
        ),
        attributes: vec![],
        frameworks: vec![],
        tasks: vec![],
        executors: vec![],
        version: "test".into(),
    };
    m.agent_register(at(0), conn, reg).unwrap()
}

fn subscribe(m: &mut Master, conn: ConnId, extra: serde_json::Value) -> Subscription {
    let mut info = json!({"user": "u", "name": "fw"});
    if let (Some(i), Some(e)) = (info.as_object_mut(), extra.as_object()) {
        i.extend(e.clone());
    }
    let s: Subscribe = serde_json::from_value(json!({"framework_info": info})).unwrap();
    m.subscribe(at(0), conn, None, s).unwrap()
}

fn events(m: &mut Master, conn: ConnId) -> Vec<Event> {
    m.take_outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::ToFramework { conn: c, event } if c == conn => Some(event),
            _ => None,
        })
        .collect()
}

fn call(framework_id: &FrameworkId, body: serde_json::Value) -> Call {
    let mut c = body;
    c["framework_id"] = json!({"value": framework_id.as_str()});
    serde_json::from_value(c).unwrap()
}

fn first_offer(m: &mut Master, conn: ConnId) -> mantle_api::mesos::Offer {
    m.tick(at(1));
    let ev = events(m, conn);
    ev.into_iter()
        .find(|e| e.kind == EventType::Offers)
        .and_then(|e| e.offers)
        .and_then(|o| o.offers.into_iter().next())
        .expect("an offer")
}

fn launch(offer: &mantle_api::mesos::Offer, task_id: &str, cpus: f64) -> serde_json::Value {
    json!({"type": "ACCEPT", "accept": {"offer_ids": [offer.id], "operations": [{"type": "LAUNCH", "launch": {"task_infos": [
        {"name": "t", "task_id": {"value": task_id}, "agent_id": offer.agent_id,
         "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}}],
         "command": {"value": "true"}}]}}]}})
}

#[test]
fn subscribe_then_offer_then_launch_reaches_the_agent() {
    let mut m = master();
    let (agent_id, _) = register_agent(&mut m, 100, "127.0.0.2");
    let sub = subscribe(&mut m, 1, json!({}));
    let ev = events(&mut m, 1);
    assert_eq!(ev[0].kind, EventType::Subscribed);
    let offer = first_offer(&mut m, 1);
    assert_eq!(offer.agent_id, agent_id);
    m.call(
        at(1),
        Some(&sub.stream_id),
        call(&sub.framework_id, launch(&offer, "t1", 1.0)),
    )
    .unwrap();
    let outs = m.take_outputs();
    assert!(outs.iter().any(|o| matches!(o, Output::ToAgent { conn: 100, message: MasterToAgent::RunTask { task, .. } } if task.task_id.as_str() == "t1")));
    // The rest (1 cpu) is filtered for 5 s, then offered again.
    m.tick(at(3));
    assert!(events(&mut m, 1)
        .iter()
        .all(|e| e.kind != EventType::Offers));
    m.tick(at(7));
    let again = events(&mut m, 1)
        .into_iter()
        .find(|e| e.kind == EventType::Offers)
        .unwrap();
    assert_eq!(
        again.offers.unwrap().offers[0].resources[0]
            .scalar
            .as_ref()
            .unwrap()
            .value,
        1.0
    );
}

#[test]
fn invalid_tasks_get_task_error_and_change_no_accounting() {
    let mut m = master();
    register_agent(&mut m, 100, "127.0.0.2");
    let sub = subscribe(&mut m, 1, json!({}));
    let offer = first_offer(&mut m, 1);
    let before = m.view().accounting();
    for (id, cpus) in [("bad/id", 1.0), ("toomuch", 3.0), ("neg", -1.0)] {
        m.call(
            at(1),
            Some(&sub.stream_id),
            call(&sub.framework_id, launch(&offer, id, cpus)),
        )
        .unwrap();
        let ev = events(&mut m, 1);
        let st = ev
            .iter()
            .find_map(|e| e.update.as_ref())
            .map(|u| u.status.clone());
        // The first accept uses the offer; later ones name a stale offer.
        let st = st.expect("an update");
        assert!(
            matches!(st.state, TaskState::Error | TaskState::Lost),
            "{st:?}"
        );
        assert_eq!(st.source.as_deref(), Some("SOURCE_MASTER"));
        assert!(st.uuid.is_none());
    }
    // Everything came back to the allocator (filtered for 5 s, then re-offered) and nothing
    // was launched: the books are exactly as before.
    m.tick(at(10));
    let after = m.view().accounting();
    assert_eq!(before, after);
    assert!(
        after.contains("tasks=0") && after.contains("offers=1"),
        "{after}"
    );
    assert!(m.take_outputs().iter().all(|o| !matches!(
        o,
        Output::ToAgent {
            message: MasterToAgent::RunTask { .. },
            ..
        }
    )));
}

#[test]
fn calls_need_a_matching_stream_id() {
    let mut m = master();
    let sub = subscribe(&mut m, 1, json!({}));
    let c = call(&sub.framework_id, json!({"type": "REVIVE"}));
    assert!(matches!(
        m.call(at(0), None, c.clone()),
        Err(CallError::BadRequest(_))
    ));
    assert!(matches!(
        m.call(at(0), Some("nope"), c.clone()),
        Err(CallError::BadRequest(_))
    ));
    let other = call(&FrameworkId::new("ghost"), json!({"type": "REVIVE"}));
    assert!(matches!(
        m.call(at(0), Some(&sub.stream_id), other),
        Err(CallError::BadRequest(_))
    ));
    assert!(m.call(at(0), Some(&sub.stream_id), c).is_ok());
}

#[test]
fn status_updates_flow_and_terminal_acks_complete_tasks() {
    let mut m = master();
    let (agent_id, agent_stream) = register_agent(&mut m, 100, "127.0.0.2");
    let sub = subscribe(&mut m, 1, json!({}));
    let offer = first_offer(&mut m, 1);
    m.call(
        at(1),
        Some(&sub.stream_id),
        call(&sub.framework_id, launch(&offer, "t1", 1.0)),
    )
    .unwrap();
    m.take_outputs();
    let uuid = "AAAAAAAAAAAAAAAAAAAAAA==".to_string();
    let mut st = TaskStatus::new(TaskId::new("t1"), TaskState::Finished);
    st.uuid = Some(uuid.clone());
    m.agent_message(
        at(2),
        AgentEnvelope {
            agent_id: agent_id.clone(),
            stream_id: agent_stream,
            message: AgentToMaster::StatusUpdate {
                framework_id: sub.framework_id.clone(),
                status: st,
            },
        },
    )
    .unwrap();
    let ev = events(&mut m, 1);
    let u = ev.iter().find_map(|e| e.update.clone()).unwrap();
    assert_eq!(u.status.agent_id.as_ref(), Some(&agent_id));
    assert!(m.view().state()["frameworks"][0]["tasks"][0]["state"] == "TASK_FINISHED");
    let ack = call(
        &sub.framework_id,
        json!({"type": "ACKNOWLEDGE", "acknowledge": {"agent_id": agent_id, "task_id": {"value": "t1"}, "uuid": uuid}}),
    );
    m.call(at(2), Some(&sub.stream_id), ack).unwrap();
    assert!(m.take_outputs().iter().any(|o| matches!(
        o,
        Output::ToAgent {
            message: MasterToAgent::AckStatusUpdate { .. },
            ..
        }
    )));
    let state = m.view().state();
    assert_eq!(state["frameworks"][0]["tasks"].as_array().unwrap().len(), 0);
    assert_eq!(
        state["frameworks"][0]["completed_tasks"][0]["state"],
        "TASK_FINISHED"
    );
}

#[test]
fn agent_disconnect_rescinds_offers_and_removal_loses_tasks() {
    let mut m = master();
    register_agent(&mut m, 100, "127.0.0.2");
    let sub = subscribe(&mut m, 1, json!({}));
    let offer = first_offer(&mut m, 1);
    m.agent_disconnected(at(2), 100);
    let ev = events(&mut m, 1);
    assert!(ev
        .iter()
        .any(|e| e.kind == EventType::Rescind && e.rescind.as_ref().unwrap().offer_id == offer.id));
    m.tick(at(2 + 76));
    let ev = events(&mut m, 1);
    assert!(ev.iter().any(|e| e.kind == EventType::Failure));
    assert_eq!(m.view().slaves()["slaves"].as_array().unwrap().len(), 0);
    let _ = sub;
}

#[test]
fn reconcile_answers_unknown_tasks_by_partition_awareness() {
    let mut m = master();
    let sub = subscribe(
        &mut m,
        1,
        json!({"capabilities": [{"type": "PARTITION_AWARE"}]}),
    );
    events(&mut m, 1);
    let c = call(
        &sub.framework_id,
        json!({"type": "RECONCILE", "reconcile": {"tasks": [{"task_id": {"value": "nope"}}]}}),
    );
    m.call(at(0), Some(&sub.stream_id), c).unwrap();
    let ev = events(&mut m, 1);
    let s = &ev[0].update.as_ref().unwrap().status;
    assert_eq!(s.state, TaskState::Unknown);
    assert_eq!(s.reason.as_deref(), Some("REASON_RECONCILIATION"));
}

#[test]
fn heartbeats_follow_the_interval() {
    let mut m = master();
    subscribe(&mut m, 1, json!({}));
    events(&mut m, 1);
    m.tick(at(14));
    assert!(events(&mut m, 1)
        .iter()
        .all(|e| e.kind != EventType::Heartbeat));
    m.tick(at(15));
    assert!(events(&mut m, 1)
        .iter()
        .any(|e| e.kind == EventType::Heartbeat));
}

#[test]
fn teardown_kills_tasks_and_closes_the_stream() {
    let mut m = master();
    register_agent(&mut m, 100, "127.0.0.2");
    let sub = subscribe(&mut m, 1, json!({}));
    let offer = first_offer(&mut m, 1);
    m.call(
        at(1),
        Some(&sub.stream_id),
        call(&sub.framework_id, launch(&offer, "t1", 1.0)),
    )
    .unwrap();
    m.take_outputs();
    m.call(
        at(1),
        Some(&sub.stream_id),
        call(&sub.framework_id, json!({"type": "TEARDOWN"})),
    )
    .unwrap();
    let outs = m.take_outputs();
    assert!(outs
        .iter()
        .any(|o| matches!(o, Output::CloseFramework { conn: 1 })));
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::ToAgent {
            message: MasterToAgent::ShutdownFramework { .. },
            ..
        }
    )));
    assert!(
        m.view().accounting().contains("free=cpus:2;mem:1024"),
        "{}",
        m.view().accounting()
    );
    let again = Call::new(CallType::Revive, Some(sub.framework_id.clone()));
    assert!(m.call(at(1), Some(&sub.stream_id), again).is_err());
}

#[test]
fn a_second_subscribe_with_the_framework_id_fails_over_the_first_stream() {
    // Mesos `failoverFramework`: the old connection gets ERROR "Framework failed over" and is
    // closed; the new one is SUBSCRIBED with the same ID; offers of the old one come back.
    let mut m = master();
    register_agent(&mut m, 100, "127.0.0.2");
    let first = subscribe(&mut m, 1, json!({"failover_timeout": 60.0}));
    let offer = first_offer(&mut m, 1);
    let resubscribe: Subscribe = serde_json::from_value(json!({"framework_info": {
        "user": "u", "name": "fw", "failover_timeout": 60.0,
        "id": {"value": first.framework_id.as_str()}}}))
    .unwrap();
    let second = m
        .subscribe(at(2), 2, Some(first.framework_id.clone()), resubscribe)
        .unwrap();
    assert_eq!(second.framework_id, first.framework_id);
    assert_ne!(second.stream_id, first.stream_id);
    let outs = m.take_outputs();
    let error_at = outs.iter().position(|o| {
        matches!(o, Output::ToFramework { conn: 1, event }
            if event.kind == EventType::Error
                && event.error.as_ref().is_some_and(|e| e.message == "Framework failed over"))
    });
    let close_at = outs
        .iter()
        .position(|o| matches!(o, Output::CloseFramework { conn: 1 }));
    assert!(
        matches!((error_at, close_at), (Some(e), Some(c)) if e < c),
        "ERROR then close on the old stream: {outs:?}"
    );
    assert!(outs
        .iter()
        .any(|o| matches!(o, Output::ToFramework { conn: 2, event }
        if event.kind == EventType::Subscribed
            && event.subscribed.as_ref().is_some_and(|s| s.framework_id == first.framework_id))));
    assert!(
        !outs
            .iter()
            .any(|o| matches!(o, Output::ToFramework { conn: 1, event } if event.kind != EventType::Error)),
        "nothing but the ERROR goes to the old stream"
    );
    // The old stream ID is dead, the new one works.
    let revive = || Call::new(CallType::Revive, Some(first.framework_id.clone()));
    assert!(m.call(at(2), Some(&first.stream_id), revive()).is_err());
    m.call(at(2), Some(&second.stream_id), revive()).unwrap();
    // The shell reports the old stream's end; that must not disconnect the new one.
    m.framework_disconnected(at(2), 1);
    m.call(at(2), Some(&second.stream_id), revive()).unwrap();
    // The offer made to the old instance was taken back and goes to the new one.
    m.tick(at(3));
    let offers: Vec<_> = events(&mut m, 2)
        .into_iter()
        .filter_map(|e| e.offers)
        .flat_map(|o| o.offers)
        .collect();
    assert_eq!(offers.len(), 1, "{offers:?}");
    assert_eq!(offers[0].agent_id, offer.agent_id);
    assert_ne!(offers[0].id, offer.id);
}

/// Found by the simulator (seed 19, a duplicated ACCEPT): the second ACCEPT named an offer
/// already used, and the master answered TASK_DROPPED for the task the first one launched,
/// so the scheduler replaced a running task. A retried launch of an active task must not
/// produce an update about that task.
#[test]
fn a_repeated_accept_does_not_end_the_task_it_launched() {
    let mut m = master();
    register_agent(&mut m, 100, "127.0.0.2");
    let sub = subscribe(
        &mut m,
        1,
        json!({"capabilities": [{"type": "PARTITION_AWARE"}]}),
    );
    let offer = first_offer(&mut m, 1);
    let accept = call(&sub.framework_id, launch(&offer, "t1", 1.0));
    m.call(at(1), Some(&sub.stream_id), accept.clone()).unwrap();
    events(&mut m, 1);
    // The same ACCEPT again: its offer is gone.
    m.call(at(1), Some(&sub.stream_id), accept).unwrap();
    assert!(events(&mut m, 1).iter().all(|e| e.update.is_none()));
    // A new offer naming the same task ID again: not a TASK_ERROR for the running task.
    m.tick(at(10));
    let again = events(&mut m, 1)
        .into_iter()
        .find_map(|e| e.offers)
        .and_then(|o| o.offers.into_iter().next())
        .expect("an offer for the rest");
    m.call(
        at(10),
        Some(&sub.stream_id),
        call(&sub.framework_id, launch(&again, "t1", 0.5)),
    )
    .unwrap();
    assert!(events(&mut m, 1).iter().all(|e| e.update.is_none()));
    assert_eq!(
        m.view().state()["frameworks"][0]["tasks"][0]["state"],
        "TASK_STAGING"
    );
    m.audit().unwrap();
}

fn partition_aware(m: &mut Master) -> Subscription {
    let sub = subscribe(m, 1, json!({"capabilities": [{"type": "PARTITION_AWARE"}]}));
    events(m, 1);
    sub
}

/// Found by the simulator (seed 0, with an agent restart): an agent replaced by a new agent
/// at its address lost its tasks as TASK_UNREACHABLE, which a scheduler keeps waiting for;
/// they cannot come back, so they are TASK_GONE (Mesos's `__removeSlave`).
#[test]
fn a_replaced_agent_loses_its_tasks_as_gone() {
    let mut m = master();
    register_agent(&mut m, 100, "127.0.0.2");
    let sub = partition_aware(&mut m);
    let offer = first_offer(&mut m, 1);
    m.call(
        at(1),
        Some(&sub.stream_id),
        call(&sub.framework_id, launch(&offer, "t1", 1.0)),
    )
    .unwrap();
    events(&mut m, 1);
    m.agent_disconnected(at(2), 100);
    register_agent(&mut m, 101, "127.0.0.2");
    let states: Vec<TaskState> = events(&mut m, 1)
        .into_iter()
        .filter_map(|e| e.update.map(|u| u.status.state))
        .collect();
    assert_eq!(states, vec![TaskState::Gone]);
    m.audit().unwrap();
}

/// A task whose terminal update awaits its acknowledgement gets no second, non-terminal end
/// (TASK_UNREACHABLE) when its agent is removed.
#[test]
fn agent_removal_does_not_follow_a_terminal_update_with_another_state() {
    let mut m = master();
    let (agent_id, stream) = register_agent(&mut m, 100, "127.0.0.2");
    let sub = partition_aware(&mut m);
    let offer = first_offer(&mut m, 1);
    m.call(
        at(1),
        Some(&sub.stream_id),
        call(&sub.framework_id, launch(&offer, "t1", 1.0)),
    )
    .unwrap();
    let mut st = TaskStatus::new(TaskId::new("t1"), TaskState::Finished);
    st.uuid = Some("AAAAAAAAAAAAAAAAAAAAAA==".into());
    let message = AgentToMaster::StatusUpdate {
        framework_id: sub.framework_id.clone(),
        status: st,
    };
    m.agent_message(
        at(2),
        AgentEnvelope {
            agent_id,
            stream_id: stream,
            message,
        },
    )
    .unwrap();
    events(&mut m, 1);
    m.agent_disconnected(at(3), 100);
    m.tick(at(3 + 76));
    assert!(events(&mut m, 1).iter().all(|e| e.update.is_none()));
    m.audit().unwrap();
}

/// After a restart the master cannot tell an agent it never saw from one that has not
/// re-registered yet: explicit reconciliation of a task on an unknown agent gets no answer
/// until the agent removal timeout has passed since the start (then TASK_UNKNOWN).
#[test]
fn reconciliation_waits_for_agents_to_re_register_after_a_start() {
    let mut m = master();
    let sub = partition_aware(&mut m);
    let body = json!({"type": "RECONCILE", "reconcile": {"tasks": [
        {"task_id": {"value": "t1"}, "agent_id": {"value": "old-S0"}}]}});
    m.call(
        at(10),
        Some(&sub.stream_id),
        call(&sub.framework_id, body.clone()),
    )
    .unwrap();
    assert!(events(&mut m, 1).iter().all(|e| e.update.is_none()));
    m.call(at(80), Some(&sub.stream_id), call(&sub.framework_id, body))
        .unwrap();
    let states: Vec<TaskState> = events(&mut m, 1)
        .into_iter()
        .filter_map(|e| e.update.map(|u| u.status.state))
        .collect();
    assert_eq!(states, vec![TaskState::Unknown]);
}

/// Found by the simulator (seed 36): a RUN_TASK sent while the agent's stream was down (or
/// on a stream it had given up) was lost, and the task stayed TASK_STAGING for ever, because
/// re-registration skipped staging tasks the agent did not report.
#[test]
fn a_staging_task_the_re_registering_agent_does_not_report_is_dropped() {
    let mut m = master();
    let (agent_id, _) = register_agent(&mut m, 100, "127.0.0.2");
    let sub = partition_aware(&mut m);
    let offer = first_offer(&mut m, 1);
    m.agent_disconnected(at(1), 100);
    // The offer was rescinded; launch with a fresh registration's offer instead.
    let reg = |id: Option<AgentId>| RegisterAgent {
        agent_id: id,
        hostname: "127.0.0.2".into(),
        port: 5051,
        resources: mantle_api::resources_to_wire(
            &Resources::parse("cpus:2;mem:1024;ports:[31000-31009]").unwrap(),
            None,
        ),
        attributes: vec![],
        frameworks: vec![],
        tasks: vec![],
        executors: vec![],
        version: "test".into(),
    };
    let _ = offer;
    m.agent_register(at(2), 101, reg(Some(agent_id.clone())))
        .unwrap();
    events(&mut m, 1);
    let offer = first_offer(&mut m, 1);
    m.call(
        at(2),
        Some(&sub.stream_id),
        call(&sub.framework_id, launch(&offer, "t1", 1.0)),
    )
    .unwrap();
    // The RUN_TASK is lost with the stream; the agent comes back without the task.
    m.agent_disconnected(at(3), 101);
    m.agent_register(at(4), 102, reg(Some(agent_id))).unwrap();
    let states: Vec<TaskState> = events(&mut m, 1)
        .into_iter()
        .filter_map(|e| e.update.map(|u| u.status.state))
        .collect();
    assert_eq!(states, vec![TaskState::Dropped]);
    m.audit().unwrap();
}

// --- Agent health, partitions, the registry and framework failover (issue #5) ---

fn at_ms(ms: u64) -> Now {
    Now::at(Duration::from_millis(ms))
}

fn reg_at(
    host: &str,
    id: Option<AgentId>,
    tasks: Vec<mantle_api::internal::TaskSnapshot>,
) -> RegisterAgent {
    RegisterAgent {
        agent_id: id,
        hostname: host.into(),
        port: 5051,
        resources: mantle_api::resources_to_wire(
            &Resources::parse("cpus:2;mem:1024;ports:[31000-31009]").unwrap(),
            None,
        ),
        attributes: vec![],
        frameworks: vec![],
        tasks,
        executors: vec![],
        version: "test".into(),
    }
}

fn send(m: &mut Master, now: Now, agent: &(AgentId, String), message: AgentToMaster) {
    m.agent_message(
        now,
        AgentEnvelope {
            agent_id: agent.0.clone(),
            stream_id: agent.1.clone(),
            message,
        },
    )
    .unwrap();
}

fn pong(m: &mut Master, now: Now, agent: &(AgentId, String)) {
    send(m, now, agent, AgentToMaster::Pong);
}

/// Launches `task_id` (1 cpu) on the first offer and reports it RUNNING; returns its
/// `TaskSnapshot` as the agent would report it.
fn run_task(
    m: &mut Master,
    now: Now,
    sub: &Subscription,
    agent: &(AgentId, String),
    task_id: &str,
) -> mantle_api::internal::TaskSnapshot {
    let offer = first_offer(m, 1);
    m.call(
        now,
        Some(&sub.stream_id),
        call(&sub.framework_id, launch(&offer, task_id, 1.0)),
    )
    .unwrap();
    let task = m
        .take_outputs()
        .into_iter()
        .find_map(|o| match o {
            Output::ToAgent {
                message: MasterToAgent::RunTask { task, .. },
                ..
            } => Some(task),
            _ => None,
        })
        .expect("RUN_TASK");
    let mut s = TaskStatus::new(TaskId::new(task_id), TaskState::Running);
    s.uuid = Some("AAAAAAAAAAAAAAAAAAAAAA==".into());
    send(
        m,
        now,
        agent,
        AgentToMaster::StatusUpdate {
            framework_id: sub.framework_id.clone(),
            status: s,
        },
    );
    events(m, 1);
    mantle_api::internal::TaskSnapshot {
        framework_id: sub.framework_id.clone(),
        executor_id: None,
        task,
        state: TaskState::Running,
    }
}

fn updates(m: &mut Master, conn: ConnId) -> Vec<TaskStatus> {
    events(m, conn)
        .into_iter()
        .filter_map(|e| e.update.map(|u| u.status))
        .collect()
}

#[test]
fn a_silent_agent_goes_unreachable_and_comes_back_running_for_a_partition_aware_framework() {
    let mut m = master();
    let a = register_agent(&mut m, 100, "127.0.0.2");
    let sub = partition_aware(&mut m);
    pong(&mut m, at(0), &a);
    let snap = run_task(&mut m, at(1), &sub, &a, "t1");
    // Pings go out every 5 s; the agent stops answering after t=1 (its RUNNING update).
    m.tick(at(75));
    assert!(
        updates(&mut m, 1).is_empty(),
        "75 s of silence is not yet 15 s x 5"
    );
    m.tick(at(76));
    let ev = events(&mut m, 1);
    let s: Vec<&TaskStatus> = ev
        .iter()
        .filter_map(|e| e.update.as_ref().map(|u| &u.status))
        .collect();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].state, TaskState::Unreachable);
    assert_eq!(s[0].reason.as_deref(), Some("REASON_AGENT_REMOVED"));
    assert!(ev.iter().any(|e| e.kind == EventType::Failure));
    assert_eq!(m.view().state()["unreachable_slaves"], 1);
    m.audit().unwrap();
    // Reconciliation answers TASK_UNREACHABLE, implicitly and explicitly.
    m.call(
        at(77),
        Some(&sub.stream_id),
        call(&sub.framework_id, json!({"type": "RECONCILE"})),
    )
    .unwrap();
    assert_eq!(updates(&mut m, 1)[0].state, TaskState::Unreachable);
    // It comes back with the task: the task is RUNNING again and nothing is killed.
    m.agent_register(
        at(90),
        101,
        reg_at("127.0.0.2", Some(a.0.clone()), vec![snap]),
    )
    .unwrap();
    let outs = m.take_outputs();
    assert!(!outs.iter().any(|o| matches!(
        o,
        Output::ToAgent {
            message: MasterToAgent::KillTask { .. },
            ..
        }
    )));
    let back: Vec<TaskStatus> = outs
        .into_iter()
        .filter_map(|o| match o {
            Output::ToFramework { event, .. } => event.update.map(|u| u.status),
            _ => None,
        })
        .collect();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].state, TaskState::Running);
    assert_eq!(m.view().state()["unreachable_slaves"], 0);
    assert_eq!(m.view().tasks()["tasks"][0]["state"], "TASK_RUNNING");
    m.audit().unwrap();
}

#[test]
fn pongs_keep_an_agent_reachable_and_an_agent_that_never_pongs_is_judged_by_its_stream() {
    let mut m = master();
    let a = register_agent(&mut m, 100, "127.0.0.2");
    register_agent(&mut m, 200, "127.0.0.3");
    let sub = partition_aware(&mut m);
    pong(&mut m, at(0), &a);
    run_task(&mut m, at(1), &sub, &a, "t1");
    for t in (10..300).step_by(10) {
        pong(&mut m, at(t), &a);
        m.tick(at(t));
    }
    // Neither the ponging agent nor the one that never answered a ping is unreachable.
    assert!(updates(&mut m, 1).is_empty());
    assert_eq!(m.view().slaves()["slaves"].as_array().unwrap().len(), 2);
    // Pings go out every 5 s.
    m.tick(at(305));
    assert!(m.take_outputs().iter().any(|o| matches!(
        o,
        Output::ToAgent {
            conn: 200,
            message: MasterToAgent::Ping
        }
    )));
}

#[test]
fn non_partition_aware_tasks_go_lost_and_are_killed_if_the_agent_returns() {
    let mut m = master();
    let a = register_agent(&mut m, 100, "127.0.0.2");
    let sub = subscribe(&mut m, 1, json!({}));
    events(&mut m, 1);
    pong(&mut m, at(0), &a);
    let snap = run_task(&mut m, at(1), &sub, &a, "t1");
    m.tick(at(80));
    let s = updates(&mut m, 1);
    assert_eq!(s[0].state, TaskState::Lost);
    assert_eq!(s[0].reason.as_deref(), Some("REASON_AGENT_REMOVED"));
    m.agent_register(
        at(90),
        101,
        reg_at("127.0.0.2", Some(a.0.clone()), vec![snap]),
    )
    .unwrap();
    assert!(m.take_outputs().iter().any(|o| matches!(o, Output::ToAgent { conn: 101, message: MasterToAgent::KillTask { task_id, .. } } if task_id.as_str() == "t1")));
    // Not adopted: it holds nothing.
    assert!(m.view().tasks()["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["state"] == "TASK_LOST"));
    m.audit().unwrap();
}

#[test]
fn marking_agents_unreachable_is_rate_limited() {
    let mut m = Master::new(
        Config {
            agent_removal_interval: Some(Duration::from_secs(60)),
            ..Config::new(std::net::Ipv4Addr::LOCALHOST, 5050, 7)
        },
        at(0),
    );
    let agents: Vec<_> = (0..5)
        .map(|i| register_agent(&mut m, 100 + i, &format!("127.0.0.{}", i + 2)))
        .collect();
    for a in &agents {
        pong(&mut m, at(0), a);
    }
    // Two of five go silent (40%: not "most"); the others keep answering.
    for t in (5..=200).step_by(5) {
        for a in &agents[2..] {
            pong(&mut m, at(t), a);
        }
        m.tick(at(t));
        let unreachable = m.view().state()["unreachable_slaves"].as_u64().unwrap();
        let expected = match t {
            0..=74 => 0,
            75..=134 => 1,
            _ => 2,
        };
        assert_eq!(unreachable, expected, "at t={t}");
    }
}

#[test]
fn when_most_agents_fall_silent_at_once_the_master_marks_none() {
    let mut m = master();
    let agents: Vec<_> = (0..3)
        .map(|i| register_agent(&mut m, 100 + i, &format!("127.0.0.{}", i + 2)))
        .collect();
    let sub = partition_aware(&mut m);
    run_task(&mut m, at(0), &sub, &agents[0], "t1");
    let host = m.view().tasks()["tasks"][0]["slave_id"]
        .as_str()
        .unwrap()
        .to_string();
    // All answer a ping a little apart, then fall silent, as when the master itself is cut
    // off.
    for (i, a) in agents.iter().enumerate() {
        pong(&mut m, at_ms(1_000 * i as u64), a);
    }
    for t in (5..=600).step_by(5) {
        m.tick(at(t));
    }
    assert!(updates(&mut m, 1).is_empty());
    assert_eq!(m.view().state()["unreachable_slaves"], 0);
    // The master's link comes back: the agents without the task answer, the one with it
    // stays silent and is marked.
    for a in agents.iter().filter(|a| a.0.as_str() != host) {
        pong(&mut m, at(601), a);
    }
    m.tick(at(606));
    assert_eq!(updates(&mut m, 1)[0].state, TaskState::Unreachable);
    // A single silent agent is never "most agents": with one agent it is marked too.
    let mut m = master();
    let a = register_agent(&mut m, 100, "127.0.0.2");
    pong(&mut m, at(0), &a);
    m.tick(at(76));
    assert_eq!(m.view().state()["unreachable_slaves"], 1);
}

#[test]
fn an_unreachable_agent_past_the_max_age_is_gone_and_its_tasks_are_killed_on_return() {
    let mut m = Master::new(
        Config {
            registry_max_agent_age: Duration::from_secs(1000),
            ..Config::new(std::net::Ipv4Addr::LOCALHOST, 5050, 7)
        },
        at(0),
    );
    let a = register_agent(&mut m, 100, "127.0.0.2");
    let sub = partition_aware(&mut m);
    pong(&mut m, at(0), &a);
    let snap = run_task(&mut m, at(1), &sub, &a, "t1");
    m.tick(at(76));
    let first = updates(&mut m, 1);
    assert_eq!(first[0].state, TaskState::Unreachable);
    m.tick(at(1076));
    // Not acknowledged, so the TASK_UNREACHABLE comes again (same uuid) meanwhile.
    assert_eq!(updates(&mut m, 1), first);
    // Forgotten: reconciliation says unknown.
    let body = json!({"type": "RECONCILE", "reconcile": {"tasks": [{"task_id": {"value": "t1"}}]}});
    m.call(
        at(1077),
        Some(&sub.stream_id),
        call(&sub.framework_id, body),
    )
    .unwrap();
    assert_eq!(updates(&mut m, 1)[0].state, TaskState::Unknown);
    m.agent_register(
        at(1100),
        101,
        reg_at("127.0.0.2", Some(a.0.clone()), vec![snap]),
    )
    .unwrap();
    assert!(m.take_outputs().iter().any(|o| matches!(o, Output::ToAgent { message: MasterToAgent::KillTask { task_id, .. }, .. } if task_id.as_str() == "t1")));
    m.audit().unwrap();
}

/// Applies every `Persist` output to `reg` and returns the rest.
fn persist(m: &mut Master, reg: &mut registry::Snapshot) -> Vec<Output> {
    let mut rest = Vec::new();
    for o in m.take_outputs() {
        match o {
            Output::Persist(w) => reg.apply(&w),
            o => rest.push(o),
        }
    }
    rest
}

#[test]
fn a_restarted_master_recovers_from_its_registry_and_agents_and_frameworks_come_back() {
    let mut m = master();
    let a = register_agent(&mut m, 100, "127.0.0.2");
    let sub = subscribe(
        &mut m,
        1,
        json!({"capabilities": [{"type": "PARTITION_AWARE"}], "failover_timeout": 3600.0}),
    );
    let snap = run_task(&mut m, at(1), &sub, &a, "t1");
    // What the writes so far left in the registry (the helpers above drained them).
    let reg = m.registry_snapshot();
    assert_eq!(reg.tasks.len(), 1);
    assert_eq!(reg.tasks[0].state, TaskState::Running);
    assert_eq!(reg.agents.len(), 1);
    assert_eq!(reg.frameworks.len(), 1);
    // kill -9 and restart at t=100, from the JSON the store keeps.
    let json = serde_json::to_string(&reg).unwrap();
    let mut m = Master::recover(
        Config::new(std::net::Ipv4Addr::LOCALHOST, 5050, 8),
        at(100),
        serde_json::from_str(&json).unwrap(),
    );
    m.audit().unwrap();
    // The framework re-subscribes with its ID and reconciles at once: RUNNING.
    let mut info = json!({"user": "u", "name": "fw", "failover_timeout": 3600.0,
        "capabilities": [{"type": "PARTITION_AWARE"}]});
    info["id"] = json!({"value": sub.framework_id.as_str()});
    let s: Subscribe = serde_json::from_value(json!({"framework_info": info})).unwrap();
    let sub2 = m
        .subscribe(at(101), 2, Some(sub.framework_id.clone()), s)
        .unwrap();
    assert_eq!(sub2.framework_id, sub.framework_id);
    m.call(
        at(101),
        Some(&sub2.stream_id),
        call(&sub.framework_id, json!({"type": "RECONCILE"})),
    )
    .unwrap();
    let s = updates(&mut m, 2);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].state, TaskState::Running);
    // The agent re-registers with its task: nothing is killed, lost or announced.
    m.agent_register(
        at(102),
        101,
        reg_at("127.0.0.2", Some(a.0.clone()), vec![snap]),
    )
    .unwrap();
    let outs = m.take_outputs();
    assert!(outs.iter().all(|o| !matches!(
        o,
        Output::ToAgent {
            message: MasterToAgent::KillTask { .. } | MasterToAgent::ShutdownFramework { .. },
            ..
        }
    )));
    assert!(updates(&mut m, 2).is_empty());
    assert_eq!(m.view().tasks()["tasks"][0]["state"], "TASK_RUNNING");
    m.audit().unwrap();
}

#[test]
fn failover_deadlines_survive_a_master_restart() {
    let mut m = master();
    let a = register_agent(&mut m, 100, "127.0.0.2");
    let sub = subscribe(&mut m, 1, json!({"failover_timeout": 100.0}));
    events(&mut m, 1);
    run_task(&mut m, at(1), &sub, &a, "t1");
    let mut reg = m.registry_snapshot();
    m.framework_disconnected(at(10), 1);
    persist(&mut m, &mut reg);
    assert_eq!(reg, m.registry_snapshot());
    // Restart at t=50: the framework must still go at t=110, not at 50 + 100.
    let mut m = Master::recover(
        Config::new(std::net::Ipv4Addr::LOCALHOST, 5050, 8),
        at(50),
        reg.clone(),
    );
    m.agent_register(at(51), 101, reg_at("127.0.0.2", Some(a.0.clone()), vec![]))
        .unwrap();
    m.take_outputs();
    m.tick(at(109));
    assert_eq!(
        m.view().frameworks()["frameworks"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    m.tick(at(111));
    assert_eq!(
        m.view().frameworks()["frameworks"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    // A removed framework may not come back, after another restart either.
    persist(&mut m, &mut reg);
    let mut m = Master::recover(
        Config::new(std::net::Ipv4Addr::LOCALHOST, 5050, 9),
        at(200),
        reg,
    );
    let mut info = json!({"user": "u", "name": "fw"});
    info["id"] = json!({"value": sub.framework_id.as_str()});
    let s: Subscribe = serde_json::from_value(json!({"framework_info": info})).unwrap();
    assert!(matches!(
        m.subscribe(at(201), 3, Some(sub.framework_id.clone()), s),
        Err(CallError::Forbidden(_))
    ));
}

#[test]
fn a_scheduler_that_re_subscribes_in_time_keeps_its_tasks_and_one_that_does_not_loses_them() {
    let mut m = master();
    let a = register_agent(&mut m, 100, "127.0.0.2");
    let sub = subscribe(&mut m, 1, json!({"failover_timeout": 60.0}));
    events(&mut m, 1);
    run_task(&mut m, at(1), &sub, &a, "t1");
    m.framework_disconnected(at(10), 1);
    m.tick(at(60));
    let mut info = json!({"user": "u", "name": "fw", "failover_timeout": 60.0});
    info["id"] = json!({"value": sub.framework_id.as_str()});
    let s: Subscribe = serde_json::from_value(json!({"framework_info": info})).unwrap();
    m.subscribe(at(65), 2, Some(sub.framework_id.clone()), s)
        .unwrap();
    m.tick(at(200));
    assert!(!m.take_outputs().iter().any(|o| matches!(
        o,
        Output::ToAgent {
            message: MasterToAgent::KillTask { .. } | MasterToAgent::ShutdownFramework { .. },
            ..
        }
    )));
    assert_eq!(m.view().tasks()["tasks"][0]["state"], "TASK_RUNNING");
    m.framework_disconnected(at(210), 2);
    m.tick(at(269));
    assert!(!m.take_outputs().iter().any(|o| matches!(
        o,
        Output::ToAgent {
            message: MasterToAgent::ShutdownFramework { .. },
            ..
        }
    )));
    m.tick(at(270));
    assert!(m.take_outputs().iter().any(|o| matches!(
        o,
        Output::ToAgent {
            message: MasterToAgent::ShutdownFramework { .. },
            ..
        }
    )));
    assert_eq!(
        m.view().frameworks()["completed_frameworks"][0]["TASK_KILLED"],
        1
    );
}

// --- Master-generated updates: uuid, outbox, resends, acknowledgements (issue #5) ---

/// A partition-aware framework with a long failover timeout.
const PA_FAILOVER: &str =
    r#"{"capabilities": [{"type": "PARTITION_AWARE"}], "failover_timeout": 3600.0}"#;

/// Subscribes again on `conn` with the framework's ID (and the options of `PA_FAILOVER`).
fn resubscribe(m: &mut Master, now: Now, conn: ConnId, framework_id: &FrameworkId) -> Subscription {
    let mut info: serde_json::Value = serde_json::from_str(PA_FAILOVER).unwrap();
    info["user"] = json!("u");
    info["name"] = json!("fw");
    info["id"] = json!({"value": framework_id.as_str()});
    let s: Subscribe = serde_json::from_value(json!({"framework_info": info})).unwrap();
    m.subscribe(now, conn, Some(framework_id.clone()), s)
        .unwrap()
}

fn ack_call(sub: &Subscription, agent_id: &AgentId, status: &TaskStatus) -> Call {
    call(
        &sub.framework_id,
        json!({"type": "ACKNOWLEDGE", "acknowledge": {"agent_id": agent_id,
            "task_id": status.task_id, "uuid": status.uuid.clone().unwrap()}}),
    )
}

fn acks_to_agents(outs: &[Output]) -> usize {
    outs.iter()
        .filter(|o| {
            matches!(
                o,
                Output::ToAgent {
                    message: MasterToAgent::AckStatusUpdate { .. },
                    ..
                }
            )
        })
        .count()
}

fn framework_updates(outs: &[Output], conn: ConnId) -> Vec<TaskStatus> {
    outs.iter()
        .filter_map(|o| match o {
            Output::ToFramework { conn: c, event } if *c == conn => {
                event.update.as_ref().map(|u| u.status.clone())
            }
            _ => None,
        })
        .collect()
}

/// A partition-aware framework runs `t1` on an agent that answers pings; the framework
/// disconnects at t=10 and the agent falls silent, so at t=76 the master marks it
/// unreachable while nobody listens.
fn unreachable_while_disconnected() -> (
    Master,
    (AgentId, String),
    Subscription,
    mantle_api::internal::TaskSnapshot,
) {
    let mut m = master();
    let a = register_agent(&mut m, 100, "127.0.0.2");
    let sub = subscribe(&mut m, 1, serde_json::from_str(PA_FAILOVER).unwrap());
    events(&mut m, 1);
    pong(&mut m, at(0), &a);
    let snap = run_task(&mut m, at(1), &sub, &a, "t1");
    m.framework_disconnected(at(10), 1);
    m.take_outputs();
    m.tick(at(76));
    assert_eq!(m.view().state()["unreachable_slaves"], 1);
    assert!(updates(&mut m, 1).is_empty(), "nobody is connected");
    (m, a, sub, snap)
}

#[test]
fn a_master_generated_update_has_a_uuid_and_is_resent_until_acknowledged() {
    let (mut m, a, sub, _) = unreachable_while_disconnected();
    // It waits in the outbox, with a uuid.
    let pending = m.registry_snapshot().updates;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].status.state, TaskState::Unreachable);
    let uuid = pending[0].status.uuid.clone().expect("a uuid");
    // The framework comes back: SUBSCRIBED, then the update it missed.
    let sub2 = resubscribe(&mut m, at(80), 2, &sub.framework_id);
    let ev = events(&mut m, 2);
    assert_eq!(ev[0].kind, EventType::Subscribed);
    let missed: Vec<TaskStatus> = ev
        .iter()
        .filter_map(|e| e.update.clone().map(|u| u.status))
        .collect();
    assert_eq!(missed.len(), 1);
    assert_eq!(missed[0].state, TaskState::Unreachable);
    assert_eq!(missed[0].uuid.as_deref(), Some(uuid.as_str()));
    assert_eq!(missed[0].agent_id.as_ref(), Some(&a.0));
    assert_eq!(missed[0].source.as_deref(), Some("SOURCE_MASTER"));
    assert_eq!(missed[0].reason.as_deref(), Some("REASON_AGENT_REMOVED"));
    // Reconciliation answers stay plain Mesos: no uuid, nothing to acknowledge.
    m.call(
        at(81),
        Some(&sub2.stream_id),
        call(&sub.framework_id, json!({"type": "RECONCILE"})),
    )
    .unwrap();
    let r = updates(&mut m, 2);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].state, TaskState::Unreachable);
    assert!(r[0].uuid.is_none());
    // Unacknowledged, it comes again after 10 s, then after 20 s.
    m.tick(at(89));
    assert!(updates(&mut m, 2).is_empty());
    m.tick(at(90));
    assert_eq!(updates(&mut m, 2), missed);
    m.tick(at(109));
    assert!(updates(&mut m, 2).is_empty());
    m.tick(at(110));
    assert_eq!(updates(&mut m, 2), missed);
    // And to every new subscription.
    let sub3 = resubscribe(&mut m, at(111), 3, &sub.framework_id);
    assert_eq!(updates(&mut m, 3), missed);
    // The acknowledgement is the master's: it goes to no agent, and the update is gone.
    m.call(
        at(112),
        Some(&sub3.stream_id),
        ack_call(&sub3, &a.0, &missed[0]),
    )
    .unwrap();
    let outs = m.take_outputs();
    assert_eq!(acks_to_agents(&outs), 0);
    assert!(outs.iter().any(
        |o| matches!(o, Output::Persist(registry::Write::RemoveUpdate(_, t)) if t.as_str() == "t1")
    ));
    assert!(m.registry_snapshot().updates.is_empty());
    for t in [130, 200, 1000] {
        m.tick(at(t));
        assert!(
            updates(&mut m, 3).is_empty(),
            "resent at t={t} after its ack"
        );
    }
    resubscribe(&mut m, at(1001), 4, &sub.framework_id);
    assert!(updates(&mut m, 4).is_empty());
    m.audit().unwrap();
}

#[test]
fn a_newer_word_on_a_task_replaces_its_pending_master_update() {
    let (mut m, a, sub, snap) = unreachable_while_disconnected();
    // The agent returns with the task while the framework is still away: the master's
    // RUNNING (agent re-registered) replaces the TASK_UNREACHABLE nobody acknowledged.
    m.agent_register(
        at(90),
        101,
        reg_at("127.0.0.2", Some(a.0.clone()), vec![snap]),
    )
    .unwrap();
    let stream = m
        .take_outputs()
        .into_iter()
        .find_map(|o| match o {
            Output::ToAgent {
                message: MasterToAgent::Registered { stream_id, .. },
                ..
            } => Some(stream_id),
            _ => None,
        })
        .expect("REGISTERED");
    let a = (a.0, stream);
    let pending = m.registry_snapshot().updates;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].status.state, TaskState::Running);
    assert_eq!(
        pending[0].status.reason.as_deref(),
        Some("REASON_AGENT_REREGISTERED")
    );
    // So the returning framework hears only the latest state.
    let sub2 = resubscribe(&mut m, at(91), 2, &sub.framework_id);
    let back = updates(&mut m, 2);
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].state, TaskState::Running);
    assert!(back[0].uuid.is_some());
    // Acknowledged with a connected agent: still not forwarded to it.
    m.call(
        at(92),
        Some(&sub2.stream_id),
        ack_call(&sub2, &a.0, &back[0]),
    )
    .unwrap();
    let outs = m.take_outputs();
    assert_eq!(acks_to_agents(&outs), 0);
    assert!(m.registry_snapshot().updates.is_empty());
    // An update from the agent also supersedes a pending master update: the agent retries
    // its own until acknowledged.
    m.agent_disconnected(at(100), 101);
    m.take_outputs();
    m.tick(at(176));
    let lost = updates(&mut m, 2);
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].state, TaskState::Unreachable);
    let (a2, _) = m
        .agent_register(at(180), 102, reg_at("127.0.0.2", Some(a.0.clone()), vec![]))
        .unwrap();
    // Not reported: TASK_GONE replaces TASK_UNREACHABLE.
    let outs = m.take_outputs();
    let gone = framework_updates(&outs, 2);
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].state, TaskState::Gone);
    let pending = m.registry_snapshot().updates;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].status.state, TaskState::Gone);
    assert_eq!(a2, a.0);
    // Until acknowledged, explicit reconciliation answers that end (not "unknown"), without
    // a uuid.
    let body = json!({"type": "RECONCILE", "reconcile": {"tasks": [
        {"task_id": {"value": "t1"}, "agent_id": {"value": a.0.as_str()}}]}});
    m.call(
        at(180),
        Some(&sub2.stream_id),
        call(&sub.framework_id, body),
    )
    .unwrap();
    let r = updates(&mut m, 2);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].state, TaskState::Gone);
    assert_eq!(r[0].reason.as_deref(), Some("REASON_RECONCILIATION"));
    assert!(r[0].uuid.is_none());
    // The stale ack of the replaced TASK_UNREACHABLE consumes nothing.
    m.call(
        at(181),
        Some(&sub2.stream_id),
        ack_call(&sub2, &a.0, &lost[0]),
    )
    .unwrap();
    m.take_outputs();
    assert_eq!(m.registry_snapshot().updates.len(), 1);
    m.audit().unwrap();
}

#[test]
fn an_update_from_the_agent_supersedes_a_pending_master_update() {
    let mut m = master();
    let a = register_agent(&mut m, 100, "127.0.0.2");
    let sub = subscribe(&mut m, 1, serde_json::from_str(PA_FAILOVER).unwrap());
    events(&mut m, 1);
    pong(&mut m, at(0), &a);
    let snap = run_task(&mut m, at(1), &sub, &a, "t1");
    m.tick(at(76));
    assert_eq!(updates(&mut m, 1)[0].state, TaskState::Unreachable);
    // The agent returns with the task: the master's RUNNING is pending (not acknowledged).
    let (_, stream) = m
        .agent_register(
            at(80),
            101,
            reg_at("127.0.0.2", Some(a.0.clone()), vec![snap]),
        )
        .unwrap();
    assert_eq!(updates(&mut m, 1)[0].state, TaskState::Running);
    assert_eq!(m.registry_snapshot().updates.len(), 1);
    // Then the task finishes: the agent's update supersedes the master's, which is not sent
    // again (it would follow TASK_FINISHED with TASK_RUNNING).
    let mut st = TaskStatus::new(TaskId::new("t1"), TaskState::Finished);
    st.uuid = Some("AAAAAAAAAAAAAAAAAAAAAA==".into());
    send(
        &mut m,
        at(81),
        &(a.0.clone(), stream),
        AgentToMaster::StatusUpdate {
            framework_id: sub.framework_id.clone(),
            status: st,
        },
    );
    let seen = updates(&mut m, 1);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].state, TaskState::Finished);
    assert!(m.registry_snapshot().updates.is_empty());
    for t in [100, 200, 1000] {
        m.tick(at(t));
        assert!(updates(&mut m, 1).is_empty(), "resent at t={t}");
    }
    m.audit().unwrap();
}

#[test]
fn unacknowledged_master_updates_survive_a_master_restart() {
    let mut m = master();
    let a = register_agent(&mut m, 100, "127.0.0.2");
    let sub = subscribe(&mut m, 1, serde_json::from_str(PA_FAILOVER).unwrap());
    events(&mut m, 1);
    pong(&mut m, at(0), &a);
    run_task(&mut m, at(1), &sub, &a, "t1");
    let mut reg = m.registry_snapshot();
    m.framework_disconnected(at(10), 1);
    m.tick(at(76));
    persist(&mut m, &mut reg);
    assert_eq!(reg, m.registry_snapshot());
    assert_eq!(reg.updates.len(), 1);
    let uuid = reg.updates[0].status.uuid.clone().expect("a uuid");
    // kill -9 and restart from what the store holds (through JSON, as the store keeps it).
    let json = serde_json::to_string(&reg).unwrap();
    let mut m = Master::recover(
        Config::new(std::net::Ipv4Addr::LOCALHOST, 5050, 8),
        at(100),
        serde_json::from_str(&json).unwrap(),
    );
    assert!(persist(&mut m, &mut reg).is_empty());
    assert_eq!(reg, m.registry_snapshot());
    // Nothing goes out before the framework is back.
    m.tick(at(200));
    persist(&mut m, &mut reg);
    let sub2 = resubscribe(&mut m, at(201), 2, &sub.framework_id);
    let outs = persist(&mut m, &mut reg);
    let missed = framework_updates(&outs, 2);
    assert_eq!(missed.len(), 1);
    assert_eq!(missed[0].state, TaskState::Unreachable);
    assert_eq!(missed[0].uuid.as_deref(), Some(uuid.as_str()));
    // Acknowledged: removed from the registry, not forwarded.
    m.call(
        at(202),
        Some(&sub2.stream_id),
        ack_call(&sub2, &a.0, &missed[0]),
    )
    .unwrap();
    let outs = persist(&mut m, &mut reg);
    assert_eq!(acks_to_agents(&outs), 0);
    assert!(reg.updates.is_empty());
    assert_eq!(reg, m.registry_snapshot());
    // After another restart there is nothing to send.
    let mut m = Master::recover(
        Config::new(std::net::Ipv4Addr::LOCALHOST, 5050, 9),
        at(300),
        reg.clone(),
    );
    resubscribe(&mut m, at(301), 3, &sub.framework_id);
    assert!(updates(&mut m, 3).is_empty());
    m.audit().unwrap();
}

#[test]
fn rates_parse_as_mesos_writes_them() {
    assert_eq!(parse_rate("1/10mins"), Ok(Duration::from_secs(600)));
    assert_eq!(parse_rate("2/1hrs"), Ok(Duration::from_secs(1800)));
    assert_eq!(parse_rate("1/20secs"), Ok(Duration::from_secs(20)));
    assert!(parse_rate("0/1mins").is_err());
    assert!(parse_rate("1/10years").is_err());
    assert!(parse_rate("x").is_err());
}

/// Found by the simulator (seed 1859): an ACCEPT lost on the way left its offers held for
/// ever, and the framework waited for resources that never came back.
#[test]
fn unanswered_offers_are_rescinded_after_the_offer_timeout() {
    let mut config = Config::new(std::net::Ipv4Addr::LOCALHOST, 5050, 7);
    config.offer_timeout = Some(Duration::from_secs(60));
    let mut m = Master::new(config, at(0));
    register_agent(&mut m, 100, "127.0.0.2");
    subscribe(&mut m, 1, json!({}));
    let _ = events(&mut m, 1);
    let offer = first_offer(&mut m, 1);
    assert!(m.next_deadline() <= Duration::from_secs(61));
    // Nobody answers it.
    m.tick(at(60));
    assert!(events(&mut m, 1)
        .iter()
        .all(|e| e.kind != EventType::Rescind));
    m.tick(at(61));
    let ev = events(&mut m, 1);
    let rescinded: Vec<&OfferId> = ev
        .iter()
        .filter_map(|e| e.rescind.as_ref().map(|r| &r.offer_id))
        .collect();
    assert_eq!(rescinded, vec![&offer.id], "rescinded");
    // The resources come back under a new offer.
    let again = ev
        .iter()
        .chain(events(&mut m, 1).iter())
        .filter_map(|e| e.offers.as_ref())
        .flat_map(|o| o.offers.iter())
        .map(|o| o.id.clone())
        .collect::<Vec<_>>();
    let again = if again.is_empty() {
        m.tick(at(62));
        events(&mut m, 1)
            .into_iter()
            .filter_map(|e| e.offers)
            .flat_map(|o| o.offers)
            .map(|o| o.id)
            .collect()
    } else {
        again
    };
    assert_eq!(again.len(), 1, "offered again");
    assert_ne!(again[0], offer.id);
}

/// Found by the simulator (seed 2591): a delayed copy of an acknowledged TASK_STARTING
/// arrived after TASK_RUNNING and was forwarded, so the framework saw the task go back.
#[test]
fn a_late_copy_of_an_acknowledged_update_is_not_forwarded_again() {
    let mut m = master();
    let (agent_id, agent_stream) = register_agent(&mut m, 100, "127.0.0.2");
    let sub = subscribe(&mut m, 1, json!({}));
    let offer = first_offer(&mut m, 1);
    m.call(
        at(1),
        Some(&sub.stream_id),
        call(&sub.framework_id, launch(&offer, "t1", 1.0)),
    )
    .unwrap();
    m.take_outputs();
    let update = |m: &mut Master, state: TaskState, uuid: &str| {
        let mut st = TaskStatus::new(TaskId::new("t1"), state);
        st.uuid = Some(uuid.to_string());
        m.agent_message(
            at(2),
            AgentEnvelope {
                agent_id: agent_id.clone(),
                stream_id: agent_stream.clone(),
                message: AgentToMaster::StatusUpdate {
                    framework_id: sub.framework_id.clone(),
                    status: st,
                },
            },
        )
        .unwrap();
    };
    let ack = |m: &mut Master, uuid: &str| {
        let c = call(
            &sub.framework_id,
            json!({"type": "ACKNOWLEDGE", "acknowledge": {"agent_id": agent_id, "task_id": {"value": "t1"}, "uuid": uuid}}),
        );
        m.call(at(2), Some(&sub.stream_id), c).unwrap();
    };
    let starting = "AAAAAAAAAAAAAAAAAAAAAA==";
    let running = "AQEBAQEBAQEBAQEBAQEBAQ==";
    update(&mut m, TaskState::Starting, starting);
    ack(&mut m, starting);
    update(&mut m, TaskState::Running, running);
    ack(&mut m, running);
    m.take_outputs();
    // The late copy: not forwarded, the master's state stays RUNNING, and the agent is told
    // again that it was acknowledged.
    update(&mut m, TaskState::Starting, starting);
    let outs = m.take_outputs();
    assert!(
        !outs
            .iter()
            .any(|o| matches!(o, Output::ToFramework { event, .. } if event.update.is_some())),
        "{outs:?}"
    );
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::ToAgent { message: MasterToAgent::AckStatusUpdate { uuid, .. }, .. } if uuid == starting
    )));
    assert_eq!(
        m.view().state()["frameworks"][0]["tasks"][0]["state"],
        "TASK_RUNNING"
    );
    // An unacknowledged update is still forwarded on every retry.
    let killed = "AgICAgICAgICAgICAgICAg==";
    update(&mut m, TaskState::Killed, killed);
    update(&mut m, TaskState::Killed, killed);
    assert_eq!(
        events(&mut m, 1)
            .iter()
            .filter(|e| e.update.is_some())
            .count(),
        2
    );
    // Once its end is acknowledged the task is complete, and a late copy of any earlier
    // update (seed 7577: a RUNNING after KILLED) is not forwarded either.
    ack(&mut m, killed);
    m.take_outputs();
    update(&mut m, TaskState::Running, running);
    assert!(events(&mut m, 1).iter().all(|e| e.update.is_none()));
}

/// A framework that subscribes again (its scheduler restarted or failed over) has the agents
/// running its tasks resend what it missed (Mesos `UpdateFrameworkMessage`).
#[test]
fn a_resubscribing_framework_has_its_agents_resend_pending_updates() {
    let mut m = master();
    register_agent(&mut m, 100, "127.0.0.2");
    register_agent(&mut m, 101, "127.0.0.3");
    let sub = subscribe(&mut m, 1, json!({"failover_timeout": 60.0}));
    m.tick(at(1));
    let ev = events(&mut m, 1);
    let offer = ev
        .into_iter()
        .filter_map(|e| e.offers)
        .flat_map(|o| o.offers)
        .find(|o| o.hostname == "127.0.0.2")
        .expect("an offer of the first agent");
    m.call(
        at(1),
        Some(&sub.stream_id),
        call(&sub.framework_id, launch(&offer, "t1", 1.0)),
    )
    .unwrap();
    m.framework_disconnected(at(2), 1);
    m.take_outputs();
    subscribe(
        &mut m,
        2,
        json!({"id": {"value": sub.framework_id.as_str()}, "failover_timeout": 60.0}),
    );
    let outs = m.take_outputs();
    let told: Vec<ConnId> = outs
        .iter()
        .filter_map(|o| match o {
            Output::ToAgent {
                conn,
                message: MasterToAgent::UpdateFramework { framework_id },
            } if *framework_id == sub.framework_id => Some(*conn),
            _ => None,
        })
        .collect();
    assert_eq!(told, vec![100], "only the agent running its task: {outs:?}");
}
