//! Mesos health checks run by the built-in executor next to a task (`TaskInfo.health_check`:
//! `COMMAND`, `HTTP`, `TCP`), with Mesos' semantics and defaults: the first check after
//! `delay_seconds` (15), one every `interval_seconds` (10), each bounded by `timeout_seconds`
//! (20); failures before the first success within `grace_period_seconds` (10) of the start do
//! not count; after `consecutive_failures` (3) failures in a row the task is killed. HTTP
//! succeeds on a status from 200 to 399, TCP on a connection, COMMAND on exit status 0.
//! A COMMAND check of a DOCKER task runs inside its container (`docker exec`); HTTP and TCP
//! checks connect from the host, which Docker tasks share (host networking).
//!
//! The verdicts are pure ([`Tracker`]); the probes and the timer loop live in [`run`].

use serde::Deserialize;
use serde_json::Value;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum Kind {
    Command,
    Http,
    Tcp,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Http {
    #[serde(default)]
    port: u32,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    scheme: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Tcp {
    #[serde(default)]
    port: u32,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Command {
    #[serde(default)]
    value: Option<String>,
}

/// A `HealthCheck` message, with Mesos' defaults.
#[derive(Debug, Clone, Deserialize)]
pub struct Check {
    #[serde(rename = "type")]
    kind: Kind,
    #[serde(default = "d15")]
    delay_seconds: f64,
    #[serde(default = "d10")]
    interval_seconds: f64,
    #[serde(default = "d20")]
    timeout_seconds: f64,
    #[serde(default = "d3")]
    consecutive_failures: u32,
    #[serde(default = "d10")]
    grace_period_seconds: f64,
    #[serde(default)]
    http: Option<Http>,
    #[serde(default)]
    tcp: Option<Tcp>,
    #[serde(default)]
    command: Option<Command>,
}

fn d15() -> f64 {
    15.0
}
fn d10() -> f64 {
    10.0
}
fn d20() -> f64 {
    20.0
}
fn d3() -> u32 {
    3
}

fn secs(x: f64) -> Duration {
    Duration::from_secs_f64(if x.is_finite() {
        x.clamp(0.0, 1e9)
    } else {
        0.0
    })
}

impl Check {
    /// Reads `health_check` from a TaskInfo's JSON; an unusable one is reported, not run.
    pub fn from_task(extra: &serde_json::Map<String, Value>) -> Option<Result<Check, String>> {
        let v = extra.get("health_check")?;
        Some(
            serde_json::from_value::<Check>(v.clone())
                .map_err(|e| format!("invalid health_check: {e}"))
                .and_then(|c| match (&c.kind, &c.http, &c.tcp, &c.command) {
                    (Kind::Http, Some(_), _, _)
                    | (Kind::Tcp, _, Some(_), _)
                    | (Kind::Command, _, _, Some(_)) => Ok(c),
                    _ => Err("health_check lacks the settings of its type".into()),
                }),
        )
    }
}

/// What one check result means for the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No change to report.
    Same,
    /// The task's health changed: report it.
    Healthy(bool),
    /// Too many failures in a row: kill the task.
    Kill,
}

/// Consecutive-failure and grace-period bookkeeping, pure over results and elapsed time.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    failures: u32,
    ever_healthy: bool,
    reported: Option<bool>,
}

impl Tracker {
    /// One result, `since_start` after the task started.
    pub fn observe(&mut self, check: &Check, ok: bool, since_start: Duration) -> Verdict {
        if ok {
            self.failures = 0;
            self.ever_healthy = true;
            return self.report(true);
        }
        if !self.ever_healthy && since_start < secs(check.grace_period_seconds) {
            return Verdict::Same;
        }
        self.failures += 1;
        if check.consecutive_failures > 0 && self.failures >= check.consecutive_failures {
            return Verdict::Kill;
        }
        self.report(false)
    }

    fn report(&mut self, healthy: bool) -> Verdict {
        if self.reported == Some(healthy) {
            Verdict::Same
        } else {
            self.reported = Some(healthy);
            Verdict::Healthy(healthy)
        }
    }
}

/// Where the probe goes and what it runs with.
#[derive(Debug, Clone)]
pub struct Target {
    /// The address HTTP and TCP checks connect to (the agent's address).
    pub host: String,
    pub sandbox: String,
    pub env: Vec<(String, String)>,
    /// The Docker container of a DOCKER task (its daemon and name): a COMMAND check runs
    /// inside it, as Mesos's docker executor does, with `env` and the sandbox's path there.
    pub container: Option<(bollard::Docker, String)>,
    /// The container has a network of its own (not HOST): HTTP and TCP checks connect to
    /// 127.0.0.1 inside its network namespace, as Mesos's do.
    pub own_network: bool,
    /// A `mesos` container's network and UTS namespaces (`network/cni`): HTTP and TCP checks
    /// connect to 127.0.0.1 in the first, COMMAND checks run in both.
    pub namespaces: Option<(String, String)>,
    /// A `mesos` container's root filesystem from its image and the working directory inside:
    /// COMMAND checks run with it as their root.
    pub rootfs: Option<(String, String)>,
}

async fn probe(check: &Check, target: &Target, client: &reqwest::Client) -> bool {
    let timeout = secs(check.timeout_seconds).max(Duration::from_millis(100));
    match (&check.kind, &target.container) {
        (Kind::Http | Kind::Tcp, Some((docker, name))) if target.own_network => {
            match crate::docker::pid(docker, name).await {
                Some(pid) => probe_in_netns(check, format!("/proc/{pid}/ns/net"), timeout).await,
                None => false,
            }
        }
        (Kind::Http | Kind::Tcp, None) if target.namespaces.is_some() => {
            let net = target
                .namespaces
                .as_ref()
                .map(|(n, _)| n.clone())
                .unwrap_or_default();
            probe_in_netns(check, net, timeout).await
        }
        (Kind::Http | Kind::Tcp, _) => connect_probe(check, &target.host, client, timeout).await,
        (Kind::Command, _) => command_probe(check, target, timeout).await,
    }
}

/// An HTTP or TCP probe at 127.0.0.1 in the network namespace at `path` (a process's
/// `/proc/<pid>/ns/net`, or a bind-mounted one): run on a thread of its own that joins it (a socket belongs to the
/// namespace of the thread that makes it), with a runtime of its own, and ends with the probe.
async fn probe_in_netns(check: &Check, path: String, timeout: Duration) -> bool {
    let check = check.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("netns-probe".into())
        .spawn(move || {
            let ok = (|| -> Result<bool, String> {
                let ns = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| format!("joining {path}: {e}"))?;
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                // No proxy: none is reachable from inside the container's network.
                let client = reqwest::Client::builder()
                    .no_proxy()
                    .build()
                    .map_err(|e| e.to_string())?;
                Ok(runtime.block_on(connect_probe(&check, "127.0.0.1", &client, timeout)))
            })();
            let ok = ok.unwrap_or_else(|e| {
                // Said once: every probe after it would fail the same way.
                static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
                if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    tracing::warn!(error = %e, "cannot run a health check in the container's network; it counts as failed");
                }
                false
            });
            let _ = tx.send(ok);
        });
    if spawned.is_err() {
        return false;
    }
    rx.await.unwrap_or(false)
}

/// An HTTP or TCP probe at `host`.
async fn connect_probe(
    check: &Check,
    host: &str,
    client: &reqwest::Client,
    timeout: Duration,
) -> bool {
    match check.kind {
        Kind::Command => false,
        Kind::Http => {
            let h = check.http.clone().unwrap_or_default();
            let scheme = h.scheme.unwrap_or_else(|| "http".into());
            let path = h.path.unwrap_or_else(|| "/".into());
            let url = format!("{scheme}://{host}:{}{path}", h.port);
            match client.get(&url).timeout(timeout).send().await {
                Ok(r) => (200..400).contains(&r.status().as_u16()),
                Err(_) => false,
            }
        }
        Kind::Tcp => {
            let port = check.tcp.as_ref().map_or(0, |t| t.port);
            let Ok(port) = u16::try_from(port) else {
                return false;
            };
            tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port)))
                .await
                .is_ok_and(|r| r.is_ok())
        }
    }
}

/// A COMMAND probe: in the task's container for a DOCKER task, else beside the task.
async fn command_probe(check: &Check, target: &Target, timeout: Duration) -> bool {
    let value = check
        .command
        .as_ref()
        .and_then(|c| c.value.clone())
        .unwrap_or_default();
    if let Some((docker, name)) = &target.container {
        return crate::docker::exec(docker, name, &value, &target.env, timeout).await == Some(0);
    }
    let (program, args) = crate::executor::in_namespaces(
        target.namespaces.as_ref(),
        target.rootfs.as_ref(),
        "/bin/sh".to_string(),
        vec!["-c".to_string(), value],
    );
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .current_dir(&target.sandbox)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    for internal in [
        crate::standby::STANDBY_ENV,
        crate::agent::NETNS_ENV,
        crate::agent::UTSNS_ENV,
        crate::agent::ROOTFS_ENV,
    ] {
        cmd.env_remove(internal);
    }
    for (k, v) in &target.env {
        cmd.env(k, v);
    }
    let Ok(mut child) = cmd.spawn() else {
        return false;
    };
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => status.success(),
        _ => {
            if let Some(pid) = child.id() {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            false
        }
    }
}

/// Checks the task until the returned future is dropped (aborted when the task ends),
/// handing each verdict other than [`Verdict::Same`] to `on_verdict`; stops after a kill.
pub async fn run(check: Check, target: Target, started: Instant, on_verdict: impl Fn(Verdict)) {
    let client = reqwest::Client::new();
    let mut tracker = Tracker::default();
    tokio::time::sleep(secs(check.delay_seconds)).await;
    loop {
        let ok = probe(&check, &target, &client).await;
        match tracker.observe(&check, ok, started.elapsed()) {
            Verdict::Same => {}
            Verdict::Kill => {
                on_verdict(Verdict::Kill);
                return;
            }
            v => on_verdict(v),
        }
        tokio::time::sleep(secs(check.interval_seconds).max(Duration::from_millis(100))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(v: Value) -> Check {
        let mut m = serde_json::Map::new();
        m.insert("health_check".into(), v);
        Check::from_task(&m).expect("present").expect("valid")
    }

    #[test]
    fn defaults_and_validation_follow_mesos() {
        let c = check(json!({"type": "TCP", "tcp": {"port": 80}}));
        assert_eq!(
            (c.delay_seconds, c.interval_seconds, c.timeout_seconds),
            (15.0, 10.0, 20.0)
        );
        assert_eq!((c.consecutive_failures, c.grace_period_seconds), (3, 10.0));
        let mut m = serde_json::Map::new();
        m.insert("health_check".into(), json!({"type": "HTTP"}));
        assert!(Check::from_task(&m).expect("present").is_err());
        m.insert("health_check".into(), json!({"type": "NOPE"}));
        assert!(Check::from_task(&m).expect("present").is_err());
        assert!(Check::from_task(&serde_json::Map::new()).is_none());
    }

    #[test]
    fn grace_then_consecutive_failures_kill() {
        let c = check(json!({"type": "COMMAND", "command": {"value": "true"},
                              "grace_period_seconds": 5, "consecutive_failures": 2}));
        let mut t = Tracker::default();
        let at = Duration::from_secs;
        // Failures inside the grace period, before any success, do not count.
        assert_eq!(t.observe(&c, false, at(1)), Verdict::Same);
        assert_eq!(t.observe(&c, false, at(2)), Verdict::Same);
        assert_eq!(t.observe(&c, true, at(3)), Verdict::Healthy(true));
        assert_eq!(
            t.observe(&c, true, at(4)),
            Verdict::Same,
            "only changes are reported"
        );
        // After a success the grace period no longer shields failures.
        assert_eq!(t.observe(&c, false, at(4)), Verdict::Healthy(false));
        assert_eq!(t.observe(&c, true, at(5)), Verdict::Healthy(true));
        assert_eq!(t.observe(&c, false, at(6)), Verdict::Healthy(false));
        assert_eq!(t.observe(&c, false, at(7)), Verdict::Kill);
    }
}
