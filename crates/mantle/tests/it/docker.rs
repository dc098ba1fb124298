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

/// A one-agent cluster whose agent runs Docker containers on the test daemon (with `extra`
/// agent flags), and the label its containers carry.
/// `docker inspect` of the first container labelled `label`.
fn inspect_first(label: &str) -> Value {
    let name = containers_of(label).remove(0);
    let inspect: Value = serde_json::from_str(&docker(&["inspect", &name])).unwrap();
    inspect[0].clone()
}

fn docker_cluster(extra: &[&str]) -> (Cluster, String) {
    docker(&["image", "inspect", IMAGE]);
    let mut args = vec!["--containerizers", "docker,mesos", "--docker-socket", SOCK];
    args.extend_from_slice(extra);
    let cluster = Cluster::start(1, &args);
    let label = format!("agent-127.0.0.2-{}", cluster.agent_port);
    (cluster, label)
}

/// KILLs `ids`, checks each ends TASK_KILLED, and waits until no container of `label` is left.
async fn kill_and_await_removal(s: &mut Scheduler, ids: &[&str], label: &str) {
    for id in ids {
        s.call(json!({"type": "KILL", "kill": {"task_id": {"value": id}}}))
            .await;
    }
    let ended = s.await_ends(ids, 30).await;
    for id in ids {
        assert_eq!(ended[*id]["state"], "TASK_KILLED", "{id}: {:?}", ended[*id]);
    }
    wait_until("the killed tasks' containers are removed", 30, || {
        containers_of(label).is_empty()
    })
    .await;
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
    // Small logs, so that a chatty task's are rotated.
    let (mut cluster, label) =
        docker_cluster(&["--sandbox-log-max-size", "16384", "--sandbox-log-keep", "2"]);
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
            "echo $GREETING in $MESOS_SANDBOX; i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; \
             exec sleep 1000",
            IMAGE,
        ),
        docker_task(&offer, "exits", "echo bye >&2; exit 3", IMAGE),
        docker_task(&offer, "no-image", "true", "mantle-test/no-such-image:1"),
        docker_task(
            &offer,
            "chatty",
            "i=0; while [ $i -lt 2000 ]; do echo line-$i-of-a-docker-task-that-says-a-lot; \
             i=$((i+1)); done",
            IMAGE,
        ),
    ];
    assert_eq!(s.call(launch(&offer, tasks)).await.0, 202);
    let mut ended = s.await_ends(&["exits", "no-image", "chatty"], 60).await;
    // Its output (about 90 KB) went to its sandbox through the rotation: the newest lines in
    // `stdout`, older ones in `stdout.1` and `stdout.2`, none of them past the limit.
    let chatty = ended.remove("chatty").unwrap();
    assert_eq!(chatty["state"], "TASK_FINISHED", "{chatty}");
    let sandbox = sandbox_of(&cluster, "127.0.0.2", "chatty");
    let file = |f: &str| std::fs::read_to_string(format!("{sandbox}/{f}"));
    wait_until("chatty's last line is in its stdout", 10, || {
        file("stdout").is_ok_and(|t| t.contains("line-1999-of"))
    })
    .await;
    for f in ["stdout", "stdout.1", "stdout.2"] {
        let text = file(f).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(text.len() <= 16384, "{f} has {} bytes", text.len());
        assert!(text.lines().all(|l| l.starts_with("line-")), "{f}: {text}");
    }
    assert!(file("stdout.3").is_err(), "only 2 old files are kept");
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
    // Its usage, from Docker's stats (this agent has no cgroups isolation, so nothing else
    // could report it): the busy loop's cpu time, memory in use under its limit, processes.
    let stats_url = format!("http://127.0.0.2:{}/monitor/statistics", cluster.agent_port);
    let deadline = Instant::now() + Duration::from_secs(30);
    let web = loop {
        let all: Value = reqwest::get(&stats_url)
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let web = all
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["executor_id"] == "web")
            .cloned()
            .unwrap_or_else(|| panic!("no entry for web: {all}"));
        if web["statistics"]["cpus_user_time_secs"]
            .as_f64()
            .unwrap_or(0.0)
            >= 0.1
        {
            break web;
        }
        assert!(
            Instant::now() < deadline,
            "web never showed its cpu time: {web}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let st = &web["statistics"];
    assert_eq!(st["mem_limit_bytes"], 64 << 20, "{web}");
    // The task's 0.1 and the executor's 0.1, as the agent accounts the container.
    assert_eq!(st["cpus_limit"], 0.2, "{web}");
    let used = st["mem_total_bytes"].as_u64().unwrap_or(0);
    assert!(used > 0 && used < 64 << 20, "{web}");
    assert!(st["processes"].as_u64().unwrap_or(0) >= 1, "{web}");

    // A kill stops and removes the container.
    kill_and_await_removal(&mut s, &["web"], &label).await;

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
        let st = s
            .next_update(deadline)
            .await
            .unwrap_or_else(|| panic!("{id} was not reported healthy={healthy} within {secs}s"));
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
    // The file the check tests exists only in the container's own filesystem, so a check run
    // on the host could never pass.
    assert!(!std::path::Path::new("/inside-only").exists());
    let (cluster, label) = docker_cluster(&[]);
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

/// `docker_task` holding `port` of the agent's ports, with `docker` merged into its DockerInfo.
fn networked_task(offer: &Value, id: &str, cmd: &str, port: u64, docker: Value) -> Value {
    let mut t = docker_task(offer, id, cmd, IMAGE);
    t["resources"].as_array_mut().unwrap().push(json!(
        {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": port, "end": port}]}}));
    for (k, v) in docker.as_object().unwrap() {
        t["container"]["docker"][k] = v.clone();
    }
    t
}

/// Docker networks other than the host's, with Mesos's rules: NONE gives the container a
/// network namespace of its own with only a loopback interface (and the hostname asked for);
/// port mappings are refused with HOST networking and for host ports outside the task's
/// `ports`; a BRIDGE task's container is created on Docker's bridge network with its mappings
/// published on the agent's address only. (The test daemon runs with `--bridge=none`, so
/// Docker gives such a container only a loopback interface and publishes nothing: no traffic
/// leaves 127.0.0.0/8.)
#[tokio::test]
async fn docker_networks_and_port_mappings_follow_mesos() {
    let (cluster, label) = docker_cluster(&[]);
    let mut s = Scheduler::subscribe(
        &cluster.master,
        json!({"user": "root", "name": "docker-network-test"}),
    )
    .await;
    let offer = s.next("OFFERS", 10).await["offers"]["offers"][0].clone();
    let port = offer["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "ports")
        .and_then(|r| r["ranges"]["range"][0]["begin"].as_u64())
        .expect("the offer holds ports");
    let mut isolated = docker_task(
        &offer,
        "isolated",
        "ls /sys/class/net; hostname; readlink /proc/self/ns/net",
        IMAGE,
    );
    isolated["container"]["docker"]["network"] = json!("NONE");
    isolated["container"]["hostname"] = json!("mantle-isolated");
    let mapping = |host_port: u64| json!([{"host_port": host_port, "container_port": 80}]);
    let tasks = vec![
        isolated,
        networked_task(
            &offer,
            "host-mapped",
            "true",
            port,
            json!({"network": "HOST", "port_mappings": mapping(port)}),
        ),
        networked_task(
            &offer,
            "outside",
            "true",
            port + 1,
            json!({"network": "BRIDGE", "port_mappings": mapping(port + 5)}),
        ),
        networked_task(
            &offer,
            "bridged",
            "exec sleep 1000",
            port + 2,
            json!({"network": "BRIDGE", "port_mappings": mapping(port + 2)}),
        ),
    ];
    assert_eq!(s.call(launch(&offer, tasks)).await.0, 202);
    let ended = s
        .await_ends(&["isolated", "host-mapped", "outside"], 60)
        .await;

    let isolated = &ended["isolated"];
    assert_eq!(isolated["state"], "TASK_FINISHED", "{isolated}");
    let sandbox = sandbox_of(&cluster, "127.0.0.2", "isolated");
    let out = std::fs::read_to_string(format!("{sandbox}/stdout")).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[..2], ["lo", "mantle-isolated"], "{out}");
    let host_ns = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert!(lines[2].starts_with("net:["), "{out}");
    assert_ne!(std::path::Path::new(lines[2]), host_ns, "{out}");

    for (id, needle) in [
        (
            "host-mapped",
            "port_mappings are only supported with network BRIDGE or USER".to_string(),
        ),
        (
            "outside",
            format!(
                "host_port {} is not in the task's ports resources",
                port + 5
            ),
        ),
    ] {
        let st = &ended[id];
        assert_eq!(st["state"], "TASK_FAILED", "{id}: {st}");
        assert_eq!(st["reason"], "REASON_CONTAINER_LAUNCH_FAILED", "{id}: {st}");
        let message = st["message"].as_str().unwrap_or_default();
        assert!(message.contains(&needle), "{id}: {st}");
    }

    // The bridged task's container, as Docker holds it.
    wait_until("the bridged task's container runs", 30, || {
        containers_of(&label).len() == 1
    })
    .await;
    let c = &inspect_first(&label);
    assert_eq!(c["HostConfig"]["NetworkMode"], "bridge", "{c}");
    assert_eq!(
        c["HostConfig"]["PortBindings"],
        json!({"80/tcp": [{"HostIp": "127.0.0.2", "HostPort": (port + 2).to_string()}]}),
        "{c}"
    );
    assert!(c["Config"]["ExposedPorts"].get("80/tcp").is_some(), "{c}");
    kill_and_await_removal(&mut s, &["bridged"], &label).await;
}

/// HTTP and TCP checks of a Docker task with a network of its own connect to 127.0.0.1 inside
/// the container's network namespace, as Mesos's do: here the server listens only on the
/// container's own loopback (port 18473, which nothing on the host listens on), so a check made
/// from the host could never pass. The agent also has `namespaces/pid`, which is the `mesos`
/// containerizer's and must not hide the container's host pid from the Docker task's executor.
#[tokio::test]
async fn http_and_tcp_checks_of_a_docker_task_with_its_own_network_run_in_its_namespace() {
    const PORT: u16 = 18473;
    let (cluster, label) = docker_cluster(&["--isolation", "posix/cpu,posix/mem,namespaces/pid"]);
    let mut s = Scheduler::subscribe(
        &cluster.master,
        json!({"user": "root", "name": "docker-netns-health-test"}),
    )
    .await;
    let offer = s.next("OFFERS", 10).await["offers"]["offers"][0].clone();
    let serve = format!(
        "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 127.0.0.1:{PORT} -h /www"
    );
    let mut tasks = Vec::new();
    for (id, check) in [
        (
            "http-none",
            json!({"type": "HTTP", "http": {"port": PORT, "path": "/index.html"}}),
        ),
        ("tcp-none", json!({"type": "TCP", "tcp": {"port": PORT}})),
    ] {
        let mut t = docker_task(&offer, id, &serve, IMAGE);
        t["container"]["docker"]["network"] = json!("NONE");
        let mut check = check;
        for (k, v) in [
            ("delay_seconds", 0.0),
            ("interval_seconds", 0.5),
            ("timeout_seconds", 5.0),
            ("grace_period_seconds", 60.0),
        ] {
            check[k] = json!(v);
        }
        check["consecutive_failures"] = json!(3);
        t["health_check"] = check;
        tasks.push(t);
    }
    assert_eq!(s.call(launch(&offer, tasks)).await.0, 202);
    // Both go healthy, in either order (each update is acknowledged as it comes).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut healthy = std::collections::BTreeSet::new();
    while healthy.len() < 2 {
        let st = s
            .next_update(deadline)
            .await
            .unwrap_or_else(|| panic!("only {healthy:?} were reported healthy within 60 s"));
        let id = st["task_id"]["value"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            ["TASK_STARTING", "TASK_RUNNING"].contains(&st["state"].as_str().unwrap_or("")),
            "{id} ended before it was reported healthy: {st}"
        );
        if st["healthy"] == true {
            healthy.insert(id);
        }
    }
    // Nothing answers on the host's side of that port.
    assert!(std::net::TcpStream::connect(("127.0.0.1", PORT)).is_err());
    kill_and_await_removal(&mut s, &["http-none", "tcp-none"], &label).await;
}

/// A Marathon app on `container/bridge` networking end to end: the service scheduler gives its
/// port mapping a host port from the offer, the agent creates the container on Docker's bridge
/// network with that port published on the agent's address, and the app's `MESOS_HTTP` check
/// reaches the container port inside the container's own network (the test daemon has no
/// bridge, so the container has only its loopback: no traffic leaves 127.0.0.0/8).
#[tokio::test]
async fn a_marathon_app_on_bridge_networking_gets_its_port_mapped_and_checked() {
    let (cluster, label) = docker_cluster(&[]);
    let marathon =
        crate::marathon::Scheduler::start(&cluster, crate::harness::free_port("127.0.0.1"));
    let app = json!({"id": "/bridged", "instances": 1, "cpus": 0.1, "mem": 64,
        "cmd": "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 80 -h /www",
        "networks": [{"mode": "container/bridge"}],
        "container": {"type": "DOCKER", "docker": {"image": IMAGE},
            "portMappings": [{"containerPort": 80, "name": "http"}]},
        "healthChecks": [{"protocol": "MESOS_HTTP", "portIndex": 0, "path": "/index.html",
            "gracePeriodSeconds": 60, "intervalSeconds": 1, "maxConsecutiveFailures": 3}]});
    let task = crate::marathon::create_app_and_await_healthy(&marathon.url, &app, 1)
        .await
        .remove(0);
    let client = reqwest::Client::new();
    let host_port = task["ports"][0].as_u64().expect("a host port");
    assert!((31000..=31100).contains(&host_port), "{task}");
    let c = &inspect_first(&label);
    assert_eq!(c["HostConfig"]["NetworkMode"], "bridge", "{c}");
    assert_eq!(
        c["HostConfig"]["PortBindings"],
        json!({"80/tcp": [{"HostIp": "127.0.0.2", "HostPort": host_port.to_string()}]}),
        "{c}"
    );
    let env: Vec<&str> = c["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for var in [
        format!("PORT0={host_port}"),
        format!("PORT_80={host_port}"),
        format!("PORT_HTTP={host_port}"),
    ] {
        assert!(env.contains(&var.as_str()), "{var} not in {env:?}");
    }
    let deleted = client
        .delete(format!("{}/v2/apps/bridged", marathon.url))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    wait_until("the app's container is removed", 30, || {
        containers_of(&label).is_empty()
    })
    .await;

    // The same through marathon-python, which speaks Marathon 1.4's terms (docker.network,
    // docker.portMappings): the app is migrated to the 1.5 API and runs the same way.
    let py = crate::pymesos::python();
    let url = marathon.url.clone();
    let bridged_py = tokio::task::spawn_blocking(move || {
        let facts = crate::marathon::step(&py, &cluster, &url, "bridge", &[IMAGE]);
        (facts, cluster)
    });
    let (facts, _cluster) = bridged_py.await.unwrap();
    let host_port = facts["host_port"].as_u64().expect("a host port");
    assert!((31000..=31100).contains(&host_port), "{facts}");
    wait_until("the marathon-python app's container is removed", 30, || {
        containers_of(&label).is_empty()
    })
    .await;
}
