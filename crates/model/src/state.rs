//! Task states, as in Mesos's `TaskState` (mesos.proto), and which of them are terminal.

use serde::{Deserialize, Serialize};

/// The lifecycle state of a task. Serialized with Mesos's enum names (`TASK_RUNNING`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TaskState {
    #[serde(rename = "TASK_STAGING")]
    Staging,
    #[serde(rename = "TASK_STARTING")]
    Starting,
    #[serde(rename = "TASK_RUNNING")]
    Running,
    #[serde(rename = "TASK_KILLING")]
    Killing,
    #[serde(rename = "TASK_FINISHED")]
    Finished,
    #[serde(rename = "TASK_FAILED")]
    Failed,
    #[serde(rename = "TASK_KILLED")]
    Killed,
    #[serde(rename = "TASK_ERROR")]
    Error,
    #[serde(rename = "TASK_LOST")]
    Lost,
    #[serde(rename = "TASK_DROPPED")]
    Dropped,
    #[serde(rename = "TASK_UNREACHABLE")]
    Unreachable,
    #[serde(rename = "TASK_GONE")]
    Gone,
    #[serde(rename = "TASK_GONE_BY_OPERATOR")]
    GoneByOperator,
    #[serde(rename = "TASK_UNKNOWN")]
    Unknown,
}

impl TaskState {
    /// Terminal states end a task; the agent and master release its resources.
    /// `TASK_UNREACHABLE` and `TASK_UNKNOWN` are not terminal (the task may come back).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Finished
                | TaskState::Failed
                | TaskState::Killed
                | TaskState::Error
                | TaskState::Lost
                | TaskState::Dropped
                | TaskState::Gone
                | TaskState::GoneByOperator
        )
    }

    /// The Mesos enum name, e.g. `TASK_RUNNING`.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Staging => "TASK_STAGING",
            TaskState::Starting => "TASK_STARTING",
            TaskState::Running => "TASK_RUNNING",
            TaskState::Killing => "TASK_KILLING",
            TaskState::Finished => "TASK_FINISHED",
            TaskState::Failed => "TASK_FAILED",
            TaskState::Killed => "TASK_KILLED",
            TaskState::Error => "TASK_ERROR",
            TaskState::Lost => "TASK_LOST",
            TaskState::Dropped => "TASK_DROPPED",
            TaskState::Unreachable => "TASK_UNREACHABLE",
            TaskState::Gone => "TASK_GONE",
            TaskState::GoneByOperator => "TASK_GONE_BY_OPERATOR",
            TaskState::Unknown => "TASK_UNKNOWN",
        }
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
