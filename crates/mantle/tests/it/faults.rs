//! Faults with real processes: a scheduler failing over to a new connection, and a master
//! killed with SIGKILL and restarted while an agent runs a task.

use crate::harness::{launch, plain, sandbox_of, task, Cluster, Scheduler};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Waits for the event stream to end (the harness turns the end into `__CLOSED__`),
/// returning every event before it.
async fn until_closed(s: &mut Scheduler, secs: u64) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut seen = Vec::new();
    loop {
        let ev = tokio::time::timeout_at(deadline, s.events.recv())
            .await
            .unwrap_or_else(|_| panic!("stream still open after {secs}s; saw {seen:?}"))
            .expect("the reader reports the end before it stops");
        if ev["type"] == "__CLOSED__" {
            return seen;
        }
        seen.push(ev);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_subscribe_with_the_framework_id_fails_over_the_first_stream() {
    // Goal: Mesos scheduler failover over HTTP. Method: subscribe, get an offer, subscribe
    // again with framework_info.id set on a new connection; the first stream must carry
    // ERROR "Framework failed over" and end, the second must work as the framework.
    let cluster = Cluster::start(1, &[]);
    let info = json!({"user": "root", "name": "failover-test", "failover_timeout": 60.0});
    let mut first = Scheduler::subscribe(&cluster.master, info.clone()).await;
    let offer = first.next("OFFERS", 10).await["offers"]["offers"][0].clone();

    let mut again = info;
    again["id"] = json!({"value": first.framework_id});
    let mut second = Scheduler::subscribe(&cluster.master, again).await;
    assert_eq!(second.framework_id, first.framework_id);
    assert_ne!(second.stream_id, first.stream_id);

    let rest = until_closed(&mut first, 10).await;
    let errors: Vec<&Value> = rest.iter().filter(|e| e["type"] == "ERROR").collect();
    assert_eq!(errors.len(), 1, "one ERROR on the old stream: {rest:?}");
    assert_eq!(errors[0]["error"]["message"], "Framework failed over");
    assert_eq!(
        rest.last().map(|e| &e["type"]),
        Some(&json!("ERROR")),
        "the ERROR is the last event before the stream ends: {rest:?}"
    );

    // The old connection's stream ID is rejected; the new one is the framework now.
    let (code, body) = first.call(json!({"type": "REVIVE", "revive": {}})).await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("didn't match the stream ID"), "{body}");
    // The offer the old instance held is taken back and offered again to the new one, which
    // can launch on it.
    let offer2 = second.next("OFFERS", 10).await["offers"]["offers"][0].clone();
    assert_eq!(offer2["agent_id"], offer["agent_id"]);
    assert_ne!(offer2["id"], offer["id"]);
    let (code, body) = second
        .call(launch(
            &offer2,
            vec![task(&offer2, "after-failover", "sleep 0.1", 0.1)],
        ))
        .await;
    assert_eq!(code, 202, "{body}");
    second
        .await_state("after-failover", "TASK_FINISHED", 20)
        .await;
    let frameworks = plain::blocking_get_json(&format!("{}/master/frameworks", cluster.master));
    let list = frameworks["frameworks"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{frameworks}");
    assert_eq!(list[0]["id"], first.framework_id.as_str());
    assert_eq!(list[0]["active"], true, "{frameworks}");
}

fn pid_alive(pid: i32) -> bool {
    // A zombie still has a /proc entry; only a running or sleeping process counts.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_string))
        })
        .is_some_and(|state| state != "Z" && state != "X")
}

fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// Polls `f` every 100 ms until it returns `Some`, for at most `secs`.
async fn eventually<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what} within {secs}s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_re_registers_with_a_restarted_master_and_keeps_its_task() {
    // Goal: a master crash loses nothing that runs. Method: a task that records its PID
    // runs; the master is killed with SIGKILL and a new one started on the same port and
    // work dir; the agent must come back under its old ID with the task still running in
    // the same process, and the framework must re-subscribe and reconcile it.
    let mut cluster = Cluster::start(1, &[]);
    let info = json!({"user": "root", "name": "restart-test", "failover_timeout": 3600.0});
    let mut s = Scheduler::subscribe(&cluster.master, info.clone()).await;
    let offer = s.next("OFFERS", 10).await["offers"]["offers"][0].clone();
    let agent_id = offer["agent_id"]["value"].as_str().unwrap().to_string();
    let cmd = "echo $$ > pidfile && exec sleep 300";
    let (code, body) = s
        .call(launch(&offer, vec![task(&offer, "survivor", cmd, 0.1)]))
        .await;
    assert_eq!(code, 202, "{body}");
    s.await_state("survivor", "TASK_RUNNING", 20).await;
    let ip = offer["hostname"].as_str().unwrap().to_string();
    let pidfile = std::path::PathBuf::from(sandbox_of(&cluster, &ip, "survivor")).join("pidfile");
    let pid: i32 = eventually(10, "the task writes its pidfile", || {
        std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|t| t.trim().parse().ok())
    })
    .await;
    assert!(
        pid_alive(pid) && cmdline(pid).contains("sleep 300"),
        "pid {pid}: {}",
        cmdline(pid)
    );

    let slaves_url = format!("{}/master/slaves", cluster.master);
    let used_before = plain::blocking_get_json(&slaves_url)["slaves"][0]["used_resources"].clone();
    assert_eq!(used_before["cpus"], 0.1, "{used_before}");

    let old_master_pid = cluster.master_pid();
    let restarted = Instant::now();
    cluster.restart_master();
    assert_ne!(cluster.master_pid(), old_master_pid);
    // The scheduler's stream died with the old master.
    until_closed(&mut s, 10).await;

    // The restarted master knows the agent and its task from its registry at once (inactive
    // until it re-registers); reconciliation needs no agent.
    let early = plain::blocking_get_json(&format!("{}/master/tasks", cluster.master));
    assert_eq!(early["tasks"][0]["id"], "survivor", "{early}");
    // The agent re-registers under the ID the old master gave it, with its task.
    let slave = eventually(30, "the agent re-registers", || {
        let v = plain::blocking_get_json(&slaves_url);
        v["slaves"].as_array().and_then(|a| {
            a.iter()
                .find(|x| x["id"] == agent_id.as_str() && x["active"] == true)
                .cloned()
        })
    })
    .await;
    let reregistered = restarted.elapsed();
    assert_eq!(slave["active"], true, "{slave}");
    assert_eq!(slave["used_resources"], used_before, "{slave}");
    let slaves = plain::blocking_get_json(&slaves_url);
    assert_eq!(slaves["slaves"].as_array().unwrap().len(), 1, "{slaves}");
    let tasks = plain::blocking_get_json(&format!("{}/master/tasks", cluster.master));
    let list = tasks["tasks"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{tasks}");
    assert_eq!(list[0]["id"], "survivor");
    assert_eq!(list[0]["state"], "TASK_RUNNING", "{tasks}");
    assert_eq!(list[0]["slave_id"], agent_id.as_str());
    assert_eq!(list[0]["framework_id"], s.framework_id.as_str());

    // Not restarted: the same process still runs, and the pidfile was not rewritten.
    assert!(pid_alive(pid), "task process {pid} is gone");
    assert!(cmdline(pid).contains("sleep 300"), "{}", cmdline(pid));
    assert_eq!(
        std::fs::read_to_string(&pidfile).unwrap().trim(),
        pid.to_string()
    );

    // The framework comes back with its ID and reconciles the task explicitly.
    let mut again = info;
    again["id"] = json!({"value": s.framework_id});
    let mut s2 = Scheduler::subscribe(&cluster.master, again).await;
    assert_eq!(s2.framework_id, s.framework_id);
    // Its offer leaves out what the adopted task uses.
    let offer = s2.next("OFFERS", 10).await["offers"]["offers"][0].clone();
    let cpus = offer["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "cpus")
        .map(|r| r["scalar"]["value"].clone());
    assert_eq!(cpus, Some(json!(1.9)), "{offer}");
    let (code, body) = s2
        .call(json!({"type": "RECONCILE", "reconcile": {"tasks": [
            {"task_id": {"value": "survivor"}, "agent_id": {"value": agent_id}}]}}))
        .await;
    assert_eq!(code, 202, "{body}");
    let st = s2.await_state("survivor", "TASK_RUNNING", 10).await;
    eprintln!(
        "master kill -9 and restart: agent re-registered after {:.2} s, framework re-subscribed and reconciled after {:.2} s",
        reregistered.as_secs_f64(),
        restarted.elapsed().as_secs_f64()
    );
    assert_eq!(st["agent_id"]["value"], agent_id.as_str());
    assert_eq!(st["reason"], "REASON_RECONCILIATION", "{st}");

    // And it still controls the task through the new master.
    let (code, body) = s2
        .call(json!({"type": "KILL", "kill": {"task_id": {"value": "survivor"}}}))
        .await;
    assert_eq!(code, 202, "{body}");
    s2.await_state("survivor", "TASK_KILLED", 20).await;
    eventually(10, "the task process ends after KILL", || {
        (!pid_alive(pid)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_agent_goes_unreachable_and_its_tasks_come_back_when_it_resumes() {
    // Goal: the master's pings find an agent that stopped answering (SIGSTOP), partition-aware
    // frameworks see TASK_UNREACHABLE, and when the agent resumes its task is back untouched.
    let cluster = Cluster::start_with(
        1,
        &[],
        &[
            "--agent-ping-timeout",
            "0.5",
            "--max-agent-ping-timeouts",
            "3",
        ],
    );
    let mut s = Scheduler::subscribe(
        &cluster.master,
        json!({"user": "root", "name": "partition-test", "checkpoint": true,
               "capabilities": [{"type": "PARTITION_AWARE"}]}),
    )
    .await;
    let offer = s.next("OFFERS", 10).await["offers"]["offers"][0].clone();
    let (code, body) = s
        .call(launch(
            &offer,
            vec![task(&offer, "paused", "sleep 600", 0.1)],
        ))
        .await;
    assert_eq!(code, 202, "{body}");
    s.await_state("paused", "TASK_RUNNING", 15).await;
    // Let the agent answer a few pings first: the master judges by pings only agents that
    // have answered one (others only by their connection).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let agent = nix::unistd::Pid::from_raw(cluster.agent_pid(0) as i32);
    /// Resumes the agent however the test ends, so it can shut its executors down.
    struct Resume(nix::unistd::Pid);
    impl Drop for Resume {
        fn drop(&mut self) {
            let _ = nix::sys::signal::kill(self.0, nix::sys::signal::Signal::SIGCONT);
        }
    }
    nix::sys::signal::kill(agent, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let resume = Resume(agent);
    let gone = Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let st = loop {
        let ev = tokio::time::timeout_at(deadline, s.events.recv())
            .await
            .unwrap_or_else(|_| {
                let alog = std::fs::read_to_string(cluster.dir.path().join("agent0.log"))
                    .unwrap_or_default();
                let lines: Vec<&str> = alog
                    .lines()
                    .filter(|l| {
                        l.contains("to master")
                            || l.contains("mantle_agent")
                            || l.contains("WARN")
                            || l.contains("master")
                    })
                    .collect();
                panic!("no TASK_UNREACHABLE\nAGENT:\n{}", lines.join("\n"))
            })
            .unwrap();
        if ev["type"] == "UPDATE" && ev["update"]["status"]["state"] == "TASK_UNREACHABLE" {
            break ev["update"]["status"].clone();
        }
    };
    let noticed = gone.elapsed();
    drop(resume);
    assert_eq!(st["source"], "SOURCE_MASTER", "{st}");
    let back = s.await_state("paused", "TASK_RUNNING", 30).await;
    assert_eq!(back["task_id"]["value"], "paused");
    let tasks = cluster.state()["frameworks"][0]["tasks"].clone();
    assert_eq!(tasks[0]["state"], "TASK_RUNNING", "{tasks}");
    eprintln!(
        "agent paused: TASK_UNREACHABLE after {:.2} s (window 1.5 s)",
        noticed.as_secs_f64()
    );
}

/// The app's tasks as `/v2/apps/{id}/tasks` lists them: (task id, state, agent id).
fn marathon_tasks(url: &str, app: &str) -> Vec<(String, String, String)> {
    let v = plain::blocking_get_json(&format!("{url}/v2/apps/{app}/tasks"));
    let mut out: Vec<(String, String, String)> = v["tasks"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|t| {
            (
                t["id"].as_str().unwrap_or_default().to_string(),
                t["state"].as_str().unwrap_or_default().to_string(),
                t["slaveId"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_generated_update_missed_by_a_disconnected_framework_survives_a_master_kill() {
    // Goal (beyond Mesos): an update the master makes itself reaches the framework however
    // late, exactly until acknowledged. Method: a partition-aware framework runs a task and
    // goes away; its agent is paused (SIGSTOP) until the master marks it unreachable, so the
    // task's TASK_UNREACHABLE finds nobody to tell; the master is killed with SIGKILL and
    // restarted; the framework re-subscribes with its ID and must get that TASK_UNREACHABLE,
    // with a uuid, and acknowledge it; after another kill -9 and re-subscription it must not
    // come again.
    let mut cluster = Cluster::start_with(
        1,
        &[],
        &[
            "--agent-ping-timeout",
            "0.5",
            "--max-agent-ping-timeouts",
            "3",
        ],
    );
    let info = json!({"user": "root", "name": "outbox-test", "checkpoint": true,
        "failover_timeout": 3600.0, "capabilities": [{"type": "PARTITION_AWARE"}]});
    let mut s = Scheduler::subscribe(&cluster.master, info.clone()).await;
    let offer = s.next("OFFERS", 10).await["offers"]["offers"][0].clone();
    let agent_id = offer["agent_id"]["value"].as_str().unwrap().to_string();
    let (code, body) = s
        .call(launch(
            &offer,
            vec![task(&offer, "cut-off", "sleep 600", 0.1)],
        ))
        .await;
    assert_eq!(code, 202, "{body}");
    s.await_state("cut-off", "TASK_RUNNING", 15).await;
    // Let the agent answer pings first (the master judges by pings only agents that have).
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // The framework goes away; the master sees its stream end.
    let framework_id = s.framework_id.clone();
    s.disconnect();
    let frameworks_url = format!("{}/master/frameworks", cluster.master);
    eventually(20, "the master sees the framework disconnected", || {
        let v = plain::blocking_get_json(&frameworks_url);
        v["frameworks"]
            .as_array()
            .and_then(|a| a.iter().find(|f| f["id"] == framework_id.as_str()))
            .filter(|f| f["active"] == false)
            .map(|_| ())
    })
    .await;

    // Its agent stops answering: unreachable, while nobody listens.
    let agent = nix::unistd::Pid::from_raw(cluster.agent_pid(0) as i32);
    /// Resumes the agent however the test ends, so it can shut its executors down.
    struct Resume(nix::unistd::Pid);
    impl Drop for Resume {
        fn drop(&mut self) {
            let _ = nix::sys::signal::kill(self.0, nix::sys::signal::Signal::SIGCONT);
        }
    }
    nix::sys::signal::kill(agent, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let resume = Resume(agent);
    eventually(20, "the master marks the paused agent unreachable", || {
        (cluster.state()["unreachable_slaves"] == 1).then_some(())
    })
    .await;

    // kill -9 of the master, and a new one from the same registry.
    cluster.restart_master();
    let mut again = info.clone();
    again["id"] = json!({"value": framework_id});
    let mut s2 = Scheduler::subscribe(&cluster.master, again.clone()).await;
    assert_eq!(s2.framework_id, framework_id);
    let ev = s2.next("UPDATE", 10).await;
    let st = ev["update"]["status"].clone();
    assert_eq!(st["task_id"]["value"], "cut-off", "{st}");
    assert_eq!(st["state"], "TASK_UNREACHABLE", "{st}");
    assert_eq!(st["source"], "SOURCE_MASTER", "{st}");
    assert_eq!(st["reason"], "REASON_AGENT_REMOVED", "{st}");
    assert_eq!(st["agent_id"]["value"], agent_id.as_str(), "{st}");
    let uuid = st["uuid"]
        .as_str()
        .expect("a uuid to acknowledge")
        .to_string();
    assert_eq!(uuid.len(), 24, "16 bytes in base64: {uuid}");
    // Acknowledged (the agent is still paused: the master takes the acknowledgement itself).
    s2.ack(&st).await;
    // Reconciliation still answers it, the Mesos way: no uuid.
    let (code, body) = s2
        .call(json!({"type": "RECONCILE", "reconcile": {"tasks": [
            {"task_id": {"value": "cut-off"}, "agent_id": {"value": agent_id}}]}}))
        .await;
    assert_eq!(code, 202, "{body}");
    let rec = s2.next("UPDATE", 10).await["update"]["status"].clone();
    assert_eq!(rec["state"], "TASK_UNREACHABLE", "{rec}");
    assert_eq!(rec["reason"], "REASON_RECONCILIATION", "{rec}");
    assert!(rec.get("uuid").is_none(), "{rec}");

    // The acknowledgement is durable: after another kill -9 and re-subscription the update
    // does not come again.
    s2.disconnect();
    cluster.restart_master();
    let mut s3 = Scheduler::subscribe(&cluster.master, again).await;
    let quiet = s3.drain(3.0).await;
    assert!(
        quiet.iter().all(|e| e["type"] != "UPDATE"),
        "an acknowledged update came again: {quiet:?}"
    );

    // The agent resumes and re-registers with its task: the framework hears it runs again,
    // from the master (REASON_AGENT_REREGISTERED), also with a uuid.
    drop(resume);
    let back = s3.await_state("cut-off", "TASK_RUNNING", 60).await;
    assert_eq!(back["reason"], "REASON_AGENT_REREGISTERED", "{back}");
    assert!(back["uuid"].as_str().is_some(), "{back}");
}

/// Polls `f` every 100 ms until it returns `Some`, for at most `secs` (blocking).
fn eventually_blocking<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what} within {secs}s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A JSON POST with std only (this test runs on one thread of its own, in its own network
/// namespace, so it cannot use the runtime's worker threads); returns the status code.
fn blocking_post(url: &str, body: &Value) -> (u16, String) {
    use std::io::{Read, Write};
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest.split_once('/').expect("a path");
    let body = body.to_string();
    let mut s = std::net::TcpStream::connect(host).expect("connect");
    write!(
        s,
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).expect("read");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

/// Runs `cmd` and insists that it succeeds.
fn must(cmd: &str, args: &[&str]) {
    let out = std::process::Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} {args:?}: {e} (the partition test needs {cmd})"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn marathon_replaces_the_tasks_of_a_paused_agent_and_kills_the_extras_when_it_returns() {
    // Goal (issue 5): SIGSTOP an agent past the ping window; its tasks go UNREACHABLE and,
    // past the app's inactiveAfterSeconds, the service scheduler starts replacements on the
    // other agent. On SIGCONT the originals come back untouched and the extras are killed.
    // Never panics: healing also runs while a failed test unwinds.
    let signal = |cluster: &Cluster, index: usize, sig| {
        let agent = nix::unistd::Pid::from_raw(cluster.agent_pid(index) as i32);
        let _ = nix::sys::signal::kill(agent, sig);
    };
    marathon_partition_scenario(
        "SIGSTOP",
        |c, i, _| signal(c, i, nix::sys::signal::Signal::SIGSTOP),
        |c, i, _| signal(c, i, nix::sys::signal::Signal::SIGCONT),
    );
}

#[test]
fn an_iptables_partition_between_an_agent_and_the_master_replaces_its_tasks_until_it_heals() {
    // Goal (issue 5, REFERENCE §3.2): the same story with a real network partition, not a
    // pause: every packet between one agent's address and the master's is dropped. The test
    // runs in a private network namespace, so its iptables rules cannot touch the host. Needs
    // root.
    let scenario = std::thread::spawn(|| {
        // Only this thread (and what it spawns) enters the namespace.
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .expect("a private network namespace (the partition test needs root)");
        must("ip", &["link", "set", "lo", "up"]);
        let rule = |op: &str, src: &str, dst: &str| {
            std::process::Command::new("iptables")
                .args([op, "INPUT", "-s", src, "-d", dst, "-j", "DROP"])
                .status()
                .is_ok_and(|s| s.success())
        };
        marathon_partition_scenario(
            "iptables partition",
            |_, _, ip| {
                for (src, dst) in [(ip, "127.0.0.1"), ("127.0.0.1", ip)] {
                    assert!(rule("-I", src, dst), "iptables -I INPUT -s {src} -d {dst}");
                }
            },
            // Never panics: healing also runs while a failed test unwinds.
            |_, _, ip| {
                for (src, dst) in [(ip, "127.0.0.1"), ("127.0.0.1", ip)] {
                    let _ = rule("-D", src, dst);
                }
            },
        );
    });
    if let Err(e) = scenario.join() {
        std::panic::resume_unwind(e);
    }
}

/// A Marathon app of two instances on two agents; `cut` separates the agent of the first
/// instance from the master (given the cluster, the agent's index and its address) and `heal`
/// undoes it. Checks: the originals go TASK_UNREACHABLE, replacements run on the other agent
/// past `inactiveAfterSeconds`, and after healing exactly the originals run while the extras
/// end TASK_KILLED. Blocking, so it can run on a thread of its own (in its own namespace).
fn marathon_partition_scenario(
    what: &str,
    cut: impl Fn(&Cluster, usize, &str),
    heal: impl Fn(&Cluster, usize, &str),
) {
    let cluster = Cluster::start_with(
        2,
        &[],
        &[
            "--agent-ping-timeout",
            "0.5",
            "--max-agent-ping-timeouts",
            "3",
        ],
    );
    let port = crate::harness::free_port("127.0.0.1");
    let m = crate::marathon::Scheduler::start(&cluster, port);
    let (code, body) = blocking_post(
        &format!("{}/v2/apps", m.url),
        &json!({
            "id": "/cut", "cmd": "sleep 600", "instances": 2, "cpus": 0.1, "mem": 16,
            "portDefinitions": [],
            "unreachableStrategy": {"inactiveAfterSeconds": 1, "expungeAfterSeconds": 3600},
        }),
    );
    assert_eq!(code, 201, "{body}");
    let tasks = eventually_blocking(30, "two running tasks", || {
        let t = marathon_tasks(&m.url, "cut");
        (t.len() == 2 && t.iter().all(|(_, s, _)| s == "TASK_RUNNING")).then_some(t)
    });
    let victim_agent = tasks[0].2.clone();
    let slaves = plain::blocking_get_json(&format!("{}/master/slaves", cluster.master));
    let slave = slaves["slaves"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == victim_agent.as_str())
        .cloned()
        .expect("the task's agent is registered");
    // Agents use their --ip (127.0.0.2 + index) as their hostname.
    let ip = slave["hostname"].as_str().unwrap_or_default().to_string();
    let index = ip
        .strip_prefix("127.0.0.")
        .and_then(|n| n.parse::<usize>().ok())
        .and_then(|n| n.checked_sub(2))
        .unwrap_or_else(|| panic!("which agent is {slave}?"));
    let originals: Vec<String> = tasks
        .iter()
        .filter(|t| t.2 == victim_agent)
        .map(|t| t.0.clone())
        .collect();
    let others: Vec<String> = tasks
        .iter()
        .filter(|t| t.2 != victim_agent)
        .map(|t| t.0.clone())
        .collect();
    // Let the agent answer pings first (the master judges by pings only agents that ponged).
    std::thread::sleep(Duration::from_millis(1500));
    /// Heals however the test ends, so the agent can shut its executors down.
    struct Healer<'a, F: Fn(&Cluster, usize, &str)> {
        heal: Option<(&'a F, &'a Cluster, usize, &'a str)>,
    }
    impl<F: Fn(&Cluster, usize, &str)> Healer<'_, F> {
        fn now(&mut self) {
            if let Some((h, c, i, ip)) = self.heal.take() {
                h(c, i, ip);
            }
        }
    }
    impl<F: Fn(&Cluster, usize, &str)> Drop for Healer<'_, F> {
        fn drop(&mut self) {
            self.now();
        }
    }
    cut(&cluster, index, &ip);
    let mut healer = Healer {
        heal: Some((&heal, &cluster, index, ip.as_str())),
    };
    let cut_at = Instant::now();
    let during = eventually_blocking(30, "originals unreachable and replacements running", || {
        let t = marathon_tasks(&m.url, "cut");
        let unreachable = t
            .iter()
            .filter(|x| originals.contains(&x.0) && x.1 == "TASK_UNREACHABLE")
            .count();
        let elsewhere = t
            .iter()
            .filter(|x| x.2 != victim_agent && x.1 == "TASK_RUNNING")
            .count();
        (unreachable == originals.len() && elsewhere == 2).then_some(t)
    });
    let replaced_after = cut_at.elapsed();
    let extras: Vec<String> = during
        .iter()
        .filter(|x| !originals.contains(&x.0) && !others.contains(&x.0))
        .map(|x| x.0.clone())
        .collect();
    assert_eq!(extras.len(), originals.len(), "{during:?}");
    healer.now();
    let healed = Instant::now();
    let mut expected: Vec<String> = originals.iter().chain(&others).cloned().collect();
    expected.sort();
    eventually_blocking(60, "the originals back and the extras gone", || {
        let t = marathon_tasks(&m.url, "cut");
        let ids: Vec<String> = t.iter().map(|x| x.0.clone()).collect();
        (ids == expected && t.iter().all(|x| x.1 == "TASK_RUNNING")).then_some(())
    });
    let back_after = healed.elapsed();
    // The master agrees: the originals run, the extras ended KILLED.
    let state = cluster.state();
    let mut running: Vec<String> = state["frameworks"][0]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["state"] == "TASK_RUNNING")
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    running.sort();
    assert_eq!(running, expected, "{state}");
    for e in &extras {
        let done = eventually_blocking(15, "the extra's end at the master", || {
            let s = cluster.state();
            s["frameworks"][0]["completed_tasks"]
                .as_array()
                .and_then(|a| a.iter().find(|t| t["id"] == e.as_str()).cloned())
        });
        assert_eq!(done["state"], "TASK_KILLED", "{done}");
    }
    eprintln!(
        "{what}: replacements running {:.2} s after the cut (ping window 1.5 s, inactiveAfterSeconds 1); originals back and extras killed {:.2} s after healing",
        replaced_after.as_secs_f64(),
        back_after.as_secs_f64()
    );
}
