//! The v1 scheduler API (`include/mesos/v1/scheduler/scheduler.proto`,
//! `docs/scheduler-http-api.md`): `Call`s a framework posts and `Event`s the master streams.

use crate::mesos::{
    ExecutorInfo, Filters, FrameworkInfo, KillPolicy, MasterInfo, Offer, TaskGroupInfo, TaskInfo,
    TaskStatus,
};
use mantle_model::{AgentId, ExecutorId, FrameworkId, OfferId, TaskId};
use serde::{Deserialize, Serialize};

/// `Call.Type`. Unknown strings decode to `Unknown` so the master can answer 400 naming them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CallType {
    Subscribe,
    Teardown,
    Accept,
    Decline,
    AcceptInverseOffers,
    DeclineInverseOffers,
    Revive,
    Kill,
    Shutdown,
    Acknowledge,
    AcknowledgeOperationStatus,
    Reconcile,
    ReconcileOperations,
    Message,
    Request,
    Suppress,
    UpdateFramework,
    #[serde(other)]
    Unknown,
}

/// `Call.Subscribe`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscribe {
    pub framework_info: FrameworkInfo,
    #[serde(default)]
    pub suppressed_roles: Vec<String>,
}

/// `Offer.Operation` (only LAUNCH and LAUNCH_GROUP are acted on).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch: Option<Launch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_group: Option<LaunchGroup>,
}

/// `Offer.Operation.Launch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Launch {
    #[serde(default)]
    pub task_infos: Vec<TaskInfo>,
}

/// `Offer.Operation.LaunchGroup`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaunchGroup {
    pub executor: ExecutorInfo,
    pub task_group: TaskGroupInfo,
}

/// `Call.Accept`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Accept {
    #[serde(default)]
    pub offer_ids: Vec<OfferId>,
    #[serde(default)]
    pub operations: Vec<Operation>,
    #[serde(default)]
    pub filters: Option<Filters>,
}

/// `Call.Decline`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decline {
    #[serde(default)]
    pub offer_ids: Vec<OfferId>,
    #[serde(default)]
    pub filters: Option<Filters>,
}

/// `Call.Revive` and `Call.Suppress`: empty `roles` means every role of the framework.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Roles {
    #[serde(default)]
    pub roles: Vec<String>,
}

/// `Call.Kill`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kill {
    pub task_id: TaskId,
    #[serde(default)]
    pub agent_id: Option<AgentId>,
    #[serde(default)]
    pub kill_policy: Option<KillPolicy>,
}

/// `Call.Shutdown`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shutdown {
    pub executor_id: ExecutorId,
    pub agent_id: AgentId,
}

/// `Call.Acknowledge`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Acknowledge {
    pub agent_id: AgentId,
    pub task_id: TaskId,
    pub uuid: String,
}

/// `Call.Reconcile.Task`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReconcileTask {
    pub task_id: TaskId,
    #[serde(default)]
    pub agent_id: Option<AgentId>,
}

/// `Call.Reconcile`: empty `tasks` asks for implicit reconciliation.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Reconcile {
    #[serde(default)]
    pub tasks: Vec<ReconcileTask>,
}

/// `Call.Message` (scheduler to executor).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub agent_id: AgentId,
    pub executor_id: ExecutorId,
    pub data: String,
}

/// `Call.UpdateFramework`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateFramework {
    pub framework_info: FrameworkInfo,
    #[serde(default)]
    pub suppressed_roles: Vec<String>,
}

/// `Call`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framework_id: Option<FrameworkId>,
    #[serde(rename = "type")]
    pub kind: CallType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<Subscribe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept: Option<Accept>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decline: Option<Decline>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revive: Option<Roles>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppress: Option<Roles>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill: Option<Kill>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown: Option<Shutdown>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledge: Option<Acknowledge>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconcile: Option<Reconcile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_framework: Option<UpdateFramework>,
}

impl Call {
    /// A call of `kind` with no payload.
    pub fn new(kind: CallType, framework_id: Option<FrameworkId>) -> Self {
        Call {
            framework_id,
            kind,
            subscribe: None,
            accept: None,
            decline: None,
            revive: None,
            suppress: None,
            kill: None,
            shutdown: None,
            acknowledge: None,
            reconcile: None,
            message: None,
            update_framework: None,
        }
    }
}

/// `Event.Subscribed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscribed {
    pub framework_id: FrameworkId,
    pub heartbeat_interval_seconds: f64,
    pub master_info: MasterInfo,
}

/// `Event.Offers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offers {
    pub offers: Vec<Offer>,
}

/// `Event.Rescind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rescind {
    pub offer_id: OfferId,
}

/// `Event.Update`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Update {
    pub status: TaskStatus,
}

/// `Event.Message` (executor to scheduler).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventMessage {
    pub agent_id: AgentId,
    pub executor_id: ExecutorId,
    pub data: String,
}

/// `Event.Failure`: an agent was removed (only `agent_id`) or an executor ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor_id: Option<ExecutorId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<i32>,
}

/// `Event.Error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Error {
    pub message: String,
}

/// `Event.Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventType {
    Subscribed,
    Offers,
    Rescind,
    Update,
    Message,
    Failure,
    Error,
    Heartbeat,
    #[serde(other)]
    Unknown,
}

/// `Event`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: EventType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribed: Option<Subscribed>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offers: Option<Offers>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rescind: Option<Rescind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<Update>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<EventMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Error>,
}

impl Event {
    /// An event of `kind` with no payload.
    pub fn bare(kind: EventType) -> Self {
        Event {
            kind,
            subscribed: None,
            offers: None,
            rescind: None,
            update: None,
            message: None,
            failure: None,
            error: None,
        }
    }
    /// `HEARTBEAT`.
    pub fn heartbeat() -> Self {
        Self::bare(EventType::Heartbeat)
    }
    /// `SUBSCRIBED`.
    pub fn subscribed(s: Subscribed) -> Self {
        Event {
            subscribed: Some(s),
            ..Self::bare(EventType::Subscribed)
        }
    }
    /// `OFFERS`.
    pub fn offers(offers: Vec<Offer>) -> Self {
        Event {
            offers: Some(Offers { offers }),
            ..Self::bare(EventType::Offers)
        }
    }
    /// `RESCIND`.
    pub fn rescind(offer_id: OfferId) -> Self {
        Event {
            rescind: Some(Rescind { offer_id }),
            ..Self::bare(EventType::Rescind)
        }
    }
    /// `UPDATE`.
    pub fn update(status: TaskStatus) -> Self {
        Event {
            update: Some(Update { status }),
            ..Self::bare(EventType::Update)
        }
    }
    /// `MESSAGE`.
    pub fn message(agent_id: AgentId, executor_id: ExecutorId, data: String) -> Self {
        Event {
            message: Some(EventMessage {
                agent_id,
                executor_id,
                data,
            }),
            ..Self::bare(EventType::Message)
        }
    }
    /// `FAILURE`.
    pub fn failure(f: Failure) -> Self {
        Event {
            failure: Some(f),
            ..Self::bare(EventType::Failure)
        }
    }
    /// `ERROR`.
    pub fn error(message: impl Into<String>) -> Self {
        Event {
            error: Some(Error {
                message: message.into(),
            }),
            ..Self::bare(EventType::Error)
        }
    }
}
