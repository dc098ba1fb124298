//! The docker containerizer against a real Docker daemon: the one `scripts/install-test-deps.sh`
//! starts on its own socket, with a busybox image imported locally. Without it these tests fail
//! and say how to start it; they never skip.

use crate::harness::{launch, sandbox_of, Cluster, Scheduler};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const SOCK: &str = "/run/mantle-test-docker/docker.sock";
const IMAGE: &str = "mantle-test/busybox:latest";

fn docker(args: &[&str]) -> String {
    let out = std::process::Command::new("docker")
        .arg("-H")
        .arg(format!("unix://{SOCK}"))
        .args(args)
        .output()
        .expect("the docker CLI (Debian's docker.io) is needed; run scripts/install-test-deps.sh");
    assert!(
        out.status.success(),
        "docker {args:?}: {}\n(start the test daemon with scripts/install-test-deps.sh)",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Containers (running or not) labelled as the test agent's.
fn containers_of(label: &str) -> Vec<String> {
    docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=mantle.agent={label}"),
        "--format",
        "{{.Names}}",
    ])
    .lines()
    .map(str::to_string)
    .collect()
}

fn docker_task(offer: &Value, id: &str, cmd: &str, image: &str) -> Value {
    json!({"name": id, "task_id": {"value": id}, "agent_id": offer["agent_id"],
           "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                         {"name": "mem", "type": "SCALAR", "scalar": {"value": 64}}],
           "command": {"value": cmd, "environment": {"variables": [{"name": "GREETING", "value": "hello-from-docker"}]}},
           "labels": {"labels": [{"key": "team", "value": "infra"}]},
           "container": {"type": "DOCKER", "docker": {"image": image, "network": "HOST"}}})
}

async fn wait_until(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn docker_tasks_run_log_fail_and_are_killed_and_orphans_are_removed() {
    docker(&["image", "inspect", IMAGE]);
    let mut cluster = Cluster::start(
        1,
        &["--containerizers", "docker,mesos", "--docker-socket", SOCK],
    );
    let label = format!("agent-127.0.0.2-{}", cluster.agent_port);
    let mut s = Scheduler::subscribe(
        &cluster.master,
        json!({"user": "root", "name": "docker-test"}),
    )
    .await;
    let offer = s.next("OFFERS", 10).await["offers"]["offers"][0].clone();
    let tasks = vec![
        docker_task(
            &offer,
            "web",
            "echo $GREETING in $MESOS_SANDBOX; exec sleep 1000",
            IMAGE,
        ),
        docker_task(&offer, "exits", "echo bye >&2; exit 3", IMAGE),
        docker_task(&offer, "no-image", "true", "mantle-test/no-such-image:1"),
    ];
    assert_eq!(s.call(launch(&offer, tasks)).await.0, 202);
    let mut ended = s.await_ends(&["exits", "no-image"], 60).await;
    let exits = ended.remove("exits").unwrap();
    assert_eq!(exits["state"], "TASK_FAILED", "{exits}");
    assert_eq!(exits["message"], "Command exited with status 3", "{exits}");
    let sandbox = sandbox_of(&cluster, "127.0.0.2", "exits");
    let stderr = std::fs::read_to_string(format!("{sandbox}/stderr")).unwrap();
    assert!(stderr.lines().any(|l| l == "bye"), "{stderr}");
    let missing = ended.remove("no-image").unwrap();
    assert_eq!(missing["state"], "TASK_FAILED", "{missing}");
    assert_eq!(
        missing["reason"], "REASON_CONTAINER_LAUNCH_FAILED",
        "{missing}"
    );
    assert!(
        missing["message"]
            .as_str()
            .unwrap()
            .contains("Failed to pull image 'mantle-test/no-such-image:1'"),
        "{missing}"
    );

    // The long-running one runs as a labelled container with its log in the sandbox.
    let web_sandbox = sandbox_of(&cluster, "127.0.0.2", "web");
    wait_until("web's greeting is in its sandbox", 20, || {
        std::fs::read_to_string(format!("{web_sandbox}/stdout"))
            .is_ok_and(|t| t.contains("hello-from-docker in /mnt/mesos/sandbox"))
    })
    .await;
    let running = containers_of(&label);
    assert_eq!(running.len(), 1, "{running:?}");
    let inspect: Value = serde_json::from_str(&docker(&["inspect", &running[0]])).unwrap();
    assert_eq!(inspect[0]["Config"]["Labels"]["team"], "infra", "{inspect}");
    assert_eq!(inspect[0]["HostConfig"]["NetworkMode"], "host");
    assert_eq!(inspect[0]["HostConfig"]["Memory"], 64 << 20);

    // A kill stops and removes the container.
    s.call(json!({"type": "KILL", "kill": {"task_id": {"value": "web"}}}))
        .await;
    let killed = s.await_ends(&["web"], 30).await;
    assert_eq!(killed["web"]["state"], "TASK_KILLED", "{killed:?}");
    wait_until("web's container is removed", 20, || {
        containers_of(&label).is_empty()
    })
    .await;

    // An orphan: a container labelled as this agent's that no executor knows of. A restarted
    // agent removes it.
    let orphan = format!("mantle-orphan-{}", std::process::id());
    docker(&[
        "run",
        "-d",
        "--name",
        &orphan,
        "--network",
        "host",
        "--label",
        &format!("mantle.agent={label}"),
        IMAGE,
        "sleep",
        "1000",
    ]);
    assert_eq!(containers_of(&label), vec![orphan.clone()]);
    cluster.restart_agent(0);
    wait_until("the orphan is removed", 20, || {
        containers_of(&label).is_empty()
    })
    .await;
}

/// Waits for an UPDATE of `id` whose `healthy` is `healthy` (acknowledging every update);
/// fails on an update of `id` in any state but TASK_RUNNING before it.
async fn await_health(s: &mut Scheduler, id: &str, healthy: bool, secs: u64) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let ev = tokio::time::timeout_at(deadline, s.events.recv())
            .await
            .unwrap_or_else(|_| panic!("{id} was not reported healthy={healthy} within {secs}s"))
            .expect("stream open");
        if ev["type"] != "UPDATE" {
            continue;
        }
        let st = ev["update"]["status"].clone();
        s.ack(&st).await;
        if st["task_id"]["value"] != id {
            continue;
        }
        if st["healthy"] == healthy {
            return st;
        }
        assert!(
            ["TASK_STARTING", "TASK_RUNNING"].contains(&st["state"].as_str().unwrap_or("")),
            "{id} ended before it was reported healthy={healthy}: {st}"
        );
    }
}

#[tokio::test]
async fn command_health_checks_of_docker_tasks_run_inside_the_container() {
    docker(&["image", "inspect", IMAGE]);
    // The file the check tests exists only in the container's own filesystem, so a check run
    // on the host could never pass.
    assert!(!std::path::Path::new("/inside-only").exists());
    let cluster = Cluster::start(
        1,
        &["--containerizers", "docker,mesos", "--docker-socket", SOCK],
    );
    let label = format!("agent-127.0.0.2-{}", cluster.agent_port);
    let mut s = Scheduler::subscribe(
        &cluster.master,
        json!({"user": "root", "name": "docker-health-test"}),
    )
    .await;
    let offer = s.next("OFFERS", 10).await["offers"]["offers"][0].clone();
    // The task makes /inside-only in its container and removes it once the test opens a gate
    // in the sandbox (seen inside at $MESOS_SANDBOX).
    let mut watched = docker_task(
        &offer,
        "watched",
        "touch /inside-only; while [ ! -e $MESOS_SANDBOX/gate ]; do sleep 0.1; done; \
         rm /inside-only; exec sleep 1000",
        IMAGE,
    );
    // The check also sees the task's environment and runs in the sandbox's path inside.
    watched["health_check"] = json!({"type": "COMMAND", "command": {"value":
        "test -f /inside-only && test \"$GREETING\" = hello-from-docker && test \"$(pwd)\" = /mnt/mesos/sandbox"},
        "delay_seconds": 0, "interval_seconds": 0.5, "timeout_seconds": 5,
        "grace_period_seconds": 30, "consecutive_failures": 3});
    // A check that never ends in time: the timeout fails it, so the task is killed.
    let mut slow = docker_task(&offer, "slow", "exec sleep 1000", IMAGE);
    slow["health_check"] = json!({"type": "COMMAND", "command": {"value": "sleep 100"},
        "delay_seconds": 0, "interval_seconds": 0.5, "timeout_seconds": 1,
        "grace_period_seconds": 0, "consecutive_failures": 2});
    assert_eq!(s.call(launch(&offer, vec![watched, slow])).await.0, 202);

    let st = await_health(&mut s, "watched", true, 60).await;
    assert_eq!(st["state"], "TASK_RUNNING", "{st}");
    assert_eq!(
        st["reason"], "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED",
        "{st}"
    );
    let sandbox = sandbox_of(&cluster, "127.0.0.2", "watched");
    std::fs::write(format!("{sandbox}/gate"), "").unwrap();
    let st = await_health(&mut s, "watched", false, 30).await;
    assert_eq!(st["state"], "TASK_RUNNING", "{st}");
    assert_eq!(
        st["reason"], "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED",
        "{st}"
    );
    // Three failures in a row kill it, and the slow one was killed by its timeouts.
    let ended = s.await_ends(&["watched", "slow"], 60).await;
    for id in ["watched", "slow"] {
        let st = &ended[id];
        assert_eq!(st["state"], "TASK_KILLED", "{id}: {st}");
        assert_eq!(st["healthy"], false, "{id}: {st}");
        assert_eq!(
            st["message"], "Task killed after failing its health check too many times in a row",
            "{id}: {st}"
        );
    }
    wait_until("the containers are removed", 30, || {
        containers_of(&label).is_empty()
    })
    .await;
}
