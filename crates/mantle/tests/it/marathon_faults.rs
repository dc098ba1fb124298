//! The service scheduler killed with SIGKILL mid-deployment (issue #5): a master, two agents
//! and `mantle marathon` as processes. Five apps are acknowledged (201), a rolling restart is
//! held in progress by a health check that only passes once the test opens a gate, and a
//! six-instance app is posted right before the kill. After a restart on the same store every
//! acknowledged app is there unchanged, no task that ran is killed or launched twice, and both
//! deployments finish with exactly their instances.

use crate::harness::{free_port, Cluster};
use crate::marathon::Scheduler;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

async fn api(method: reqwest::Method, url: &str, body: Option<Value>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut req = client.request(method, url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn get(url: &str) -> Value {
    let (status, v) = api(reqwest::Method::GET, url, None).await;
    assert_eq!(status, 200, "GET {url}: {v}");
    v
}

/// Polls `f` every 100 ms for up to `secs`; panics with `what` and the logs otherwise.
async fn until<T, F, Fut>(cluster: &Cluster, secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An app's definition as `GET /v2/apps/{id}` shows it, without the fields that describe its
/// tasks and deployments rather than the definition.
fn definition(app: &Value) -> Value {
    let mut d = app.clone();
    if let Some(m) = d.as_object_mut() {
        for k in [
            "tasks",
            "tasksRunning",
            "tasksStaged",
            "tasksHealthy",
            "tasksUnhealthy",
            "deployments",
            "lastTaskFailure",
            "readinessCheckResults",
            "taskStats",
        ] {
            m.remove(k);
        }
    }
    d
}

/// The master's non-terminal tasks: task id -> state.
async fn master_tasks(cluster: &Cluster) -> BTreeMap<String, String> {
    let v = get(&format!("{}/master/tasks", cluster.master)).await;
    v["tasks"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|t| {
            matches!(
                t["state"].as_str(),
                Some("TASK_STAGING" | "TASK_STARTING" | "TASK_RUNNING" | "TASK_KILLING")
            )
        })
        .filter_map(|t| Some((t["id"].as_str()?.to_string(), t["state"].as_str()?.into())))
        .collect()
}

/// Task ids of `app_id` (Marathon's `prod_web.instance-...` form) among `tasks`.
fn of_app<'a>(tasks: impl IntoIterator<Item = &'a String>, app_id: &str) -> BTreeSet<String> {
    let prefix = format!("{}.", app_id.trim_start_matches('/').replace('/', "_"));
    tasks
        .into_iter()
        .filter(|t| t.starts_with(&prefix))
        .cloned()
        .collect()
}

fn sleeper(id: &str, instances: u32) -> Value {
    json!({"id": id, "cmd": "sleep 1000", "instances": instances, "cpus": 0.05, "mem": 16,
           "portDefinitions": []})
}

#[tokio::test]
async fn a_scheduler_killed_mid_deployment_resumes_it_and_loses_no_acknowledged_app() {
    let cluster = Cluster::start(2, &[]);
    let gates = cluster.dir.path().join("gates");
    std::fs::create_dir_all(&gates).unwrap();
    let port = free_port("127.0.0.1");
    let mut sched = Scheduler::start(&cluster, port);
    let url = sched.url.clone();

    // Five acknowledged apps.
    let small: Vec<String> = (0..5).map(|i| format!("/faults/app{i}")).collect();
    for (i, id) in small.iter().enumerate() {
        let (status, body) = api(
            reqwest::Method::POST,
            &format!("{url}/v2/apps"),
            Some(sleeper(id, 1 + (i as u32 % 2))),
        )
        .await;
        assert_eq!(status, 201, "POST {id}: {body}");
    }
    // A health-checked app: its tasks are healthy once `gates/<GATE>` exists, so the test
    // decides when a deployment of it may finish.
    std::fs::write(gates.join("v1"), "").unwrap();
    let check = format!("test -f {}/$GATE", gates.display());
    let roll = json!({
        "id": "/faults/roll", "cmd": "sleep 1000", "instances": 4, "cpus": 0.05, "mem": 16,
        "portDefinitions": [], "env": {"GATE": "v1"},
        "healthChecks": [{"protocol": "COMMAND", "command": {"value": check},
                          "gracePeriodSeconds": 300, "intervalSeconds": 1, "timeoutSeconds": 5,
                          "delaySeconds": 0, "maxConsecutiveFailures": 0}],
        "upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.5}
    });
    let (status, body) = api(reqwest::Method::POST, &format!("{url}/v2/apps"), Some(roll)).await;
    assert_eq!(status, 201, "POST /faults/roll: {body}");
    until(&cluster, 40, "the first deployments to finish", || async {
        let d = get(&format!("{url}/v2/deployments")).await;
        let healthy = get(&format!("{url}/v2/apps/faults/roll")).await["app"]["tasksHealthy"]
            .as_u64()
            .unwrap_or(0);
        (d.as_array().is_some_and(Vec::is_empty) && healthy == 4).then_some(())
    })
    .await;
    let old_roll = of_app(master_tasks(&cluster).await.keys(), "/faults/roll");
    assert_eq!(old_roll.len(), 4);

    // A rolling restart onto GATE=v2, whose gate stays shut: two old tasks are killed (the
    // minimum health capacity keeps two), four new ones run but are never healthy.
    let (status, body) = api(
        reqwest::Method::PUT,
        &format!("{url}/v2/apps/faults/roll"),
        Some(json!({"env": {"GATE": "v2"}})),
    )
    .await;
    assert_eq!(status, 200, "PUT /faults/roll: {body}");
    let roll_deployment = body["deploymentId"].as_str().unwrap().to_string();
    let new_roll = until(&cluster, 30, "the rolling restart to stall", || async {
        let tasks = master_tasks(&cluster).await;
        let running: Vec<&String> = tasks
            .iter()
            .filter(|(_, s)| *s == "TASK_RUNNING")
            .map(|(t, _)| t)
            .collect();
        let roll = of_app(running, "/faults/roll");
        let new: BTreeSet<String> = roll.difference(&old_roll).cloned().collect();
        (new.len() == 4 && roll.len() == 6).then_some(new)
    })
    .await;
    let deployments = get(&format!("{url}/v2/deployments")).await;
    assert!(
        deployments
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["id"] == roll_deployment.as_str()),
        "the rolling restart is in progress: {deployments}"
    );

    // One more acknowledged app, posted right before the kill: its launch is under way.
    let (status, body) = api(
        reqwest::Method::POST,
        &format!("{url}/v2/apps"),
        Some(sleeper("/faults/big", 6)),
    )
    .await;
    assert_eq!(status, 201, "POST /faults/big: {body}");
    let mut acknowledged = BTreeMap::new();
    for id in small
        .iter()
        .map(String::as_str)
        .chain(["/faults/roll", "/faults/big"])
    {
        let app = get(&format!("{url}/v2/apps{id}")).await;
        acknowledged.insert(id.to_string(), definition(&app["app"]));
    }
    let running_before: BTreeSet<String> = master_tasks(&cluster)
        .await
        .into_iter()
        .filter(|(_, s)| s == "TASK_RUNNING")
        .map(|(t, _)| t)
        .collect();
    sched.kill9();
    eprintln!(
        "killed the scheduler with {} tasks running and /faults/big deploying",
        running_before.len()
    );
    // While it is down, the tasks keep running: the master holds them for the failover.
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The new process reconciles every 2 s as well (Marathon's --reconciliation_interval),
    // so the checks below also cover periodic reconciliation rounds.
    let restarted = Instant::now();
    let _sched = Scheduler::start_with(&cluster, port, &["--reconciliation-interval", "2000"]);
    let info = get(&format!("{url}/v2/info")).await;
    assert_eq!(info["marathon_config"]["reconciliation_interval"], 2000);
    assert_eq!(info["marathon_config"]["task_launch_timeout"], 300_000);
    for (id, before) in &acknowledged {
        let app = get(&format!("{url}/v2/apps{id}")).await;
        assert_eq!(&definition(&app["app"]), before, "{id} survived unchanged");
    }
    let deployments = get(&format!("{url}/v2/deployments")).await;
    assert!(
        deployments
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["id"] == roll_deployment.as_str()),
        "the rolling restart is still in progress after the restart: {deployments}"
    );

    // /faults/big finishes its launch; nothing else moves while the gate is shut.
    until(&cluster, 30, "/faults/big to run 6 tasks", || async {
        let app = get(&format!("{url}/v2/apps/faults/big")).await;
        let deps = get(&format!("{url}/v2/deployments")).await;
        let big_deploying = deps.as_array().unwrap().iter().any(|d| {
            d["affectedApps"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == "/faults/big"))
        });
        (app["app"]["tasksRunning"] == 6 && !big_deploying).then_some(())
    })
    .await;
    let big_done = restarted.elapsed();
    // Let a periodic reconciliation round and any stray kill play out before judging.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let tasks = master_tasks(&cluster).await;
    for t in &running_before {
        assert_eq!(
            tasks.get(t).map(String::as_str),
            Some("TASK_RUNNING"),
            "{t} ran before the kill and must still run\n{}",
            cluster.logs()
        );
    }
    assert_eq!(
        of_app(tasks.keys(), "/faults/roll"),
        old_roll
            .iter()
            .filter(|t| running_before.contains(*t))
            .cloned()
            .chain(new_roll.iter().cloned())
            .collect::<BTreeSet<_>>(),
        "the stalled rolling restart neither launched nor killed anything more"
    );

    // Open the gate: the resumed rolling restart finishes.
    let opened = Instant::now();
    std::fs::write(gates.join("v2"), "").unwrap();
    until(&cluster, 30, "the rolling restart to finish", || async {
        let deps = get(&format!("{url}/v2/deployments")).await;
        deps.as_array().is_some_and(Vec::is_empty).then_some(())
    })
    .await;
    let roll_done = opened.elapsed();

    // Every app runs exactly its instances, and the master agrees, task for task.
    let tasks = until(&cluster, 20, "the old tasks to end", || async {
        let tasks = master_tasks(&cluster).await;
        (of_app(tasks.keys(), "/faults/roll") == new_roll).then_some(tasks)
    })
    .await;
    let mut expected_total = 0;
    for (id, def) in &acknowledged {
        let n = def["instances"].as_u64().unwrap();
        expected_total += n as usize;
        let app = get(&format!("{url}/v2/apps{id}")).await;
        assert_eq!(app["app"]["tasksRunning"], n, "{id}: {app}");
        let live = of_app(tasks.keys(), id);
        assert_eq!(live.len() as u64, n, "{id}: the master runs {live:?}");
        for t in &live {
            assert_eq!(tasks[t], "TASK_RUNNING", "{t}");
        }
    }
    assert_eq!(tasks.len(), expected_total, "no stray tasks: {tasks:?}");
    for t in running_before.iter().filter(|t| !old_roll.contains(*t)) {
        assert!(tasks.contains_key(t), "{t} was killed");
    }
    let (_, roll) = api(
        reqwest::Method::GET,
        &format!("{url}/v2/apps/faults/roll"),
        None,
    )
    .await;
    assert_eq!(roll["app"]["tasksHealthy"], 4, "{roll}");
    assert_eq!(
        cluster.state()["frameworks"].as_array().map(Vec::len),
        Some(1),
        "the scheduler failed over to its framework id"
    );
    eprintln!(
        "restart -> /faults/big deployed: {big_done:?}; gate opened -> rolling restart done: {roll_done:?}"
    );
}
