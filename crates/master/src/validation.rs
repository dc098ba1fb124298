//! Validation of LAUNCH and LAUNCH_GROUP operations against the offers they use
//! (Mesos `src/master/validation.cpp`). A failure is a reason and message for TASK_ERROR,
//! never a panic, and never changes any accounting.

use crate::{Framework, Master};
use mantle_api::mesos::{ExecutorInfo, TaskInfo};
use mantle_api::resources_from_wire;
use mantle_model::{validate_id, AgentId, Resources, TaskId};
use std::collections::BTreeSet;

/// Why a task was rejected: (TaskStatus.reason, message).
pub(crate) type Invalid = (&'static str, String);

fn invalid(message: String) -> Invalid {
    ("REASON_TASK_INVALID", message)
}

/// What a valid task needs from the offer pool.
pub(crate) struct ValidTask {
    pub(crate) resources: Resources,
    /// Resources of an executor that is not running yet and starts with this task.
    pub(crate) new_executor: Option<(ExecutorInfo, Resources)>,
}

impl Master {
    /// Checks one task of a LAUNCH. `pending` holds task IDs launched earlier in the same
    /// ACCEPT; `pool` is what is left of the offers.
    pub(crate) fn validate_task(
        &self,
        framework: &Framework,
        agent_id: &AgentId,
        task: &TaskInfo,
        pending: &BTreeSet<TaskId>,
        pending_executors: &BTreeSet<mantle_model::ExecutorId>,
        pool: &Resources,
    ) -> Result<ValidTask, Invalid> {
        validate_id(task.task_id.as_str())
            .map_err(|e| invalid(format!("Task ID '{}' is invalid: {e}", task.task_id)))?;
        if framework.tasks.contains(&task.task_id) || pending.contains(&task.task_id) {
            return Err(invalid(format!("Task has duplicate ID: {}", task.task_id)));
        }
        if &task.agent_id != agent_id {
            return Err(invalid(format!(
                "Task uses agent {} but the offers are for agent {agent_id}",
                task.agent_id
            )));
        }
        match (&task.command, &task.executor) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "Task should have at most one of CommandInfo or ExecutorInfo present".into(),
                ))
            }
            (None, None) => {
                return Err(invalid(
                    "Task should have at least one of CommandInfo or ExecutorInfo present".into(),
                ))
            }
            _ => {}
        }
        let resources = resources_from_wire(&task.resources, "resources").map_err(|e| {
            (
                "REASON_TASK_INVALID",
                format!("Task has invalid resources: {e}"),
            )
        })?;
        if resources.is_empty() {
            return Err(invalid("Task uses no resources".into()));
        }
        if let Some(kp) = &task.kill_policy {
            if kp.grace_period.as_ref().is_some_and(|g| g.nanoseconds < 0) {
                return Err(invalid(
                    "Task's 'kill_policy.grace_period' must be non-negative".into(),
                ));
            }
        }
        let mut needed = resources.clone();
        let mut new_executor = None;
        if let Some(executor) = &task.executor {
            let exec_resources = self.validate_executor(framework, agent_id, executor)?;
            let running = framework
                .executors
                .contains_key(&(agent_id.clone(), executor.executor_id.clone()));
            if !running && !pending_executors.contains(&executor.executor_id) {
                needed.add(&exec_resources);
                new_executor = Some((executor.clone(), exec_resources));
            }
        }
        if !pool.contains(&needed) {
            return Err(invalid(format!(
                "Task uses more resources {needed} than available {pool}"
            )));
        }
        Ok(ValidTask {
            resources,
            new_executor,
        })
    }

    /// Checks an executor: valid ID, a command for custom executors, valid resources, and no
    /// conflict with a running executor of the same ID.
    pub(crate) fn validate_executor(
        &self,
        framework: &Framework,
        agent_id: &AgentId,
        executor: &ExecutorInfo,
    ) -> Result<Resources, Invalid> {
        validate_id(executor.executor_id.as_str()).map_err(|e| {
            invalid(format!(
                "Executor ID '{}' is invalid: {e}",
                executor.executor_id
            ))
        })?;
        if let Some(fid) = &executor.framework_id {
            if fid != &framework.id {
                return Err(invalid(format!(
                    "ExecutorInfo has an invalid FrameworkID (Actual: {fid} vs Expected: {})",
                    framework.id
                )));
            }
        }
        let kind = executor.kind.as_deref().unwrap_or("CUSTOM");
        if kind == "CUSTOM" && executor.command.is_none() {
            return Err(invalid("Executor must have a CommandInfo".into()));
        }
        if kind != "CUSTOM" && kind != "DEFAULT" {
            return Err(invalid(format!("Executor type '{kind}' is not supported")));
        }
        let resources = resources_from_wire(&executor.resources, "executor.resources")
            .map_err(|e| invalid(format!("Executor has invalid resources: {e}")))?;
        if let Some((running, _, _)) = framework
            .executors
            .get(&(agent_id.clone(), executor.executor_id.clone()))
        {
            if running.command != executor.command || running.kind != executor.kind {
                return Err(invalid(format!(
                    "ExecutorInfo is not compatible with existing ExecutorInfo of executor '{}'",
                    executor.executor_id
                )));
            }
        }
        Ok(resources)
    }
}
