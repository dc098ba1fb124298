//! Test harness: start a master and agents as processes on free loopback ports, and a small
//! v1 scheduler client (SUBSCRIBE stream reader plus calls).

use futures::StreamExt;
use mantle_api::recordio::Decoder;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub const BIN: &str = env!("CARGO_BIN_EXE_mantle");

/// Held by tests whose tasks listen on `$HOST:$PORT0`: every test cluster's agents use
/// 127.0.0.2.. with ports 31000-31100, so two such tests at once would hand out the same
/// address and their tasks would fail to bind (or answer the other cluster's health checks).
pub fn task_ports() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every pid in /proc, in order.
pub fn pids() -> Vec<i32> {
    let mut out: Vec<i32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
        .collect();
    out.sort();
    out
}

/// The command line of `pid`, arguments separated by single spaces ("" when it is gone).
pub fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// Pids whose command line is exactly `needle`, in order.
pub fn processes_with(needle: &str) -> Vec<i32> {
    pids()
        .into_iter()
        .filter(|p| cmdline(*p).trim_end() == needle)
        .collect()
}

/// Processes whose working directory or command line is under `dir`, from /proc.
pub fn processes_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for pid in pids() {
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok();
        let cmd = cmdline(pid);
        if cwd.is_some_and(|c| c.starts_with(dir)) || cmd.contains(&*dir.to_string_lossy()) {
            out.push(format!("{pid}: {cmd}"));
        }
    }
    out
}

/// A port free on `ip` right now.
/// A port free on `ip`, chosen outside the ephemeral range (see `local::free_port`).
pub fn free_port(ip: &str) -> u16 {
    let ip: std::net::Ipv4Addr = ip.parse().expect("an IPv4 test address");
    mantle_server::local::free_port(&[ip]).expect("a free port")
}

pub struct Cluster {
    pub master: String,
    pub master_port: u16,
    pub agent_port: u16,
    pub dir: tempfile::TempDir,
    procs: Vec<Child>,
    agent_args: Vec<String>,
    master_args: Vec<String>,
}

fn wait_http(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(
            url.trim_start_matches("http://").split('/').next().unwrap(),
        )
        .is_ok()
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{url} did not come up");
}

/// A master on 127.0.0.1:`port` with its work dir and log (appended to) under `dir`, and
/// `extra` flags.
fn spawn_master(dir: &std::path::Path, port: u16, extra: &[String]) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("master.log"))
        .unwrap();
    Command::new(BIN)
        .args([
            "master",
            "--ip",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--work-dir",
        ])
        .arg(dir.join("master"))
        .args(extra)
        .env("MANTLE_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// Starts agent `i` on 127.0.0.(i+2), logging (appending) to `agent<i>.log` in `dir`.
fn spawn_agent(
    dir: &std::path::Path,
    i: usize,
    master_port: u16,
    agent_port: u16,
    extra: &[String],
) -> Child {
    let ip = format!("127.0.0.{}", i + 2);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("agent{i}.log")))
        .unwrap();
    Command::new(BIN)
        .args([
            "agent",
            "--master",
            &format!("127.0.0.1:{master_port}"),
            "--ip",
            &ip,
            "--port",
            &agent_port.to_string(),
        ])
        .args([
            "--resources",
            "cpus:2;mem:1024;disk:1000;ports:[31000-31100]",
            "--work-dir",
        ])
        .arg(dir.join(format!("agent{i}")))
        .args(extra)
        .env("MANTLE_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

impl Cluster {
    /// A master on 127.0.0.1 and `agents` agents on 127.0.0.2.. with `extra_agent_args`.
    pub fn start(agents: usize, extra_agent_args: &[&str]) -> Cluster {
        Cluster::start_with(agents, extra_agent_args, &[])
    }

    /// As `start`, with `extra_master_args` for the master (kept for `restart_master`).
    pub fn start_with(
        agents: usize,
        extra_agent_args: &[&str],
        extra_master_args: &[&str],
    ) -> Cluster {
        let master_args: Vec<String> = extra_master_args.iter().map(|a| a.to_string()).collect();
        let dir = tempfile::tempdir().unwrap();
        let master_port = free_port("127.0.0.1");
        let agent_port = free_port("127.0.0.2");
        let mut procs = Vec::new();
        procs.push(spawn_master(dir.path(), master_port, &master_args));
        let master = format!("http://127.0.0.1:{master_port}");
        wait_http(&master);
        let agent_args: Vec<String> = extra_agent_args.iter().map(|s| s.to_string()).collect();
        for i in 0..agents {
            procs.push(spawn_agent(
                dir.path(),
                i,
                master_port,
                agent_port,
                &agent_args,
            ));
            wait_http(&format!("http://127.0.0.{}:{agent_port}", i + 2));
        }
        let c = Cluster {
            master,
            master_port,
            agent_port,
            dir,
            procs,
            agent_args,
            master_args,
        };
        c.wait_agents(agents);
        c
    }

    /// Kills the master with SIGKILL (no chance to clean up) and starts a new master process
    /// on the same port and work dir, appending to the same `master.log`.
    pub fn restart_master(&mut self) {
        let old = &mut self.procs[0];
        old.kill().unwrap();
        old.wait().unwrap();
        self.procs[0] = spawn_master(self.dir.path(), self.master_port, &self.master_args);
        wait_http(&self.master);
    }

    /// Kills agent `i` with SIGKILL (its executors live on) and starts it again with the same
    /// flags and work dir, appending to its log.
    pub fn restart_agent(&mut self, i: usize) {
        self.procs[i + 1].kill().unwrap();
        self.start_agent_again(i);
    }

    /// The process ID of agent `i`.
    pub fn agent_pid(&self, i: usize) -> u32 {
        self.procs[i + 1].id()
    }

    /// Starts agent `i` again after it was killed (reaping the old process first).
    pub fn start_agent_again(&mut self, i: usize) {
        let _ = self.procs[i + 1].wait();
        self.procs[i + 1] = spawn_agent(
            self.dir.path(),
            i,
            self.master_port,
            self.agent_port,
            &self.agent_args,
        );
        wait_http(&format!("http://127.0.0.{}:{}", i + 2, self.agent_port));
    }

    /// Kills the master with SIGKILL and leaves it down (`restart_master` brings one back).
    pub fn kill_master(&mut self) {
        let old = &mut self.procs[0];
        old.kill().unwrap();
        old.wait().unwrap();
    }

    /// The master's process ID.
    pub fn master_pid(&self) -> u32 {
        self.procs[0].id()
    }

    fn wait_agents(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            let v: Value = plain::blocking_get_json(&format!("{}/master/slaves", self.master));
            if v["slaves"].as_array().map_or(0, |a| a.len()) == n {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("agents did not register");
    }

    pub fn state(&self) -> Value {
        plain::blocking_get_json(&format!("{}/master/state", self.master))
    }

    pub fn logs(&self) -> String {
        let mut out = String::new();
        for e in std::fs::read_dir(self.dir.path()).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "log") {
                out.push_str(&format!("==== {}\n", e.path().display()));
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                out.push_str(&tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in self.procs.iter().rev() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        for p in self.procs.iter_mut().rev() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = p.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

/// Blocking JSON GET without a runtime (std only), for the harness's polling.
pub mod plain {
    use serde_json::Value;
    use std::io::{Read, Write};

    pub fn blocking_get(url: &str) -> (u16, String) {
        let rest = url.trim_start_matches("http://");
        let (host, path) = rest
            .split_once('/')
            .map(|(h, p)| (h, format!("/{p}")))
            .unwrap_or((rest, "/".into()));
        let mut s = std::net::TcpStream::connect(host).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).unwrap();
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .unwrap_or("0")
            .parse()
            .unwrap_or(0);
        // The daemons answer small JSON bodies with Content-Length; no chunked decoding needed.
        (status, body.to_string())
    }

    pub fn blocking_get_json(url: &str) -> Value {
        let (status, body) = blocking_get(url);
        assert_eq!(status, 200, "{url}: {body}");
        serde_json::from_str(&body).unwrap()
    }
}

/// A v1 scheduler written for the tests.
pub struct Scheduler {
    pub master: String,
    pub client: reqwest::Client,
    pub framework_id: String,
    pub stream_id: String,
    pub events: mpsc::UnboundedReceiver<Value>,
    /// The task reading the event stream (aborting it closes the connection).
    reader: tokio::task::AbortHandle,
}

impl Scheduler {
    pub async fn subscribe(master: &str, framework_info: Value) -> Scheduler {
        let client = reqwest::Client::new();
        let body = json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": framework_info}});
        let resp = client
            .post(format!("{master}/api/v1/scheduler"))
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "application/json");
        assert_eq!(resp.headers()["transfer-encoding"], "chunked");
        let stream_id = resp.headers()["mesos-stream-id"]
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(stream_id.len(), 36, "a UUID");
        let (tx, mut rx) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            let mut s = resp.bytes_stream();
            let mut d = Decoder::new(1 << 24);
            while let Some(Ok(chunk)) = s.next().await {
                d.feed(&chunk);
                while let Ok(Some(r)) = d.next_record() {
                    let _ = tx.send(serde_json::from_slice::<Value>(&r).unwrap());
                }
            }
            let _ = tx.send(json!({"type": "__CLOSED__"}));
        })
        .abort_handle();
        let first = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first["type"], "SUBSCRIBED");
        let framework_id = first["subscribed"]["framework_id"]["value"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(first["subscribed"]["heartbeat_interval_seconds"], 15.0);
        Scheduler {
            master: master.to_string(),
            client,
            framework_id,
            stream_id,
            events: rx,
            reader,
        }
    }

    /// Goes away as a crashed scheduler does: stops reading and closes the event stream's
    /// connection.
    pub fn disconnect(self) {
        self.reader.abort();
    }

    /// Posts a call (framework_id added) and returns the status and body.
    pub async fn call(&self, mut body: Value) -> (u16, String) {
        body["framework_id"] = json!({"value": self.framework_id});
        let r = self
            .client
            .post(format!("{}/api/v1/scheduler", self.master))
            .header("Content-Type", "application/json")
            .header("Mesos-Stream-Id", &self.stream_id)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// The next event of `kind`, skipping heartbeats and others; panics after `secs`.
    pub async fn next(&mut self, kind: &str, secs: u64) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let ev = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("no {kind} event within {secs}s"))
                .expect("stream open");
            if ev["type"] == kind {
                return ev;
            }
        }
    }

    /// Every event until `secs` pass.
    pub async fn drain(&mut self, secs: f64) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(secs);
        let mut out = Vec::new();
        while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            out.push(ev);
        }
        out
    }

    /// Waits for the terminal update of each task in `ids`, whatever the order, acknowledging
    /// every update on the way; the updates by task ID.
    pub async fn await_ends(
        &mut self,
        ids: &[&str],
        secs: u64,
    ) -> std::collections::BTreeMap<String, Value> {
        const TERMINAL: [&str; 5] = [
            "TASK_FINISHED",
            "TASK_FAILED",
            "TASK_KILLED",
            "TASK_ERROR",
            "TASK_LOST",
        ];
        let mut ended = std::collections::BTreeMap::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        while ended.len() < ids.len() {
            let st = self
                .next_update(deadline)
                .await
                .unwrap_or_else(|| panic!("within {secs}s only {ended:?} ended"));
            let id = st["task_id"]["value"].as_str().unwrap_or("").to_string();
            if ids.contains(&id.as_str()) && TERMINAL.contains(&st["state"].as_str().unwrap_or(""))
            {
                ended.insert(id, st);
            }
        }
        ended
    }

    /// The status of the next UPDATE before `deadline` (acknowledged), or `None` at the deadline.
    pub async fn next_update(&mut self, deadline: tokio::time::Instant) -> Option<Value> {
        loop {
            let ev = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .ok()?
                .expect("stream open");
            if ev["type"] == "UPDATE" {
                let st = ev["update"]["status"].clone();
                self.ack(&st).await;
                return Some(st);
            }
        }
    }

    /// Waits for an UPDATE of `task_id` in `state`, acknowledging every update that has a uuid.
    pub async fn await_state(&mut self, task_id: &str, state: &str, secs: u64) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let ev = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("{task_id} did not reach {state} within {secs}s"))
                .expect("stream open");
            if ev["type"] != "UPDATE" {
                continue;
            }
            let st = ev["update"]["status"].clone();
            self.ack(&st).await;
            if st["task_id"]["value"] == task_id && st["state"] == state {
                return st;
            }
        }
    }

    pub async fn ack(&self, status: &Value) {
        if let Some(uuid) = status["uuid"].as_str() {
            let (code, body) = self
                .call(json!({"type": "ACKNOWLEDGE", "acknowledge": {"agent_id": status["agent_id"], "task_id": status["task_id"], "uuid": uuid}}))
                .await;
            assert_eq!(code, 202, "{body}");
        }
    }
}

/// The sandbox directory of executor `task_id` (a command task's executor has its ID), from
/// the agent's `/state`.
pub fn sandbox_of(cluster: &Cluster, agent_ip: &str, task_id: &str) -> String {
    let state = crate::harness::plain::blocking_get_json(&format!(
        "http://{agent_ip}:{}/state",
        cluster.agent_port
    ));
    for f in state["frameworks"].as_array().unwrap() {
        for key in ["executors", "completed_executors"] {
            for e in f[key].as_array().unwrap() {
                if e["id"] == task_id {
                    return e["directory"].as_str().unwrap().to_string();
                }
            }
        }
    }
    panic!("no executor for {task_id} in {state}");
}

/// A command task for an offer.
pub fn task(offer: &Value, id: &str, cmd: &str, cpus: f64) -> Value {
    json!({"name": id, "task_id": {"value": id}, "agent_id": offer["agent_id"],
           "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}},
                         {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}}],
           "command": {"value": cmd}})
}

pub fn launch(offer: &Value, tasks: Vec<Value>) -> Value {
    json!({"type": "ACCEPT", "accept": {"offer_ids": [offer["id"]], "operations": [{"type": "LAUNCH", "launch": {"task_infos": tasks}}]}})
}
