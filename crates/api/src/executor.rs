//! The v1 executor API (`include/mesos/v1/executor/executor.proto`,
//! `docs/executor-http-api.md`): `Call`s an executor posts to its agent and the `Event`s the
//! agent streams back.

use crate::mesos::{AgentInfo, ExecutorInfo, FrameworkInfo, TaskGroupInfo, TaskInfo, TaskStatus};
use mantle_model::{ExecutorId, FrameworkId, TaskId};
use serde::{Deserialize, Serialize};

/// `Call.Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CallType {
    Subscribe,
    Update,
    Message,
    Heartbeat,
    #[serde(other)]
    Unknown,
}

/// `Call.Subscribe`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Subscribe {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unacknowledged_tasks: Vec<TaskInfo>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unacknowledged_updates: Vec<CallUpdate>,
}

/// `Call.Update`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallUpdate {
    pub status: TaskStatus,
}

/// `Call.Message`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallMessage {
    pub data: String,
}

/// `Call`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    pub executor_id: ExecutorId,
    pub framework_id: FrameworkId,
    #[serde(rename = "type")]
    pub kind: CallType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<Subscribe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<CallUpdate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<CallMessage>,
}

/// `Event.Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventType {
    Subscribed,
    Launch,
    LaunchGroup,
    Kill,
    Acknowledged,
    Message,
    Error,
    Shutdown,
    Heartbeat,
    #[serde(other)]
    Unknown,
}

/// `Event.Subscribed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscribed {
    pub executor_info: ExecutorInfo,
    pub framework_info: FrameworkInfo,
    pub agent_info: AgentInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<ContainerId>,
}

/// `ContainerID`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerId {
    pub value: String,
}

/// `Event.Launch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Launch {
    pub task: TaskInfo,
}

/// `Event.LaunchGroup`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaunchGroup {
    pub task_group: TaskGroupInfo,
}

/// `Event.Kill`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kill {
    pub task_id: TaskId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_policy: Option<crate::mesos::KillPolicy>,
}

/// `Event.Acknowledged`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Acknowledged {
    pub task_id: TaskId,
    pub uuid: String,
}

/// `Event.Message`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub data: String,
}

/// `Event.Error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Error {
    pub message: String,
}

/// `Event`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: EventType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribed: Option<Subscribed>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch: Option<Launch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_group: Option<LaunchGroup>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill: Option<Kill>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged: Option<Acknowledged>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Error>,
}

impl Event {
    /// An event of `kind` with no payload.
    pub fn bare(kind: EventType) -> Self {
        Event {
            kind,
            subscribed: None,
            launch: None,
            launch_group: None,
            kill: None,
            acknowledged: None,
            message: None,
            error: None,
        }
    }
}
