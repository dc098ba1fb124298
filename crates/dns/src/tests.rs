//! Record generation and answering over hand-built cluster states: Mesos-DNS's names for a
//! Marathon task, health and state filtering, hostile names, and event application.

use crate::query::{answer, hosts_json, services_json, QType, RData, Rcode};
use crate::records::{generate, hash, valid_name, Config};
use crate::state::{AgentEntry, Applied, ClusterState, FrameworkEntry};
use mantle_api::mesos::TaskStatus;
use mantle_api::operator::{Event, Task};
use mantle_model::{AgentId, FrameworkId, TaskState};
use proptest::prelude::*;
use serde_json::json;

fn status(id: &str, state: TaskState, healthy: Option<bool>) -> TaskStatus {
    serde_json::from_value(json!({
        "task_id": {"value": id}, "state": state, "timestamp": 1.0,
        "healthy": healthy,
    }))
    .unwrap()
}

fn task(name: &str, id: &str, agent: &str, port: u64, discovery: bool) -> Task {
    let mut v = json!({
        "name": name, "task_id": {"value": id}, "framework_id": {"value": "F1"},
        "agent_id": {"value": agent}, "state": "TASK_RUNNING",
        "resources": [{"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": port, "end": port}]}}],
        "statuses": [status(id, TaskState::Running, None)],
    });
    if discovery {
        v["discovery"] = json!({"visibility": "FRAMEWORK", "name": name,
            "ports": {"ports": [{"number": port, "protocol": "tcp", "name": "http"}]}});
    }
    serde_json::from_value(v).unwrap()
}

fn cluster(tasks: Vec<Task>) -> ClusterState {
    let mut s = ClusterState::default();
    s.frameworks.insert(
        FrameworkId::new("F1"),
        FrameworkEntry {
            name: "marathon".into(),
            hostname: Some("127.0.0.1".into()),
        },
    );
    for i in 0..3 {
        s.agents.insert(
            AgentId::new(format!("M-S{i}")),
            AgentEntry {
                hostname: format!("127.0.0.{}", i + 2),
                port: Some(5051),
            },
        );
    }
    for t in tasks {
        s.tasks
            .insert((t.framework_id.clone(), t.task_id.clone()), t);
    }
    s
}

fn config() -> Config {
    let mut c = Config::new("mesos");
    c.leader = Some("127.0.0.1:5050".parse().unwrap());
    c.listener = Some("127.0.0.1".parse().unwrap());
    c
}

#[test]
fn task_hash_matches_mesos_dns() {
    // records/generator_test.go: hashString("test") == "iffe9".
    assert_eq!(hash("test"), "iffe9");
}

#[test]
fn a_marathon_task_gets_mesos_dns_names() {
    let id = "prod_web.instance-1._app.1";
    let rs = generate(
        &cluster(vec![task("web.prod", id, "M-S1", 31001, true)]),
        &config(),
    );
    let h = hash(id);
    let ip = "127.0.0.3".parse().unwrap();
    for name in [
        "web-prod.marathon.mesos.".to_string(),
        "web-prod.marathon.slave.mesos.".into(),
        format!("web-prod-{h}-s1.marathon.mesos."),
        format!("web-prod-{h}-s1.marathon.slave.mesos."),
    ] {
        assert!(rs.a[&name].contains(&ip), "{name}");
    }
    let srv = |n: &str| {
        rs.srv[n]
            .iter()
            .map(|t| format!("{}:{}", t.host, t.port))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        srv("_web-prod._tcp.marathon.mesos."),
        [format!("web-prod-{h}-s1.marathon.mesos.:31001")]
    );
    assert_eq!(
        srv("_http._web-prod._tcp.marathon.mesos."),
        [format!("web-prod-{h}-s1.marathon.mesos.:31001")]
    );
    assert_eq!(
        srv("_web-prod._udp.marathon.slave.mesos."),
        [format!("web-prod-{h}-s1.marathon.slave.mesos.:31001")]
    );
    // With discovery info and a tcp port there is no _udp record under the framework.
    assert!(!rs.srv.contains_key("_web-prod._udp.marathon.mesos."));
    for name in [
        "leader.mesos.",
        "master.mesos.",
        "master0.mesos.",
        "marathon.mesos.",
        "ns1.mesos.",
    ] {
        assert!(rs.a.contains_key(name), "{name}");
    }
    assert_eq!(rs.a["slave.mesos."].len(), 3);
    assert!(rs.srv.contains_key("_leader._tcp.mesos."));
    assert!(rs.srv.contains_key("_slave._tcp.mesos."));
    let e = rs.enumerate_json();
    assert_eq!(e["frameworks"][0]["name"], "marathon");
    assert_eq!(e["frameworks"][0]["tasks"][0]["id"], id);
}

#[test]
fn without_discovery_info_port_resources_give_both_protocols() {
    let rs = generate(
        &cluster(vec![task("db", "t1", "M-S0", 31000, false)]),
        &config(),
    );
    for n in [
        "_db._tcp.marathon.mesos.",
        "_db._udp.marathon.mesos.",
        "_db._tcp.marathon.slave.mesos.",
    ] {
        assert!(rs.srv.contains_key(n), "{n}");
    }
}

#[test]
fn only_running_healthy_tasks_on_known_agents_are_served() {
    let mut starting = task("a", "t1", "M-S0", 31000, false);
    starting.state = TaskState::Starting;
    let mut sick = task("b", "t2", "M-S0", 31001, false);
    sick.statuses
        .push(status("t2", TaskState::Running, Some(false)));
    let mut healthy = task("c", "t3", "M-S0", 31002, false);
    healthy
        .statuses
        .push(status("t3", TaskState::Running, Some(true)));
    let orphan = task("d", "t4", "M-S9", 31003, false);
    let rs = generate(&cluster(vec![starting, sick, healthy, orphan]), &config());
    assert!(!rs.a.contains_key("a.marathon.mesos."));
    assert!(!rs.a.contains_key("b.marathon.mesos."));
    assert!(rs.a.contains_key("c.marathon.mesos."));
    assert!(!rs.a.contains_key("d.marathon.mesos."));
}

#[test]
fn netinfo_addresses_win_over_the_agent_address() {
    let mut t = task("n", "t1", "M-S0", 31000, false);
    let mut s = status("t1", TaskState::Running, None);
    s.timestamp = Some(5.0);
    s.extra.insert(
        "container_status".into(),
        json!({"network_infos": [{"ip_addresses": [{"ip_address": "10.0.0.7"}, {"ip_address": "not-an-ip"}]}]}),
    );
    t.statuses.push(s);
    let rs = generate(&cluster(vec![t]), &config());
    let a: Vec<String> = rs.a["n.marathon.mesos."]
        .iter()
        .map(|i| i.to_string())
        .collect();
    assert_eq!(a, ["10.0.0.7"]);
    assert_eq!(rs.a["n.marathon.slave.mesos."].len(), 1);
}

#[test]
fn answers_follow_mesos_dns_with_nxdomain_and_refusals() {
    let rs = generate(
        &cluster(vec![task("web.prod", "t1", "M-S0", 31000, true)]),
        &config(),
    );
    let c = config();
    let a = answer(&rs, &c, "WEB-PROD.marathon.mesos", QType::A, 7);
    assert_eq!(a.rcode, Rcode::NoError);
    assert_eq!(a.answers.len(), 1);
    let srv = answer(&rs, &c, "_web-prod._tcp.marathon.mesos.", QType::Srv, 7);
    assert!(matches!(
        srv.answers[0].data,
        RData::Srv { port: 31000, .. }
    ));
    assert_eq!(srv.additional.len(), 1, "glue A for the target");
    let nx = answer(&rs, &c, "nothing.marathon.mesos.", QType::A, 7);
    assert_eq!(nx.rcode, Rcode::NxDomain);
    assert!(matches!(nx.authority[0].data, RData::Soa { serial: 7, .. }));
    let nodata = answer(&rs, &c, "web-prod.marathon.mesos.", QType::Aaaa, 7);
    assert_eq!((nodata.rcode, nodata.answers.len()), (Rcode::NoError, 0));
    assert_eq!(answer(&rs, &c, "mesos.", QType::Soa, 7).answers.len(), 1);
    assert_eq!(answer(&rs, &c, "mesos.", QType::Ns, 7).answers.len(), 1);
    assert_eq!(
        answer(&rs, &c, "mesos.", QType::Any, 7).rcode,
        Rcode::Refused
    );
    assert_eq!(
        hosts_json(&rs, "web-prod.marathon.mesos")[0]["ip"],
        "127.0.0.2"
    );
    assert_eq!(
        services_json(&rs, "_web-prod._tcp.marathon.mesos.")[0]["port"],
        "31000"
    );
    assert_eq!(hosts_json(&rs, "x.mesos")[0]["ip"], "");
}

#[test]
fn events_add_update_and_remove_tasks() {
    let mut s = cluster(vec![]);
    let t = task("web", "t1", "M-S0", 31000, false);
    assert_eq!(s.apply(&Event::task_added(t)), Applied::Changed);
    assert!(generate(&s, &config())
        .a
        .contains_key("web.marathon.mesos."));
    let sick = status("t1", TaskState::Running, Some(false));
    s.apply(&Event::task_updated(
        FrameworkId::new("F1"),
        sick,
        TaskState::Running,
    ));
    assert!(!generate(&s, &config())
        .a
        .contains_key("web.marathon.mesos."));
    let done = status("t1", TaskState::Killed, None);
    s.apply(&Event::task_updated(
        FrameworkId::new("F1"),
        done,
        TaskState::Killed,
    ));
    assert!(s.tasks.is_empty());
    assert_eq!(s.apply(&Event::heartbeat()), Applied::Unchanged);
    s.apply(&Event::agent_removed(AgentId::new("M-S0")));
    assert_eq!(s.agents.len(), 2);
}

proptest! {
    #[test]
    fn hostile_names_never_produce_invalid_records(
        task_name in ".{0,120}",
        framework in ".{0,80}",
        agent_id in ".{0,80}",
        port_name in ".{0,80}",
    ) {
        let mut t = task(&task_name, "t1", &agent_id, 31000, true);
        t.extra["discovery"]["ports"]["ports"][0]["name"] = json!(port_name);
        let mut s = cluster(vec![t]);
        s.agents.insert(AgentId::new(agent_id.clone()), AgentEntry { hostname: "127.0.0.9".into(), port: None });
        if let Some(f) = s.frameworks.get_mut(&FrameworkId::new("F1")) { f.name = framework; }
        let rs = generate(&s, &config());
        for name in rs.a.keys().chain(rs.srv.keys()) {
            prop_assert!(valid_name(name), "{name:?}");
        }
        for t in rs.srv.values().flatten() {
            prop_assert!(valid_name(&t.host), "{:?}", t.host);
        }
    }
}

#[test]
fn generation_is_deterministic() {
    let s = cluster(vec![
        task("b", "t2", "M-S1", 31001, true),
        task("a", "t1", "M-S0", 31000, false),
    ]);
    assert_eq!(generate(&s, &config()), generate(&s.clone(), &config()));
}
