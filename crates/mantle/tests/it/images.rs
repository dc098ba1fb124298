//! Images in the `mesos` containerizer (`--image-providers docker`): a task whose container
//! names a Docker image runs with a root filesystem made from it, taken from a local registry
//! of `docker save` archives (the test image comes from the test Docker daemon, which
//! `scripts/install-test-deps.sh` starts; no registry is reachable). These tests need root and
//! that daemon; without them they fail, they never skip.

use crate::harness::{launch, sandbox_of, task, Cluster, Scheduler};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

const SOCK: &str = "/run/mantle-test-docker/docker.sock";

/// A registry directory holding the test image as `mantle-test/busybox:latest.tar`.
fn registry(dir: &Path) {
    std::fs::create_dir_all(dir.join("mantle-test")).unwrap();
    let out = std::process::Command::new("docker")
        .arg("-H")
        .arg(format!("unix://{SOCK}"))
        .args(["save", "mantle-test/busybox:latest", "-o"])
        .arg(dir.join("mantle-test/busybox:latest.tar"))
        .output()
        .expect("the docker CLI (Debian's docker.io) is needed; run scripts/install-test-deps.sh");
    assert!(
        out.status.success(),
        "docker save: {} (start the test daemon with scripts/install-test-deps.sh)",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn in_image(t: Value, image: &str) -> Value {
    let mut t = t;
    t["container"] =
        json!({"type": "MESOS", "mesos": {"image": {"type": "DOCKER", "docker": {"name": image}}}});
    t
}

/// The containers whose root filesystems the agent holds.
fn provisioned(cluster: &Cluster) -> Vec<String> {
    std::fs::read_dir(cluster.dir.path().join("agent0/provisioner"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_runs_in_its_image_is_checked_there_survives_an_agent_restart_and_is_cleaned_up() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "image containers mount root filesystems: run the tests as root"
    );
    let reg = tempfile::tempdir().unwrap();
    registry(reg.path());
    let reg_path = reg.path().to_str().unwrap().to_string();
    let mut cluster = Cluster::start(
        1,
        &[
            "--image-providers",
            "docker",
            "--docker-registry",
            &reg_path,
            "--isolation",
            "cgroups/cpu,cgroups/mem,namespaces/pid",
        ],
    );
    let mut s = Scheduler::subscribe(
        &cluster.master,
        json!({"user": "root", "name": "images-test", "checkpoint": true}),
    )
    .await;
    let offer = s.next("OFFERS", 10).await["offers"]["offers"][0].clone();
    let look = "ls / > \"$MESOS_SANDBOX/root.txt\"; echo \"$MESOS_SANDBOX\" > \"$MESOS_SANDBOX/where.txt\"; \
                ls /proc > \"$MESOS_SANDBOX/proc.txt\"; \
                pwd > \"$MESOS_SANDBOX/pwd.txt\"; \
                if [ -e /usr/bin/python3 ]; then echo host; else echo image; fi > \"$MESOS_SANDBOX/which.txt\"";
    let looker = in_image(task(&offer, "looker", look, 0.1), "mantle-test/busybox");
    let mut web = in_image(
        task(
            &offer,
            "web",
            "echo serving > /tmp/mark; exec sleep 1000",
            0.1,
        ),
        "mantle-test/busybox:latest",
    );
    // A COMMAND check that can pass only inside the image's root.
    web["health_check"] = json!({
        "type": "COMMAND", "command": {"value": "test -e /bin/busybox && test -e /tmp/mark && test ! -e /usr/bin/python3"},
        "delay_seconds": 0, "interval_seconds": 1, "timeout_seconds": 5,
        "grace_period_seconds": 30, "consecutive_failures": 3
    });
    let missing = in_image(
        task(&offer, "missing", "true", 0.1),
        "mantle-test/nothing:1",
    );
    assert_eq!(
        s.call(launch(&offer, vec![looker, web, missing])).await.0,
        202
    );

    let mut ended = std::collections::BTreeMap::new();
    let mut healthy = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while ended.len() < 2 || !healthy {
        let st = s
            .next_update(deadline)
            .await
            .unwrap_or_else(|| panic!("ended {ended:?}, web healthy {healthy}"));
        let id = st["task_id"]["value"].as_str().unwrap_or("").to_string();
        match st["state"].as_str().unwrap_or("") {
            "TASK_RUNNING" if id == "web" && st["healthy"] == true => healthy = true,
            "TASK_FINISHED" | "TASK_FAILED" | "TASK_KILLED" | "TASK_ERROR" | "TASK_LOST" => {
                if id == "web" {
                    let sandbox = sandbox_of(&cluster, "127.0.0.2", "web");
                    let stderr = std::fs::read_to_string(format!("{sandbox}/stderr"));
                    panic!("web ended: {st}\n{stderr:?}");
                }
                ended.insert(id, st);
            }
            _ => {}
        }
    }
    let looked = &ended["looker"];
    assert_eq!(looked["state"], "TASK_FINISHED", "{looked}");
    let sandbox = sandbox_of(&cluster, "127.0.0.2", "looker");
    let read = |f: &str| {
        std::fs::read_to_string(format!("{sandbox}/{f}"))
            .unwrap_or_else(|e| panic!("{f}: {e}"))
            .trim()
            .to_string()
    };
    assert_eq!(read("which.txt"), "image", "its root is the image's");
    assert_eq!(read("where.txt"), "/mnt/mesos/sandbox");
    assert_eq!(read("pwd.txt"), "/mnt/mesos/sandbox");
    // With namespaces/pid, its /proc is its pid namespace's: a handful of processes, not
    // every one of the host's.
    let pids = read("proc.txt")
        .lines()
        .filter(|l| l.chars().all(|c| c.is_ascii_digit()))
        .count();
    assert!((1..10).contains(&pids), "{pids} processes in its /proc");
    let root = read("root.txt");
    assert!(root.lines().any(|l| l == "bin"), "{root}");
    assert!(
        !root.lines().any(|l| l == "usr"),
        "the host's /usr is not there: {root}"
    );

    let missing = &ended["missing"];
    assert_eq!(missing["state"], "TASK_FAILED", "{missing}");
    assert_eq!(missing["reason"], "REASON_CONTAINER_LAUNCH_FAILED");
    assert!(
        missing["message"]
            .as_str()
            .unwrap()
            .contains("image 'mantle-test/nothing:1' is not in the registry"),
        "{missing}"
    );
    // The finished and the failed ones left no root filesystem; web's is there.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while provisioned(&cluster).len() != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "only web's root filesystem stays: {:?}",
            provisioned(&cluster)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Its writes stayed its own: the image in the store has no /tmp/mark.
    let store = cluster.dir.path().join("agent0/store/docker");
    for image in std::fs::read_dir(&store).unwrap() {
        assert!(!image.unwrap().path().join("rootfs/tmp/mark").exists());
    }

    // An agent restart keeps the container and its root filesystem.
    let web_root = provisioned(&cluster);
    cluster.restart_agent(0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(provisioned(&cluster), web_root, "kept across the restart");
    let kill = json!({"type": "KILL", "kill": {"task_id": {"value": "web"}, "agent_id": offer["agent_id"]}});
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut killed = None;
    while killed.is_none() {
        // The restarted agent may not have re-registered yet: ask again until it acts.
        let _ = s.call(kill.clone()).await;
        let until = (tokio::time::Instant::now() + Duration::from_secs(2)).min(deadline);
        while let Some(st) = s.next_update(until).await {
            if st["task_id"]["value"] == "web" && st["state"] == "TASK_KILLED" {
                killed = Some(st);
                break;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "web was not killed");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !provisioned(&cluster).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "its end removes its root filesystem: {:?}",
            provisioned(&cluster)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marathon_app_with_a_docker_image_on_the_mesos_containerizer_runs_in_it() {
    let reg = tempfile::tempdir().unwrap();
    registry(reg.path());
    let reg_path = reg.path().to_str().unwrap().to_string();
    let cluster = Cluster::start(
        1,
        &[
            "--image-providers",
            "docker",
            "--docker-registry",
            &reg_path,
        ],
    );
    let marathon =
        crate::marathon::Scheduler::start(&cluster, crate::harness::free_port("127.0.0.1"));
    // Marathon's UCR: a MESOS container with `docker.image`; its check passes only in the
    // image (busybox, without the host's /usr).
    let app = json!({"id": "/ucr-web", "instances": 1, "cpus": 0.1, "mem": 32,
        "cmd": "exec sleep 1000",
        "container": {"type": "MESOS", "docker": {"image": "mantle-test/busybox"}},
        "healthChecks": [{"protocol": "COMMAND",
            "command": {"value": "test -e /bin/busybox && test ! -e /usr"},
            "gracePeriodSeconds": 60, "intervalSeconds": 1, "maxConsecutiveFailures": 3}]});
    let tasks = crate::marathon::create_app_and_await_healthy(&marathon.url, &app, 1).await;
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(provisioned(&cluster).len(), 1);
}
