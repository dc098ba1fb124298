//! Agent checkpointing and recovery with real processes: an agent killed with SIGKILL while it
//! runs 200 tasks is started again and takes them all over, same processes, none restarted;
//! an update produced while it was down reaches the scheduler.

use crate::harness::{processes_with, Cluster, Scheduler};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const TASKS: usize = 200;

/// Pids of processes whose command line is exactly `sleep <marker>`.
fn sleepers(marker: &str) -> Vec<i32> {
    processes_with(&format!("sleep {marker}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_recovers_its_200_tasks_and_delivers_updates_from_its_downtime() {
    let mut cluster = Cluster::start(1, &[]);
    let mut s = Scheduler::subscribe(
        &cluster.master,
        json!({"user": "root", "name": "recovery-test", "checkpoint": true,
               "capabilities": [{"type": "PARTITION_AWARE"}]}),
    )
    .await;
    let offer = s.next("OFFERS", 10).await["offers"]["offers"][0].clone();
    let marker = format!("{}.{}", 6000 + std::process::id() % 1000, 31);
    let tasks: Vec<Value> = (0..TASKS)
        .map(|i| {
            json!({"name": format!("r{i}"), "task_id": {"value": format!("r{i}")}, "agent_id": offer["agent_id"],
                   "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.01}},
                                 {"name": "mem", "type": "SCALAR", "scalar": {"value": 4}}],
                   "command": {"value": format!("exec sleep {marker}")}})
        })
        .collect();
    let accept = json!({"type": "ACCEPT", "accept": {"offer_ids": [offer["id"]],
        "operations": [{"type": "LAUNCH", "launch": {"task_infos": tasks}}]}});
    assert_eq!(s.call(accept).await.0, 202);
    // Every task RUNNING (acknowledging everything).
    let mut running = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    while running.len() < TASKS {
        let ev = tokio::time::timeout_at(deadline, s.events.recv())
            .await
            .unwrap_or_else(|_| panic!("{} of {TASKS} running\n{}", running.len(), cluster.logs()))
            .unwrap();
        if ev["type"] != "UPDATE" {
            continue;
        }
        let st = ev["update"]["status"].clone();
        s.ack(&st).await;
        assert!(
            ["TASK_STARTING", "TASK_RUNNING"].contains(&st["state"].as_str().unwrap()),
            "{st}"
        );
        if st["state"] == "TASK_RUNNING" {
            running.insert(st["task_id"]["value"].as_str().unwrap().to_string());
        }
    }
    let before = sleepers(&marker);
    assert_eq!(before.len(), TASKS);

    // SIGKILL the agent; while it is down, one task ends (its executor keeps the update).
    let agent_pid = cluster.agent_pid(0);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let victim = before[0];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let restarted = Instant::now();
    cluster.start_agent_again(0);

    // The one ended task's update arrives; no other task gets any terminal update.
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut failed = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while failed.is_none() {
        let ev = tokio::time::timeout_at(deadline, s.events.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no update for the task that ended; saw {seen:?}\n{}",
                    cluster.logs()
                )
            })
            .unwrap();
        if ev["type"] != "UPDATE" {
            continue;
        }
        let st = ev["update"]["status"].clone();
        s.ack(&st).await;
        let id = st["task_id"]["value"].as_str().unwrap().to_string();
        seen.entry(id.clone())
            .or_default()
            .push(st["state"].as_str().unwrap().to_string());
        if st["state"] == "TASK_FAILED" {
            failed = Some((id, st));
        }
    }
    let recovery = restarted.elapsed();
    let (failed_id, st) = failed.unwrap();
    assert_eq!(st["source"], "SOURCE_EXECUTOR", "{st}");
    assert!(st["message"].as_str().unwrap().contains("signal 9"), "{st}");
    // Let anything else that would come, come.
    let rest = s.drain(3.0).await;
    for ev in rest.iter().filter(|e| e["type"] == "UPDATE") {
        let st = &ev["update"]["status"];
        s.ack(st).await;
        seen.entry(st["task_id"]["value"].as_str().unwrap().to_string())
            .or_default()
            .push(st["state"].as_str().unwrap().to_string());
    }
    for (id, states) in &seen {
        if id != &failed_id {
            assert!(
                states.iter().all(|x| x == "TASK_RUNNING"),
                "{id} got {states:?} after the agent restarted"
            );
        }
    }
    // Every other task is the same process as before.
    let after = sleepers(&marker);
    let expected: Vec<i32> = before[1..].to_vec();
    assert_eq!(
        after, expected,
        "the surviving tasks are the very same processes"
    );
    // The master still counts them all as running, on the same agent.
    let tasks = cluster.state()["frameworks"][0]["tasks"].clone();
    let running_now = tasks
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["state"] == "TASK_RUNNING")
        .count();
    assert_eq!(running_now, TASKS - 1, "{tasks}");
    eprintln!(
        "recovery: {TASKS} tasks; from restarting the agent to the downtime update delivered: {:.2} s",
        recovery.as_secs_f64()
    );

    // A burst: every survivor killed at once. Each end is checkpointed before it is sent
    // (group commit: one write per batch of what the agent has waiting), and each arrives
    // exactly once.
    let survivors: Vec<String> = (0..TASKS)
        .map(|i| format!("r{i}"))
        .filter(|id| *id != failed_id)
        .collect();
    let burst = Instant::now();
    // All kills at once (one scheduler sending them one by one would time itself).
    let kills = futures::future::join_all(
        survivors
            .iter()
            .map(|id| s.call(json!({"type": "KILL", "kill": {"task_id": {"value": id}}}))),
    )
    .await;
    for (code, body) in kills {
        assert_eq!(code, 202, "{body}");
    }
    let mut ended: BTreeMap<String, Value> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while ended.len() < survivors.len() {
        let ev = tokio::time::timeout_at(deadline, s.events.recv())
            .await
            .unwrap_or_else(|_| panic!("{} of {} ends arrived", ended.len(), survivors.len()))
            .unwrap();
        if ev["type"] != "UPDATE" {
            continue;
        }
        let st = ev["update"]["status"].clone();
        let id = st["task_id"]["value"].as_str().unwrap().to_string();
        let state = st["state"].as_str().unwrap().to_string();
        if state == "TASK_RUNNING" {
            s.ack(&st).await;
            continue;
        }
        assert_eq!(state, "TASK_KILLED", "{st}");
        // Each task has one update in flight, so the others do not wait for this ack: they
        // are acknowledged once all have arrived, to time the agent and master alone.
        assert!(ended.insert(id.clone(), st).is_none(), "{id} ended twice");
    }
    let took = burst.elapsed();
    for st in ended.values() {
        s.ack(st).await;
    }
    assert!(sleepers(&marker).is_empty(), "every task process is gone");
    eprintln!(
        "burst: {} kills sent and {} TASK_KILLED updates checkpointed and delivered in {:.2} s ({:.0} updates/s)",
        survivors.len(),
        ended.len(),
        took.as_secs_f64(),
        ended.len() as f64 / took.as_secs_f64()
    );
}

/// Unmounts a tmpfs when dropped (lazily, so a process still inside cannot keep it).
struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_holds_updates_back_until_they_are_durable_and_loses_none() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0")),
        "this test mounts a tmpfs and needs root"
    );
    let mut cluster = Cluster::start(
        1,
        &[
            "--status-update-retry",
            "0.5",
            "--sandbox-log-max-size",
            "0",
        ],
    );
    // Move the agent onto a 4 MiB tmpfs: stop it, mount over its work dir, start it again.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(cluster.agent_pid(0) as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let work = cluster.dir.path().join("agent0");
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&work)
        .status()
        .unwrap();
    assert!(ok.success(), "cannot mount a tmpfs");
    let _mount = Tmpfs(work.clone());
    cluster.start_agent_again(0);
    let mut s = Scheduler::subscribe(
        &cluster.master,
        json!({"user": "root", "name": "disk-test", "checkpoint": true}),
    )
    .await;
    let offer = loop {
        let o = s.next("OFFERS", 15).await["offers"]["offers"][0].clone();
        if o["hostname"] == "127.0.0.2" {
            break o;
        }
    };
    let t = json!({"name": "d1", "task_id": {"value": "d1"}, "agent_id": offer["agent_id"],
        "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                      {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}}],
        "command": {"value": "sleep 3"}});
    let accept = json!({"type": "ACCEPT", "accept": {"offer_ids": [offer["id"]],
        "operations": [{"type": "LAUNCH", "launch": {"task_infos": [t]}}]}});
    assert_eq!(s.call(accept).await.0, 202);
    s.await_state("d1", "TASK_RUNNING", 15).await;
    // Fill the disk while the task runs: its end cannot be checkpointed, so it is not sent.
    let fill = work.join("fill");
    let _ = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", fill.display()))
        .stderr(std::process::Stdio::null())
        .status();
    // The agent appends updates to its log: a record that fits in the log's last, partly
    // used page needs no new block, so that slack is filled too (with newlines, which the
    // log's reader skips).
    fill_update_log_slack(&work.join("meta"));
    let held = s.drain(6.0).await;
    let updates: Vec<&Value> = held.iter().filter(|e| e["type"] == "UPDATE").collect();
    assert!(
        updates.is_empty(),
        "an update went out while the disk was full: {updates:?}"
    );
    // Space again: the task's end arrives, once.
    std::fs::remove_file(&fill).unwrap();
    let st = s.await_state("d1", "TASK_FINISHED", 30).await;
    assert_eq!(st["source"], "SOURCE_EXECUTOR");
    let after = s.drain(3.0).await;
    assert!(
        after
            .iter()
            .all(|e| e["type"] != "UPDATE" || e["update"]["status"]["task_id"]["value"] != "d1"),
        "d1 was reported again: {after:?}"
    );
}

/// Waits for `id`'s terminal update, acknowledging every update and keeping the offers that
/// arrive on the way; every state `id` went through, the last one's status.
async fn end_of(
    s: &mut Scheduler,
    id: &str,
    secs: u64,
    offers: &mut Vec<Value>,
) -> (Vec<String>, Value) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut states = Vec::new();
    loop {
        let ev = tokio::time::timeout_at(deadline, s.events.recv())
            .await
            .unwrap_or_else(|_| panic!("{id} did not end within {secs}s; saw {states:?}"))
            .expect("stream open");
        if ev["type"] == "OFFERS" {
            offers.extend(
                ev["offers"]["offers"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            );
            continue;
        }
        if ev["type"] != "UPDATE" {
            continue;
        }
        let st = ev["update"]["status"].clone();
        s.ack(&st).await;
        if st["task_id"]["value"] != id {
            continue;
        }
        let state = st["state"].as_str().unwrap_or("").to_string();
        states.push(state.clone());
        if ![
            "TASK_STAGING",
            "TASK_STARTING",
            "TASK_RUNNING",
            "TASK_KILLING",
        ]
        .contains(&state.as_str())
        {
            return (states, st);
        }
    }
}

/// Launches a task fetching `uri` with one of `offers` (waiting for one when there is none).
async fn launch_fetching(
    s: &mut Scheduler,
    offers: &mut Vec<Value>,
    id: &str,
    uri: &std::path::Path,
    cmd: &str,
) {
    while offers.is_empty() {
        let ev = s.next("OFFERS", 15).await;
        offers.extend(
            ev["offers"]["offers"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        );
    }
    let offer = offers.remove(0);
    let t = json!({"name": id, "task_id": {"value": id}, "agent_id": offer["agent_id"],
        "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                      {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}}],
        "command": {"value": cmd, "uris": [{"value": uri.to_str().unwrap()}]}});
    let accept = json!({"type": "ACCEPT", "accept": {"offer_ids": [offer["id"]],
        "operations": [{"type": "LAUNCH", "launch": {"task_infos": [t]}}],
        "filters": {"refuse_seconds": 0}}});
    let (code, body) = s.call(accept).await;
    assert_eq!(code, 202, "{body}");
}

fn assert_disk_full_failure(id: &str, states: &[String], st: &Value) {
    assert_eq!(
        states,
        ["TASK_FAILED"],
        "{id} went through {states:?}: {st}"
    );
    assert_eq!(st["reason"], "REASON_CONTAINER_LAUNCH_FAILED", "{id}: {st}");
    assert_eq!(st["source"], "SOURCE_AGENT", "{id}: {st}");
    let message = st["message"].as_str().unwrap_or("");
    assert!(
        message.contains("Failed to fetch all URIs") && message.contains("No space left on device"),
        "{id}: {st}"
    );
}

/// The agent process is alive and answers `/state` with `id` among its completed executors.
fn assert_agent_up(cluster: &Cluster, id: &str) {
    let pid = nix::unistd::Pid::from_raw(cluster.agent_pid(0) as i32);
    assert!(
        nix::sys::signal::kill(pid, None).is_ok(),
        "the agent died:\n{}",
        cluster.logs()
    );
    let state = crate::harness::plain::blocking_get_json(&format!(
        "http://127.0.0.2:{}/state",
        cluster.agent_port
    ));
    let known = state["frameworks"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|f| {
            f["completed_executors"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| e["id"] == id)
        });
    assert!(known, "{id} is not among the completed executors: {state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_on_a_full_disk_fails_saying_so_and_the_agent_carries_on() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0")),
        "this test mounts a tmpfs and needs root"
    );
    let mut cluster = Cluster::start(1, &["--status-update-retry", "0.5"]);
    // Move the agent onto a 4 MiB tmpfs: stop it, mount over its work dir, start it again.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(cluster.agent_pid(0) as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let work = cluster.dir.path().join("agent0");
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&work)
        .status()
        .unwrap();
    assert!(ok.success(), "cannot mount a tmpfs");
    let _mount = Tmpfs(work.clone());
    cluster.start_agent_again(0);
    // Both sources live outside the tmpfs.
    let big = cluster.dir.path().join("big.bin");
    std::fs::write(&big, vec![7u8; 8 << 20]).unwrap();
    let small = cluster.dir.path().join("small.txt");
    std::fs::write(&small, "x".repeat(64 << 10)).unwrap();
    let mut s = Scheduler::subscribe(
        &cluster.master,
        json!({"user": "root", "name": "full-disk-launch", "checkpoint": true}),
    )
    .await;
    let mut offers = Vec::new();

    // 1. A fetch larger than the free space: the task fails saying why, before any executor
    // runs, and the partial copy is gone, so the failure can be checkpointed and sent at once.
    launch_fetching(&mut s, &mut offers, "too-big", &big, "echo ran > ran").await;
    let (states, st) = end_of(&mut s, "too-big", 30, &mut offers).await;
    assert_disk_full_failure("too-big", &states, &st);
    let sandbox = crate::harness::sandbox_of(&cluster, "127.0.0.2", "too-big");
    assert!(
        !std::path::Path::new(&format!("{sandbox}/big.bin")).exists(),
        "the partial download was left in {sandbox}"
    );
    assert!(!std::path::Path::new(&format!("{sandbox}/ran")).exists());
    assert_agent_up(&cluster, "too-big");

    // 2. A disk with no space at all when the task is launched: the fetch fails, and the
    // failure cannot be made durable, so nothing at all is reported (no false success) while
    // the agent keeps answering; once there is space the failure arrives, saying why.
    let fill = work.join("fill");
    let _ = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", fill.display()))
        .stderr(std::process::Stdio::null())
        .status();
    launch_fetching(&mut s, &mut offers, "on-full", &small, "cat small.txt").await;
    quiet_while_full(&mut s, &mut offers, 4.0).await;
    assert_agent_up(&cluster, "on-full");
    // A plain launch (nothing to fetch) on the full disk fails too, naming the cause.
    while offers.is_empty() {
        let ev = s.next("OFFERS", 15).await;
        offers.extend(
            ev["offers"]["offers"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        );
    }
    let offer = offers.remove(0);
    let t = crate::harness::task(&offer, "plain", "echo ran > ran", 0.1);
    assert_eq!(s.call(crate::harness::launch(&offer, vec![t])).await.0, 202);
    quiet_while_full(&mut s, &mut offers, 3.0).await;
    assert_agent_up(&cluster, "plain");
    std::fs::remove_file(&fill).unwrap();
    // Both end; keep the offers that come meanwhile (await_ends would drop them).
    let mut ended = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while ended.len() < 2 {
        let ev = tokio::time::timeout_at(deadline, s.events.recv())
            .await
            .unwrap_or_else(|_| panic!("only {ended:?} ended"))
            .expect("stream open");
        if ev["type"] == "OFFERS" {
            offers.extend(
                ev["offers"]["offers"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            );
        } else if ev["type"] == "UPDATE" {
            let st = ev["update"]["status"].clone();
            s.ack(&st).await;
            assert_eq!(st["state"], "TASK_FAILED", "{st}");
            ended.insert(st["task_id"]["value"].as_str().unwrap().to_string(), st);
        }
    }
    assert_disk_full_failure("on-full", &["TASK_FAILED".to_string()], &ended["on-full"]);
    let plain = &ended["plain"];
    assert_eq!(plain["state"], "TASK_FAILED", "{plain}");
    assert_eq!(plain["reason"], "REASON_CONTAINER_LAUNCH_FAILED", "{plain}");
    assert!(
        plain["message"]
            .as_str()
            .is_some_and(|m| m.contains("No space left on device")),
        "{plain}"
    );

    // 3. With space again, the same launch succeeds.
    launch_fetching(
        &mut s,
        &mut offers,
        "after",
        &small,
        "test $(wc -c < small.txt) -eq 65536",
    )
    .await;
    let (states, st) = end_of(&mut s, "after", 30, &mut offers).await;
    assert_eq!(
        states,
        ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"],
        "{st}"
    );
}

/// Drains `secs` of events while the disk is full: offers are kept, and no update may go out
/// (none can be on disk).
async fn quiet_while_full(s: &mut Scheduler, offers: &mut Vec<Value>, secs: f64) {
    for ev in s.drain(secs).await {
        if ev["type"] == "OFFERS" {
            offers.extend(
                ev["offers"]["offers"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            );
        }
        assert!(
            ev["type"] != "UPDATE",
            "an update went out while the disk was full: {ev}"
        );
    }
}

/// Appends newlines to the agent's update logs under `meta` until the disk refuses a byte.
fn fill_update_log_slack(meta: &std::path::Path) {
    use std::io::Write;
    let logs: Vec<_> = std::fs::read_dir(meta)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    assert!(!logs.is_empty(), "no update log in {meta:?}");
    for log in logs {
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        while f.write_all(b"\n").and_then(|_| f.sync_data()).is_ok() {}
    }
}
