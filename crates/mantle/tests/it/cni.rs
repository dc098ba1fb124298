//! The `network/cni` isolator with Debian's real CNI plugins (`containernetworking-plugins`,
//! installed by `scripts/install-test-deps.sh`): a task that names a network runs in a network
//! and UTS namespace of its own, attached by the network's plugin, with its hostname; its
//! updates carry the plugin's addresses; its health checks run in its namespace; an agent
//! restart keeps it attached; its end detaches it. The networks here are loopback-only (the
//! `loopback` plugin), so no test talks to an address beyond 127.0.0.0/8. These tests need
//! root and the plugins; without them they fail, they never skip.

use crate::harness::{free_port, launch, task, Cluster, Scheduler};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

const PLUGINS: &str = "/usr/lib/cni";

fn fw() -> Value {
    json!({"user": "root", "name": "cni-test", "checkpoint": true})
}

/// A cluster whose agent has the CNI network `isolated` (loopback only) in `conf`, and
/// `extra` flags.
fn cni_cluster(conf: &Path, extra: &[&str]) -> Cluster {
    let uid = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
        .unwrap();
    assert_eq!(uid, "0", "the CNI tests create namespaces: they need root");
    assert!(
        Path::new(PLUGINS).join("loopback").is_file(),
        "{PLUGINS}/loopback is missing: run scripts/install-test-deps.sh"
    );
    std::fs::create_dir_all(conf).unwrap();
    std::fs::write(
        conf.join("isolated.conf"),
        json!({"cniVersion": "0.4.0", "name": "isolated", "type": "loopback"}).to_string(),
    )
    .unwrap();
    let mut args = vec![
        "--network-cni-config-dir",
        conf.to_str().unwrap(),
        "--network-cni-plugins-dir",
        PLUGINS,
    ];
    args.extend_from_slice(extra);
    Cluster::start(1, &args)
}

/// Whether the agent's `/state` lists executor `id` (a restarted agent has recovered it).
async fn agent_has_executor(cluster: &Cluster, id: &str) -> bool {
    let url = format!("http://127.0.0.2:{}/state", cluster.agent_port);
    let Ok(resp) = reqwest::get(&url).await else {
        return false;
    };
    let Ok(state) = resp.json::<Value>().await else {
        return false;
    };
    state["frameworks"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|f| f["executors"].as_array().into_iter().flatten())
        .any(|e| e["id"] == id)
}

fn parent_of(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the command's closing parenthesis: state, then the parent's pid.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    rest.split(' ').nth(1).unwrap().parse().unwrap()
}

fn sigkill(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

fn networked(t: Value, networks: &[&str], hostname: Option<&str>) -> Value {
    let mut t = t;
    let infos: Vec<Value> = networks.iter().map(|n| json!({"name": n})).collect();
    t["container"] = json!({"type": "MESOS", "network_infos": infos});
    if let Some(h) = hostname {
        t["container"]["hostname"] = json!(h);
    }
    t
}

/// The containers attached, under the agent's runtime directory.
fn attached(cluster: &Cluster) -> Vec<PathBuf> {
    let dir = Path::new(mantle_server::cni::RUNTIME_DIR)
        .join(format!("agent-127.0.0.2-{}", cluster.agent_port));
    std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default()
}

async fn wait_until(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} within {secs}s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_on_a_cni_network_runs_in_its_own_namespaces_is_checked_there_and_detached_at_its_end(
) {
    let conf = tempfile::tempdir().unwrap();
    let mut cluster = cni_cluster(conf.path(), &[]);
    let mut s = Scheduler::subscribe(&cluster.master, fw()).await;
    let offer = s.next("OFFERS", 10).await["offers"]["offers"][0].clone();
    // A port nothing listens on in the host's network: the check can pass only if it is made
    // in the task's own namespace.
    let port = free_port("127.0.0.1");
    let cmd = format!(
        "ip -o link > links.txt; hostname > hostname.txt; readlink /proc/self/ns/net > netns.txt; \
         cat /etc/hostname > etc-hostname.txt; getent hosts web-1 > etc-hosts.txt; \
         exec python3 -m http.server {port} --bind 127.0.0.1"
    );
    let mut web = networked(task(&offer, "web", &cmd, 0.1), &["isolated"], Some("web-1"));
    web["health_check"] = json!({
        "type": "HTTP", "http": {"port": port, "path": "/"},
        "delay_seconds": 0, "interval_seconds": 1, "timeout_seconds": 2,
        "grace_period_seconds": 20, "consecutive_failures": 3
    });
    let lost = networked(task(&offer, "lost", "true", 0.1), &["nowhere"], None);
    assert_eq!(s.call(launch(&offer, vec![web, lost])).await.0, 202);

    let mut running = None;
    let mut healthy = None;
    let mut failed = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while running.is_none() || healthy.is_none() || failed.is_none() {
        let st = s
            .next_update(deadline)
            .await
            .unwrap_or_else(|| panic!("running {running:?} healthy {healthy:?} failed {failed:?}"));
        match (st["task_id"]["value"].as_str(), st["state"].as_str()) {
            (Some("web"), Some("TASK_RUNNING")) if st["healthy"] == true => healthy = Some(st),
            (Some("web"), Some("TASK_RUNNING")) => running = Some(st),
            (Some("web"), Some("TASK_STARTING")) => {}
            (Some("lost"), Some(_)) => failed = Some(st),
            (_, state) => panic!("unexpected {state:?}: {st}"),
        }
    }
    let failed = failed.unwrap();
    assert_eq!(failed["state"], "TASK_FAILED", "{failed}");
    assert_eq!(failed["reason"], "REASON_CONTAINER_LAUNCH_FAILED");
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .contains("unknown CNI network 'nowhere'"),
        "{failed}"
    );
    // The plugin's addresses, in Mesos's container_status (what Mesos-DNS reads).
    let expected = json!([{"name": "isolated", "ip_addresses": [
        {"protocol": "IPv4", "ip_address": "127.0.0.1"},
        {"protocol": "IPv6", "ip_address": "::1"},
    ]}]);
    assert_eq!(
        running.unwrap()["container_status"]["network_infos"],
        expected
    );
    assert_eq!(
        healthy.unwrap()["container_status"]["network_infos"],
        expected
    );

    let sandbox = crate::harness::sandbox_of(&cluster, "127.0.0.2", "web");
    let read = |f: &str| {
        std::fs::read_to_string(format!("{sandbox}/{f}"))
            .unwrap()
            .trim()
            .to_string()
    };
    let links = read("links.txt");
    assert_eq!(links.lines().count(), 1, "only lo: {links}");
    assert!(links.contains("lo:"), "{links}");
    assert_eq!(read("hostname.txt"), "web-1");
    // Its own /etc/hostname and /etc/hosts (at its address), bound for its processes only.
    assert_eq!(read("etc-hostname.txt"), "web-1");
    let hosts = read("etc-hosts.txt");
    assert!(
        hosts.starts_with("127.0.0.1") && hosts.ends_with("web-1"),
        "{hosts}"
    );
    let host_hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    assert!(!host_hosts.contains("web-1"), "the host's /etc/hosts stays");
    let host_netns = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_ne!(read("netns.txt"), host_netns.to_string_lossy());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the task's server must not be on the host's network"
    );
    assert_eq!(attached(&cluster).len(), 1, "one container attached");

    // An agent restart keeps the container and its networks (checked once the new agent has
    // recovered the executor, so after its orphan sweep).
    cluster.restart_agent(0);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !agent_has_executor(&cluster, "web").await {
        assert!(
            std::time::Instant::now() < deadline,
            "the agent never recovered `web`"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        attached(&cluster).len(),
        1,
        "still attached after the restart"
    );
    // A kill may reach the master before the restarted agent has registered again, and a
    // master does not keep kills for an agent away: sent again, as Marathon does, until done.
    let agent_id = offer["agent_id"].clone();
    let kill = json!({"type": "KILL", "kill": {"task_id": {"value": "web"}, "agent_id": agent_id}});
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let killed = 'killed: loop {
        assert_eq!(s.call(kill.clone()).await.0, 202);
        let again = (tokio::time::Instant::now() + Duration::from_secs(3)).min(deadline);
        while let Some(st) = s.next_update(again).await {
            if st["task_id"]["value"] == "web" && st["state"] == "TASK_KILLED" {
                break 'killed st;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "web was never killed"
        );
    };
    assert_eq!(
        killed["container_status"]["network_infos"], expected,
        "the recovered agent still reports the networks: {killed}"
    );
    wait_until("the container detached", 20, || {
        attached(&cluster).is_empty()
    })
    .await;

    // A container whose executor died while its agent was down is an orphan to the next
    // agent, which detaches it as it starts.
    let offer = s.next("OFFERS", 10).await["offers"]["offers"][0].clone();
    let port = free_port("127.0.0.1");
    let server = format!("http.server {port} --bind");
    let cmd = format!("exec python3 -m {server} 127.0.0.1");
    let orphan = networked(task(&offer, "orphan", &cmd, 0.1), &["isolated"], None);
    assert_eq!(s.call(launch(&offer, vec![orphan])).await.0, 202);
    s.await_state("orphan", "TASK_RUNNING", 30).await;
    assert_eq!(attached(&cluster).len(), 1);
    // The task's process passes through nsenter, unshare and a shell (binding its /etc
    // files), and maybe a Python version manager's shims, before it is the server: looked
    // for until it is.
    let mut task_pid = None;
    let comm = |p: i32| std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
    wait_until("the orphan's server runs", 20, || {
        task_pid = crate::harness::pids().into_iter().find(|p| {
            comm(*p).trim() == "python3" && crate::harness::cmdline(*p).contains(&server)
        });
        task_pid.is_some()
    })
    .await;
    let task_pid = task_pid.expect("the orphan's server");
    let executor = parent_of(task_pid);
    sigkill(cluster.agent_pid(0) as i32);
    sigkill(executor);
    sigkill(task_pid);
    cluster.start_agent_again(0);
    wait_until("the orphan detached by the new agent", 20, || {
        attached(&cluster).is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_naming_a_network_fails_on_an_agent_without_cni_networks() {
    let cluster = Cluster::start(1, &[]);
    let mut s = Scheduler::subscribe(&cluster.master, fw()).await;
    let offer = s.next("OFFERS", 10).await["offers"]["offers"][0].clone();
    let netless = networked(task(&offer, "netless", "true", 0.1), &["isolated"], None);
    // An image for the mesos containerizer, which runs none, fails plainly too.
    let mut imaged = task(&offer, "imaged", "true", 0.1);
    imaged["container"] = json!({"type": "MESOS", "mesos": {"image": {"type": "DOCKER", "docker": {"name": "busybox"}}}});
    assert_eq!(s.call(launch(&offer, vec![netless, imaged])).await.0, 202);
    let ended = s.await_ends(&["netless", "imaged"], 20).await;
    for (id, says) in [
        (
            "netless",
            "names network 'isolated', but this agent has no CNI networks",
        ),
        (
            "imaged",
            "container.mesos.image: this agent runs no images (start it with --image-providers docker and --docker-registry DIR",
        ),
    ] {
        let st = &ended[id];
        assert_eq!(st["state"], "TASK_FAILED", "{st}");
        assert_eq!(st["reason"], "REASON_CONTAINER_LAUNCH_FAILED");
        assert!(st["message"].as_str().unwrap().contains(says), "{st}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marathon_app_on_a_cni_network_gets_its_own_address_and_is_checked_at_its_container_port()
{
    let conf = tempfile::tempdir().unwrap();
    // With namespaces/pid too: the executor starts in a pid namespace (no standby), and the
    // tasks and checks still reach the network's namespace from there.
    let cluster = cni_cluster(
        conf.path(),
        &["--isolation", "posix/cpu,posix/mem,namespaces/pid"],
    );
    let marathon =
        crate::marathon::Scheduler::start(&cluster, crate::harness::free_port("127.0.0.1"));
    // Two instances on one agent both serve on container port 8080, each in its own network.
    let app = json!({"id": "/isolated-web", "instances": 2, "cpus": 0.1, "mem": 64,
        "cmd": "exec python3 -m http.server 8080 --bind 127.0.0.1",
        "networks": [{"mode": "container", "name": "isolated"}],
        "container": {"type": "MESOS", "portMappings": [{"containerPort": 8080, "name": "http"}]},
        "healthChecks": [{"protocol": "MESOS_HTTP", "portIndex": 0, "path": "/",
            "gracePeriodSeconds": 60, "intervalSeconds": 1, "maxConsecutiveFailures": 3}]});
    let tasks = crate::marathon::create_app_and_await_healthy(&marathon.url, &app, 2).await;
    let client = reqwest::Client::new();
    for t in &tasks {
        assert_eq!(
            t["ipAddresses"],
            json!([{"ipAddress": "127.0.0.1", "protocol": "IPv4"}, {"ipAddress": "::1", "protocol": "IPv6"}]),
            "the task's own addresses, not its host's: {t}"
        );
        assert_eq!(t["host"], "127.0.0.2");
    }
    assert_eq!(attached(&cluster).len(), 2);
    // Mesos-DNS names the tasks by their own address (its `netinfo` source comes first).
    let dns = crate::dns::Dns::start(cluster.dir.path(), &cluster.master, &[]);
    let named = tokio::task::spawn_blocking(move || {
        dns.wait_subscribed();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let a = dns.short(&["isolated-web.marathon.mesos"]);
            if !a.is_empty() || std::time::Instant::now() > deadline {
                return a;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .unwrap();
    assert!(
        !named.is_empty() && named.iter().all(|a| a == "127.0.0.1"),
        "the tasks' own address, not their agent's (127.0.0.2): {named:?}"
    );
    let deleted = client
        .delete(format!("{}/v2/apps/isolated-web", marathon.url))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    wait_until("both containers detached", 30, || {
        attached(&cluster).is_empty()
    })
    .await;
}
