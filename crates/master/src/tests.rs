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
