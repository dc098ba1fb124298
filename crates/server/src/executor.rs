//! The built-in executor (`mantle executor`, started by the agent): runs command tasks and
//! task groups as child processes, speaking the v1 executor API to its agent.
//!
//! Each task runs as `sh -c <value>` (or the program and arguments when `shell` is false) in
//! the sandbox, in its own process group, with the executor's environment plus the task's.
//! A kill sends SIGTERM to the task's group and SIGKILL after the kill policy's grace period
//! (default 3 s); TASK_KILLING is sent first only to frameworks that declared
//! TASK_KILLING_STATE. The executor exits once every task has ended and its terminal update
//! has been acknowledged (or after a short wait when the agent does not answer).

use base64::Engine;
use futures::StreamExt;
use mantle_api::executor::{Call, CallMessage, CallType, CallUpdate, Event, EventType, Subscribe};
use mantle_api::mesos::{CommandInfo, FrameworkInfo, TaskInfo, TaskStatus};
use mantle_api::recordio::Decoder;
use mantle_model::{ExecutorId, FrameworkId, TaskId, TaskState};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::health::{self, Verdict};

/// util-linux's setpriv, which switches a task to its user.
const SETPRIV: &str = "/usr/bin/setpriv";

/// `program` and `args` run in a container: in its network and UTS namespaces (`(net, uts)`
/// paths) with its `/etc` files when it has them (see `cni::command_in`), and with its root
/// filesystem as their root (`rootfs`, an image's: see `provisioner`), starting in the
/// sandbox there.
pub(crate) fn in_namespaces(
    namespaces: Option<&(String, String)>,
    rootfs: Option<&(String, String)>,
    program: String,
    args: Vec<String>,
) -> (String, Vec<String>) {
    match (namespaces, rootfs) {
        (None, None) => (program, args),
        (Some((net, uts)), None) => crate::cni::command_in(net, uts, program, args),
        (namespaces, Some((root, wd))) => {
            // The image's own /etc holds the container's files (the provisioner copied them).
            let mut a: Vec<String> = namespaces
                .map(|(net, uts)| vec![format!("--net={net}"), format!("--uts={uts}")])
                .unwrap_or_default();
            // nsenter opens both before it changes root: the working directory (inside: the
            // image's, else the sandbox) is named by its path outside.
            a.push(format!("--root={root}"));
            a.push(format!("--wd={root}/{}", wd.trim_start_matches('/')));
            a.push("--".to_string());
            a.push(program);
            a.extend(args);
            (crate::agent::NSENTER.to_string(), a)
        }
    }
}

/// Grace period between SIGTERM and SIGKILL when the task has no kill policy (Mesos: 3 s).
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(3);
/// How long to wait for acknowledgements of terminal updates before exiting anyway.
const ACK_WAIT: Duration = Duration::from_secs(5);

enum Msg {
    Event(Event),
    StreamEnded,
    Exited { task_id: TaskId, code: Option<i32> },
    KillNow { task_id: TaskId },
    Health { task_id: TaskId, verdict: Verdict },
}

struct Running {
    pgid: i32,
    /// The Docker container running the task (docker containerizer), instead of a process.
    docker: Option<String>,
    killing: bool,
    /// The task's health checker, stopped when the task ends.
    checker: Option<tokio::task::JoinHandle<()>>,
    killed_unhealthy: bool,
}

struct Executor {
    client: reqwest::Client,
    url: String,
    framework_id: FrameworkId,
    executor_id: ExecutorId,
    framework: Option<FrameworkInfo>,
    sandbox: String,
    running: BTreeMap<TaskId, Running>,
    unacked: BTreeMap<String, TaskId>,
    /// The tasks it was given (a second LAUNCH of one is ignored), named when it subscribes
    /// again to a restarted agent.
    infos: BTreeMap<TaskId, TaskInfo>,
    tx: mpsc::UnboundedSender<Msg>,
    shutting_down: bool,
    /// The agent's address, where HTTP and TCP health checks connect.
    agent_host: String,
    /// Each task's last reported health, carried in its later updates (as Mesos does).
    health: BTreeMap<TaskId, bool>,
    /// The agent's Docker daemon and its label, when the agent enables the docker
    /// containerizer (`MANTLE_DOCKER_SOCKET`, `MANTLE_DOCKER_AGENT`); connected on first use.
    docker_socket: Option<String>,
    docker_agent: String,
    docker: Option<bollard::Docker>,
    container_id: String,
    /// Updates the agent has not taken yet (it was away), oldest first.
    outbox: Vec<Call>,
    /// Run tasks as their user (`MANTLE_SWITCH_USER=1`).
    switch_user: bool,
    /// The container's network and UTS namespaces when it joined CNI networks
    /// (`MANTLE_NETNS`, `MANTLE_UTSNS`): its tasks and checks run in them, while the
    /// executor itself stays on the host network, where its agent is.
    namespaces: Option<(String, String)>,
    /// The container's root filesystem, made from its image (`MANTLE_ROOTFS`), and the
    /// working directory inside: its tasks and checks run with it as their root.
    rootfs: Option<(String, String)>,
    /// The image's configuration, when it has one.
    image: Option<crate::provisioner::ImageConfig>,
    vars: Vars,
    /// A standby's control line, while its agent is the one that started it.
    line: Option<crate::standby::Link>,
}

impl Drop for Executor {
    fn drop(&mut self) {
        // The event stream's reader is left to end with the stream, which the agent ends
        // once it has taken this executor's exit or release (over HTTP, its connection then
        // goes back to the client's pool).
        for r in self.running.values() {
            if let Some(c) = &r.checker {
                c.abort();
            }
        }
    }
}

/// Where an executor takes its settings (`MESOS_*`, `MANTLE_*`): the process environment,
/// overlaid by the variables a standby executor's assignment gives it (see `crate::standby`),
/// which its process environment never holds: a standby serves one container after another.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    overlay: Vec<(String, String)>,
}

impl Vars {
    /// The process environment overlaid by `overlay` (later entries win).
    pub fn new(overlay: Vec<(String, String)>) -> Vars {
        Vars { overlay }
    }

    pub fn get(&self, name: &str) -> Option<String> {
        self.overlay
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var(name).ok())
    }

    /// What the tasks and checks this executor starts get on top of the process environment.
    pub fn overlay(&self) -> &[(String, String)] {
        &self.overlay
    }

    fn require(&self, name: &str) -> anyhow::Result<String> {
        self.get(name).ok_or_else(|| {
            anyhow::anyhow!("{name} must be set (the agent sets it when it starts an executor)")
        })
    }
}

/// How an executor's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every task ended and its terminal update was acknowledged: nothing of the container is
    /// left running in this process, so a standby executor may serve another one.
    Finished,
    /// Stopped by a signal, by the agent's going away, or ended without every
    /// acknowledgement: the process should exit.
    Stopped,
}

/// Entry point of `mantle executor`.
pub async fn run() -> anyhow::Result<()> {
    run_with(client()?, Vars::default(), None).await.map(|_| ())
}

/// The executor's HTTP client (to its agent).
pub fn client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
}

/// `run` with a client made beforehand, its settings, and for a standby its control line to
/// the agent, which then carries the executor API (HTTP only after the agent was lost).
pub async fn run_with(
    client: reqwest::Client,
    vars: Vars,
    line: Option<crate::standby::Link>,
) -> anyhow::Result<Outcome> {
    let sandbox = match vars.get("MESOS_SANDBOX") {
        Some(s) => std::path::PathBuf::from(s),
        None => std::env::current_dir()?,
    };
    // Rotated output, if the agent asked for it, for as long as the executor runs (dropped
    // last, so the tasks' final lines are written).
    let output = crate::sandbox::RotatedOutput::from_vars(&sandbox, |n| vars.get(n))?;
    let result = serve(client, vars, line).await;
    drop(output);
    result
}

async fn serve(
    client: reqwest::Client,
    vars: Vars,
    line: Option<crate::standby::Link>,
) -> anyhow::Result<Outcome> {
    let endpoint = vars.require("MESOS_AGENT_ENDPOINT")?;
    let framework_id = FrameworkId::new(vars.require("MESOS_FRAMEWORK_ID")?);
    let executor_id = ExecutorId::new(vars.require("MESOS_EXECUTOR_ID")?);
    let sandbox = match vars.get("MESOS_SANDBOX") {
        Some(s) => s,
        None => std::env::current_dir()?.to_string_lossy().into_owned(),
    };
    let url = format!("http://{endpoint}/api/v1/executor");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let sub = Call {
        executor_id: executor_id.clone(),
        framework_id: framework_id.clone(),
        kind: CallType::Subscribe,
        subscribe: Some(Subscribe::default()),
        update: None,
        message: None,
    };
    match &line {
        Some(l) => subscribe_line(l, &sub, tx.clone()).await?,
        None => subscribe(&client, &url, &sub, tx.clone()).await?,
    }
    // With checkpointing, a lost agent is waited for (it may be restarting) this long.
    let checkpoint = vars.get("MESOS_CHECKPOINT").is_some_and(|v| v == "1");
    let recovery_timeout = vars
        .get("MESOS_RECOVERY_TIMEOUT")
        .and_then(|v| parse_mesos_duration(&v))
        .unwrap_or(Duration::from_secs(15 * 60));
    // An image's root filesystem and configuration, read once.
    let image = vars.get(crate::agent::ROOTFS_ENV).map(|root| {
        let img = crate::provisioner::ImageConfig::of_rootfs(std::path::Path::new(&root));
        (root, img)
    });
    let mut ex = Executor {
        client,
        url,
        framework_id,
        executor_id,
        framework: None,
        sandbox,
        running: BTreeMap::new(),
        unacked: BTreeMap::new(),
        infos: BTreeMap::new(),
        tx,
        shutting_down: false,
        agent_host: endpoint
            .rsplit_once(':')
            .map_or(endpoint.clone(), |(h, _)| h.to_string()),
        health: BTreeMap::new(),
        docker_socket: vars.get("MANTLE_DOCKER_SOCKET"),
        docker_agent: vars.get("MANTLE_DOCKER_AGENT").unwrap_or_default(),
        docker: None,
        container_id: vars
            .get("MESOS_CONTAINER_ID")
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        outbox: Vec::new(),
        switch_user: vars.get("MANTLE_SWITCH_USER").is_some_and(|v| v == "1"),
        namespaces: vars
            .get(crate::agent::NETNS_ENV)
            .zip(vars.get(crate::agent::UTSNS_ENV)),
        rootfs: image.as_ref().map(|(root, img)| {
            let wd = img
                .working_dir
                .clone()
                .unwrap_or_else(|| crate::provisioner::SANDBOX_INSIDE.to_string());
            (root.clone(), wd)
        }),
        image: image.map(|(_, img)| img),
        vars,
        line,
    };
    let mut done_since: Option<tokio::time::Instant> = None;
    // Since when the agent has been gone, while waiting for it to come back.
    let mut lost_since: Option<tokio::time::Instant> = None;
    let mut last_try = tokio::time::Instant::now();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let msg = tokio::select! {
            m = tokio::time::timeout(Duration::from_millis(200), rx.recv()) => m,
            _ = term.recv() => {
                // The agent is stopping us: take every task's process group along.
                warn!("terminated; killing tasks");
                ex.kill_all(Duration::ZERO).await;
                return Ok(Outcome::Stopped);
            }
        };
        match msg {
            Ok(Some(Msg::Event(ev))) => ex.on_event(ev).await,
            Ok(Some(Msg::StreamEnded)) | Ok(None) if !checkpoint => {
                warn!("agent stream ended; killing tasks and exiting");
                ex.kill_all(Duration::ZERO).await;
                return Ok(Outcome::Stopped);
            }
            Ok(Some(Msg::StreamEnded)) | Ok(None) => {
                warn!("agent stream ended; waiting for the agent to come back");
                // A restarted agent is reached over HTTP, as any executor reaches it.
                ex.line = None;
                lost_since.get_or_insert_with(tokio::time::Instant::now);
            }
            Ok(Some(Msg::Exited { task_id, code })) => ex.on_exit(task_id, code).await,
            Ok(Some(Msg::Health { task_id, verdict })) => ex.on_health(task_id, verdict).await,
            Ok(Some(Msg::KillNow { task_id })) => {
                if let Some(r) = ex.running.get(&task_id) {
                    match (&r.docker, &ex.docker) {
                        (Some(name), Some(d)) => crate::docker::kill(d, name).await,
                        _ => signal_group(r.pgid, nix::sys::signal::Signal::SIGKILL),
                    }
                }
            }
            Err(_) => {}
        }
        if let Some(since) = lost_since {
            if since.elapsed() >= recovery_timeout {
                warn!("the agent did not come back within the recovery timeout; killing tasks");
                ex.kill_all(Duration::ZERO).await;
                return Ok(Outcome::Stopped);
            }
            if last_try.elapsed() >= Duration::from_secs(1) {
                last_try = tokio::time::Instant::now();
                if subscribe(&ex.client, &ex.url, &ex.resubscribe(&sub), ex.tx.clone())
                    .await
                    .is_ok()
                {
                    info!("subscribed again to the restarted agent");
                    lost_since = None;
                    ex.flush_outbox().await;
                }
            }
        } else if !ex.outbox.is_empty() && last_try.elapsed() >= Duration::from_secs(1) {
            last_try = tokio::time::Instant::now();
            ex.flush_outbox().await;
        }
        // Exit once something ran and everything has ended and been acknowledged, and no
        // update still waits for the agent.
        if lost_since.is_some() || !ex.outbox.is_empty() {
            done_since = None;
            continue;
        }
        let idle = ex.running.is_empty() && (!ex.infos.is_empty() || ex.shutting_down);
        if idle {
            let since = *done_since.get_or_insert_with(tokio::time::Instant::now);
            if ex.unacked.is_empty() {
                info!("all tasks ended");
                return Ok(Outcome::Finished);
            }
            if since.elapsed() >= ACK_WAIT {
                warn!("all tasks ended, not every ending acknowledged; executor exiting");
                return Ok(Outcome::Stopped);
            }
        } else {
            done_since = None;
        }
    }
}

/// Posts SUBSCRIBE and feeds the event stream to `tx` (ending with `StreamEnded`) from a
/// task of its own.
async fn subscribe(
    client: &reqwest::Client,
    url: &str,
    sub: &Call,
    tx: mpsc::UnboundedSender<Msg>,
) -> anyhow::Result<()> {
    let resp = client
        .post(url)
        .json(sub)
        .header("Accept", "application/json")
        .send()
        .await?;
    if !resp.status().is_success() {
        anyhow::bail!(
            "agent refused SUBSCRIBE: {} {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
    }
    tokio::spawn(async move {
        let mut stream = resp.bytes_stream();
        let mut decoder = Decoder::new(64 * 1024 * 1024);
        while let Some(Ok(chunk)) = stream.next().await {
            decoder.feed(&chunk);
            while let Ok(Some(record)) = decoder.next_record() {
                match serde_json::from_slice::<Event>(&record) {
                    Ok(ev) => {
                        let _ = tx.send(Msg::Event(ev));
                    }
                    Err(e) => warn!(error = %e, "undecodable event from agent"),
                }
            }
        }
        let _ = tx.send(Msg::StreamEnded);
    });
    Ok(())
}

/// SUBSCRIBE over a standby's control line; feeds the events to `tx` as `subscribe` does.
async fn subscribe_line(
    line: &crate::standby::Link,
    sub: &Call,
    tx: mpsc::UnboundedSender<Msg>,
) -> anyhow::Result<()> {
    let mut events = line.subscribe(sub).await?;
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            let _ = tx.send(Msg::Event(ev));
        }
        let _ = tx.send(Msg::StreamEnded);
    });
    Ok(())
}

/// Parses a Mesos duration such as `15mins`, `2secs` or `100ms`.
fn parse_mesos_duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (n, unit) = t.split_at(split);
    let n: f64 = n.parse().ok()?;
    let secs = match unit {
        "ns" => n / 1e9,
        "us" => n / 1e6,
        "ms" => n / 1e3,
        "secs" | "s" => n,
        "mins" => n * 60.0,
        "hrs" => n * 3600.0,
        "days" => n * 86400.0,
        _ => return None,
    };
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

fn signal_group(pgid: i32, signal: nix::sys::signal::Signal) {
    if pgid > 1 {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), signal);
    }
}

fn new_uuid() -> String {
    base64::engine::general_purpose::STANDARD.encode(uuid::Uuid::new_v4().as_bytes())
}

impl Executor {
    /// SUBSCRIBE to a restarted agent: it names the tasks not yet acknowledged to their
    /// end (`unacknowledged_tasks`), so the agent knows which of the tasks it had handed over
    /// arrived (one that did not is ended by the agent).
    fn resubscribe(&self, sub: &Call) -> Call {
        let pending = |id: &TaskId| {
            self.running.contains_key(id)
                || self.unacked.values().any(|t| t == id)
                || self
                    .outbox
                    .iter()
                    .any(|c| c.update.as_ref().is_some_and(|u| &u.status.task_id == id))
        };
        let mut call = sub.clone();
        call.subscribe = Some(Subscribe {
            unacknowledged_tasks: self
                .infos
                .iter()
                .filter(|(id, _)| pending(id))
                .map(|(_, t)| t.clone())
                .collect(),
            unacknowledged_updates: Vec::new(),
        });
        call
    }

    async fn on_event(&mut self, ev: Event) {
        match ev.kind {
            EventType::Subscribed => {
                self.framework = ev.subscribed.map(|s| s.framework_info);
            }
            EventType::Launch => {
                if let Some(l) = ev.launch {
                    self.launch(l.task).await;
                }
            }
            EventType::LaunchGroup => {
                for t in ev
                    .launch_group
                    .map(|g| g.task_group.tasks)
                    .unwrap_or_default()
                {
                    self.launch(t).await;
                }
            }
            EventType::Kill => {
                if let Some(k) = ev.kill {
                    let grace = k
                        .kill_policy
                        .as_ref()
                        .and_then(|p| p.grace_period.as_ref())
                        .map(|g| Duration::from_nanos(g.nanoseconds.max(0) as u64));
                    self.kill(&k.task_id, grace).await;
                }
            }
            EventType::Acknowledged => {
                if let Some(a) = ev.acknowledged {
                    self.unacked.remove(&a.uuid);
                }
            }
            EventType::Message => {
                // The command executor has no use for framework messages; echo nothing.
                info!("framework message received and ignored");
            }
            EventType::Shutdown => {
                self.shutting_down = true;
                let ids: Vec<TaskId> = self.running.keys().cloned().collect();
                for id in ids {
                    self.kill(&id, None).await;
                }
            }
            EventType::Error => warn!(message = ?ev.error.map(|e| e.message), "error from agent"),
            EventType::Heartbeat | EventType::Unknown => {}
        }
    }

    async fn send_update(
        &mut self,
        task_id: &TaskId,
        state: TaskState,
        message: Option<String>,
        reason: Option<&str>,
    ) {
        let mut status = TaskStatus::new(task_id.clone(), state);
        status.message = message;
        status.reason = reason.map(str::to_string);
        status.source = Some("SOURCE_EXECUTOR".into());
        status.executor_id = Some(self.executor_id.clone());
        status.healthy = self.health.get(task_id).copied();
        let uuid = new_uuid();
        status.uuid = Some(uuid.clone());
        if state.is_terminal() {
            self.unacked.insert(uuid, task_id.clone());
        }
        let call = Call {
            executor_id: self.executor_id.clone(),
            framework_id: self.framework_id.clone(),
            kind: CallType::Update,
            subscribe: None,
            update: Some(CallUpdate { status }),
            message: None,
        };
        if !self.outbox.is_empty() {
            // Keep the order: behind the ones still waiting.
            self.outbox.push(call);
            return;
        }
        if !self.post_update(&call).await {
            self.outbox.push(call);
        }
    }

    /// Posts an update; false when it must be sent again later (the agent is unreachable or
    /// could not make it durable).
    async fn post_update(&self, call: &Call) -> bool {
        if let Some(line) = &self.line {
            return match line.call(call).await {
                Ok((status, _)) if (200..300).contains(&status) => true,
                Ok((503, message)) => {
                    warn!(%message, "agent could not take an update yet");
                    false
                }
                Ok((status, message)) => {
                    warn!(status, %message, "agent rejected an update");
                    true
                }
                Err(e) => {
                    warn!(error = %e, "cannot send an update to the agent; keeping it");
                    false
                }
            };
        }
        match self.client.post(&self.url).json(call).send().await {
            Ok(r) if r.status().is_success() => true,
            Ok(r) if r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE => {
                warn!(status = %r.status(), "agent could not take an update yet");
                false
            }
            Ok(r) => {
                warn!(status = %r.status(), "agent rejected an update");
                true
            }
            Err(e) => {
                warn!(error = %e, "cannot send an update to the agent; keeping it");
                false
            }
        }
    }

    /// Sends the updates kept while the agent was away, in order, until one fails.
    async fn flush_outbox(&mut self) {
        while let Some(call) = self.outbox.first().cloned() {
            if !self.post_update(&call).await {
                return;
            }
            self.outbox.remove(0);
        }
    }

    /// Sends a framework message (unused by the command executor; kept for task groups that
    /// want to report progress).
    #[allow(dead_code)]
    async fn send_message(&self, data: &[u8]) {
        let call = Call {
            executor_id: self.executor_id.clone(),
            framework_id: self.framework_id.clone(),
            kind: CallType::Message,
            subscribe: None,
            update: None,
            message: Some(CallMessage {
                data: base64::engine::general_purpose::STANDARD.encode(data),
            }),
        };
        match &self.line {
            Some(line) => {
                let _ = line.call(&call).await;
            }
            None => {
                let _ = self.client.post(&self.url).json(&call).send().await;
            }
        }
    }

    /// The sandbox's path as the container's processes see it.
    fn sandbox_inside(&self) -> String {
        match &self.rootfs {
            Some(_) => crate::provisioner::SANDBOX_INSIDE.to_string(),
            None => self.sandbox.clone(),
        }
    }

    async fn launch(&mut self, task: TaskInfo) {
        let task_id = task.task_id.clone();
        if self.infos.insert(task_id.clone(), task.clone()).is_some() {
            warn!(task_id = %task_id, "duplicate launch ignored");
            return;
        }
        if let Some(spec) = crate::docker::spec_of(&task) {
            self.launch_docker(task, spec).await;
            return;
        }
        let Some(command) = task.command.clone() else {
            self.send_update(
                &task_id,
                TaskState::Failed,
                Some("Task has no command".into()),
                Some("REASON_COMMAND_EXECUTOR_FAILED"),
            )
            .await;
            return;
        };
        // The user to run as, with --switch-user: the command's, else the framework's.
        let user = if self.switch_user {
            let name = command
                .user
                .clone()
                .or_else(|| self.framework.as_ref().map(|f| f.user.clone()))
                .unwrap_or_default();
            match nix::unistd::User::from_name(&name) {
                Ok(Some(u)) => Some(u),
                Ok(None) | Err(_) => {
                    self.send_update(
                        &task_id,
                        TaskState::Failed,
                        Some(format!(
                            "Failed to launch: user '{name}' does not exist on this agent"
                        )),
                        Some("REASON_CONTAINER_LAUNCH_FAILED"),
                    )
                    .await;
                    return;
                }
            }
        } else {
            None
        };
        // An image's configuration (its environment, and its entrypoint and cmd for a task
        // without a command of its own, as Mesos runs them).
        let image = self.image.clone();
        if let (Some(_), Some(_)) = (&image, &user) {
            self.send_update(
                &task_id,
                TaskState::Failed,
                Some("Failed to launch: running an image's task as its user (--switch-user) is not supported".into()),
                Some("REASON_CONTAINER_LAUNCH_FAILED"),
            )
            .await;
            return;
        }
        let value = command.value.clone().unwrap_or_default();
        let shell = command.shell.unwrap_or(true);
        let (program, args): (String, Vec<String>) = match &image {
            Some(img) if !shell && value.is_empty() => {
                let mut argv = img.argv(&command.arguments);
                if argv.is_empty() {
                    self.send_update(
                        &task_id,
                        TaskState::Failed,
                        Some("Failed to launch: the task has no command and its image no entrypoint or cmd".into()),
                        Some("REASON_CONTAINER_LAUNCH_FAILED"),
                    )
                    .await;
                    return;
                }
                let program = argv.remove(0);
                (program, argv)
            }
            _ if shell => ("/bin/sh".into(), vec!["-c".into(), value.clone()]),
            _ => (
                value.clone(),
                command.arguments.iter().skip(1).cloned().collect(),
            ),
        };
        self.send_update(&task_id, TaskState::Starting, None, None)
            .await;
        let (program, args) = match &user {
            // util-linux's setpriv drops to the user with its own groups, so nothing of root's
            // stays with the task; the sandbox becomes the user's, as in Mesos.
            Some(u) => {
                if let Err(e) = nix::unistd::chown(self.sandbox.as_str(), Some(u.uid), Some(u.gid))
                {
                    warn!(task_id = %task_id, error = %e, "cannot give the sandbox to the task's user");
                }
                let mut a = vec![
                    format!("--reuid={}", u.uid),
                    format!("--regid={}", u.gid),
                    "--init-groups".to_string(),
                    "--".to_string(),
                    program,
                ];
                a.extend(args);
                (SETPRIV.to_string(), a)
            }
            None => (program, args),
        };
        let (program, args) = in_namespaces(
            self.namespaces.as_ref(),
            self.rootfs.as_ref(),
            program,
            args,
        );
        let mut cmd = tokio::process::Command::new(&program);
        cmd.args(&args);
        if let Some(u) = &user {
            cmd.env("USER", &u.name).env("HOME", &u.dir);
        }
        cmd.envs(self.vars.overlay().iter().map(|(k, v)| (k, v)))
            .env_remove(crate::standby::STANDBY_ENV)
            .env_remove(crate::agent::NETNS_ENV)
            .env_remove(crate::agent::UTSNS_ENV)
            .env_remove(crate::agent::ROOTFS_ENV);
        if let Some(img) = &image {
            cmd.envs(img.env.iter().map(|(k, v)| (k, v)));
        }
        if let Some(env) = &command.environment {
            for v in &env.variables {
                cmd.env(&v.name, v.value.clone().unwrap_or_default());
            }
        }
        cmd.env("MESOS_TASK_ID", task_id.as_str())
            .env("MESOS_SANDBOX", self.sandbox_inside())
            .current_dir(&self.sandbox)
            .stdin(std::process::Stdio::null())
            .process_group(0)
            .kill_on_drop(false);
        match cmd.spawn() {
            Ok(mut child) => {
                let pgid = child.id().map(|p| p as i32).unwrap_or(0);
                let checker =
                    self.start_checker(&task, &command, self.sandbox.clone(), None, false);
                self.running.insert(
                    task_id.clone(),
                    Running {
                        pgid,
                        docker: None,
                        killing: false,
                        checker,
                        killed_unhealthy: false,
                    },
                );
                let tx = self.tx.clone();
                let id = task_id.clone();
                tokio::spawn(async move {
                    let code = child.wait().await.ok().map(|s| {
                        use std::os::unix::process::ExitStatusExt;
                        s.code().unwrap_or_else(|| -s.signal().unwrap_or(0))
                    });
                    let _ = tx.send(Msg::Exited { task_id: id, code });
                });
                self.send_update(&task_id, TaskState::Running, None, None)
                    .await;
            }
            Err(e) => {
                self.send_update(
                    &task_id,
                    TaskState::Failed,
                    Some(format!("Failed to launch command: {e}")),
                    Some("REASON_COMMAND_EXECUTOR_FAILED"),
                )
                .await;
            }
        }
    }

    /// Starts the task's health checker, if it has a usable `health_check`. `sandbox` is the
    /// sandbox's path where the check runs: inside `container` for a DOCKER task, whose HTTP
    /// and TCP checks run in its network namespace when `own_network`.
    fn start_checker(
        &self,
        task: &TaskInfo,
        command: &CommandInfo,
        sandbox: String,
        container: Option<(bollard::Docker, String)>,
        own_network: bool,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let check = match health::Check::from_task(&task.extra)? {
            Ok(c) => c,
            Err(e) => {
                warn!(task_id = %task.task_id, error = %e, "health check not run");
                return None;
            }
        };
        // A command check runs as the task does (in an image, with the image's environment);
        // a Docker exec gets only the task's variables.
        let mut env: Vec<(String, String)> = match container {
            None => self.vars.overlay().to_vec(),
            Some(_) => Vec::new(),
        };
        if let (None, Some(img)) = (&container, &self.image) {
            env.extend(img.env.iter().cloned());
        }
        env.extend(
            command
                .environment
                .iter()
                .flat_map(|e| e.variables.iter())
                .map(|v| (v.name.clone(), v.value.clone().unwrap_or_default())),
        );
        env.push(("MESOS_TASK_ID".into(), task.task_id.to_string()));
        let in_image = container.is_none() && self.rootfs.is_some();
        let inside = if in_image {
            self.sandbox_inside()
        } else {
            sandbox.clone()
        };
        env.push(("MESOS_SANDBOX".into(), inside));
        let target = health::Target {
            host: self.agent_host.clone(),
            sandbox,
            env,
            container,
            own_network,
            namespaces: self.namespaces.clone(),
            rootfs: self.rootfs.clone().filter(|_| in_image),
        };
        let tx = self.tx.clone();
        let id = task.task_id.clone();
        let started = std::time::Instant::now();
        Some(tokio::spawn(health::run(
            check,
            target,
            started,
            move |verdict| {
                let _ = tx.send(Msg::Health {
                    task_id: id.clone(),
                    verdict,
                });
            },
        )))
    }

    /// Runs a DOCKER task as a container of the agent's Docker daemon.
    async fn launch_docker(&mut self, task: TaskInfo, spec: Result<crate::docker::Spec, String>) {
        let task_id = task.task_id.clone();
        let failed = |m: String| (m, "REASON_CONTAINER_LAUNCH_FAILED");
        let spec = match spec {
            Ok(s) => s,
            Err(e) => {
                let (m, r) = failed(e);
                self.send_update(&task_id, TaskState::Failed, Some(m), Some(r))
                    .await;
                return;
            }
        };
        if self.docker.is_none() {
            let Some(socket) = self.docker_socket.clone() else {
                let (m, r) = failed(
                    "This agent does not run DOCKER containers; start it with --containerizers docker,mesos".into(),
                );
                self.send_update(&task_id, TaskState::Failed, Some(m), Some(r))
                    .await;
                return;
            };
            match crate::docker::connect(&socket).await {
                Ok(d) => self.docker = Some(d),
                Err(e) => {
                    let (m, r) = failed(e);
                    self.send_update(&task_id, TaskState::Failed, Some(m), Some(r))
                        .await;
                    return;
                }
            }
        }
        let Some(docker) = self.docker.clone() else {
            return;
        };
        self.send_update(&task_id, TaskState::Starting, None, None)
            .await;
        let n = self.running.values().filter(|r| r.docker.is_some()).count();
        let name = crate::docker::container_name(&self.container_id, n);
        let command = task.command.clone().unwrap_or_default();
        let mut env: Vec<(String, String)> = command
            .environment
            .iter()
            .flat_map(|e| e.variables.iter())
            .map(|v| (v.name.clone(), v.value.clone().unwrap_or_default()))
            .collect();
        env.push(("MESOS_TASK_ID".into(), task_id.to_string()));
        let sum = |name: &str| -> f64 {
            task.resources
                .iter()
                .filter(|r| r.name == name)
                .filter_map(|r| r.scalar.as_ref().map(|s| s.value))
                .filter(|v| v.is_finite() && *v > 0.0)
                .sum()
        };
        let labels = task
            .extra
            .get("labels")
            .and_then(|l| l.get("labels"))
            .and_then(|l| l.as_array())
            .into_iter()
            .flatten()
            .filter_map(|l| {
                Some((
                    l.get("key")?.as_str()?.to_string(),
                    l.get("value")
                        .and_then(|v| v.as_str())
                        .unwrap_or("")
                        .to_string(),
                ))
            })
            .collect();
        let launch = crate::docker::Launch {
            name: &name,
            agent_label: &self.docker_agent,
            spec: &spec,
            command: &command,
            env,
            sandbox: &self.sandbox,
            labels,
            cpus: sum("cpus"),
            mem_mb: sum("mem"),
            host_ip: &self.agent_host,
        };
        if let Err(e) = crate::docker::start(&docker, launch).await {
            warn!(task_id = %task_id, error = %e, "docker launch failed");
            let (m, r) = failed(e);
            self.send_update(&task_id, TaskState::Failed, Some(m), Some(r))
                .await;
            return;
        }
        info!(task_id = %task_id, container = %name, image = %spec.image, "docker container started");
        let logs = tokio::spawn(crate::docker::follow_logs(docker.clone(), name.clone()));
        // A COMMAND check runs inside the container, with the sandbox at its path there.
        let checker = self.start_checker(
            &task,
            &command,
            crate::docker::SANDBOX_IN_CONTAINER.into(),
            Some((docker.clone(), name.clone())),
            spec.network != crate::docker::Network::Host,
        );
        self.running.insert(
            task_id.clone(),
            Running {
                pgid: 0,
                docker: Some(name.clone()),
                killing: false,
                checker,
                killed_unhealthy: false,
            },
        );
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let code = crate::docker::wait(&docker, &name).await;
            // Let the last lines reach the sandbox before the task is reported ended.
            let _ = tokio::time::timeout(Duration::from_secs(2), logs).await;
            let _ = tx.send(Msg::Exited { task_id, code });
        });
        self.send_update(&task.task_id, TaskState::Running, None, None)
            .await;
    }

    async fn kill(&mut self, task_id: &TaskId, grace: Option<Duration>) {
        let killing_state = self
            .framework
            .as_ref()
            .is_some_and(|f| f.has_capability("TASK_KILLING_STATE"));
        let Some(r) = self.running.get_mut(task_id) else {
            return;
        };
        if r.killing {
            return;
        }
        r.killing = true;
        let pgid = r.pgid;
        let container = r.docker.clone();
        if killing_state {
            self.send_update(task_id, TaskState::Killing, None, None)
                .await;
        }
        if let (Some(name), Some(d)) = (container, self.docker.clone()) {
            // Docker sends SIGTERM and SIGKILLs after the grace period itself.
            let grace = grace.unwrap_or(DEFAULT_KILL_GRACE);
            tokio::spawn(async move { crate::docker::stop(&d, &name, grace).await });
            return;
        }
        signal_group(pgid, nix::sys::signal::Signal::SIGTERM);
        let tx = self.tx.clone();
        let id = task_id.clone();
        let grace = grace.unwrap_or(DEFAULT_KILL_GRACE);
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let _ = tx.send(Msg::KillNow { task_id: id });
        });
    }

    /// A health checker's verdict: report a change of health, or kill the task.
    async fn on_health(&mut self, task_id: TaskId, verdict: Verdict) {
        let Some(r) = self.running.get_mut(&task_id) else {
            return;
        };
        if r.killing {
            return;
        }
        match verdict {
            Verdict::Same => {}
            Verdict::Healthy(h) => {
                info!(task_id = %task_id, healthy = h, "health changed");
                self.health.insert(task_id.clone(), h);
                self.send_update(
                    &task_id,
                    TaskState::Running,
                    None,
                    Some("REASON_TASK_HEALTH_CHECK_STATUS_UPDATED"),
                )
                .await;
            }
            Verdict::Kill => {
                warn!(task_id = %task_id, "killing the task: it failed its health check too often");
                r.killed_unhealthy = true;
                self.health.insert(task_id.clone(), false);
                self.kill(&task_id, None).await;
            }
        }
    }

    async fn kill_all(&mut self, _grace: Duration) {
        for r in self.running.values() {
            match (&r.docker, &self.docker) {
                (Some(name), Some(d)) => {
                    let _ = crate::docker::remove(d, name).await;
                }
                _ => signal_group(r.pgid, nix::sys::signal::Signal::SIGKILL),
            }
        }
    }

    async fn on_exit(&mut self, task_id: TaskId, code: Option<i32>) {
        let Some(r) = self.running.remove(&task_id) else {
            return;
        };
        // The task's whole group (or container) goes with it, so nothing outlives the task.
        match (&r.docker, &self.docker) {
            (Some(name), Some(d)) => {
                if let Err(e) = crate::docker::remove(d, name).await {
                    warn!(container = %name, error = %e, "could not remove the container");
                }
            }
            _ => signal_group(r.pgid, nix::sys::signal::Signal::SIGKILL),
        }
        if let Some(c) = &r.checker {
            c.abort();
        }
        let (state, message, reason) = match code {
            _ if r.killed_unhealthy => (
                TaskState::Killed,
                "Task killed after failing its health check too many times in a row".to_string(),
                Some("REASON_TASK_HEALTH_CHECK_STATUS_UPDATED"),
            ),
            _ if r.killing => (
                TaskState::Killed,
                "Command terminated by a kill".to_string(),
                None,
            ),
            Some(0) => (
                TaskState::Finished,
                "Command exited with status 0".to_string(),
                None,
            ),
            Some(c) if c < 0 => (
                TaskState::Failed,
                format!("Command terminated with signal {}", -c),
                Some("REASON_COMMAND_EXECUTOR_FAILED"),
            ),
            Some(c) => (
                TaskState::Failed,
                format!("Command exited with status {c}"),
                Some("REASON_COMMAND_EXECUTOR_FAILED"),
            ),
            None => (
                TaskState::Failed,
                "Command ended with an unknown status".to_string(),
                Some("REASON_COMMAND_EXECUTOR_FAILED"),
            ),
        };
        info!(task_id = %task_id, state = %state, "task ended");
        self.send_update(&task_id, state, Some(message), reason)
            .await;
    }
}
