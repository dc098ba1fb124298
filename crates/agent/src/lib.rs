//! The agent's decisions: which executors to start for which tasks, what to tell them, and the
//! status update manager (every update is kept, sent to the master one at a time per task in
//! order, resent with backoff until acknowledged).
//!
//! Pure and deterministic like the master core: the shell (`mantle-server::agent`) feeds it
//! messages from the master and executors, process exits and the time, and carries out its
//! `Output`s (start or kill an executor process, send to the master or an executor).
//!
//! Status updates are designed for checkpointing (issue #5): the queue per task is plain data
//! (`pending_updates()`), so persisting it before `ToMaster` is an added effect, not a rework.

mod journal;
mod state;

pub use journal::JournalEntry;

use base64::Engine;
use mantle_api::executor::{self as exec, Event as ExecEvent, EventType as ExecEventType};
use mantle_api::internal::{
    AgentToMaster, ExecutorSnapshot, MasterToAgent, RegisterAgent, TaskSnapshot,
};
use mantle_api::mesos::{
    AgentInfo, CommandInfo, ExecutorInfo, FrameworkInfo, KillPolicy, TaskInfo, TaskStatus,
};
use mantle_model::{
    AgentId, Attribute, ExecutorId, FrameworkId, Now, Resources, TaskId, TaskState,
};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;
use tracing::{info, warn};

/// First retry of an unacknowledged status update (Mesos: 10 s, doubling to 10 min).
pub const STATUS_UPDATE_RETRY_MIN: Duration = Duration::from_secs(10);
/// Longest retry interval of a status update.
pub const STATUS_UPDATE_RETRY_MAX: Duration = Duration::from_secs(600);
/// How long an executor may take to subscribe (Mesos `--executor_registration_timeout`).
pub const EXECUTOR_REGISTRATION_TIMEOUT: Duration = Duration::from_secs(60);
/// Time an executor gets between SHUTDOWN and being killed (Mesos default 5 s).
pub const EXECUTOR_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Completed tasks kept per executor for `/state`.
const MAX_COMPLETED: usize = 200;

/// A connection handle chosen by the shell (an executor's event stream).
pub type ConnId = u64;

/// Agent settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub hostname: String,
    pub port: u16,
    pub resources: Resources,
    pub attributes: Vec<Attribute>,
    /// Root under which sandboxes live (`<work_dir>/slaves`).
    pub sandbox_root: String,
    pub status_update_retry_min: Duration,
    pub seed: u64,
}

/// How an executor process is started.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecutorKind {
    /// The built-in executor (`mantle executor`) for command tasks and task groups.
    Builtin,
    /// A framework's own executor, run with `CommandInfo`.
    Custom(CommandInfo),
}

/// What a container may use: the executor's own resources plus those of its live tasks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContainerLimits {
    pub cpus: f64,
    pub mem_mb: f64,
}

/// Cpus added to a built-in executor's container for the executor itself (Mesos's
/// `DEFAULT_EXECUTOR_CPUS`).
pub const BUILTIN_EXECUTOR_CPUS: f64 = 0.1;
/// Memory added to a built-in executor's container for the executor itself (Mesos's
/// `DEFAULT_EXECUTOR_MEM`).
pub const BUILTIN_EXECUTOR_MEM_MB: f64 = 32.0;

/// A running executor's container, for `/monitor/statistics`.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerInfo {
    pub framework_id: FrameworkId,
    pub executor_id: ExecutorId,
    pub container_id: String,
    pub name: String,
    pub source: String,
    pub limits: ContainerLimits,
    pub directory: String,
}

/// How long a recovered executor has to subscribe again after an agent restart before it is
/// killed (Mesos's `--executor_reregistration_timeout` is 2 s; Mantle's executors retry every
/// second, so a little more).
pub const EXECUTOR_REREGISTRATION_TIMEOUT: Duration = Duration::from_secs(15);

/// What the agent checkpoints so that a restarted agent can take over its live executors:
/// everything but connections, deadlines and history.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    pub agent_id: Option<AgentId>,
    pub frameworks: Vec<FrameworkInfo>,
    pub executors: Vec<CheckpointedExecutor>,
    /// Unacknowledged updates, oldest first per task.
    pub updates: Vec<(FrameworkId, TaskStatus)>,
}

/// One running executor in a checkpoint.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CheckpointedExecutor {
    pub framework_id: FrameworkId,
    pub info: ExecutorInfo,
    pub builtin: bool,
    pub container_id: String,
    pub directory: String,
    pub role: String,
    /// Tasks handed to the executor, with their state and the statuses seen.
    pub tasks: Vec<(TaskInfo, TaskState, Vec<TaskStatus>)>,
    /// Launches not yet handed over: one entry per task or task group.
    pub queued: Vec<Vec<TaskInfo>>,
    pub queued_groups: Vec<bool>,
    pub killed: Vec<TaskId>,
    pub shutting_down: bool,
}

/// An effect for the shell.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send a message to the master (dropped by the shell when not connected; the status
    /// update manager resends).
    ToMaster(AgentToMaster),
    /// Start an executor process in `directory`.
    LaunchExecutor {
        framework_id: FrameworkId,
        executor_id: ExecutorId,
        container_id: String,
        directory: String,
        kind: ExecutorKind,
        role: String,
        limits: ContainerLimits,
        /// What the fetcher puts in the sandbox first: the executor's `uris` for a custom
        /// executor, its tasks' for the built-in one; an error when they do not parse.
        uris: Result<Vec<mantle_api::mesos::CommandUri>, String>,
        /// The framework asked for checkpointing (`FrameworkInfo.checkpoint`): its executor
        /// waits for a restarted agent instead of ending with it.
        checkpoint: bool,
        /// The built-in executor runs a `DOCKER` task: the docker containerizer's, which the
        /// `mesos` containerizer's namespaces do not apply to (as in Mesos).
        docker: bool,
        /// The `mesos` container's `ContainerInfo` (the executor's; for the built-in executor
        /// of a command task without one, its task's), where its networks and hostname are
        /// named; `None` for a DOCKER task.
        container: Option<serde_json::Value>,
    },
    /// A running container's limits changed (a task joined its executor).
    UpdateContainer {
        container_id: String,
        limits: ContainerLimits,
    },
    /// Send an event to a subscribed executor.
    ToExecutor { conn: ConnId, event: ExecEvent },
    /// End an executor's event stream.
    CloseExecutor { conn: ConnId },
    /// Kill an executor's process group (SIGKILL): it ignored SHUTDOWN or never subscribed.
    KillExecutor { container_id: String },
}

/// A rejected executor call, answered with 400 (or 403) and the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    /// The shell could not make the call durable (answered 503; the executor retries).
    #[error("{0}")]
    ServiceUnavailable(String),
}

#[derive(Debug, Clone)]
pub(crate) struct Task {
    pub(crate) info: TaskInfo,
    pub(crate) state: TaskState,
    pub(crate) statuses: Vec<TaskStatus>,
}

#[derive(Debug, Clone)]
enum Pending {
    Task(TaskInfo),
    Group(Vec<TaskInfo>),
}

#[derive(Debug, Clone)]
pub(crate) struct Executor {
    pub(crate) info: ExecutorInfo,
    pub(crate) builtin: bool,
    pub(crate) container_id: String,
    pub(crate) directory: String,
    pub(crate) conn: Option<ConnId>,
    queued: Vec<Pending>,
    pub(crate) tasks: BTreeMap<TaskId, Task>,
    pub(crate) completed: VecDeque<Task>,
    /// Tasks whose kill was requested (their end is TASK_KILLED, not TASK_FAILED).
    killed: BTreeSet<TaskId>,
    registration_deadline: Option<Duration>,
    shutdown_deadline: Option<Duration>,
    pub(crate) role: String,
    /// The container's `network_infos` with their IPs, once the shell has attached it to its
    /// networks (`container_networked`): its tasks' updates carry them in
    /// `container_status`, as Mesos's do.
    pub(crate) network_infos: Option<Vec<serde_json::Value>>,
}

#[derive(Debug, Clone)]
struct PendingUpdate {
    status: TaskStatus,
    next_send: Duration,
    backoff: Duration,
}

/// The agent's whole state.
pub struct Agent {
    pub(crate) config: Config,
    pub(crate) agent_id: Option<AgentId>,
    stream_id: Option<String>,
    pub(crate) frameworks: BTreeMap<FrameworkId, FrameworkInfo>,
    pub(crate) executors: BTreeMap<(FrameworkId, ExecutorId), Executor>,
    updates: BTreeMap<(FrameworkId, TaskId), VecDeque<PendingUpdate>>,
    pub(crate) completed_executors: VecDeque<((FrameworkId, ExecutorId), Executor)>,
    rng: ChaCha8Rng,
    pub(crate) start_time: f64,
    outputs: Vec<Output>,
    /// Changes to the update streams not yet taken by the shell (`take_journal`).
    journal: Vec<JournalEntry>,
    /// Bumped by every call that may change the state (`changes`).
    changes: u64,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl Agent {
    /// A fresh agent.
    pub fn new(config: Config, now: Now) -> Self {
        Agent {
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            config,
            agent_id: None,
            stream_id: None,
            frameworks: BTreeMap::new(),
            executors: BTreeMap::new(),
            updates: BTreeMap::new(),
            completed_executors: VecDeque::new(),
            start_time: now.wall_secs,
            outputs: Vec::new(),
            journal: Vec::new(),
            changes: 0,
        }
    }

    /// Effects produced since the last call.
    pub fn take_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.outputs)
    }

    /// A count of the calls that may have changed the state: while it stays the same, so
    /// does `checkpoint()`, and a writer can skip comparing checkpoints.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// Changes to the update streams since the last call, for the shell's update log (see
    /// `journal`).
    pub fn take_journal(&mut self) -> Vec<JournalEntry> {
        std::mem::take(&mut self.journal)
    }

    /// The agent ID, once registered.
    pub fn agent_id(&self) -> Option<&AgentId> {
        self.agent_id.as_ref()
    }

    /// The stream ID of the current master registration.
    pub fn stream_id(&self) -> Option<&str> {
        self.stream_id.as_deref()
    }

    /// What to send to the master to (re-)register: resources, and everything running.
    ///
    /// A task is reported in the state of its oldest unacknowledged update, not its latest
    /// one, so the master never runs ahead of the update stream (Mesos's
    /// `status_update_state`); tasks that ended but whose updates are not acknowledged yet
    /// are reported too, or the master would answer reconciliation with TASK_GONE while
    /// their updates are still on their way.
    pub fn registration(&self) -> RegisterAgent {
        let mut tasks = Vec::new();
        let mut executors = Vec::new();
        let unacked = |f: &FrameworkId, t: &TaskId| {
            self.updates
                .get(&(f.clone(), t.clone()))
                .and_then(|q| q.front())
                .map(|p| p.status.state)
        };
        let ended = self
            .executors
            .iter()
            .map(|(k, e)| (k, e, false))
            .chain(self.completed_executors.iter().map(|(k, e)| (k, e, true)));
        for ((framework_id, executor_id), e, gone) in ended {
            if !e.builtin && !gone {
                executors.push(ExecutorSnapshot {
                    framework_id: framework_id.clone(),
                    executor: e.info.clone(),
                });
            }
            let executor_id = (!e.builtin || e.info.kind.as_deref() == Some("DEFAULT"))
                .then(|| executor_id.clone());
            let live = e
                .tasks
                .values()
                .map(|t| (t, unacked(framework_id, &t.info.task_id)));
            let finished = e
                .completed
                .iter()
                .filter_map(|t| unacked(framework_id, &t.info.task_id).map(|s| (t, Some(s))));
            for (t, pending) in live.chain(finished) {
                if tasks.iter().any(|x: &TaskSnapshot| {
                    &x.framework_id == framework_id && x.task.task_id == t.info.task_id
                }) {
                    continue;
                }
                tasks.push(TaskSnapshot {
                    framework_id: framework_id.clone(),
                    executor_id: executor_id.clone(),
                    task: t.info.clone(),
                    state: pending.unwrap_or(t.state),
                });
            }
            for p in &e.queued {
                let list = match p {
                    Pending::Task(t) => vec![t.clone()],
                    Pending::Group(ts) => ts.clone(),
                };
                for t in list {
                    tasks.push(TaskSnapshot {
                        framework_id: framework_id.clone(),
                        executor_id: None,
                        task: t,
                        state: TaskState::Staging,
                    });
                }
            }
        }
        RegisterAgent {
            agent_id: self.agent_id.clone(),
            hostname: self.config.hostname.clone(),
            port: self.config.port,
            resources: mantle_api::resources_to_wire(&self.config.resources, None),
            attributes: mantle_api::attributes_to_wire(&self.config.attributes),
            frameworks: self.frameworks.values().cloned().collect(),
            tasks,
            executors,
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    /// `AgentInfo` as given to executors in SUBSCRIBED.
    pub fn agent_info(&self) -> AgentInfo {
        AgentInfo {
            hostname: self.config.hostname.clone(),
            port: Some(self.config.port),
            resources: mantle_api::resources_to_wire(&self.config.resources, None),
            attributes: mantle_api::attributes_to_wire(&self.config.attributes),
            id: self.agent_id.clone(),
        }
    }

    /// The master's stream ended: keep everything, resend once reconnected.
    pub fn master_disconnected(&mut self) {
        self.changes += 1;
        self.stream_id = None;
    }

    /// The earliest time `tick` has work.
    pub fn next_deadline(&self) -> Option<Duration> {
        let mut d: Option<Duration> = None;
        let mut take = |x: Duration| d = Some(d.map_or(x, |y| y.min(x)));
        if self.stream_id.is_some() {
            for q in self.updates.values() {
                if let Some(p) = q.front() {
                    take(p.next_send);
                }
            }
        }
        for e in self.executors.values() {
            if let Some(x) = e.registration_deadline {
                take(x);
            }
            if let Some(x) = e.shutdown_deadline {
                take(x);
            }
        }
        d
    }

    /// Timers: resend unacknowledged updates, kill executors that never subscribed or
    /// ignored SHUTDOWN.
    pub fn tick(&mut self, now: Now) {
        self.changes += 1;
        if self.stream_id.is_some() {
            let mut resend = Vec::new();
            for ((framework_id, _), q) in self.updates.iter_mut() {
                if let Some(p) = q.front_mut() {
                    if now.mono >= p.next_send {
                        p.next_send = now.mono + p.backoff;
                        p.backoff = (p.backoff * 2).min(STATUS_UPDATE_RETRY_MAX);
                        resend.push(AgentToMaster::StatusUpdate {
                            framework_id: framework_id.clone(),
                            status: p.status.clone(),
                        });
                    }
                }
            }
            for m in resend {
                self.outputs.push(Output::ToMaster(m));
            }
        }
        let mut kill = Vec::new();
        for e in self.executors.values_mut() {
            let overdue = e.registration_deadline.is_some_and(|d| now.mono >= d)
                || e.shutdown_deadline.is_some_and(|d| now.mono >= d);
            if overdue {
                e.registration_deadline = None;
                e.shutdown_deadline = None;
                kill.push(e.container_id.clone());
            }
        }
        for container_id in kill {
            warn!(container_id = %container_id, "killing executor that did not subscribe or shut down in time");
            self.outputs.push(Output::KillExecutor { container_id });
        }
    }

    fn new_uuid(&mut self) -> String {
        let mut b = [0u8; 16];
        self.rng.fill_bytes(&mut b);
        // Mark it as a version-4 UUID, as Mesos's `id::UUID::random()` does.
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        b64(&b)
    }

    fn sandbox(
        &self,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
        container_id: &str,
    ) -> String {
        let agent = self
            .agent_id
            .as_ref()
            .map(|a| a.as_str())
            .unwrap_or("unregistered");
        format!(
            "{}/{agent}/frameworks/{framework_id}/executors/{executor_id}/runs/{container_id}",
            self.config.sandbox_root
        )
    }

    /// A message from the master.
    pub fn from_master(&mut self, now: Now, message: MasterToAgent) {
        self.changes += 1;
        match message {
            MasterToAgent::Registered {
                agent_id,
                stream_id,
            } => {
                info!(agent_id = %agent_id, "registered with master");
                self.agent_id = Some(agent_id);
                self.stream_id = Some(stream_id);
                // Resend every queued update at once on (re-)registration.
                for q in self.updates.values_mut() {
                    if let Some(p) = q.front_mut() {
                        p.next_send = now.mono;
                    }
                }
                self.tick(now);
            }
            MasterToAgent::RunTask { framework, task } => {
                self.run(now, framework, task.executor.clone(), Pending::Task(task))
            }
            MasterToAgent::RunTaskGroup {
                framework,
                executor,
                tasks,
            } => self.run(now, framework, Some(executor), Pending::Group(tasks)),
            MasterToAgent::KillTask {
                framework_id,
                task_id,
                kill_policy,
            } => self.kill_task(now, &framework_id, &task_id, kill_policy),
            MasterToAgent::ShutdownExecutor {
                framework_id,
                executor_id,
            } => self.shutdown_executor(now, &(framework_id, executor_id)),
            MasterToAgent::ShutdownFramework { framework_id } => {
                let keys: Vec<_> = self
                    .executors
                    .keys()
                    .filter(|(f, _)| *f == framework_id)
                    .cloned()
                    .collect();
                for k in keys {
                    self.shutdown_executor(now, &k);
                }
            }
            MasterToAgent::AckStatusUpdate {
                framework_id,
                task_id,
                uuid,
            } => self.acknowledged(now, &framework_id, &task_id, &uuid),
            MasterToAgent::FrameworkMessage {
                framework_id,
                executor_id,
                data,
            } => {
                match self
                    .executors
                    .get(&(framework_id, executor_id.clone()))
                    .and_then(|e| e.conn)
                {
                    Some(conn) => {
                        let mut ev = ExecEvent::bare(ExecEventType::Message);
                        ev.message = Some(exec::Message { data });
                        self.outputs.push(Output::ToExecutor { conn, event: ev });
                    }
                    None => {
                        warn!(executor_id = %executor_id, "dropping framework message for an executor that is not subscribed")
                    }
                }
            }
            MasterToAgent::UpdateFramework { framework_id } => {
                // Its scheduler is back: what it missed goes again now, not at the next retry.
                for ((f, _), q) in self.updates.iter_mut() {
                    if *f == framework_id {
                        if let Some(p) = q.front_mut() {
                            p.next_send = now.mono;
                        }
                    }
                }
                self.tick(now);
            }
            // Mesos's PongSlaveMessage: tells the master this agent is alive and listening.
            MasterToAgent::Ping => self.outputs.push(Output::ToMaster(AgentToMaster::Pong)),
        }
    }

    fn run(
        &mut self,
        now: Now,
        framework: FrameworkInfo,
        executor: Option<ExecutorInfo>,
        pending: Pending,
    ) {
        let Some(framework_id) = framework.id.clone() else {
            warn!("dropping a launch without a framework ID");
            return;
        };
        self.frameworks.insert(framework_id.clone(), framework);
        let (builtin, info) = match executor {
            Some(e) => (e.kind.as_deref() == Some("DEFAULT"), e),
            None => {
                // A command task: the built-in executor, with the task's ID, runs it.
                let Pending::Task(task) = &pending else {
                    return;
                };
                let value = task
                    .command
                    .as_ref()
                    .and_then(|c| c.value.clone())
                    .unwrap_or_default();
                let short: String = value.chars().take(12).collect();
                let mut e = ExecutorInfo {
                    kind: Some("DEFAULT".into()),
                    executor_id: ExecutorId::new(task.task_id.as_str()),
                    framework_id: Some(framework_id.clone()),
                    command: None,
                    resources: Vec::new(),
                    name: Some(format!(
                        "Command Executor (Task: {}) (Command: sh -c '{short}...')",
                        task.task_id
                    )),
                    extra: Default::default(),
                };
                e.extra.insert(
                    "source".into(),
                    serde_json::Value::String(task.task_id.to_string()),
                );
                (true, e)
            }
        };
        let role = self
            .frameworks
            .get(&framework_id)
            .map(|f| {
                f.effective_roles()
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "*".into())
            })
            .unwrap_or_else(|| "*".into());
        let key = (framework_id.clone(), info.executor_id.clone());
        if let Some(e) = self.executors.get_mut(&key) {
            if e.shutdown_deadline.is_some() {
                // The executor is going away: the task cannot run on it.
                let tasks = match pending {
                    Pending::Task(t) => vec![t],
                    Pending::Group(ts) => ts,
                };
                for t in tasks {
                    self.agent_update(
                        now,
                        &framework_id,
                        &info.executor_id,
                        &t.task_id,
                        TaskState::Lost,
                        "REASON_EXECUTOR_TERMINATED",
                        "Executor is shutting down",
                    );
                }
                return;
            }
            // Grow the container before the executor can start the task in it.
            let mut limits = Self::limits_of(e);
            let (cpus, mem) = Self::task_sums(Self::pending_tasks(&pending));
            limits.cpus += cpus;
            limits.mem_mb += mem;
            self.outputs.push(Output::UpdateContainer {
                container_id: e.container_id.clone(),
                limits,
            });
            match e.conn {
                Some(conn) => {
                    let event = Self::launch_event(&pending);
                    Self::track_pending(e, &pending);
                    self.outputs.push(Output::ToExecutor { conn, event });
                }
                None => e.queued.push(pending),
            }
            return;
        }
        let container_id = {
            let mut b = [0u8; 16];
            self.rng.fill_bytes(&mut b);
            uuid::Builder::from_random_bytes(b).into_uuid().to_string()
        };
        let directory = self.sandbox(&framework_id, &info.executor_id, &container_id);
        let kind = if builtin {
            ExecutorKind::Builtin
        } else {
            ExecutorKind::Custom(info.command.clone().unwrap_or_default())
        };
        let executor = Executor {
            info,
            builtin,
            container_id: container_id.clone(),
            directory: directory.clone(),
            conn: None,
            queued: vec![pending],
            tasks: BTreeMap::new(),
            completed: VecDeque::new(),
            killed: BTreeSet::new(),
            registration_deadline: Some(now.mono + EXECUTOR_REGISTRATION_TIMEOUT),
            shutdown_deadline: None,
            role: role.clone(),
            network_infos: None,
        };
        let uris = if executor.builtin {
            executor
                .queued
                .iter()
                .flat_map(Self::pending_tasks)
                .filter_map(|t| t.command.as_ref())
                .map(|c| c.uris())
                .collect::<Result<Vec<_>, _>>()
                .map(|v| v.into_iter().flatten().collect())
        } else {
            executor
                .info
                .command
                .as_ref()
                .map_or(Ok(Vec::new()), |c| c.uris())
        };
        let checkpoint = self
            .frameworks
            .get(&framework_id)
            .and_then(|f| f.checkpoint)
            .unwrap_or(false);
        let docker = executor.builtin
            && executor
                .queued
                .iter()
                .flat_map(Self::pending_tasks)
                .any(|t| {
                    t.extra
                        .get("container")
                        .and_then(|c| c.get("type"))
                        .and_then(|t| t.as_str())
                        == Some("DOCKER")
                });
        let container = if docker {
            None
        } else {
            executor.info.extra.get("container").cloned().or_else(|| {
                executor
                    .queued
                    .iter()
                    .flat_map(Self::pending_tasks)
                    .find_map(|t| t.extra.get("container").cloned())
            })
        };
        self.outputs.push(Output::LaunchExecutor {
            checkpoint,
            docker,
            container,
            uris,
            framework_id: framework_id.clone(),
            executor_id: executor.info.executor_id.clone(),
            container_id: container_id.clone(),
            directory: directory.clone(),
            kind,
            role,
            limits: Self::limits_of(&executor),
        });
        self.executors.insert(key, executor);
    }

    /// Sum of the positive finite values of scalar resource `name`.
    fn scalar_sum(name: &str, rs: &[mantle_api::mesos::Resource]) -> f64 {
        rs.iter()
            .filter(|r| r.name == name)
            .filter_map(|r| r.scalar.as_ref().map(|s| s.value))
            .filter(|v| v.is_finite() && *v > 0.0)
            .sum()
    }

    fn pending_tasks(p: &Pending) -> &[TaskInfo] {
        match p {
            Pending::Task(t) => std::slice::from_ref(t),
            Pending::Group(ts) => ts.as_slice(),
        }
    }

    /// Cpus and mem of `tasks`.
    fn task_sums<'a>(tasks: impl IntoIterator<Item = &'a TaskInfo>) -> (f64, f64) {
        tasks.into_iter().fold((0.0, 0.0), |(c, m), t| {
            (
                c + Self::scalar_sum("cpus", &t.resources),
                m + Self::scalar_sum("mem", &t.resources),
            )
        })
    }

    /// The executor's resources plus those of its live and queued tasks.
    fn limits_of(e: &Executor) -> ContainerLimits {
        let mut cpus = Self::scalar_sum("cpus", &e.info.resources);
        let mut mem = Self::scalar_sum("mem", &e.info.resources);
        if e.builtin {
            cpus += BUILTIN_EXECUTOR_CPUS;
            mem += BUILTIN_EXECUTOR_MEM_MB;
        }
        let queued = e.queued.iter().flat_map(Self::pending_tasks);
        let (c, m) = Self::task_sums(e.tasks.values().map(|t| &t.info).chain(queued));
        ContainerLimits {
            cpus: cpus + c,
            mem_mb: mem + m,
        }
    }

    fn launch_event(p: &Pending) -> ExecEvent {
        match p {
            Pending::Task(t) => {
                let mut ev = ExecEvent::bare(ExecEventType::Launch);
                ev.launch = Some(exec::Launch { task: t.clone() });
                ev
            }
            Pending::Group(ts) => {
                let mut ev = ExecEvent::bare(ExecEventType::LaunchGroup);
                ev.launch_group = Some(exec::LaunchGroup {
                    task_group: mantle_api::mesos::TaskGroupInfo { tasks: ts.clone() },
                });
                ev
            }
        }
    }

    fn track_pending(e: &mut Executor, p: &Pending) {
        let list = match p {
            Pending::Task(t) => std::slice::from_ref(t),
            Pending::Group(ts) => ts.as_slice(),
        };
        for t in list {
            e.tasks.insert(
                t.task_id.clone(),
                Task {
                    info: t.clone(),
                    state: TaskState::Staging,
                    statuses: Vec::new(),
                },
            );
        }
    }

    fn find_task(
        &self,
        framework_id: &FrameworkId,
        task_id: &TaskId,
    ) -> Option<(FrameworkId, ExecutorId)> {
        self.executors
            .iter()
            .find(|((f, _), e)| {
                f == framework_id
                    && (e.tasks.contains_key(task_id)
                        || e.queued.iter().any(|p| match p {
                            Pending::Task(t) => &t.task_id == task_id,
                            Pending::Group(ts) => ts.iter().any(|t| &t.task_id == task_id),
                        }))
            })
            .map(|(k, _)| k.clone())
    }

    fn kill_task(
        &mut self,
        now: Now,
        framework_id: &FrameworkId,
        task_id: &TaskId,
        kill_policy: Option<KillPolicy>,
    ) {
        let Some(key) = self.find_task(framework_id, task_id) else {
            // Unknown here: tell the framework it is gone so it stops waiting.
            let executor_id = ExecutorId::new(task_id.as_str());
            self.agent_update(
                now,
                framework_id,
                &executor_id,
                task_id,
                TaskState::Lost,
                "REASON_RECONCILIATION",
                "Cannot find task to kill",
            );
            return;
        };
        let Some(e) = self.executors.get_mut(&key) else {
            return;
        };
        e.killed.insert(task_id.clone());
        match e.conn {
            Some(conn) => {
                let mut ev = ExecEvent::bare(ExecEventType::Kill);
                ev.kill = Some(exec::Kill {
                    task_id: task_id.clone(),
                    kill_policy,
                });
                self.outputs.push(Output::ToExecutor { conn, event: ev });
            }
            None => {
                // Not launched yet: drop it from the queue (a whole group goes together).
                let before = e.queued.len();
                let mut removed = Vec::new();
                e.queued.retain(|p| {
                    let ids: Vec<TaskId> = match p {
                        Pending::Task(t) => vec![t.task_id.clone()],
                        Pending::Group(ts) => ts.iter().map(|t| t.task_id.clone()).collect(),
                    };
                    if ids.contains(task_id) {
                        removed.extend(ids);
                        false
                    } else {
                        true
                    }
                });
                let empty = e.queued.is_empty() && e.tasks.is_empty();
                if before != e.queued.len() {
                    for t in removed {
                        self.agent_update(
                            now,
                            &key.0,
                            &key.1,
                            &t,
                            TaskState::Killed,
                            "REASON_TASK_KILLED_DURING_LAUNCH",
                            "Killed before delivery to the executor",
                        );
                    }
                }
                if empty {
                    self.shutdown_executor(now, &key);
                }
            }
        }
    }

    fn shutdown_executor(&mut self, now: Now, key: &(FrameworkId, ExecutorId)) {
        let Some(e) = self.executors.get_mut(key) else {
            return;
        };
        if e.shutdown_deadline.is_some() {
            return;
        }
        e.shutdown_deadline = Some(now.mono + EXECUTOR_SHUTDOWN_GRACE);
        e.registration_deadline = None;
        let ids: Vec<TaskId> = e.tasks.keys().cloned().collect();
        e.killed.extend(ids);
        match e.conn {
            Some(conn) => self.outputs.push(Output::ToExecutor {
                conn,
                event: ExecEvent::bare(ExecEventType::Shutdown),
            }),
            None => {
                let container_id = e.container_id.clone();
                self.outputs.push(Output::KillExecutor { container_id });
            }
        }
    }

    /// Generates an update on the agent's own authority (SOURCE_AGENT) and queues it.
    #[allow(clippy::too_many_arguments)]
    fn agent_update(
        &mut self,
        now: Now,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
        task_id: &TaskId,
        state: TaskState,
        reason: &str,
        message: &str,
    ) {
        let mut s = TaskStatus::new(task_id.clone(), state);
        s.source = Some("SOURCE_AGENT".into());
        s.reason = Some(reason.into());
        s.message = Some(message.into());
        s.executor_id = Some(executor_id.clone());
        s.timestamp = Some(now.wall_secs);
        s.uuid = Some(self.new_uuid());
        self.record(framework_id, executor_id, &s);
        self.enqueue(now, framework_id.clone(), executor_id, s);
    }

    /// Applies a status to the task's record (moving it to completed when terminal).
    fn record(&mut self, framework_id: &FrameworkId, executor_id: &ExecutorId, s: &TaskStatus) {
        let Some(e) = self
            .executors
            .get_mut(&(framework_id.clone(), executor_id.clone()))
        else {
            return;
        };
        if let Some(t) = e.tasks.get_mut(&s.task_id) {
            if t.state.is_terminal() {
                return;
            }
            t.state = s.state;
            mantle_api::mesos::push_status(&mut t.statuses, s.clone());
            if s.state.is_terminal() {
                if let Some(t) = e.tasks.remove(&s.task_id) {
                    e.completed.push_back(t);
                    while e.completed.len() > MAX_COMPLETED {
                        e.completed.pop_front();
                    }
                }
            }
        }
    }

    fn enqueue(
        &mut self,
        now: Now,
        framework_id: FrameworkId,
        executor_id: &ExecutorId,
        status: TaskStatus,
    ) {
        if self.checkpointed(&framework_id) {
            self.journal.push(JournalEntry::Update {
                framework_id: framework_id.clone(),
                executor_id: executor_id.clone(),
                status: status.clone(),
            });
        }
        let key = (framework_id.clone(), status.task_id.clone());
        let q = self.updates.entry(key).or_default();
        let first = q.is_empty();
        q.push_back(PendingUpdate {
            status: status.clone(),
            next_send: now.mono + self.config.status_update_retry_min,
            backoff: self.config.status_update_retry_min * 2,
        });
        if first && self.stream_id.is_some() {
            self.outputs
                .push(Output::ToMaster(AgentToMaster::StatusUpdate {
                    framework_id,
                    status,
                }));
        }
    }

    fn acknowledged(&mut self, now: Now, framework_id: &FrameworkId, task_id: &TaskId, uuid: &str) {
        let key = (framework_id.clone(), task_id.clone());
        let journaled = self.checkpointed(framework_id);
        let Some(q) = self.updates.get_mut(&key) else {
            warn!(task_id = %task_id, "acknowledgement for a task with no pending update");
            return;
        };
        if q.front().and_then(|p| p.status.uuid.as_deref()) != Some(uuid) {
            warn!(task_id = %task_id, "ignoring acknowledgement of an update that is not the one in flight");
            return;
        }
        q.pop_front();
        if journaled {
            self.journal.push(JournalEntry::Ack {
                framework_id: framework_id.clone(),
                task_id: task_id.clone(),
                uuid: uuid.to_string(),
            });
        }
        // The next update goes now, and is retried from now: it may have waited in the queue
        // longer than its first retry interval.
        if let Some(p) = q.front_mut() {
            p.next_send = now.mono + self.config.status_update_retry_min;
            p.backoff = self.config.status_update_retry_min * 2;
        }
        // Tell the executor, which waits for this before exiting after a terminal update.
        if let Some(executor) = self.executors.values().find(|e| {
            e.tasks.contains_key(task_id) || e.completed.iter().any(|t| &t.info.task_id == task_id)
        }) {
            if let Some(conn) = executor.conn {
                let mut ev = ExecEvent::bare(ExecEventType::Acknowledged);
                ev.acknowledged = Some(exec::Acknowledged {
                    task_id: task_id.clone(),
                    uuid: uuid.to_string(),
                });
                self.outputs.push(Output::ToExecutor { conn, event: ev });
            }
        }
        match q.front().map(|p| p.status.clone()) {
            Some(next) => {
                if self.stream_id.is_some() {
                    self.outputs
                        .push(Output::ToMaster(AgentToMaster::StatusUpdate {
                            framework_id: framework_id.clone(),
                            status: next,
                        }));
                }
            }
            None => {
                self.updates.remove(&key);
            }
        }
    }

    /// An executor SUBSCRIBE on `conn`. Returns the SUBSCRIBED event to open the stream with;
    /// queued launches follow as outputs.
    pub fn executor_subscribe(
        &mut self,
        now: Now,
        conn: ConnId,
        call: &exec::Call,
    ) -> Result<ExecEvent, CallError> {
        self.changes += 1;
        let key = (call.framework_id.clone(), call.executor_id.clone());
        let framework = self
            .frameworks
            .get(&call.framework_id)
            .cloned()
            .ok_or_else(|| CallError::BadRequest("Framework cannot be found".into()))?;
        let framework_partition_aware = framework.has_capability("PARTITION_AWARE");
        let agent_info = self.agent_info();
        let e = self
            .executors
            .get_mut(&key)
            .ok_or_else(|| CallError::BadRequest("Executor cannot be found".into()))?;
        if let Some(old) = e.conn.replace(conn) {
            self.outputs.push(Output::CloseExecutor { conn: old });
        }
        // An executor subscribing again after an agent restart names the tasks it knows
        // (`unacknowledged_tasks`). A task still STAGING that it does not know was handed to
        // it by the agent that died before the LAUNCH arrived: it never runs, so it ends now
        // (TASK_DROPPED, or TASK_LOST for frameworks that are not partition-aware), as Mesos
        // does; a kill of it would otherwise wait for ever.
        let mut dropped = Vec::new();
        if e.registration_deadline.is_some() {
            let known: BTreeSet<&TaskId> = call
                .subscribe
                .iter()
                .flat_map(|s| s.unacknowledged_tasks.iter().map(|t| &t.task_id))
                .collect();
            dropped = e
                .tasks
                .values()
                .filter(|t| t.state == TaskState::Staging && !known.contains(&t.info.task_id))
                .map(|t| t.info.task_id.clone())
                .collect();
        }
        e.registration_deadline = None;
        let mut ev = ExecEvent::bare(ExecEventType::Subscribed);
        ev.subscribed = Some(exec::Subscribed {
            executor_info: e.info.clone(),
            framework_info: framework,
            agent_info,
            container_id: Some(exec::ContainerId {
                value: e.container_id.clone(),
            }),
        });
        let queued = std::mem::take(&mut e.queued);
        for p in &queued {
            Self::track_pending(e, p);
        }
        let launches: Vec<ExecEvent> = queued.iter().map(Self::launch_event).collect();
        if e.shutdown_deadline.is_some() {
            self.outputs.push(Output::ToExecutor {
                conn,
                event: ExecEvent::bare(ExecEventType::Shutdown),
            });
        }
        for event in launches {
            self.outputs.push(Output::ToExecutor { conn, event });
        }
        let state = if framework_partition_aware {
            TaskState::Dropped
        } else {
            TaskState::Lost
        };
        for task_id in dropped {
            self.agent_update(
                now,
                &key.0,
                &key.1,
                &task_id,
                state,
                "REASON_AGENT_RESTARTED",
                "Task launched during agent restart",
            );
        }
        Ok(ev)
    }

    /// An executor UPDATE, MESSAGE or HEARTBEAT.
    pub fn executor_call(&mut self, now: Now, call: exec::Call) -> Result<(), CallError> {
        self.changes += 1;
        let key = (call.framework_id.clone(), call.executor_id.clone());
        let Some(e) = self.executors.get(&key) else {
            if !self.frameworks.contains_key(&call.framework_id) {
                return Err(CallError::BadRequest("Framework cannot be found".into()));
            }
            return Err(CallError::BadRequest("Executor cannot be found".into()));
        };
        if e.conn.is_none() && call.kind != exec::CallType::Heartbeat {
            return Err(CallError::Forbidden("Executor is not subscribed".into()));
        }
        match call.kind {
            exec::CallType::Update => {
                let mut status = call
                    .update
                    .ok_or_else(|| {
                        CallError::BadRequest("Expecting 'update' to be present".into())
                    })?
                    .status;
                let uuid = status.uuid.clone().ok_or_else(|| {
                    CallError::BadRequest("Expecting 'uuid' to be present".into())
                })?;
                let valid = base64::engine::general_purpose::STANDARD
                    .decode(uuid.as_bytes())
                    .map(|b| b.len() == 16)
                    .unwrap_or(false);
                if !valid {
                    return Err(CallError::BadRequest("Not a valid UUID".into()));
                }
                if status.state == TaskState::Staging {
                    return Err(CallError::BadRequest(format!("Received TASK_STAGING from executor {} of framework {} which is not allowed", call.executor_id, call.framework_id)));
                }
                if let Some(x) = &status.executor_id {
                    if x != &call.executor_id {
                        return Err(CallError::BadRequest(format!(
                            "ExecutorID in Call: {} does not match ExecutorID in TaskStatus: {x}",
                            call.executor_id
                        )));
                    }
                }
                let owns = e.tasks.contains_key(&status.task_id)
                    || e.completed.iter().any(|t| t.info.task_id == status.task_id);
                if !owns {
                    return Err(CallError::BadRequest(format!(
                        "Task {} does not belong to executor {}",
                        status.task_id, call.executor_id
                    )));
                }
                let seen = e
                    .tasks
                    .get(&status.task_id)
                    .into_iter()
                    .chain(
                        e.completed
                            .iter()
                            .filter(|t| t.info.task_id == status.task_id),
                    )
                    .any(|t| {
                        t.statuses
                            .iter()
                            .any(|s| s.uuid.as_deref() == Some(uuid.as_str()))
                    })
                    // The history keeps one status per state; an update not yet acknowledged
                    // is still in the task's queue.
                    || self
                        .updates
                        .get(&(call.framework_id.clone(), status.task_id.clone()))
                        .is_some_and(|q| {
                            q.iter()
                                .any(|p| p.status.uuid.as_deref() == Some(uuid.as_str()))
                        });
                if seen {
                    // A resend (an executor that lost its agent sends again what it could
                    // not be sure of): the update is already in the stream.
                    return Ok(());
                }
                if !e.tasks.contains_key(&status.task_id) {
                    // Already ended on the agent's authority (a container limitation, say):
                    // the executor's late word is acknowledged and dropped.
                    if let Some(conn) = e.conn {
                        let mut ev = ExecEvent::bare(ExecEventType::Acknowledged);
                        ev.acknowledged = Some(exec::Acknowledged {
                            task_id: status.task_id.clone(),
                            uuid,
                        });
                        self.outputs.push(Output::ToExecutor { conn, event: ev });
                    }
                    return Ok(());
                }
                if let Some(infos) = &e.network_infos {
                    let cs = status
                        .extra
                        .entry("container_status".to_string())
                        .or_insert_with(|| serde_json::json!({}));
                    if let Some(cs) = cs.as_object_mut() {
                        cs.insert(
                            "network_infos".into(),
                            serde_json::Value::from(infos.clone()),
                        );
                        cs.insert(
                            "container_id".into(),
                            serde_json::json!({ "value": e.container_id }),
                        );
                    }
                }
                status.source = Some("SOURCE_EXECUTOR".into());
                status.executor_id = Some(call.executor_id.clone());
                status.agent_id = self.agent_id.clone();
                status.timestamp = Some(status.timestamp.unwrap_or(now.wall_secs));
                let conn = e.conn;
                self.record(&key.0, &key.1, &status);
                self.enqueue(now, key.0.clone(), &key.1, status);
                let _ = conn;
                Ok(())
            }
            exec::CallType::Message => {
                let m = call.message.ok_or_else(|| {
                    CallError::BadRequest("Expecting 'message' to be present".into())
                })?;
                self.outputs
                    .push(Output::ToMaster(AgentToMaster::ExecutorMessage {
                        framework_id: key.0,
                        executor_id: key.1,
                        data: m.data,
                    }));
                Ok(())
            }
            exec::CallType::Heartbeat => Ok(()),
            exec::CallType::Subscribe => Err(CallError::BadRequest(
                "SUBSCRIBE must open a new stream".into(),
            )),
            exec::CallType::Unknown => Err(CallError::BadRequest(
                "Expecting 'type' to be present".into(),
            )),
        }
    }

    /// The shell attached `container_id` to its networks (or found it attached when it
    /// recovered): the updates of its tasks carry `network_infos` from now on.
    pub fn container_networked(
        &mut self,
        container_id: &str,
        network_infos: Vec<serde_json::Value>,
    ) {
        self.changes += 1;
        if let Some(e) = self
            .executors
            .values_mut()
            .find(|e| e.container_id == container_id)
        {
            e.network_infos = Some(network_infos);
        }
    }

    /// An executor's event stream on `conn` ended (the process may still be alive).
    pub fn executor_disconnected(&mut self, conn: ConnId) {
        self.changes += 1;
        for e in self.executors.values_mut() {
            if e.conn == Some(conn) {
                e.conn = None;
            }
        }
    }

    /// The executor running in `container_id`.
    fn executor_of_container(&self, container_id: &str) -> Option<(FrameworkId, ExecutorId)> {
        self.executors
            .iter()
            .find(|(_, e)| e.container_id == container_id)
            .map(|(k, _)| k.clone())
    }

    /// An executor process exited with `status` (exit code or -signal). Its unfinished tasks
    /// end: TASK_KILLED when a kill was asked for, TASK_FAILED otherwise.
    pub fn executor_exited(&mut self, now: Now, container_id: &str, status: Option<i32>) {
        self.changes += 1;
        let Some(key) = self.executor_of_container(container_id) else {
            return;
        };
        let Some(e) = self.executors.remove(&key) else {
            return;
        };
        info!(executor_id = %key.1, ?status, "executor exited");
        if let Some(conn) = e.conn {
            self.outputs.push(Output::CloseExecutor { conn });
        }
        let mut unfinished: Vec<TaskId> = e.tasks.keys().cloned().collect();
        for p in &e.queued {
            match p {
                Pending::Task(t) => unfinished.push(t.task_id.clone()),
                Pending::Group(ts) => unfinished.extend(ts.iter().map(|t| t.task_id.clone())),
            }
        }
        let killed = e.killed.clone();
        // Keep a record so `/state` shows what ran, then report each unfinished task.
        self.executors.insert(
            key.clone(),
            Executor {
                conn: None,
                registration_deadline: None,
                shutdown_deadline: None,
                ..e
            },
        );
        for task_id in unfinished {
            let (state, reason, message) = if killed.contains(&task_id) {
                (
                    TaskState::Killed,
                    "REASON_EXECUTOR_TERMINATED",
                    "Executor terminated after a kill".to_string(),
                )
            } else {
                (
                    TaskState::Failed,
                    "REASON_EXECUTOR_TERMINATED",
                    format!(
                        "Executor terminated with status {}",
                        status.map_or("unknown".into(), |s| s.to_string())
                    ),
                )
            };
            self.agent_update(now, &key.0, &key.1, &task_id, state, reason, &message);
        }
        if let Some(e) = self.executors.remove(&key) {
            self.completed_executors_push(key.clone(), e);
        }
        self.outputs
            .push(Output::ToMaster(AgentToMaster::ExecutorExited {
                framework_id: key.0,
                executor_id: key.1,
                status,
            }));
    }

    /// The container of `container_id` failed on the agent's side: it could not be set up, or
    /// it hit a limit (`reason` such as `REASON_CONTAINER_LIMITATION_MEMORY`). Its unfinished
    /// tasks end TASK_FAILED from SOURCE_AGENT with that reason, and the container is killed.
    /// Later updates from its executor for those tasks are dropped.
    pub fn container_failed(&mut self, now: Now, container_id: &str, reason: &str, message: &str) {
        self.changes += 1;
        let Some(key) = self.executor_of_container(container_id) else {
            return;
        };
        let Some(e) = self.executors.get_mut(&key) else {
            return;
        };
        let mut unfinished: Vec<TaskId> = e
            .tasks
            .iter()
            .filter(|(_, t)| !t.state.is_terminal())
            .map(|(id, _)| id.clone())
            .collect();
        // Queued tasks become tasks so that their end is recorded like the others'.
        for p in std::mem::take(&mut e.queued) {
            Self::track_pending(e, &p);
            unfinished.extend(Self::pending_tasks(&p).iter().map(|t| t.task_id.clone()));
        }
        e.killed.extend(unfinished.iter().cloned());
        e.shutdown_deadline
            .get_or_insert(now.mono + EXECUTOR_SHUTDOWN_GRACE);
        e.registration_deadline = None;
        for task_id in unfinished {
            self.agent_update(
                now,
                &key.0,
                &key.1,
                &task_id,
                TaskState::Failed,
                reason,
                message,
            );
        }
        self.outputs.push(Output::KillExecutor {
            container_id: container_id.to_string(),
        });
    }

    fn completed_executors_push(&mut self, key: (FrameworkId, ExecutorId), e: Executor) {
        self.completed_executors.push_back((key, e));
        while self.completed_executors.len() > MAX_COMPLETED {
            self.completed_executors.pop_front();
        }
    }

    /// Everything a restarted agent needs to take over this one's executors.
    pub fn checkpoint(&self) -> Checkpoint {
        self.checkpoint_with(true)
    }

    /// The checkpoint without what the journal records (task states, status histories and
    /// queued updates): two checkpoints with equal structures differ only by journal records
    /// (see `journal`).
    pub fn checkpoint_structure(&self) -> Checkpoint {
        self.checkpoint_with(false)
    }

    /// Whether the framework asked for checkpointing (`FrameworkInfo.checkpoint`): only such
    /// frameworks' executors, tasks and updates are checkpointed, as in Mesos. The others'
    /// executors end with the agent, and their updates are not made durable.
    fn checkpointed(&self, framework_id: &FrameworkId) -> bool {
        self.frameworks
            .get(framework_id)
            .is_some_and(|f| f.checkpoint == Some(true))
    }

    fn checkpoint_with(&self, streams: bool) -> Checkpoint {
        let pending =
            |f: &FrameworkId, t: &TaskId| self.updates.contains_key(&(f.clone(), t.clone()));
        let task = |t: &Task| match streams {
            true => (t.info.clone(), t.state, t.statuses.clone()),
            false => (t.info.clone(), TaskState::Staging, Vec::new()),
        };
        // Live executors, and exited ones while a task of theirs has updates to deliver: a
        // task's record stays until its end is acknowledged, or a restarted agent would not
        // report it and the master would take it for gone.
        let live = self
            .executors
            .iter()
            .filter(|(k, _)| self.checkpointed(&k.0))
            .map(|(k, e)| (k, e, true));
        let exited = self
            .completed_executors
            .iter()
            .filter(|(k, e)| {
                self.checkpointed(&k.0)
                    && !self.executors.contains_key(k)
                    && e.completed.iter().any(|t| pending(&k.0, &t.info.task_id))
            })
            .map(|(k, e)| (k, e, false));
        Checkpoint {
            agent_id: self.agent_id.clone(),
            frameworks: self
                .frameworks
                .values()
                .filter(|f| f.checkpoint == Some(true))
                .cloned()
                .collect(),
            executors: live
                .chain(exited)
                .map(|((f, _), e, running)| {
                    let mut tasks: Vec<_> = e
                        .tasks
                        .values()
                        .chain(e.completed.iter().filter(|t| pending(f, &t.info.task_id)))
                        .map(task)
                        .collect();
                    tasks.sort_by(|a, b| a.0.task_id.cmp(&b.0.task_id));
                    CheckpointedExecutor {
                        framework_id: f.clone(),
                        info: e.info.clone(),
                        builtin: e.builtin,
                        container_id: e.container_id.clone(),
                        directory: e.directory.clone(),
                        role: e.role.clone(),
                        tasks,
                        queued: e
                            .queued
                            .iter()
                            .map(|p| Self::pending_tasks(p).to_vec())
                            .collect(),
                        queued_groups: e
                            .queued
                            .iter()
                            .map(|p| matches!(p, Pending::Group(_)))
                            .collect(),
                        killed: e.killed.iter().cloned().collect(),
                        shutting_down: running && e.shutdown_deadline.is_some(),
                    }
                })
                .collect(),
            updates: if streams {
                self.pending_updates()
                    .into_iter()
                    .filter(|(f, _)| self.checkpointed(f))
                    .collect()
            } else {
                Vec::new()
            },
        }
    }

    /// An agent that takes over from a checkpoint. Executors for which `alive` says no are
    /// treated as exited (their unfinished tasks end); the others get
    /// `EXECUTOR_REREGISTRATION_TIMEOUT` to subscribe again. Unacknowledged updates are resent
    /// once the agent has registered.
    pub fn recover(config: Config, now: Now, cp: Checkpoint, alive: impl Fn(&str) -> bool) -> Self {
        let mut a = Agent::new(config, now);
        a.agent_id = cp.agent_id;
        for f in cp.frameworks {
            if let Some(id) = f.id.clone() {
                a.frameworks.insert(id, f);
            }
        }
        let mut dead = Vec::new();
        for x in cp.executors {
            // Ended tasks are in the checkpoint while their updates are on their way.
            let (ended, live): (Vec<Task>, Vec<Task>) = x
                .tasks
                .into_iter()
                .map(|(info, state, statuses)| Task {
                    info,
                    state,
                    statuses,
                })
                .partition(|t| t.state.is_terminal());
            let tasks = live
                .into_iter()
                .map(|t| (t.info.task_id.clone(), t))
                .collect();
            let queued = x
                .queued
                .into_iter()
                .zip(x.queued_groups.into_iter().chain(std::iter::repeat(false)))
                .filter_map(|(ts, group)| match (group, ts.len()) {
                    (_, 0) => None,
                    (false, 1) => ts.into_iter().next().map(Pending::Task),
                    _ => Some(Pending::Group(ts)),
                })
                .collect();
            let live = alive(&x.container_id);
            if !live {
                dead.push(x.container_id.clone());
            }
            a.executors.insert(
                (x.framework_id, x.info.executor_id.clone()),
                Executor {
                    info: x.info,
                    builtin: x.builtin,
                    container_id: x.container_id,
                    directory: x.directory,
                    conn: None,
                    queued,
                    tasks,
                    completed: ended.into(),
                    killed: x.killed.into_iter().collect(),
                    registration_deadline: live.then(|| now.mono + EXECUTOR_REREGISTRATION_TIMEOUT),
                    shutdown_deadline: x.shutting_down.then(|| now.mono + EXECUTOR_SHUTDOWN_GRACE),
                    role: x.role,
                    network_infos: None,
                },
            );
        }
        for (framework_id, status) in cp.updates {
            let key = (framework_id, status.task_id.clone());
            a.updates.entry(key).or_default().push_back(PendingUpdate {
                status,
                next_send: now.mono,
                backoff: a.config.status_update_retry_min,
            });
        }
        for container_id in dead {
            a.executor_exited(now, &container_id, None);
        }
        a
    }

    /// Unacknowledged updates, oldest first per task (what a checkpoint must hold).
    pub fn pending_updates(&self) -> Vec<(FrameworkId, TaskStatus)> {
        self.updates
            .iter()
            .flat_map(|((f, _), q)| q.iter().map(move |p| (f.clone(), p.status.clone())))
            .collect()
    }

    /// The containers of running executors.
    pub fn containers(&self) -> Vec<ContainerInfo> {
        self.executors
            .iter()
            .filter(|(_, e)| e.shutdown_deadline.is_none())
            .map(|((f, x), e)| ContainerInfo {
                framework_id: f.clone(),
                executor_id: x.clone(),
                container_id: e.container_id.clone(),
                name: e.info.name.clone().unwrap_or_default(),
                source: e
                    .info
                    .extra
                    .get("source")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string(),
                limits: Self::limits_of(e),
                directory: e.directory.clone(),
            })
            .collect()
    }

    /// The container of an executor, while it runs.
    pub fn container_of(
        &self,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
    ) -> Option<String> {
        self.executors
            .get(&(framework_id.clone(), executor_id.clone()))
            .map(|e| e.container_id.clone())
    }

    /// The sandbox directory of a running executor, by container ID.
    pub fn sandbox_of(&self, container_id: &str) -> Option<&str> {
        self.executors
            .values()
            .find(|e| e.container_id == container_id)
            .map(|e| e.directory.as_str())
    }
}

#[cfg(test)]
mod tests;
