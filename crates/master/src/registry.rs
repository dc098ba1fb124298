//! The master's registry: what must survive a master restart, as records the core asks the
//! shell to persist (`Output::Persist`), and the snapshot it is rebuilt from
//! (`Master::recover`).
//!
//! Mesos's registry keeps admitted, unreachable and gone agents. Mantle's also keeps, beyond
//! Mesos, the frameworks (with their `FrameworkInfo`, so `failover_timeout`, and the wall-clock
//! failover deadline of a disconnected one) and the tasks the master knows, so that a
//! restarted master keeps failover deadlines and answers reconciliation at once; and the
//! updates the master generated about tasks that their frameworks have not acknowledged yet
//! (`outbox.rs`), so a restarted master sends them again.
//!
//! The core marks keys dirty where it changes them; `take_outputs` turns each dirty key into
//! one `Write` holding the key's *current* record (or its removal), so a write always
//! describes the state the outputs that follow it rely on. The shell commits all `Persist`
//! outputs of a step in one transaction before it carries out any other output of that step
//! or answers the request that caused it, and stops the master if the commit fails.
//!
//! Records are plain serde data with wall-clock times only: monotonic time does not survive
//! a restart.

use crate::{Agent, Config, Framework, GoneAgent, Master, Task, UnreachableAgent};
use mantle_api::mesos::{Attribute, FrameworkInfo, Resource, TaskInfo, TaskStatus};
use mantle_model::Now;
use mantle_model::{AgentId, ExecutorId, FrameworkId, TaskId, TaskState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// Where an agent stands in the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AgentStanding {
    /// Admitted: its tasks are the master's tasks.
    Admitted,
    /// Marked unreachable at `since` (Unix seconds). `kill_on_return` are tasks the
    /// frameworks were told are lost (non-partition-aware) or asked to kill meanwhile.
    Unreachable {
        since: f64,
        #[serde(default)]
        kill_on_return: Vec<(FrameworkId, TaskId)>,
    },
    /// Unreachable for longer than `--registry-max-agent-age`, or replaced by a new agent at
    /// its address: whatever it still runs is killed if it ever comes back.
    Gone { since: f64 },
}

/// An agent as the registry keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub id: AgentId,
    pub hostname: String,
    pub port: u16,
    pub resources: Vec<Resource>,
    #[serde(default)]
    pub attributes: Vec<Attribute>,
    pub version: String,
    pub registered_time: f64,
    pub standing: AgentStanding,
}

/// A framework as the registry keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameworkRecord {
    /// With `id` set.
    pub info: FrameworkInfo,
    pub registered_time: f64,
    /// Unix seconds at which a disconnected framework is removed; `None` while connected.
    #[serde(default)]
    pub failover_deadline: Option<f64>,
    /// Set once removed (teardown, failover timeout): it may not subscribe again.
    #[serde(default)]
    pub removed_time: Option<f64>,
}

/// A task as the registry keeps it (active, terminal but unacknowledged, or unreachable).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub framework_id: FrameworkId,
    #[serde(default)]
    pub executor_id: Option<ExecutorId>,
    pub role: String,
    pub info: TaskInfo,
    pub state: TaskState,
    /// The latest status (for `healthy` and the uuid of a terminal one).
    #[serde(default)]
    pub status: Option<TaskStatus>,
    #[serde(default)]
    pub terminal_uuid: Option<String>,
    /// On an unreachable agent (kept for reconciliation and for its return).
    #[serde(default)]
    pub unreachable: bool,
}

/// An update the master generated that its framework has not acknowledged yet (one per task,
/// the latest; see `outbox.rs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateRecord {
    pub framework_id: FrameworkId,
    /// Creation order, kept across restarts so resends keep it.
    pub seq: u64,
    /// With `uuid` set; `task_id` is the rest of the key.
    pub status: TaskStatus,
}

/// One change to the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(
    clippy::large_enum_variant,
    reason = "built once per change and moved, never stored in bulk"
)]
pub enum Write {
    Agent(AgentRecord),
    RemoveAgent(AgentId),
    Framework(FrameworkRecord),
    RemoveFramework(FrameworkId),
    Task(TaskRecord),
    RemoveTask(FrameworkId, TaskId),
    Update(UpdateRecord),
    RemoveUpdate(FrameworkId, TaskId),
}

/// Everything the registry holds, to start a master from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub agents: Vec<AgentRecord>,
    pub frameworks: Vec<FrameworkRecord>,
    pub tasks: Vec<TaskRecord>,
    /// Unacknowledged master-generated updates (absent in registries written before them).
    #[serde(default)]
    pub updates: Vec<UpdateRecord>,
}

impl Snapshot {
    /// Orders the records by key, so that two snapshots of one state compare equal.
    pub fn sort(&mut self) {
        self.agents.sort_by(|a, b| a.id.cmp(&b.id));
        self.frameworks.sort_by(|a, b| a.info.id.cmp(&b.info.id));
        self.tasks.sort_by(|a, b| {
            (&a.framework_id, &a.info.task_id).cmp(&(&b.framework_id, &b.info.task_id))
        });
        self.updates.sort_by(|a, b| {
            (&a.framework_id, &a.status.task_id).cmp(&(&b.framework_id, &b.status.task_id))
        });
    }

    /// Applies `w` to this snapshot (what a store does; used by tests and the simulator).
    pub fn apply(&mut self, w: &Write) {
        match w {
            Write::Agent(r) => {
                self.agents.retain(|a| a.id != r.id);
                self.agents.push(r.clone());
            }
            Write::RemoveAgent(id) => self.agents.retain(|a| &a.id != id),
            Write::Framework(r) => {
                self.frameworks.retain(|f| f.info.id != r.info.id);
                self.frameworks.push(r.clone());
            }
            Write::RemoveFramework(id) => {
                self.frameworks.retain(|f| f.info.id.as_ref() != Some(id))
            }
            Write::Task(r) => {
                self.tasks.retain(|t| {
                    !(t.framework_id == r.framework_id && t.info.task_id == r.info.task_id)
                });
                self.tasks.push(r.clone());
            }
            Write::RemoveTask(f, t) => self
                .tasks
                .retain(|r| !(&r.framework_id == f && &r.info.task_id == t)),
            Write::Update(r) => {
                self.updates.retain(|u| {
                    !(u.framework_id == r.framework_id && u.status.task_id == r.status.task_id)
                });
                self.updates.push(r.clone());
            }
            Write::RemoveUpdate(f, t) => self
                .updates
                .retain(|u| !(&u.framework_id == f && &u.status.task_id == t)),
        }
        self.sort();
    }
}

/// Keys changed since the last `take_outputs`.
#[derive(Debug, Default)]
pub(crate) struct Dirty {
    pub(crate) agents: BTreeSet<AgentId>,
    pub(crate) frameworks: BTreeSet<FrameworkId>,
    pub(crate) tasks: BTreeSet<(FrameworkId, TaskId)>,
    pub(crate) updates: BTreeSet<(FrameworkId, TaskId)>,
}

pub(crate) fn agent_record(a: &Agent, standing: AgentStanding) -> AgentRecord {
    AgentRecord {
        id: a.id.clone(),
        hostname: a.hostname.clone(),
        port: a.port,
        resources: mantle_api::resources_to_wire(&a.total, None),
        attributes: mantle_api::attributes_to_wire(&a.attributes),
        version: a.version.clone(),
        registered_time: a.registered_time,
        standing,
    }
}

pub(crate) fn framework_record(f: &Framework) -> FrameworkRecord {
    let mut info = f.info.clone();
    info.id = Some(f.id.clone());
    FrameworkRecord {
        info,
        registered_time: f.registered_time,
        failover_deadline: if f.conn.is_none() {
            f.failover_deadline_wall
        } else {
            None
        },
        removed_time: None,
    }
}

pub(crate) fn task_record(t: &Task, unreachable: bool) -> TaskRecord {
    TaskRecord {
        framework_id: t.framework_id.clone(),
        executor_id: t.executor_id.clone(),
        role: t.role.clone(),
        info: t.info.clone(),
        state: t.state,
        status: t.statuses.last().cloned(),
        terminal_uuid: t.terminal_uuid.clone(),
        unreachable,
    }
}

impl Master {
    /// The whole registry as this master's state describes it: what the `Persist` outputs so
    /// far must have left in the store (a check for tests and the simulator). Frameworks
    /// removed longer ago than `completed_frameworks` remembers are left out.
    pub fn registry_snapshot(&self) -> Snapshot {
        let mut s = Snapshot::default();
        for a in self.agents.values() {
            s.agents.push(agent_record(a, AgentStanding::Admitted));
        }
        for u in self.unreachable_agents.values() {
            s.agents.push(AgentRecord {
                standing: AgentStanding::Unreachable {
                    since: u.since,
                    kill_on_return: u.kill_on_return.iter().cloned().collect(),
                },
                ..u.record.clone()
            });
        }
        for g in self.gone_agents.values() {
            s.agents.push(AgentRecord {
                standing: AgentStanding::Gone { since: g.since },
                ..g.record.clone()
            });
        }
        for f in self.frameworks.values() {
            s.frameworks.push(framework_record(f));
        }
        for f in &self.completed_frameworks {
            let mut r = framework_record(f);
            r.failover_deadline = None;
            r.removed_time = Some(f.unregistered_time.unwrap_or(f.registered_time));
            s.frameworks.push(r);
        }
        for t in self.tasks.values() {
            s.tasks.push(task_record(t, false));
        }
        for t in self.unreachable_tasks.values() {
            s.tasks.push(task_record(t, true));
        }
        s.updates = self.update_records();
        s.sort();
        s
    }

    pub(crate) fn dirty_agent(&mut self, id: &AgentId) {
        self.dirty.agents.insert(id.clone());
    }

    pub(crate) fn dirty_framework(&mut self, id: &FrameworkId) {
        self.dirty.frameworks.insert(id.clone());
    }

    pub(crate) fn dirty_task(&mut self, framework_id: &FrameworkId, task_id: &TaskId) {
        self.dirty
            .tasks
            .insert((framework_id.clone(), task_id.clone()));
    }

    /// The writes that bring the registry up to date with the dirty keys.
    pub(crate) fn registry_writes(&mut self) -> Vec<Write> {
        let dirty = std::mem::take(&mut self.dirty);
        let mut out = Vec::new();
        for id in dirty.agents {
            if let Some(a) = self.agents.get(&id) {
                out.push(Write::Agent(agent_record(a, AgentStanding::Admitted)));
            } else if let Some(u) = self.unreachable_agents.get(&id) {
                let standing = AgentStanding::Unreachable {
                    since: u.since,
                    kill_on_return: u.kill_on_return.iter().cloned().collect(),
                };
                out.push(Write::Agent(AgentRecord {
                    standing,
                    ..u.record.clone()
                }));
            } else if let Some(g) = self.gone_agents.get(&id) {
                out.push(Write::Agent(AgentRecord {
                    standing: AgentStanding::Gone { since: g.since },
                    ..g.record.clone()
                }));
            } else {
                out.push(Write::RemoveAgent(id));
            }
        }
        for id in dirty.frameworks {
            if let Some(f) = self.frameworks.get(&id) {
                out.push(Write::Framework(framework_record(f)));
            } else if let Some(f) = self.completed_frameworks.iter().find(|f| f.id == id) {
                let mut r = framework_record(f);
                r.failover_deadline = None;
                r.removed_time = Some(f.unregistered_time.unwrap_or(f.registered_time));
                out.push(Write::Framework(r));
            } else {
                out.push(Write::RemoveFramework(id));
            }
        }
        for key in dirty.tasks {
            if let Some(t) = self.tasks.get(&key) {
                out.push(Write::Task(task_record(t, false)));
            } else if let Some(t) = self.unreachable_tasks.get(&key) {
                out.push(Write::Task(task_record(t, true)));
            } else {
                out.push(Write::RemoveTask(key.0, key.1));
            }
        }
        for key in dirty.updates {
            match self.update_record(&key) {
                Some(r) => out.push(Write::Update(r)),
                None => out.push(Write::RemoveUpdate(key.0, key.1)),
            }
        }
        out
    }
}

/// Unix seconds `wall` as a monotonic time, given that `now` is the same instant as
/// `now.wall_secs` (clamped to the range the monotonic clock can express).
fn mono_of(now: Now, wall: f64) -> Duration {
    let delta = wall - now.wall_secs;
    if delta >= 0.0 {
        now.mono
            .saturating_add(Duration::try_from_secs_f64(delta).unwrap_or(Duration::MAX))
    } else {
        now.mono
            .saturating_sub(Duration::try_from_secs_f64(-delta).unwrap_or(Duration::MAX))
    }
}

impl Master {
    /// A master restarted from its registry at `now`: the frameworks it had (disconnected,
    /// with their failover deadlines), the agents it had admitted (disconnected, each given
    /// `agent_reregister_timeout` to re-register), the unreachable and gone agents, and the
    /// tasks, with their resources charged to the allocator as before, and the unacknowledged
    /// master-generated updates (sent when their frameworks subscribe). Records that do not fit
    /// together (a task or update of an unknown agent or framework) are dropped from the
    /// registry.
    pub fn recover(config: Config, now: Now, snapshot: Snapshot) -> Master {
        let mut m = Master::new(config, now);
        m.recovering_until = None;
        let reregister = now.mono.saturating_add(m.config.agent_reregister_timeout);
        for r in snapshot.frameworks {
            let Some(id) = r.info.id.clone() else {
                continue;
            };
            if r.removed_time.is_some() {
                m.removed_frameworks.insert(id);
                continue;
            }
            let roles = r.info.effective_roles();
            let timeout = r
                .info
                .failover_timeout
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .unwrap_or(Duration::ZERO);
            // A framework that was connected when the master stopped did not leave: it gets
            // its failover timeout from now, and at least the agents' re-registration time.
            let (deadline, deadline_wall) = match r.failover_deadline {
                Some(w) => (mono_of(now, w), w),
                None => {
                    let t = timeout.max(m.config.agent_reregister_timeout);
                    (now.mono.saturating_add(t), now.wall_secs + t.as_secs_f64())
                }
            };
            m.allocator.add_framework(id.clone(), &roles, &[], false);
            m.frameworks.insert(
                id.clone(),
                Framework {
                    id,
                    info: r.info,
                    roles,
                    conn: None,
                    stream_id: String::new(),
                    active: false,
                    recovered: true,
                    registered_time: r.registered_time,
                    reregistered_time: None,
                    unregistered_time: Some(now.wall_secs),
                    failover_deadline: Some(deadline),
                    failover_deadline_wall: Some(deadline_wall),
                    next_heartbeat: now.mono,
                    offers: Default::default(),
                    tasks: Default::default(),
                    completed_tasks: VecDeque::new(),
                    executors: BTreeMap::new(),
                },
            );
        }
        for r in snapshot.agents {
            let total =
                mantle_api::resources_from_wire(&r.resources, "resources").unwrap_or_default();
            let attributes = mantle_api::attributes_from_wire(&r.attributes).unwrap_or_default();
            match r.standing.clone() {
                AgentStanding::Admitted => {
                    m.allocator.add_agent(r.id.clone(), total.clone(), &[]);
                    m.allocator.set_agent_active(&r.id, false);
                    m.agents.insert(
                        r.id.clone(),
                        Agent {
                            id: r.id.clone(),
                            hostname: r.hostname,
                            port: r.port,
                            attributes,
                            total,
                            conn: None,
                            stream_id: String::new(),
                            registered_time: r.registered_time,
                            reregistered_time: None,
                            version: r.version,
                            removal_deadline: Some(reregister),
                            next_ping: now.mono,
                            last_pong: None,
                            recovered: true,
                            offers: Default::default(),
                            tasks: Default::default(),
                        },
                    );
                }
                AgentStanding::Unreachable {
                    since,
                    kill_on_return,
                } => {
                    m.unreachable_agents.insert(
                        r.id.clone(),
                        UnreachableAgent {
                            since,
                            since_mono: mono_of(now, since),
                            kill_on_return: kill_on_return.into_iter().collect(),
                            record: AgentRecord {
                                standing: AgentStanding::Admitted,
                                ..r
                            },
                        },
                    );
                }
                AgentStanding::Gone { since } => {
                    m.gone_agents
                        .insert(r.id.clone(), GoneAgent { record: r, since });
                }
            }
        }
        for r in snapshot.tasks {
            let key = (r.framework_id.clone(), r.info.task_id.clone());
            let resources =
                mantle_api::resources_from_wire(&r.info.resources, "resources").unwrap_or_default();
            let mut statuses = Vec::new();
            if let Some(s) = r.status {
                statuses.push(s);
            }
            let task = Task {
                framework_id: r.framework_id.clone(),
                executor_id: r.executor_id,
                role: r.role,
                resources,
                state: r.state,
                statuses,
                terminal_uuid: r.terminal_uuid,
                released: r.unreachable || r.state.is_terminal(),
                acked: Default::default(),
                info: r.info,
            };
            let agent_id = task.info.agent_id.clone();
            if !m.frameworks.contains_key(&key.0) {
                m.dirty_task(&key.0, &key.1);
                continue;
            }
            if r.unreachable {
                if m.unreachable_agents.contains_key(&agent_id) {
                    m.unreachable_tasks.insert(key, task);
                } else {
                    m.dirty_task(&key.0, &key.1);
                }
                continue;
            }
            let Some(agent) = m.agents.get_mut(&agent_id) else {
                m.dirty_task(&key.0, &key.1);
                continue;
            };
            agent.tasks.insert(key.clone());
            if !task.released {
                m.allocator
                    .add_used(&key.0, &task.role, &agent_id, &task.resources);
            }
            if let Some(f) = m.frameworks.get_mut(&key.0) {
                f.tasks.insert(key.1.clone());
            }
            m.tasks.insert(key, task);
        }
        for r in snapshot.updates {
            m.restore_master_update(r);
        }
        m
    }
}
