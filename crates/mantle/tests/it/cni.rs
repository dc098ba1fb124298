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

/// A cluster whose agent has the CNI network `isolated` (loopback only); its config dir.
fn cni_cluster(conf: &Path) -> Cluster {
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
    Cluster::start(
        1,
        &[
            "--network-cni-config-dir",
            conf.to_str().unwrap(),
            "--network-cni-plugins-dir",
            PLUGINS,
        ],
    )
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

/// The containers attached under the agent's work dir.
fn attached(cluster: &Cluster) -> Vec<PathBuf> {
    std::fs::read_dir(cluster.dir.path().join("agent0/network/cni"))
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
    let mut cluster = cni_cluster(conf.path());
    let mut s = Scheduler::subscribe(&cluster.master, fw()).await;
    let offer = s.next("OFFERS", 10).await["offers"]["offers"][0].clone();
    // A port nothing listens on in the host's network: the check can pass only if it is made
    // in the task's own namespace.
    let port = free_port("127.0.0.1");
    let cmd = format!(
        "ip -o link > links.txt; hostname > hostname.txt; readlink /proc/self/ns/net > netns.txt; \
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
    let host_netns = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_ne!(read("netns.txt"), host_netns.to_string_lossy());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the task's server must not be on the host's network"
    );
    assert_eq!(attached(&cluster).len(), 1, "one container attached");

    // An agent restart keeps the container and its networks.
    cluster.restart_agent(0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        attached(&cluster).len(),
        1,
        "still attached after the restart"
    );
    let agent_id = offer["agent_id"].clone();
    assert_eq!(
        s.call(
            json!({"type": "KILL", "kill": {"task_id": {"value": "web"}, "agent_id": agent_id}})
        )
        .await
        .0,
        202
    );
    let killed = s.await_state("web", "TASK_KILLED", 30).await;
    assert_eq!(
        killed["container_status"]["network_infos"], expected,
        "the recovered agent still reports the networks: {killed}"
    );
    wait_until("the container detached", 20, || {
        attached(&cluster).is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_naming_a_network_fails_on_an_agent_without_cni_networks() {
    let cluster = Cluster::start(1, &[]);
    let mut s = Scheduler::subscribe(&cluster.master, fw()).await;
    let offer = s.next("OFFERS", 10).await["offers"]["offers"][0].clone();
    let t = networked(task(&offer, "netless", "true", 0.1), &["isolated"], None);
    assert_eq!(s.call(launch(&offer, vec![t])).await.0, 202);
    let st = s.await_ends(&["netless"], 20).await["netless"].clone();
    assert_eq!(st["state"], "TASK_FAILED", "{st}");
    assert_eq!(st["reason"], "REASON_CONTAINER_LAUNCH_FAILED");
    assert!(
        st["message"]
            .as_str()
            .unwrap()
            .contains("names network 'isolated', but this agent has no CNI networks"),
        "{st}"
    );
}
