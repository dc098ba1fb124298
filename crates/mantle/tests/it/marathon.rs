//! The service scheduler against a real cluster (master, two agents and `mantle marathon` as
//! processes), driven by marathon-python 0.13.0: create with health checks, bad input, a
//! `kill -9` of the scheduler that must lose nothing and restart no task, scale, kill and
//! replace, a rolling update that never drops below minimumHealthCapacity, rollback, delete;
//! then groups: dependency order, scaleBy, a multi-app PUT /v2/apps, a group update and delete;
//! then a readiness check that holds a deployment until the task says it is ready; then
//! MESOS_HTTP and COMMAND health checks run by the executor (healthy, unhealthy, replaced).

use crate::harness::{free_port, plain, task_ports, Cluster, BIN};
use crate::pymesos::{python, repo};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Scheduler {
    child: Child,
    pub url: String,
}

impl Scheduler {
    pub fn start(cluster: &Cluster, port: u16) -> Scheduler {
        Scheduler::start_with(cluster, port, &[])
    }

    /// As `start`, with `extra` flags for `mantle marathon`.
    pub fn start_with(cluster: &Cluster, port: u16, extra: &[&str]) -> Scheduler {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(cluster.dir.path().join("marathon.log"))
            .unwrap();
        let child = Command::new(BIN)
            .args([
                "marathon",
                "--master",
                &cluster.master,
                "--http-address",
                &format!("127.0.0.1:{port}"),
                "--work-dir",
            ])
            .arg(cluster.dir.path().join("marathon"))
            .args(extra)
            .env("MANTLE_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && plain::blocking_get(&format!("{url}/ping")).0 == 200
            {
                break;
            }
            assert!(Instant::now() < deadline, "mantle marathon did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        Scheduler { child, url }
    }

    /// SIGKILL (`Child::kill`), then reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs one step of `tests/py/marathon_client.py` (marathon-python) and returns its facts.
pub(crate) fn step(py: &PathBuf, cluster: &Cluster, url: &str, name: &str, args: &[&str]) -> Value {
    let out = Command::new(py)
        .arg(repo().join("crates/mantle/tests/py/marathon_client.py"))
        .arg(url)
        .arg(name)
        .args(args)
        .output()
        .expect("run marathon_client.py");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "step {name} failed:\n{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        cluster.logs()
    );
    serde_json::from_str(stdout.lines().last().unwrap_or("{}")).unwrap_or(Value::Null)
}

/// Posts `app` to the service scheduler at `url` and waits (up to 60 s) until `healthy` of
/// its tasks are healthy; its tasks then, as `/v2/apps/<id>` shows them.
pub async fn create_app_and_await_healthy(url: &str, app: &Value, healthy: u64) -> Vec<Value> {
    let client = reqwest::Client::new();
    let created = client
        .post(format!("{url}/v2/apps"))
        .json(app)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{:?}", created.text().await);
    let id = app["id"].as_str().unwrap().trim_start_matches('/');
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v: Value = client
            .get(format!("{url}/v2/apps/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["app"]["tasksHealthy"] == healthy {
            return v["app"]["tasks"].as_array().unwrap().clone();
        }
        assert!(Instant::now() < deadline, "the app never went healthy: {v}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Pids of the tasks' processes, read from the master's view of running tasks.
fn running_task_ids(cluster: &Cluster) -> Vec<String> {
    let tasks = cluster.state()["frameworks"][0]["tasks"].clone();
    let mut ids: Vec<String> = tasks
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|t| t["state"] == "TASK_RUNNING")
        .filter_map(|t| t["id"].as_str().map(str::to_string))
        .collect();
    ids.sort();
    ids
}

#[test]
fn marathon_python_drives_apps_through_their_whole_life() {
    let py = python();
    let _ports = task_ports();
    let cluster = Cluster::start(2, &[]);
    let port = free_port("127.0.0.1");
    let mut sched = Scheduler::start(&cluster, port);
    let url = sched.url.clone();

    step(&py, &cluster, &url, "create", &[]);
    let before = step(&py, &cluster, &url, "snapshot", &[]);
    assert_eq!(before["tasks"].as_array().map(Vec::len), Some(3));
    let master_before = running_task_ids(&cluster);
    assert_eq!(
        master_before.len(),
        3,
        "the master runs the same three tasks"
    );

    // kill -9 the scheduler and start it again on the same store: nothing lost, nothing restarted.
    sched.kill9();
    let mut sched = Scheduler::start(&cluster, port);
    step(&py, &cluster, &url, "wait", &["3"]);
    let after = step(&py, &cluster, &url, "snapshot", &[]);
    assert_eq!(before, after, "apps, versions and tasks survive a restart");
    assert_eq!(
        running_task_ids(&cluster),
        master_before,
        "no task was restarted"
    );
    assert_eq!(
        cluster.state()["frameworks"].as_array().map(Vec::len),
        Some(1),
        "the scheduler failed over to its framework id instead of registering anew"
    );

    step(&py, &cluster, &url, "scale", &[]);
    step(&py, &cluster, &url, "kill", &[]);
    let rolling = step(&py, &cluster, &url, "update", &[]);
    eprintln!("rolling update: {rolling}");
    step(&py, &cluster, &url, "rollback", &[]);
    step(&py, &cluster, &url, "delete", &[]);
    let groups = step(&py, &cluster, &url, "groups", &[]);
    eprintln!("groups: {groups}");
    step(&py, &cluster, &url, "readiness", &[]);
    step(&py, &cluster, &url, "mesos_health", &[]);
    sched.kill9();
}
