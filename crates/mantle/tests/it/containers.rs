//! The `mesos` containerizer with cgroups isolation, on the host's real cgroups: memory limits
//! end tasks with Mesos's reason, cpu quotas hold, kills leave nothing behind, and a restarted
//! agent destroys the containers it cannot recover. These tests need root and cgroups; without
//! them they fail (the agent refuses to start), they never skip.

use crate::harness::{launch, pids, processes_with, task, Cluster, Scheduler};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn fw() -> Value {
    json!({"user": "root", "name": "containers-test", "checkpoint": true, "capabilities": [{"type": "PARTITION_AWARE"}]})
}

/// Fails loudly when the tests cannot use cgroups at all.
fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let uid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap();
    assert_eq!(
        uid, "0",
        "the cgroups tests need root (effective uid is {uid})"
    );
}

/// A cgroups root unique to this test, so parallel tests never share containers.
fn root(name: &str) -> String {
    format!("mantle-test/{}-{name}", std::process::id())
}

fn cgroups_cluster(name: &str) -> (Cluster, String) {
    require_root();
    let root = root(name);
    let cluster = Cluster::start(
        1,
        &[
            "--isolation",
            "cgroups/cpu,cgroups/mem,cgroups/pids",
            "--cgroups-enable-cfs",
            "--cgroups-root",
            &root,
        ],
    );
    (cluster, root)
}

fn with_mem(mut t: Value, mem: f64) -> Value {
    t["resources"][1]["scalar"]["value"] = json!(mem);
    t
}

async fn statistics(cluster: &Cluster) -> Vec<Value> {
    let url = format!("http://127.0.0.2:{}/monitor/statistics", cluster.agent_port);
    let v: Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
    v.as_array().unwrap().clone()
}

/// The container's memory cgroup directory (v1 here; the same path under the v2 mount).
fn memory_cgroup(root: &str, container_id: &str) -> std::path::PathBuf {
    let v1 = std::path::Path::new("/sys/fs/cgroup/memory");
    if v1.join(root).exists() {
        v1.join(root).join(container_id)
    } else {
        std::path::Path::new("/sys/fs/cgroup")
            .join(root)
            .join(container_id)
    }
}

/// The environment `pid` was started with (`/proc/<pid>/environ`).
fn environ(pid: i32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    raw.split(|b| *b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

fn parent_of(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')')
        .and_then(|(_, r)| r.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

/// Standby executors started for the agent at `endpoint` (assigned ones included).
fn standbys_of(endpoint: &str) -> Vec<i32> {
    let want = format!("MESOS_AGENT_ENDPOINT={endpoint}");
    pids()
        .into_iter()
        .filter(|p| {
            let env = environ(*p);
            env.iter().any(|v| v == "MANTLE_EXECUTOR_STANDBY=1") && env.contains(&want)
        })
        .collect()
}

async fn wait_until(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_task_over_its_memory_limit_fails_with_the_memory_limitation() {
    let (cluster, root) = cgroups_cluster("oom");
    let mut s = Scheduler::subscribe(&cluster.master, fw()).await;
    let offer = s.next("OFFERS", 10).await["offers"]["offers"][0].clone();
    // 64 MB asked (96 with the executor's share); the task writes 400 MB.
    let hog = with_mem(
        task(
            &offer,
            "hog",
            "python3 -c 'import time; b = b\"x\" * (400 << 20); time.sleep(60)'",
            0.5,
        ),
        64.0,
    );
    assert_eq!(s.call(launch(&offer, vec![hog])).await.0, 202);
    let st = s.await_state("hog", "TASK_FAILED", 30).await;
    assert_eq!(
        st["reason"],
        "REASON_CONTAINER_LIMITATION_MEMORY",
        "{st}\n{}",
        cluster.logs()
    );
    assert_eq!(st["source"], "SOURCE_AGENT");
    let message = st["message"].as_str().unwrap();
    assert!(
        message.contains("Memory limit exceeded: Requested: 96MB"),
        "{message}"
    );
    // The container's cgroups are gone with it.
    let base = memory_cgroup(&root, "");
    wait_until("the container's cgroup is removed", 10, || {
        std::fs::read_dir(&base)
            .map(|rd| rd.flatten().all(|e| !e.path().is_dir()))
            .unwrap_or(true)
    })
    .await;
}

#[tokio::test]
async fn a_busy_loop_gets_its_cpu_quota_and_is_reported() {
    let (cluster, _root) = cgroups_cluster("cpu");
    let mut s = Scheduler::subscribe(&cluster.master, fw()).await;
    let offer = s.next("OFFERS", 10).await["offers"]["offers"][0].clone();
    // 0.2 cpus asked: with the executor's 0.1, the container may use 0.3 of a cpu.
    let spin = task(&offer, "spin", "while :; do :; done", 0.2);
    assert_eq!(s.call(launch(&offer, vec![spin])).await.0, 202);
    s.await_state("spin", "TASK_RUNNING", 10).await;
    let cpu = |v: &Vec<Value>| -> (f64, Value) {
        let e = v
            .iter()
            .find(|e| e["executor_id"] == "spin")
            .unwrap_or_else(|| panic!("no statistics for spin in {v:?}"));
        let st = &e["statistics"];
        (
            st["cpus_user_time_secs"].as_f64().unwrap()
                + st["cpus_system_time_secs"].as_f64().unwrap(),
            st.clone(),
        )
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (t0, _) = cpu(&statistics(&cluster).await);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (t1, st) = cpu(&statistics(&cluster).await);
    let share = (t1 - t0) / start.elapsed().as_secs_f64();
    assert!(
        (0.15..=0.42).contains(&share),
        "a 0.3-cpu container used {share:.3} of a cpu: {st}"
    );
    assert!(
        (st["cpus_limit"].as_f64().unwrap() - 0.3).abs() < 0.01,
        "{st}"
    );
    assert_eq!(st["mem_limit_bytes"], json!(64u64 << 20), "{st}");
    assert!(st["cpus_nr_throttled"].as_u64().unwrap() > 0, "{st}");
    assert!(st["mem_rss_bytes"].as_u64().is_some(), "{st}");
    s.call(json!({"type": "KILL", "kill": {"task_id": {"value": "spin"}}}))
        .await;
    s.await_state("spin", "TASK_KILLED", 15).await;
}

#[tokio::test]
async fn a_kill_leaves_no_process_of_the_task_even_outside_its_process_group() {
    let (cluster, root) = cgroups_cluster("kill");
    let mut s = Scheduler::subscribe(&cluster.master, fw()).await;
    let offer = s.next("OFFERS", 10).await["offers"]["offers"][0].clone();
    // `setsid` puts a sleeper in a session and process group of its own, out of reach of a
    // process-group kill; only the cgroup still holds it.
    let marker = format!("{}.{}", 7000 + std::process::id() % 1000, 17);
    let cmd = format!("setsid sleep {marker} & sleep {marker} & wait");
    assert_eq!(
        s.call(launch(&offer, vec![task(&offer, "sleepers", &cmd, 0.1)]))
            .await
            .0,
        202
    );
    s.await_state("sleepers", "TASK_RUNNING", 10).await;
    wait_until("both sleepers run", 10, || {
        processes_with(&format!("sleep {marker}")).len() == 2
    })
    .await;
    let stats = statistics(&cluster).await;
    let container = stats[0]["container_id"].as_str().unwrap().to_string();
    let procs = memory_cgroup(&root, &container).join("cgroup.procs");
    assert!(std::fs::read_to_string(&procs).unwrap().lines().count() >= 3);
    s.call(json!({"type": "KILL", "kill": {"task_id": {"value": "sleepers"}}}))
        .await;
    s.await_state("sleepers", "TASK_KILLED", 15).await;
    wait_until("no sleeper is left", 10, || {
        processes_with(&format!("sleep {marker}")).is_empty()
    })
    .await;
    wait_until("the container's cgroup is removed", 10, || {
        !memory_cgroup(&root, &container).exists()
    })
    .await;
}

/// One line of `/proc/<pid>/cgroup` per hierarchy, joined by spaces.
fn cgroups_of(pid: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .replace('\n', " ")
}

#[tokio::test]
async fn a_standby_executor_serves_one_container_after_another_and_leaves_each() {
    let (cluster, root) = cgroups_cluster("recycle");
    let mut s = Scheduler::subscribe(&cluster.master, fw()).await;
    let out = std::env::temp_dir().join(format!("mantle-recycle-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let mut executors = Vec::new();
    for name in ["first", "second"] {
        let offer = s.next("OFFERS", 15).await["offers"]["offers"][0].clone();
        let file = out.join(name);
        // What the task sees: its parent (the executor), its variables, its cgroups, its
        // sandbox; and a line on its stdout.
        let cmd = format!(
            "echo \"$PPID|$MESOS_TASK_ID|$MESOS_EXECUTOR_ID|$MANTLE_EXECUTOR_STANDBY|$MANTLE_CGROUP_PROCS|$(cat /proc/self/cgroup | tr '\\n' ' ')|$PWD\" > {}; echo output of $MESOS_TASK_ID",
            file.display()
        );
        assert_eq!(
            s.call(launch(&offer, vec![task(&offer, name, &cmd, 0.1)]))
                .await
                .0,
            202
        );
        s.await_state(name, "TASK_FINISHED", 15).await;
        let line = std::fs::read_to_string(&file).unwrap();
        let f: Vec<&str> = line.trim_end().split('|').collect();
        assert_eq!(f.len(), 7, "{line}");
        // Its output, in its own sandbox only (copied as the agent asked: rotated).
        let stdout = std::fs::read_to_string(std::path::Path::new(f[6]).join("stdout")).unwrap();
        assert_eq!(stdout, format!("output of {name}\n"));
        // Its own container's variables only, nothing of the standby's or the last one's.
        assert_eq!((f[1], f[2], f[3], f[4]), (name, name, "", ""), "{line}");
        let container = f[5]
            .split(&format!("{root}/"))
            .nth(1)
            .and_then(|r| r.split(|c: char| c == '/' || c.is_whitespace()).next())
            .unwrap_or_else(|| panic!("the task ran outside its container's cgroups: {line}"))
            .to_string();
        // The container ends: its cgroups are removed while its executor lives on, out of
        // them, out of the sandbox, waiting for the next one.
        wait_until("the container's cgroup is removed", 10, || {
            !memory_cgroup(&root, &container).exists()
        })
        .await;
        let executor = f[0];
        assert!(
            environ(executor.parse().unwrap()).contains(&"MANTLE_EXECUTOR_STANDBY=1".to_string()),
            "the executor {executor} is not a live standby"
        );
        let cgroups = cgroups_of(executor);
        assert!(!cgroups.contains(&root), "{cgroups}");
        let cwd = std::fs::read_link(format!("/proc/{executor}/cwd")).unwrap();
        assert_eq!(cwd, std::path::Path::new("/"));
        executors.push(executor.to_string());
    }
    assert_eq!(
        executors[0], executors[1],
        "the second container was not served by the first one's executor"
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[tokio::test]
async fn a_restarted_agent_keeps_its_recovered_containers_and_destroys_orphans() {
    let (mut cluster, root) = cgroups_cluster("orphans");
    let mut s = Scheduler::subscribe(&cluster.master, fw()).await;
    let offer = s.next("OFFERS", 10).await["offers"]["offers"][0].clone();
    let kept_marker = format!("{}.{}", 8000 + std::process::id() % 1000, 23);
    let cmd = format!("sleep {kept_marker}");
    assert_eq!(
        s.call(launch(&offer, vec![task(&offer, "kept", &cmd, 0.1)]))
            .await
            .0,
        202
    );
    s.await_state("kept", "TASK_RUNNING", 10).await;
    let container = statistics(&cluster).await[0]["container_id"]
        .as_str()
        .unwrap()
        .to_string();
    let kept_pid = processes_with(&format!("sleep {kept_marker}"));
    assert_eq!(kept_pid.len(), 1);
    // Its executor was a standby the agent had started ahead (so its container's environment
    // is not in /proc/<pid>/environ, and recovery must find it by its sandbox); the agent has
    // standbys ready for the next launches too.
    let mut executor = parent_of(kept_pid[0]);
    while environ(executor).contains(&"MESOS_TASK_ID=kept".to_string()) {
        executor = parent_of(executor); // the task's shell
    }
    let endpoint = format!("127.0.0.2:{}", cluster.agent_port);
    assert!(
        environ(executor).contains(&"MANTLE_EXECUTOR_STANDBY=1".to_string()),
        "the executor {executor} was not a standby: {:?}",
        environ(executor)
    );
    // The agent turned on the kernel's favordynmods (the machine's kernel is 6.0 or later).
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        mountinfo.lines().any(|l| l.contains(" - cgroup ")
            && l.rsplit(' ')
                .next()
                .is_some_and(|o| o.split(',').any(|x| x == "favordynmods"))),
        "no cgroup mount with favordynmods:\n{mountinfo}"
    );
    wait_until("the agent has standbys ready", 10, || {
        standbys_of(&endpoint).len() > 1
    })
    .await;
    let idle: Vec<i32> = standbys_of(&endpoint)
        .into_iter()
        .filter(|p| *p != executor)
        .collect();
    // An orphan: a cgroup under this agent's root that no checkpoint names, with a process.
    let orphan_marker = format!("{}.{}", 8000 + std::process::id() % 1000, 29);
    let mut orphan = std::process::Command::new("sleep")
        .arg(&orphan_marker)
        .spawn()
        .unwrap();
    for ctrl in ["cpu", "cpuacct", "memory", "pids", "freezer"] {
        let dir = std::path::Path::new("/sys/fs/cgroup")
            .join(ctrl)
            .join(&root)
            .join("orphan-x");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cgroup.procs"), orphan.id().to_string()).unwrap();
    }
    // SIGKILL the agent and start it again: the executor and its task live on and are taken
    // over; the orphan is destroyed.
    cluster.restart_agent(0);
    let reaped = tokio::task::spawn_blocking(move || orphan.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(!reaped.success(), "the orphan was killed");
    // The killed agent's idle standbys saw their stdin close and ended.
    wait_until("the old agent's idle standbys are gone", 10, || {
        idle.iter()
            .all(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
    })
    .await;
    wait_until("the orphan's cgroup is removed", 15, || {
        !memory_cgroup(&root, "orphan-x").exists()
    })
    .await;
    assert_eq!(processes_with(&format!("sleep {kept_marker}")), kept_pid);
    assert!(memory_cgroup(&root, &container).exists());
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let stats = statistics(&cluster).await;
    assert_eq!(stats.len(), 1, "{stats:?}");
    assert_eq!(stats[0]["container_id"], container.as_str());
    // The recovered container is still the agent's to kill.
    s.call(json!({"type": "KILL", "kill": {"task_id": {"value": "kept"}}}))
        .await;
    s.await_state("kept", "TASK_KILLED", 20).await;
    wait_until("the kept task is gone", 10, || {
        processes_with(&format!("sleep {kept_marker}")).is_empty()
    })
    .await;
    wait_until("its cgroup is removed", 10, || {
        !memory_cgroup(&root, &container).exists()
    })
    .await;
}

#[tokio::test]
async fn namespaces_give_tasks_their_own_proc_and_tmp_and_tasks_run_as_their_user() {
    require_root();
    let root = root("ns");
    let cluster = Cluster::start(
        1,
        &[
            "--isolation",
            "cgroups/cpu,cgroups/mem,namespaces/pid",
            "--cgroups-root",
            &root,
            "--switch-user",
        ],
    );
    let mut s = Scheduler::subscribe(&cluster.master, fw()).await;
    let offer = s.next("OFFERS", 10).await["offers"]["offers"][0].clone();
    let marker = format!("ns-marker-{}", std::process::id());
    let cmd = format!(
        "id -u > uid.txt; echo $$ > pid.txt; ls /proc | grep -c '^[0-9]' > procs.txt; echo x > /tmp/{marker}"
    );
    let mut as_nobody = task(&offer, "nobody-task", &cmd, 0.1);
    as_nobody["command"]["user"] = json!("nobody");
    let mut ghost = task(&offer, "ghost-task", "true", 0.1);
    ghost["command"]["user"] = json!("no-such-user-here");
    assert_eq!(s.call(launch(&offer, vec![as_nobody, ghost])).await.0, 202);
    let ended = s.await_ends(&["nobody-task", "ghost-task"], 30).await;
    assert_eq!(ended["nobody-task"]["state"], "TASK_FINISHED", "{ended:?}");
    let ghost = &ended["ghost-task"];
    assert_eq!(ghost["state"], "TASK_FAILED");
    assert_eq!(ghost["reason"], "REASON_CONTAINER_LAUNCH_FAILED");
    assert!(
        ghost["message"]
            .as_str()
            .unwrap()
            .contains("user 'no-such-user-here' does not exist"),
        "{ghost}"
    );
    let sandbox = crate::harness::sandbox_of(&cluster, "127.0.0.2", "nobody-task");
    let read = |f: &str| {
        std::fs::read_to_string(format!("{sandbox}/{f}"))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(read("uid.txt"), "65534", "the task ran as nobody");
    let pid: u32 = read("pid.txt").parse().unwrap();
    assert!(
        pid < 100,
        "the task's shell is pid {pid}: not in a namespace of its own"
    );
    let procs: u32 = read("procs.txt").parse().unwrap();
    assert!(procs < 10, "the task sees {procs} processes in /proc");
    assert!(std::path::Path::new(&sandbox)
        .join("tmp")
        .join(&marker)
        .exists());
    assert!(
        !std::path::Path::new("/tmp").join(&marker).exists(),
        "/tmp was not private"
    );
}
