//! pymesos, a third-party Mesos v1 client, against a real master and agents: a scheduler that
//! launches and acknowledges 10 tasks, and a custom executor exchanging framework messages.
//! `scripts/install-test-deps.sh` installs it (idempotently); a missing install fails loudly.

use crate::harness::Cluster;
use std::path::PathBuf;
use std::process::Command;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The test venv's python, after installing the third-party clients (pymesos, marathon-python).
pub fn python() -> PathBuf {
    let status = Command::new("bash")
        .arg(repo().join("scripts/install-test-deps.sh"))
        .status()
        .expect("run install-test-deps.sh");
    assert!(
        status.success(),
        "scripts/install-test-deps.sh failed: pymesos is required for these tests"
    );
    let venv = std::env::var("MANTLE_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join("target/test-venv"));
    venv.join("bin/python")
}

fn run(cluster: &Cluster, script: &str, args: &[&str]) -> String {
    let out = Command::new(python())
        .arg(repo().join("crates/mantle/tests/py").join(script))
        .arg(format!("127.0.0.1:{}", cluster.master_port))
        .args(args)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script} failed:\n{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        cluster.logs()
    );
    stdout
}

#[test]
fn pymesos_scheduler_launches_and_acknowledges_ten_tasks() {
    let cluster = Cluster::start(2, &[]);
    let out = run(&cluster, "pymesos_scheduler.py", &["10"]);
    let line = out
        .lines()
        .find(|l| l.starts_with('{'))
        .expect("a JSON summary line");
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["finished"], 10);
    assert_eq!(v["launched"], 10);
    let st = cluster.state();
    let done: Vec<_> = st["completed_frameworks"]
        .as_array()
        .unwrap()
        .iter()
        .chain(st["frameworks"].as_array().unwrap())
        .flat_map(|f| f["completed_tasks"].as_array().unwrap().clone())
        .collect();
    assert_eq!(
        done.iter()
            .filter(|t| t["state"] == "TASK_FINISHED")
            .count(),
        10
    );
}

#[test]
fn pymesos_custom_executor_exchanges_framework_messages() {
    let cluster = Cluster::start(1, &[]);
    let out = run(&cluster, "pymesos_executor_test.py", &[]);
    assert!(out.contains(r#""echo": "echo:ping""#), "{out}");
    assert!(out.contains(r#""state": "TASK_FINISHED""#), "{out}");
}
