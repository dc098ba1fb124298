//! The Mesos v1 operator API (`include/mesos/v1/master/master.proto`,
//! `docs/operator-http-api.md`) in its JSON form: the calls Mantle answers (`SUBSCRIBE`,
//! `GET_STATE`) and the events of the operator event stream.
//!
//! Only the parts a subscriber needs to follow tasks, agents and frameworks are typed; a
//! task's `labels`, `discovery`, `container` and `health_check` travel in `extra` as the
//! framework sent them, as in the scheduler API.

use crate::mesos::{AgentInfo, Extra, FrameworkInfo, Resource, TaskStatus};
use mantle_model::{AgentId, ExecutorId, FrameworkId, TaskId, TaskState};
use serde::{Deserialize, Serialize};

/// `Call.Type` of the operator API; anything else decodes to `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CallType {
    Subscribe,
    GetState,
    #[serde(other)]
    Unknown,
}

/// An operator `Call` (only its type matters for the calls Mantle answers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    #[serde(rename = "type")]
    pub kind: CallType,
}

/// `TimeInfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TimeInfo {
    pub nanoseconds: i64,
}

impl TimeInfo {
    /// Seconds since the epoch as `TimeInfo`.
    pub fn from_secs(secs: f64) -> Self {
        TimeInfo {
            nanoseconds: (secs * 1e9) as i64,
        }
    }
}

/// `Task` (mesos.proto), as the operator API reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub name: String,
    pub task_id: TaskId,
    pub framework_id: FrameworkId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor_id: Option<ExecutorId>,
    pub agent_id: AgentId,
    pub state: TaskState,
    #[serde(default)]
    pub resources: Vec<Resource>,
    #[serde(default)]
    pub statuses: Vec<TaskStatus>,
    /// `labels`, `discovery`, `container`, `health_check`, ... as the framework sent them.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `Response.GetAgents.Agent`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    pub agent_info: AgentInfo,
    pub active: bool,
    #[serde(default)]
    pub deactivated: bool,
    #[serde(default)]
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_time: Option<TimeInfo>,
    #[serde(default)]
    pub total_resources: Vec<Resource>,
}

/// `Response.GetFrameworks.Framework`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Framework {
    pub framework_info: FrameworkInfo,
    pub active: bool,
    pub connected: bool,
    #[serde(default)]
    pub recovered: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_time: Option<TimeInfo>,
}

/// `Response.GetTasks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct GetTasks {
    #[serde(default)]
    pub pending_tasks: Vec<Task>,
    #[serde(default)]
    pub tasks: Vec<Task>,
    #[serde(default)]
    pub unreachable_tasks: Vec<Task>,
    #[serde(default)]
    pub completed_tasks: Vec<Task>,
    #[serde(default)]
    pub orphan_tasks: Vec<Task>,
}

/// `Response.GetFrameworks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct GetFrameworks {
    #[serde(default)]
    pub frameworks: Vec<Framework>,
    #[serde(default)]
    pub completed_frameworks: Vec<Framework>,
}

/// `Response.GetAgents`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct GetAgents {
    #[serde(default)]
    pub agents: Vec<Agent>,
    #[serde(default)]
    pub recovered_agents: Vec<AgentInfo>,
}

/// `Response.GetExecutors` (always empty in Mantle's answers for now).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct GetExecutors {
    #[serde(default)]
    pub executors: Vec<serde_json::Value>,
}

/// `Response.GetState`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct GetState {
    #[serde(default)]
    pub get_tasks: GetTasks,
    #[serde(default)]
    pub get_executors: GetExecutors,
    #[serde(default)]
    pub get_frameworks: GetFrameworks,
    #[serde(default)]
    pub get_agents: GetAgents,
}

/// `Response` to `GET_STATE`: `{"type": "GET_STATE", "get_state": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    #[serde(rename = "type")]
    pub kind: CallType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub get_state: Option<GetState>,
}

/// `Event.Type` of the operator event stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventType {
    Subscribed,
    TaskAdded,
    TaskUpdated,
    AgentAdded,
    AgentRemoved,
    FrameworkAdded,
    FrameworkUpdated,
    FrameworkRemoved,
    Heartbeat,
    #[serde(other)]
    Unknown,
}

/// `Event.Subscribed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscribed {
    pub get_state: GetState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval_seconds: Option<f64>,
}

/// `Event.TaskAdded`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskAdded {
    pub task: Task,
}

/// `Event.TaskUpdated`: the latest status and the task's current state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskUpdated {
    pub framework_id: FrameworkId,
    pub status: TaskStatus,
    pub state: TaskState,
}

/// `Event.AgentAdded`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentAdded {
    pub agent: Agent,
}

/// `Event.AgentRemoved`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRemoved {
    pub agent_id: AgentId,
}

/// `Event.FrameworkAdded` / `Event.FrameworkUpdated`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameworkEvent {
    pub framework: Framework,
}

/// `Event.FrameworkRemoved`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameworkRemoved {
    pub framework_info: FrameworkInfo,
}

/// An operator event: `type` plus the one field that matches it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: EventType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribed: Option<Subscribed>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_added: Option<TaskAdded>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_updated: Option<TaskUpdated>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_added: Option<AgentAdded>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_removed: Option<AgentRemoved>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framework_added: Option<FrameworkEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framework_updated: Option<FrameworkEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framework_removed: Option<FrameworkRemoved>,
}

impl Event {
    fn bare(kind: EventType) -> Self {
        Event {
            kind,
            subscribed: None,
            task_added: None,
            task_updated: None,
            agent_added: None,
            agent_removed: None,
            framework_added: None,
            framework_updated: None,
            framework_removed: None,
        }
    }
    /// `HEARTBEAT`.
    pub fn heartbeat() -> Self {
        Self::bare(EventType::Heartbeat)
    }
    /// `SUBSCRIBED` with the full state.
    pub fn subscribed(get_state: GetState, heartbeat_interval_seconds: f64) -> Self {
        Event {
            subscribed: Some(Subscribed {
                get_state,
                heartbeat_interval_seconds: Some(heartbeat_interval_seconds),
            }),
            ..Self::bare(EventType::Subscribed)
        }
    }
    /// `TASK_ADDED`.
    pub fn task_added(task: Task) -> Self {
        Event {
            task_added: Some(TaskAdded { task }),
            ..Self::bare(EventType::TaskAdded)
        }
    }
    /// `TASK_UPDATED`.
    pub fn task_updated(framework_id: FrameworkId, status: TaskStatus, state: TaskState) -> Self {
        Event {
            task_updated: Some(TaskUpdated {
                framework_id,
                status,
                state,
            }),
            ..Self::bare(EventType::TaskUpdated)
        }
    }
    /// `AGENT_ADDED`.
    pub fn agent_added(agent: Agent) -> Self {
        Event {
            agent_added: Some(AgentAdded { agent }),
            ..Self::bare(EventType::AgentAdded)
        }
    }
    /// `AGENT_REMOVED`.
    pub fn agent_removed(agent_id: AgentId) -> Self {
        Event {
            agent_removed: Some(AgentRemoved { agent_id }),
            ..Self::bare(EventType::AgentRemoved)
        }
    }
    /// `FRAMEWORK_ADDED`.
    pub fn framework_added(framework: Framework) -> Self {
        Event {
            framework_added: Some(FrameworkEvent { framework }),
            ..Self::bare(EventType::FrameworkAdded)
        }
    }
    /// `FRAMEWORK_UPDATED`.
    pub fn framework_updated(framework: Framework) -> Self {
        Event {
            framework_updated: Some(FrameworkEvent { framework }),
            ..Self::bare(EventType::FrameworkUpdated)
        }
    }
    /// `FRAMEWORK_REMOVED`.
    pub fn framework_removed(framework_info: FrameworkInfo) -> Self {
        Event {
            framework_removed: Some(FrameworkRemoved { framework_info }),
            ..Self::bare(EventType::FrameworkRemoved)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_use_the_operator_api_field_names() {
        let e = Event::agent_removed(AgentId::new("a1"));
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "AGENT_REMOVED", "agent_removed": {"agent_id": {"value": "a1"}}})
        );
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
        let unknown: Event = serde_json::from_str(r#"{"type":"OPERATION_UPDATED"}"#).unwrap();
        assert_eq!(unknown.kind, EventType::Unknown);
        let call: Call = serde_json::from_str(r#"{"type":"GET_STATE"}"#).unwrap();
        assert_eq!(call.kind, CallType::GetState);
    }
}
