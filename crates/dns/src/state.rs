//! The DNS server's copy of the cluster: frameworks, agents and live tasks, built from the
//! operator API's `SUBSCRIBED` state and kept current by its events.
//!
//! Everything here came from the master, which got it from agents and frameworks, so none
//! of it is trusted: names are only ever used after `labels` has sanitised them, and
//! addresses only after they parse as IP literals (see `records`).

use mantle_api::mesos::TaskStatus;
use mantle_api::operator::{Event, EventType, GetState, Task};
use mantle_model::{AgentId, FrameworkId, TaskId};
use std::collections::BTreeMap;

/// Statuses kept per task: enough to find the latest TASK_RUNNING one (for its network
/// addresses) without growing with a task that flaps its health.
const MAX_STATUSES: usize = 16;

/// A framework as far as naming goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameworkEntry {
    pub name: String,
    /// `FrameworkInfo.hostname`, where the scheduler runs.
    pub hostname: Option<String>,
}

/// An agent as far as addressing goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentEntry {
    pub hostname: String,
    pub port: Option<u16>,
}

/// Frameworks, agents and non-terminal tasks, keyed and ordered by ID.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterState {
    pub frameworks: BTreeMap<FrameworkId, FrameworkEntry>,
    pub agents: BTreeMap<AgentId, AgentEntry>,
    pub tasks: BTreeMap<(FrameworkId, TaskId), Task>,
}

/// Whether applying an event can have changed the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Changed,
    Unchanged,
}

impl ClusterState {
    /// The state in a `SUBSCRIBED` event or a `GET_STATE` answer.
    pub fn from_get_state(s: &GetState) -> Self {
        let mut out = ClusterState::default();
        for f in &s.get_frameworks.frameworks {
            if let Some(id) = &f.framework_info.id {
                out.frameworks
                    .insert(id.clone(), framework_entry(&f.framework_info));
            }
        }
        for a in &s.get_agents.agents {
            if let Some(id) = &a.agent_info.id {
                out.agents.insert(id.clone(), agent_entry(&a.agent_info));
            }
        }
        for t in &s.get_tasks.tasks {
            if !t.state.is_terminal() {
                let mut t = t.clone();
                cap_statuses(&mut t.statuses);
                out.tasks
                    .insert((t.framework_id.clone(), t.task_id.clone()), t);
            }
        }
        out
    }

    /// Applies one operator event (`SUBSCRIBED` replaces everything).
    pub fn apply(&mut self, event: &Event) -> Applied {
        match event.kind {
            EventType::Subscribed => {
                if let Some(s) = &event.subscribed {
                    *self = ClusterState::from_get_state(&s.get_state);
                    return Applied::Changed;
                }
            }
            EventType::TaskAdded => {
                if let Some(e) = &event.task_added {
                    if !e.task.state.is_terminal() {
                        let mut t = e.task.clone();
                        cap_statuses(&mut t.statuses);
                        self.tasks
                            .insert((t.framework_id.clone(), t.task_id.clone()), t);
                        return Applied::Changed;
                    }
                }
            }
            EventType::TaskUpdated => {
                if let Some(e) = &event.task_updated {
                    return self.task_updated(&e.framework_id, &e.status, e.state);
                }
            }
            EventType::AgentAdded => {
                if let Some(e) = &event.agent_added {
                    if let Some(id) = &e.agent.agent_info.id {
                        self.agents
                            .insert(id.clone(), agent_entry(&e.agent.agent_info));
                        return Applied::Changed;
                    }
                }
            }
            EventType::AgentRemoved => {
                if let Some(e) = &event.agent_removed {
                    if self.agents.remove(&e.agent_id).is_some() {
                        return Applied::Changed;
                    }
                }
            }
            EventType::FrameworkAdded | EventType::FrameworkUpdated => {
                let f = event
                    .framework_added
                    .as_ref()
                    .or(event.framework_updated.as_ref());
                if let Some(id_info) = f.and_then(|f| {
                    f.framework
                        .framework_info
                        .id
                        .clone()
                        .map(|id| (id, &f.framework.framework_info))
                }) {
                    let (id, info) = id_info;
                    let entry = framework_entry(info);
                    if self.frameworks.get(&id) != Some(&entry) {
                        self.frameworks.insert(id, entry);
                        return Applied::Changed;
                    }
                }
            }
            EventType::FrameworkRemoved => {
                if let Some(id) = event
                    .framework_removed
                    .as_ref()
                    .and_then(|e| e.framework_info.id.as_ref())
                {
                    self.frameworks.remove(id);
                    self.tasks.retain(|(f, _), _| f != id);
                    return Applied::Changed;
                }
            }
            EventType::Heartbeat | EventType::Unknown => {}
        }
        Applied::Unchanged
    }

    fn task_updated(
        &mut self,
        framework_id: &FrameworkId,
        status: &TaskStatus,
        state: mantle_model::TaskState,
    ) -> Applied {
        let key = (framework_id.clone(), status.task_id.clone());
        if state.is_terminal() {
            return match self.tasks.remove(&key) {
                Some(_) => Applied::Changed,
                None => Applied::Unchanged,
            };
        }
        let Some(task) = self.tasks.get_mut(&key) else {
            return Applied::Unchanged;
        };
        task.state = state;
        task.statuses.push(status.clone());
        cap_statuses(&mut task.statuses);
        Applied::Changed
    }
}

fn framework_entry(info: &mantle_api::mesos::FrameworkInfo) -> FrameworkEntry {
    FrameworkEntry {
        name: info.name.clone(),
        hostname: info.hostname.clone(),
    }
}

fn agent_entry(info: &mantle_api::mesos::AgentInfo) -> AgentEntry {
    AgentEntry {
        hostname: info.hostname.clone(),
        port: info.port,
    }
}

fn cap_statuses(statuses: &mut Vec<TaskStatus>) {
    if statuses.len() > MAX_STATUSES {
        let drop = statuses.len() - MAX_STATUSES;
        statuses.drain(..drop);
    }
}
