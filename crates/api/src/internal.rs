//! The master<->agent protocol (Mantle's own; Mesos uses libprocess messages instead).
//!
//! Transport (see ARCHITECTURE.md): the agent opens `POST /api/internal/agent/register` with a
//! `RegisterAgent` body; the master answers with a RecordIO stream of `MasterToAgent` messages
//! that stays open while the agent is connected (the first is `Registered`). The agent sends
//! `AgentToMaster` messages with `POST /api/internal/agent/message`, naming its agent ID and the
//! stream ID the master gave it. The master never connects to agents, so the master needs no
//! route to agents and one TCP connection tells both sides whether the other is alive.

use crate::mesos::{
    Attribute, ExecutorInfo, FrameworkInfo, KillPolicy, Resource, TaskInfo, TaskStatus,
};
use mantle_model::{AgentId, ExecutorId, FrameworkId, TaskId, TaskState};
use serde::{Deserialize, Serialize};

/// A task the agent already runs, reported when it (re-)registers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSnapshot {
    pub framework_id: FrameworkId,
    #[serde(default)]
    pub executor_id: Option<ExecutorId>,
    pub task: TaskInfo,
    pub state: TaskState,
}

/// A custom executor the agent runs, reported when it (re-)registers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutorSnapshot {
    pub framework_id: FrameworkId,
    pub executor: ExecutorInfo,
}

/// Body of `POST /api/internal/agent/register`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterAgent {
    /// Set when re-registering: the ID the master gave this agent before.
    #[serde(default)]
    pub agent_id: Option<AgentId>,
    pub hostname: String,
    pub port: u16,
    pub resources: Vec<Resource>,
    #[serde(default)]
    pub attributes: Vec<Attribute>,
    #[serde(default)]
    pub frameworks: Vec<FrameworkInfo>,
    #[serde(default)]
    pub tasks: Vec<TaskSnapshot>,
    #[serde(default)]
    pub executors: Vec<ExecutorSnapshot>,
    pub version: String,
}

/// Messages from the master to an agent, on the registration stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(
    clippy::large_enum_variant,
    reason = "built once per message and moved, never stored in bulk"
)]
pub enum MasterToAgent {
    /// The agent is admitted under `agent_id`; later messages carry `stream_id`.
    Registered {
        agent_id: AgentId,
        stream_id: String,
    },
    /// Run one task (a command task when `task.executor` is absent).
    RunTask {
        framework: FrameworkInfo,
        task: TaskInfo,
    },
    /// Run a task group under `executor` (LAUNCH_GROUP).
    RunTaskGroup {
        framework: FrameworkInfo,
        executor: ExecutorInfo,
        tasks: Vec<TaskInfo>,
    },
    /// Kill one task.
    KillTask {
        framework_id: FrameworkId,
        task_id: TaskId,
        #[serde(default)]
        kill_policy: Option<KillPolicy>,
    },
    /// Shut one executor down, with its tasks.
    ShutdownExecutor {
        framework_id: FrameworkId,
        executor_id: ExecutorId,
    },
    /// Shut every executor of a framework down (teardown or failover timeout).
    ShutdownFramework { framework_id: FrameworkId },
    /// The framework acknowledged the status update `uuid` (base64) of `task_id`.
    AckStatusUpdate {
        framework_id: FrameworkId,
        task_id: TaskId,
        uuid: String,
    },
    /// Scheduler-to-executor data (base64).
    FrameworkMessage {
        framework_id: FrameworkId,
        executor_id: ExecutorId,
        data: String,
    },
    /// The framework subscribed again (a restarted or failed-over scheduler): resend its
    /// unacknowledged status updates now instead of at their next retry (Mesos
    /// `UpdateFrameworkMessage`).
    UpdateFramework { framework_id: FrameworkId },
    /// Keeps the stream alive and asks for a `PONG`: the master sends one every
    /// `min(5 s, --agent-ping-timeout)`; an agent that hears nothing for several intervals
    /// reconnects, and a master that hears no `PONG` (nor any other message) from an agent
    /// that has answered before for `--agent-ping-timeout` x `--max-agent-ping-timeouts`
    /// marks it unreachable (Mesos `PingSlaveMessage`).
    Ping,
}

/// Messages from an agent to the master.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(
    clippy::large_enum_variant,
    reason = "built once per message and moved, never stored in bulk"
)]
pub enum AgentToMaster {
    /// A task status update, carrying a uuid; resent until acknowledged.
    StatusUpdate {
        framework_id: FrameworkId,
        status: TaskStatus,
    },
    /// Executor-to-scheduler data (base64).
    ExecutorMessage {
        framework_id: FrameworkId,
        executor_id: ExecutorId,
        data: String,
    },
    /// A custom executor's process ended.
    ExecutorExited {
        framework_id: FrameworkId,
        executor_id: ExecutorId,
        #[serde(default)]
        status: Option<i32>,
    },
    /// The answer to a `PING` (Mesos `PongSlaveMessage`), posted like every other message
    /// with the agent's current stream ID. Any accepted message counts as a sign of life; an
    /// agent that has never sent `PONG` on its current registration is taken not to answer
    /// pings at all and is judged only by its stream ending.
    Pong,
}

/// Body of `POST /api/internal/agent/message`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentEnvelope {
    pub agent_id: AgentId,
    pub stream_id: String,
    pub message: AgentToMaster,
}
