//! The launch loop and every scheduler call against a real master and agents, including the
//! error paths, with a scheduler written here.

use crate::harness::{launch, sandbox_of, task, Cluster, Scheduler};
use serde_json::{json, Value};

fn fw() -> Value {
    json!({"user": "root", "name": "it-scheduler", "capabilities": [{"type": "TASK_KILLING_STATE"}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_launches_runs_finishes_and_its_output_is_in_the_sandbox() {
    // Goal: the whole loop (subscribe, offer, accept, executor, updates, ack) with real
    // processes; method: launch `echo`, follow updates to FINISHED, read the sandbox stdout.
    let cluster = Cluster::start(2, &[]);
    let mut s = Scheduler::subscribe(&cluster.master, fw()).await;
    let offers = s.next("OFFERS", 10).await;
    let offer = offers["offers"]["offers"][0].clone();
    assert_eq!(offer["url"]["path"], "/slave(1)");
    assert!(
        offer.get("allocation_info").is_none(),
        "non-MULTI_ROLE frameworks get no allocation_info"
    );
    let (code, body) = s
        .call(launch(
            &offer,
            vec![task(
                &offer,
                "t1",
                "echo hello-from-$MESOS_TASK_ID; sleep 0.2",
                0.5,
            )],
        ))
        .await;
    assert_eq!((code, body.as_str()), (202, ""));
    let starting = s.await_state("t1", "TASK_STARTING", 20).await;
    assert_eq!(starting["source"], "SOURCE_EXECUTOR");
    assert_eq!(starting["agent_id"], offer["agent_id"]);
    s.await_state("t1", "TASK_RUNNING", 20).await;
    let fin = s.await_state("t1", "TASK_FINISHED", 20).await;
    assert!(fin["uuid"].as_str().is_some());
    let ip = offer["hostname"].as_str().unwrap();
    let dir = sandbox_of(&cluster, ip, "t1");
    let read = crate::harness::plain::blocking_get_json(&format!(
        "http://{ip}:{}/files/read?path={dir}/stdout&offset=0",
        cluster.agent_port
    ));
    assert!(
        read["data"].as_str().unwrap().contains("hello-from-t1"),
        "{read}"
    );
    // Once acknowledged, the task is completed on the master and its resources are free.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let st = cluster.state();
        let f = &st["frameworks"][0];
        if f["completed_tasks"].as_array().unwrap().len() == 1 && f["used_resources"]["cpus"] == 0.0
        {
            assert_eq!(f["completed_tasks"][0]["state"], "TASK_FINISHED");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "task not completed: {st}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_sends_killing_then_killed_and_launch_group_runs_together() {
    let cluster = Cluster::start(1, &[]);
    let mut s = Scheduler::subscribe(&cluster.master, fw()).await;
    let offer = s.next("OFFERS", 10).await["offers"]["offers"][0].clone();
    let group = json!({"type": "ACCEPT", "accept": {"offer_ids": [offer["id"]], "operations": [
        {"type": "LAUNCH", "launch": {"task_infos": [task(&offer, "sleeper", "sleep 100", 0.5)]}},
        {"type": "LAUNCH_GROUP", "launch_group": {
            "executor": {"type": "DEFAULT", "executor_id": {"value": "group-exec"},
                         "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}}]},
            "task_group": {"tasks": [task(&offer, "g1", "sleep 0.3", 0.2), task(&offer, "g2", "sleep 0.3", 0.2)]}}}
    ]}});
    assert_eq!(s.call(group).await.0, 202);
    s.await_state("sleeper", "TASK_RUNNING", 20).await;
    let (code, _) = s
        .call(json!({"type": "KILL", "kill": {"task_id": {"value": "sleeper"}}}))
        .await;
    assert_eq!(code, 202);
    let mut seen = std::collections::BTreeMap::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while seen.get("sleeper") != Some(&"TASK_KILLED".to_string())
        || seen.get("g1") != Some(&"TASK_FINISHED".to_string())
        || seen.get("g2") != Some(&"TASK_FINISHED".to_string())
    {
        let ev = tokio::time::timeout_at(deadline, s.events.recv())
            .await
            .expect("updates in time")
            .unwrap();
        if ev["type"] != "UPDATE" {
            continue;
        }
        let st = ev["update"]["status"].clone();
        s.ack(&st).await;
        let id = st["task_id"]["value"].as_str().unwrap().to_string();
        let state = st["state"].as_str().unwrap().to_string();
        if id == "sleeper" && state == "TASK_KILLED" {
            assert_eq!(
                seen.get("sleeper").map(String::as_str),
                Some("TASK_KILLING"),
                "KILLING comes first for TASK_KILLING_STATE frameworks"
            );
        }
        seen.insert(id, state);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_calls_get_mesos_errors_and_change_nothing() {
    // Goal: every malformed call gets its documented 4xx with a message naming the problem
    // and the master's books do not move; method: compare state before and after.
    let cluster = Cluster::start(1, &[]);
    let mut s = Scheduler::subscribe(&cluster.master, fw()).await;
    let offer = s.next("OFFERS", 10).await["offers"]["offers"][0].clone();
    let before = cluster.state();
    let url = format!("{}/api/v1/scheduler", cluster.master);
    let c = &s.client;
    let fid = json!({"value": s.framework_id});
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (c.get(&url), 405, "Expecting one of { 'POST' }"),
        (c.post(&url).body("{}"), 400, "Expecting 'Content-Type' to be present"),
        (c.post(&url).header("Content-Type", "application/x-protobuf").body("x"), 415, "protobuf"),
        (c.post(&url).header("Content-Type", "text/plain").body("x"), 415, "application/json"),
        (c.post(&url).header("Content-Type", "application/json").body("{nope"), 400, "Failed to parse body into JSON"),
        (c.post(&url).header("Content-Type", "application/json").body(r#"{"type":"REVIVE","framework_id":{"value":5}}"#), 400, "Failed to convert JSON"),
        (c.post(&url).header("Content-Type", "application/json").json(&json!({"type": "REVIVE", "framework_id": fid})), 400, "Mesos-Stream-Id"),
        (c.post(&url).header("Content-Type", "application/json").header("Mesos-Stream-Id", "stale").json(&json!({"type": "REVIVE", "framework_id": fid})), 400, "didn't match"),
        (c.post(&url).header("Content-Type", "application/json").header("Mesos-Stream-Id", &s.stream_id).json(&json!({"type": "REVIVE", "framework_id": {"value": "ghost"}})), 400, "Framework cannot be found"),
        (c.post(&url).header("Content-Type", "application/json").header("Mesos-Stream-Id", &s.stream_id).json(&json!({"type": "KILL", "framework_id": fid})), 400, "Expecting 'kill' to be present"),
        (c.post(&url).header("Content-Type", "application/json").header("Mesos-Stream-Id", &s.stream_id).json(&json!({"type": "MESSAGE", "framework_id": fid, "message": {"agent_id": {"value": "nope"}, "executor_id": {"value": "e"}, "data": ""}})), 400, "Unknown agent ID 'nope'"),
        (c.post(&url).header("Content-Type", "application/json").header("Mesos-Stream-Id", &s.stream_id).json(&json!({"type": "ACKNOWLEDGE", "framework_id": fid, "acknowledge": {"agent_id": offer["agent_id"], "task_id": {"value": "t"}, "uuid": "!!"}})), 400, "uuid"),
        (c.post(format!("{}/no/such/route", cluster.master)), 404, "No such endpoint"),
        (c.post(&url).header("Content-Type", "application/json").header("Accept", "application/x-protobuf").json(&json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "u", "name": "n"}}})), 406, "Accept"),
        (c.post(&url).header("Content-Type", "application/json").json(&json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "u", "name": "n", "roles": ["a"]}}})), 400, "MULTI_ROLE"),
    ];
    for (i, (req, code, needle)) in cases.into_iter().enumerate() {
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        assert_eq!(status, code, "case {i}: {body}");
        assert!(
            body.contains(needle),
            "case {i}: {body:?} should mention {needle:?}"
        );
    }
    // An oversized body is refused from its Content-Length alone. A raw socket, so the client
    // is not still writing when the server answers and closes (which a client may see as a reset).
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = cluster.master.trim_start_matches("http://").to_string();
        let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST /api/v1/scheduler HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{{",
            5 * 1024 * 1024
        );
        sock.write_all(head.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 512];
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), sock.read(&mut buf))
            .await
            .expect("no answer to an oversized body")
            .unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    }
    // Invalid launches: TASK_ERROR from the master for bad resources and a bad ID, TASK_LOST
    // for a stale offer. The valid offer is spent by the first accept.
    let bad = |id: &str, cpus: f64| task(&offer, id, "true", cpus);
    let mut neg = bad("negative", 1.0);
    neg["resources"][0]["scalar"]["value"] = json!(-1.0);
    assert_eq!(
        s.call(launch(
            &offer,
            vec![neg, bad("bad/id", 0.1), bad("too-much", 99.0)]
        ))
        .await
        .0,
        202
    );
    for (id, state) in [
        ("negative", "TASK_ERROR"),
        ("bad/id", "TASK_ERROR"),
        ("too-much", "TASK_ERROR"),
    ] {
        let st = s.await_state(id, state, 5).await;
        assert_eq!(st["source"], "SOURCE_MASTER");
        assert_eq!(st["reason"], "REASON_TASK_INVALID");
        assert!(st.get("uuid").is_none());
    }
    assert_eq!(s.call(launch(&offer, vec![bad("stale", 0.1)])).await.0, 202);
    let st = s.await_state("stale", "TASK_LOST", 5).await;
    assert_eq!(st["reason"], "REASON_INVALID_OFFERS");
    // The master is healthy and nothing leaked: no tasks, nothing used.
    let (code, _) = crate::harness::plain::blocking_get(&format!("{}/health", cluster.master));
    assert_eq!(code, 200);
    let after = cluster.state();
    assert_eq!(after["frameworks"][0]["tasks"], json!([]));
    assert_eq!(
        after["frameworks"][0]["used_resources"],
        before["frameworks"][0]["used_resources"]
    );
    assert_eq!(after["slaves"][0]["used_resources"]["cpus"], 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decline_filters_for_refuse_seconds_and_reconcile_and_teardown_work() {
    let cluster = Cluster::start(1, &[]);
    let mut s = Scheduler::subscribe(
        &cluster.master,
        json!({"user": "root", "name": "decliner", "capabilities": [{"type": "PARTITION_AWARE"}]}),
    )
    .await;
    let offer = s.next("OFFERS", 10).await["offers"]["offers"][0].clone();
    let declined_at = std::time::Instant::now();
    let (code, _) = s.call(json!({"type": "DECLINE", "decline": {"offer_ids": [offer["id"]], "filters": {"refuse_seconds": 2.0}}})).await;
    assert_eq!(code, 202);
    s.next("OFFERS", 10).await;
    assert!(
        declined_at.elapsed() >= std::time::Duration::from_secs(2),
        "re-offered before refuse_seconds"
    );
    // SUPPRESS stops offers; REVIVE brings them back at once.
    assert_eq!(s.call(json!({"type": "SUPPRESS"})).await.0, 202);
    let quiet = s.drain(3.0).await;
    // The outstanding offer is the only one; no new OFFERS arrive while suppressed.
    assert!(quiet.iter().all(|e| e["type"] != "OFFERS"), "{quiet:?}");
    assert_eq!(s.call(json!({"type": "REVIVE"})).await.0, 202);
    // Explicit reconciliation of an unknown task: TASK_UNKNOWN for partition-aware frameworks.
    let (code, _) = s
        .call(
            json!({"type": "RECONCILE", "reconcile": {"tasks": [{"task_id": {"value": "ghost"}}]}}),
        )
        .await;
    assert_eq!(code, 202);
    let st = s.await_state("ghost", "TASK_UNKNOWN", 5).await;
    assert_eq!(st["reason"], "REASON_RECONCILIATION");
    // UPDATE_FRAMEWORK renames it.
    let mut info = json!({"user": "root", "name": "renamed", "id": {"value": s.framework_id}, "capabilities": [{"type": "PARTITION_AWARE"}]});
    let (code, body) = s.call(json!({"type": "UPDATE_FRAMEWORK", "update_framework": {"framework_info": info.clone()}})).await;
    assert_eq!(code, 202, "{body}");
    assert_eq!(cluster.state()["frameworks"][0]["name"], "renamed");
    info["user"] = json!("someone-else");
    assert_eq!(
        s.call(json!({"type": "UPDATE_FRAMEWORK", "update_framework": {"framework_info": info}}))
            .await
            .0,
        400
    );
    // TEARDOWN ends the stream and moves the framework to completed.
    assert_eq!(s.call(json!({"type": "TEARDOWN"})).await.0, 202);
    s.next("__CLOSED__", 5).await;
    let st = cluster.state();
    assert_eq!(st["frameworks"], json!([]));
    assert_eq!(st["completed_frameworks"][0]["id"], s.framework_id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_updates_are_resent_with_the_same_uuid() {
    // The agent resends an update until it is acknowledged (retry shortened to 0.5 s).
    let cluster = Cluster::start(1, &["--status-update-retry", "0.5"]);
    let mut s = Scheduler::subscribe(&cluster.master, fw()).await;
    let offer = s.next("OFFERS", 10).await["offers"]["offers"][0].clone();
    assert_eq!(
        s.call(launch(&offer, vec![task(&offer, "r1", "sleep 30", 0.1)]))
            .await
            .0,
        202
    );
    let first = s.next("UPDATE", 20).await["update"]["status"].clone();
    assert_eq!(first["state"], "TASK_STARTING");
    // Do not acknowledge: the same update (same uuid) comes again, and nothing after it.
    let again = s.next("UPDATE", 5).await["update"]["status"].clone();
    assert_eq!(again["uuid"], first["uuid"]);
    assert_eq!(again["state"], "TASK_STARTING");
    s.ack(&again).await;
    let running = s.await_state("r1", "TASK_RUNNING", 10).await;
    assert_ne!(running["uuid"], first["uuid"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_endpoints_answer_in_mesos_shapes() {
    let cluster = Cluster::start(1, &["--attributes", "rack:a;level:3"]);
    let v = crate::harness::plain::blocking_get_json(&format!("{}/version", cluster.master));
    assert!(v["version"]
        .as_str()
        .unwrap()
        .split('.')
        .all(|p| p.parse::<u32>().is_ok()));
    for path in [
        "/state",
        "/state.json",
        "/master/state",
        "/master/state.json",
    ] {
        let st = crate::harness::plain::blocking_get_json(&format!("{}{path}", cluster.master));
        assert_eq!(
            st["slaves"][0]["attributes"],
            json!({"rack": "a", "level": 3.0})
        );
        assert_eq!(st["slaves"][0]["resources"]["ports"], "[31000-31100]");
        assert_eq!(st["orphan_tasks"], json!([]));
    }
    for (path, key) in [
        ("/master/frameworks", "frameworks"),
        ("/master/slaves", "slaves"),
        ("/master/tasks", "tasks"),
    ] {
        let st = crate::harness::plain::blocking_get_json(&format!("{}{path}", cluster.master));
        assert!(st[key].is_array(), "{path}");
    }
    for path in ["/redirect", "/master/redirect"] {
        let (code, _) = crate::harness::plain::blocking_get(&format!("{}{path}", cluster.master));
        assert_eq!(code, 307);
    }
    // The agent's /files refuse to leave the sandbox root.
    let agent = format!("http://127.0.0.2:{}", cluster.agent_port);
    for bad in [
        "/etc/passwd",
        "../../../../etc/passwd",
        "%2e%2e/%2e%2e/etc",
        "a%00b",
    ] {
        let (code, body) =
            crate::harness::plain::blocking_get(&format!("{agent}/files/read?path={bad}&offset=0"));
        assert!(code == 400 || code == 404, "{bad}: {code} {body}");
        assert!(!body.contains("root:"), "{bad} leaked");
    }
    let (code, _) =
        crate::harness::plain::blocking_get(&format!("{agent}/files/read?path=x&offset=-5"));
    assert_eq!(code, 400);
}
