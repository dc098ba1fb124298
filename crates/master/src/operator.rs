//! The operator API's view of the master (`include/mesos/v1/master/master.proto`):
//! `GET_STATE`, and the events of the operator event stream derived by comparing the
//! master's state with what subscribers were last told.
//!
//! Events are derived rather than emitted at each change so that the state machine's
//! methods stay as they are: `OperatorTracker::changes` compares a small fingerprint per
//! task, agent and framework (state, number and identity of the latest status, activity)
//! with the previous call and describes the difference in the order a subscriber can apply
//! it (frameworks and agents added, then tasks, then agents and frameworks removed). It is
//! pure and deterministic, like the rest of the crate; the shell calls it after each input
//! while someone is subscribed.

use crate::{Agent, Framework, Master, Task};
use mantle_api::mesos::{AgentInfo, TaskStatus};
use mantle_api::operator::{self, Event, GetAgents, GetFrameworks, GetState, GetTasks, TimeInfo};
use mantle_model::{AgentId, FrameworkId, TaskId, TaskState};
use std::collections::BTreeMap;

/// Fields of `TaskInfo` the operator API reports with a task (mesos.proto `Task`).
const TASK_FIELDS: [&str; 4] = ["labels", "discovery", "container", "health_check"];

pub(crate) fn task_wire(t: &Task) -> operator::Task {
    let mut extra = mantle_api::mesos::Extra::new();
    for key in TASK_FIELDS {
        if let Some(v) = t.info.extra.get(key) {
            extra.insert(key.to_string(), v.clone());
        }
    }
    operator::Task {
        name: t.info.name.clone(),
        task_id: t.info.task_id.clone(),
        framework_id: t.framework_id.clone(),
        executor_id: t.executor_id.clone(),
        agent_id: t.info.agent_id.clone(),
        state: t.state,
        resources: mantle_api::resources_to_wire(&t.resources, Some(&t.role)),
        statuses: t.statuses.clone(),
        extra,
    }
}

fn agent_wire(a: &Agent) -> operator::Agent {
    operator::Agent {
        agent_info: AgentInfo {
            hostname: a.hostname.clone(),
            port: Some(a.port),
            resources: mantle_api::resources_to_wire(&a.total, None),
            attributes: mantle_api::attributes_to_wire(&a.attributes),
            id: Some(a.id.clone()),
        },
        active: a.conn.is_some(),
        deactivated: false,
        version: a.version.clone(),
        pid: Some(format!("slave(1)@{}:{}", a.hostname, a.port)),
        registered_time: Some(TimeInfo::from_secs(a.registered_time)),
        total_resources: mantle_api::resources_to_wire(&a.total, None),
    }
}

fn framework_wire(f: &Framework) -> operator::Framework {
    let mut info = f.info.clone();
    info.id = Some(f.id.clone());
    operator::Framework {
        framework_info: info,
        active: f.active,
        connected: f.conn.is_some(),
        recovered: f.recovered,
        registered_time: Some(TimeInfo::from_secs(f.registered_time)),
    }
}

impl Master {
    /// The answer to the operator API's `GET_STATE` (and the state in `SUBSCRIBED`).
    pub fn operator_state(&self) -> GetState {
        let completed_tasks = self
            .frameworks
            .values()
            .chain(self.completed_frameworks.iter())
            .flat_map(|f| f.completed_tasks.iter().map(task_wire))
            .collect();
        GetState {
            get_tasks: GetTasks {
                tasks: self.tasks.values().map(task_wire).collect(),
                completed_tasks,
                ..GetTasks::default()
            },
            get_executors: Default::default(),
            get_frameworks: GetFrameworks {
                frameworks: self.frameworks.values().map(framework_wire).collect(),
                completed_frameworks: self
                    .completed_frameworks
                    .iter()
                    .map(framework_wire)
                    .collect(),
            },
            get_agents: GetAgents {
                agents: self.agents.values().map(agent_wire).collect(),
                recovered_agents: Vec::new(),
            },
        }
    }

    /// The heartbeat interval of operator event streams (Mesos: 15 s).
    pub fn operator_heartbeat_secs(&self) -> f64 {
        self.config.heartbeat_interval.as_secs_f64()
    }
}

#[derive(Debug, Clone, PartialEq)]
struct TaskPrint {
    state: TaskState,
    statuses: usize,
    last_uuid: Option<String>,
    last_timestamp_bits: Option<u64>,
}

fn task_print(t: &Task) -> TaskPrint {
    let last = t.statuses.last();
    TaskPrint {
        state: t.state,
        statuses: t.statuses.len(),
        last_uuid: last.and_then(|s| s.uuid.clone()),
        last_timestamp_bits: last.and_then(|s| s.timestamp).map(f64::to_bits),
    }
}

#[derive(Debug, Clone, PartialEq)]
struct FrameworkPrint {
    active: bool,
    connected: bool,
    name: String,
}

/// What operator subscribers were last told, for deriving the next events.
#[derive(Debug, Default)]
pub struct OperatorTracker {
    tasks: BTreeMap<(FrameworkId, TaskId), TaskPrint>,
    agents: BTreeMap<AgentId, bool>,
    frameworks: BTreeMap<FrameworkId, FrameworkPrint>,
}

impl OperatorTracker {
    /// A tracker that has told nobody anything yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The events that turn the last described state into the master's current state,
    /// and remembers the current state. The first call describes everything as added.
    pub fn changes(&mut self, m: &Master) -> Vec<Event> {
        let mut events = Vec::new();
        let mut frameworks = BTreeMap::new();
        for f in m.frameworks.values() {
            let print = FrameworkPrint {
                active: f.active,
                connected: f.conn.is_some(),
                name: f.info.name.clone(),
            };
            match self.frameworks.get(&f.id) {
                None => events.push(Event::framework_added(framework_wire(f))),
                Some(old) if *old != print => {
                    events.push(Event::framework_updated(framework_wire(f)))
                }
                Some(_) => {}
            }
            frameworks.insert(f.id.clone(), print);
        }
        let mut agents = BTreeMap::new();
        for a in m.agents.values() {
            let active = a.conn.is_some();
            if !self.agents.contains_key(&a.id) {
                events.push(Event::agent_added(agent_wire(a)));
            }
            agents.insert(a.id.clone(), active);
        }
        let mut tasks = BTreeMap::new();
        for (key, t) in &m.tasks {
            let print = task_print(t);
            match self.tasks.get(key) {
                None => {
                    events.push(Event::task_added(task_wire(t)));
                    if !t.statuses.is_empty() {
                        events.extend(updated(t));
                    }
                }
                Some(old) if *old != print => events.extend(updated(t)),
                Some(_) => {}
            }
            tasks.insert(key.clone(), print);
        }
        for (key, old) in &self.tasks {
            if tasks.contains_key(key) || old.state.is_terminal() {
                continue;
            }
            // Gone from the active tasks without a terminal update seen by subscribers:
            // report its final state from the completed list (or TASK_LOST if forgotten).
            events.push(final_update(m, key));
        }
        for id in self.agents.keys() {
            if !agents.contains_key(id) {
                events.push(Event::agent_removed(id.clone()));
            }
        }
        for id in self.frameworks.keys() {
            if frameworks.contains_key(id) {
                continue;
            }
            let info = m
                .completed_frameworks
                .iter()
                .find(|f| &f.id == id)
                .map(|f| {
                    let mut info = f.info.clone();
                    info.id = Some(f.id.clone());
                    info
                })
                .unwrap_or_else(|| mantle_api::mesos::FrameworkInfo {
                    id: Some(id.clone()),
                    ..Default::default()
                });
            events.push(Event::framework_removed(info));
        }
        self.tasks = tasks;
        self.agents = agents;
        self.frameworks = frameworks;
        events
    }
}

fn updated(t: &Task) -> Option<Event> {
    let status = t.statuses.last()?.clone();
    Some(Event::task_updated(t.framework_id.clone(), status, t.state))
}

fn final_update(m: &Master, key: &(FrameworkId, TaskId)) -> Event {
    let done = m
        .frameworks
        .get(&key.0)
        .into_iter()
        .chain(m.completed_frameworks.iter().filter(|f| f.id == key.0))
        .flat_map(|f| f.completed_tasks.iter())
        .find(|t| t.info.task_id == key.1);
    if let Some(event) = done.and_then(updated) {
        return event;
    }
    let status = TaskStatus {
        task_id: key.1.clone(),
        state: TaskState::Lost,
        message: Some("Task is no longer known to the master".into()),
        source: Some("SOURCE_MASTER".into()),
        reason: None,
        data: None,
        agent_id: None,
        executor_id: None,
        timestamp: None,
        uuid: None,
        healthy: None,
        extra: Default::default(),
    };
    Event::task_updated(key.0.clone(), status, TaskState::Lost)
}
