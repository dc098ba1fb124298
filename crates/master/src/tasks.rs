//! Tasks: ACCEPT (LAUNCH, LAUNCH_GROUP), status updates from agents and their
//! acknowledgements, KILL, and RECONCILE (Mesos `docs/reconciliation.md`).

use crate::validation::Invalid;
use crate::{Master, Task, MAX_COMPLETED_TASKS, MAX_STATUSES_PER_TASK};
use base64::Engine;
use mantle_api::internal::MasterToAgent;
use mantle_api::mesos::{ExecutorInfo, TaskInfo, TaskStatus};
use mantle_api::scheduler::{Accept, Acknowledge, Event, Kill, Reconcile, ReconcileTask};
use mantle_model::{AgentId, ExecutorId, FrameworkId, Now, OfferId, Resources, TaskId, TaskState};
use std::collections::BTreeSet;
use tracing::{info, warn};

impl Master {
    /// Whether the framework has a task with this ID that has not ended.
    fn task_is_active(&self, framework_id: &FrameworkId, task_id: &TaskId) -> bool {
        self.tasks
            .get(&(framework_id.clone(), task_id.clone()))
            .is_some_and(|t| !t.state.is_terminal())
    }

    /// A status the master itself generates, without a uuid: reconciliation answers and the
    /// like go out as they are; updates about tasks the master took on get a uuid and are
    /// kept until acknowledged (`send_master_update`).
    pub(crate) fn master_status(
        &self,
        now: Now,
        task_id: &TaskId,
        agent_id: Option<&AgentId>,
        state: TaskState,
        reason: &str,
        message: impl Into<String>,
    ) -> TaskStatus {
        let mut s = TaskStatus::new(task_id.clone(), state);
        s.source = Some("SOURCE_MASTER".into());
        s.reason = Some(reason.into());
        s.message = Some(message.into());
        s.agent_id = agent_id.cloned();
        s.timestamp = Some(now.wall_secs);
        s
    }

    fn check_offers(
        &self,
        framework_id: &FrameworkId,
        offer_ids: &[OfferId],
    ) -> Result<(AgentId, String), String> {
        if offer_ids.is_empty() {
            return Err("No offers specified".into());
        }
        let mut seen = BTreeSet::new();
        let mut agent: Option<(AgentId, String)> = None;
        for id in offer_ids {
            if !seen.insert(id) {
                return Err(format!("Duplicate offer {id} in accept"));
            }
            let offer = self
                .offers
                .get(id)
                .ok_or_else(|| format!("Offer {id} is no longer valid"))?;
            if &offer.framework_id != framework_id {
                return Err(format!("Offer {id} has invalid framework {} while framework {framework_id} is expected", offer.framework_id));
            }
            match &agent {
                None => agent = Some((offer.agent_id.clone(), offer.role.clone())),
                Some((a, _)) if *a != offer.agent_id => {
                    return Err(format!("Aggregated offers must belong to one single agent. Offer {id} uses agent {} and agent {a}", offer.agent_id));
                }
                Some((_, role)) if *role != offer.role => {
                    return Err(format!("Aggregated offers must be allocated to the same role. Offer {id} uses role {} and role {role}", offer.role));
                }
                _ => {}
            }
            if self
                .agents
                .get(&offer.agent_id)
                .is_none_or(|a| a.conn.is_none())
            {
                return Err(format!("Agent {} is not connected", offer.agent_id));
            }
        }
        agent.ok_or_else(|| "No offers specified".into())
    }

    /// ACCEPT: validates the offers and each operation; launches valid tasks, answers invalid
    /// ones with TASK_ERROR, and returns what is left of the offers to the allocator.
    pub(crate) fn accept(&mut self, now: Now, framework_id: &FrameworkId, accept: Accept) {
        let refuse = crate::refuse_duration(accept.filters.as_ref());
        let checked = self.check_offers(framework_id, &accept.offer_ids);
        // Whatever happens next, the offers are used up: take them out of the books first,
        // keeping their resources as the pool this ACCEPT may spend.
        let mut pool = Resources::new();
        for id in &accept.offer_ids {
            if let Some(o) = self
                .offers
                .get(id)
                .filter(|o| &o.framework_id == framework_id)
            {
                pool.add(&o.resources);
            }
        }
        let (agent_id, role) = match checked {
            Ok(x) => x,
            Err(message) => {
                for id in &accept.offer_ids {
                    if self
                        .offers
                        .get(id)
                        .is_some_and(|o| &o.framework_id == framework_id)
                    {
                        self.remove_offer(id, None, false);
                    }
                }
                self.drop_invalid_offer_tasks(now, framework_id, &accept, &message);
                return;
            }
        };
        for id in &accept.offer_ids {
            if let Some(o) = self.offers.remove(id) {
                if let Some(a) = self.agents.get_mut(&o.agent_id) {
                    a.offers.remove(id);
                }
                if let Some(f) = self.frameworks.get_mut(framework_id) {
                    f.offers.remove(id);
                }
            }
        }
        for op in accept.operations {
            match op.kind.as_str() {
                "LAUNCH" => {
                    let tasks = op.launch.map(|l| l.task_infos).unwrap_or_default();
                    for task in tasks {
                        self.launch_one(now, framework_id, &agent_id, &role, task, &mut pool);
                    }
                }
                "LAUNCH_GROUP" => match op.launch_group {
                    Some(g) => self.launch_group(
                        now,
                        framework_id,
                        &agent_id,
                        &role,
                        g.executor,
                        g.task_group.tasks,
                        &mut pool,
                    ),
                    None => {
                        warn!(framework_id = %framework_id, "LAUNCH_GROUP without 'launch_group' ignored")
                    }
                },
                other => {
                    // Not an ERROR event: schedulers treat ERROR as fatal.
                    warn!(framework_id = %framework_id, operation = other, "unsupported offer operation ignored");
                }
            }
        }
        // The unused part goes back, filtered for `refuse_seconds` like a decline.
        self.allocator.recover(
            framework_id,
            &role,
            &agent_id,
            &pool,
            Some((now.mono, refuse)),
        );
        self.allocation_pending = true;
    }

    fn drop_invalid_offer_tasks(
        &mut self,
        now: Now,
        framework_id: &FrameworkId,
        accept: &Accept,
        message: &str,
    ) {
        let partition_aware = self
            .frameworks
            .get(framework_id)
            .is_some_and(|f| f.partition_aware());
        let state = if partition_aware {
            TaskState::Dropped
        } else {
            TaskState::Lost
        };
        for op in &accept.operations {
            let tasks: Vec<&TaskInfo> = match (&op.launch, &op.launch_group) {
                (Some(l), _) => l.task_infos.iter().collect(),
                (_, Some(g)) => g.task_group.tasks.iter().collect(),
                _ => Vec::new(),
            };
            for t in tasks {
                if self.task_is_active(framework_id, &t.task_id) {
                    // A repeated ACCEPT (a client retry, a duplicated request): this task runs
                    // from the first one, and an update about it must describe that task.
                    warn!(framework_id = %framework_id, task_id = %t.task_id, "not dropping an active task named again in an ACCEPT with invalid offers");
                    continue;
                }
                let s = self.master_status(
                    now,
                    &t.task_id,
                    Some(&t.agent_id),
                    state,
                    "REASON_INVALID_OFFERS",
                    format!("Task launched with invalid offers: {message}"),
                );
                self.send_event(framework_id, Event::update(s));
            }
        }
    }

    fn reject(
        &mut self,
        now: Now,
        framework_id: &FrameworkId,
        task: &TaskInfo,
        (reason, message): Invalid,
    ) {
        if self.task_is_active(framework_id, &task.task_id) {
            // A second launch of a task that already runs (a retried ACCEPT): refuse the launch
            // without a TASK_ERROR, which the framework would take as the running task's end.
            warn!(framework_id = %framework_id, task_id = %task.task_id, %message, "ignoring a second launch of an active task");
            return;
        }
        info!(framework_id = %framework_id, task_id = %task.task_id, %message, "rejecting task");
        let s = self.master_status(
            now,
            &task.task_id,
            Some(&task.agent_id),
            TaskState::Error,
            reason,
            message,
        );
        self.send_event(framework_id, Event::update(s));
    }

    fn launch_one(
        &mut self,
        now: Now,
        framework_id: &FrameworkId,
        agent_id: &AgentId,
        role: &str,
        task: TaskInfo,
        pool: &mut Resources,
    ) {
        let Some(framework) = self.frameworks.get(framework_id) else {
            return;
        };
        let valid = self.validate_task(
            framework,
            agent_id,
            &task,
            &BTreeSet::new(),
            &BTreeSet::new(),
            pool,
        );
        let valid = match valid {
            Ok(v) => v,
            Err(e) => return self.reject(now, framework_id, &task, e),
        };
        let mut executor_id = None;
        if let Some((executor, resources)) = valid.new_executor {
            pool.subtract(&resources);
            self.add_executor(framework_id, agent_id, role, executor, resources);
        }
        if let Some(e) = &task.executor {
            executor_id = Some(e.executor_id.clone());
        }
        pool.subtract(&valid.resources);
        let framework_info = self
            .frameworks
            .get(framework_id)
            .map(|f| f.info.clone())
            .unwrap_or_default();
        self.add_task(
            now,
            framework_id,
            executor_id,
            role,
            task.clone(),
            valid.resources,
        );
        self.send_agent(
            agent_id,
            MasterToAgent::RunTask {
                framework: framework_info,
                task,
            },
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn launch_group(
        &mut self,
        now: Now,
        framework_id: &FrameworkId,
        agent_id: &AgentId,
        role: &str,
        mut executor: ExecutorInfo,
        tasks: Vec<TaskInfo>,
        pool: &mut Resources,
    ) {
        let Some(framework) = self.frameworks.get(framework_id) else {
            return;
        };
        if executor.kind.is_none() {
            executor.kind = Some("DEFAULT".into());
        }
        let mut error: Option<Invalid> = None;
        if executor.kind.as_deref() != Some("DEFAULT") {
            error = Some((
                "REASON_TASK_GROUP_INVALID",
                "LAUNCH_GROUP needs an executor of type DEFAULT".into(),
            ));
        }
        if tasks.is_empty() {
            error = Some((
                "REASON_TASK_GROUP_INVALID",
                "Task group must not be empty".into(),
            ));
        }
        let mut local_pool = pool.clone();
        let mut exec_resources = None;
        if error.is_none() {
            match self.validate_executor(framework, agent_id, &executor) {
                Ok(r) => {
                    let running = framework
                        .executors
                        .contains_key(&(agent_id.clone(), executor.executor_id.clone()));
                    if !running {
                        if !local_pool.contains(&r) {
                            error = Some((
                                "REASON_TASK_GROUP_INVALID",
                                format!(
                                    "Executor uses more resources {r} than available {local_pool}"
                                ),
                            ));
                        } else {
                            local_pool.subtract(&r);
                            exec_resources = Some(r);
                        }
                    }
                }
                Err(e) => error = Some(e),
            }
        }
        let mut pending = BTreeSet::new();
        let mut valid = Vec::new();
        if error.is_none() {
            for t in &tasks {
                if t.executor.is_some() {
                    error = Some((
                        "REASON_TASK_GROUP_INVALID",
                        format!(
                            "Task '{}' in a task group must not have an ExecutorInfo",
                            t.task_id
                        ),
                    ));
                    break;
                }
                let mut pending_execs = BTreeSet::new();
                pending_execs.insert(executor.executor_id.clone());
                match self.validate_task(
                    framework,
                    agent_id,
                    t,
                    &pending,
                    &pending_execs,
                    &local_pool,
                ) {
                    Ok(v) => {
                        local_pool.subtract(&v.resources);
                        pending.insert(t.task_id.clone());
                        valid.push(v.resources);
                    }
                    Err((_, message)) => {
                        error = Some((
                            "REASON_TASK_GROUP_INVALID",
                            format!("Task '{}': {message}", t.task_id),
                        ));
                        break;
                    }
                }
            }
        }
        if let Some(e) = error {
            // A task group launches atomically: one bad task fails them all.
            for t in &tasks {
                self.reject(now, framework_id, t, e.clone());
            }
            return;
        }
        *pool = local_pool;
        if let Some(r) = exec_resources {
            self.add_executor(framework_id, agent_id, role, executor.clone(), r);
        }
        let framework_info = self
            .frameworks
            .get(framework_id)
            .map(|f| f.info.clone())
            .unwrap_or_default();
        for (t, resources) in tasks.iter().zip(valid) {
            self.add_task(
                now,
                framework_id,
                Some(executor.executor_id.clone()),
                role,
                t.clone(),
                resources,
            );
        }
        self.send_agent(
            agent_id,
            MasterToAgent::RunTaskGroup {
                framework: framework_info,
                executor,
                tasks,
            },
        );
    }

    fn add_executor(
        &mut self,
        framework_id: &FrameworkId,
        agent_id: &AgentId,
        role: &str,
        executor: ExecutorInfo,
        resources: Resources,
    ) {
        if let Some(f) = self.frameworks.get_mut(framework_id) {
            f.executors.insert(
                (agent_id.clone(), executor.executor_id.clone()),
                (executor, resources, role.to_string()),
            );
        }
    }

    pub(crate) fn add_task(
        &mut self,
        now: Now,
        framework_id: &FrameworkId,
        executor_id: Option<ExecutorId>,
        role: &str,
        info: TaskInfo,
        resources: Resources,
    ) {
        let mut staging = TaskStatus::new(info.task_id.clone(), TaskState::Staging);
        staging.timestamp = Some(now.wall_secs);
        let key = (framework_id.clone(), info.task_id.clone());
        self.dirty_task(framework_id, &info.task_id);
        self.supersede_master_update(framework_id, &info.task_id);
        if let Some(a) = self.agents.get_mut(&info.agent_id) {
            a.tasks.insert(key.clone());
        }
        if let Some(f) = self.frameworks.get_mut(framework_id) {
            f.tasks.insert(info.task_id.clone());
        }
        self.tasks.insert(
            key,
            Task {
                info,
                framework_id: framework_id.clone(),
                executor_id,
                role: role.to_string(),
                resources,
                state: TaskState::Staging,
                statuses: vec![staging],
                terminal_uuid: None,
                released: false,
                acked: Default::default(),
            },
        );
    }

    /// A status update forwarded by an agent.
    pub(crate) fn status_update(
        &mut self,
        agent_id: &AgentId,
        framework_id: FrameworkId,
        mut status: TaskStatus,
    ) {
        status.agent_id.get_or_insert_with(|| agent_id.clone());
        if !self.frameworks.contains_key(&framework_id) {
            // The framework is gone: acknowledge on its behalf so the agent stops retrying.
            if let Some(uuid) = status.uuid.clone() {
                self.send_agent(
                    agent_id,
                    MasterToAgent::AckStatusUpdate {
                        framework_id: framework_id.clone(),
                        task_id: status.task_id.clone(),
                        uuid,
                    },
                );
            }
            self.send_agent(agent_id, MasterToAgent::ShutdownFramework { framework_id });
            return;
        }
        // The agent's word on the task is newer than any pending master update about it, and
        // the agent retries it until acknowledged.
        self.supersede_master_update(&framework_id, &status.task_id);
        let key = (framework_id.clone(), status.task_id.clone());
        // A task whose end was acknowledged is complete: any word about it now is a late copy.
        let completed = || {
            self.frameworks.get(&framework_id).is_some_and(|f| {
                f.completed_tasks
                    .iter()
                    .any(|t| t.info.task_id == status.task_id)
            })
        };
        let stale = status.uuid.as_ref().filter(|u| {
            self.tasks
                .get(&key)
                .map_or_else(completed, |t| t.acked.iter().any(|a| a == *u))
        });
        if let Some(uuid) = stale.cloned() {
            // A late copy of an update the framework already acknowledged (a delayed POST):
            // forwarding it would show the framework an older state after a newer one (found
            // by the simulator, seed 2591). Acknowledge it again in case the agent missed it.
            info!(framework_id = %framework_id, task_id = %status.task_id, "dropping a late copy of an acknowledged update");
            self.send_agent(
                agent_id,
                MasterToAgent::AckStatusUpdate {
                    framework_id,
                    task_id: status.task_id,
                    uuid,
                },
            );
            return;
        }
        if let Some(task) = self.tasks.get_mut(&key) {
            let was_terminal = task.state.is_terminal();
            if !was_terminal && task.state != status.state {
                task.state = status.state;
                self.dirty.tasks.insert(key.clone());
            }
            // As Mesos: one status per state, without `data` (the framework's, possibly
            // large, and already delivered).
            let mut kept = status.clone();
            kept.data = None;
            mantle_api::mesos::push_status(&mut task.statuses, kept);
            if task.statuses.len() > MAX_STATUSES_PER_TASK {
                task.statuses.remove(1);
            }
            if status.state.is_terminal() {
                if task.terminal_uuid != status.uuid {
                    self.dirty.tasks.insert(key.clone());
                }
                task.terminal_uuid = status.uuid.clone();
                if !task.released {
                    task.released = true;
                    let (role, resources, agent) = (
                        task.role.clone(),
                        task.resources.clone(),
                        task.info.agent_id.clone(),
                    );
                    self.allocator
                        .recover(&framework_id, &role, &agent, &resources, None);
                    self.allocation_pending = true;
                }
                if status.uuid.is_none() {
                    self.complete_task(&framework_id, &status.task_id);
                }
            }
        }
        self.send_event(&framework_id, Event::update(status));
    }

    /// Moves a task from the active set to the framework's completed tasks.
    pub(crate) fn complete_task(&mut self, framework_id: &FrameworkId, task_id: &TaskId) {
        let key = (framework_id.clone(), task_id.clone());
        let Some(task) = self.tasks.remove(&key) else {
            return;
        };
        self.dirty_task(framework_id, task_id);
        if let Some(a) = self.agents.get_mut(&task.info.agent_id) {
            a.tasks.remove(&key);
        }
        if let Some(f) = self.frameworks.get_mut(framework_id) {
            f.tasks.remove(task_id);
            f.completed_tasks.push_back(task);
            while f.completed_tasks.len() > MAX_COMPLETED_TASKS {
                f.completed_tasks.pop_front();
            }
        }
    }

    /// Ends a task inside the master (framework removed, agent lost): releases its resources,
    /// records `state`, and completes it. Returns the status recorded.
    pub(crate) fn finish_task_locally(
        &mut self,
        now: Now,
        framework_id: &FrameworkId,
        task_id: &TaskId,
        state: TaskState,
        message: &str,
    ) -> Option<TaskStatus> {
        let key = (framework_id.clone(), task_id.clone());
        if self.tasks.get(&key)?.state.is_terminal() {
            // Its terminal update already went to the framework (it awaits the
            // acknowledgement): a second, different end would contradict it.
            self.complete_task(framework_id, task_id);
            return None;
        }
        let (agent_id, status) = {
            let task = self.tasks.get(&key)?;
            let reason = if state == TaskState::Killed {
                "REASON_FRAMEWORK_REMOVED"
            } else {
                "REASON_AGENT_REMOVED"
            };
            (
                task.info.agent_id.clone(),
                self.master_status(
                    now,
                    task_id,
                    Some(&task.info.agent_id),
                    state,
                    reason,
                    message,
                ),
            )
        };
        if let Some(task) = self.tasks.get_mut(&key) {
            if !task.released {
                task.released = true;
                self.allocator
                    .recover(framework_id, &task.role, &agent_id, &task.resources, None);
            }
            if !task.state.is_terminal() {
                task.state = state;
                task.statuses.push(status.clone());
            }
        }
        self.complete_task(framework_id, task_id);
        Some(status)
    }

    pub(crate) fn acknowledge(
        &mut self,
        framework_id: &FrameworkId,
        ack: Acknowledge,
    ) -> Result<(), crate::CallError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(ack.uuid.as_bytes())
            .map_err(|_| {
                crate::CallError::BadRequest("'acknowledge.uuid' is not valid base64".into())
            })?;
        if bytes.len() != 16 {
            return Err(crate::CallError::BadRequest(
                "'acknowledge.uuid' must be a 16-byte UUID".into(),
            ));
        }
        if self.acknowledge_master_update(framework_id, &ack.task_id, &ack.uuid) {
            // The master made this update: nothing for an agent (which may be gone).
            return Ok(());
        }
        if !self.agents.contains_key(&ack.agent_id) {
            // Mesos ignores acknowledgements for agents it no longer knows.
            warn!(agent_id = %ack.agent_id, "ignoring acknowledgement for unknown agent");
            return Ok(());
        }
        let key = (framework_id.clone(), ack.task_id.clone());
        if let Some(t) = self.tasks.get_mut(&key) {
            if !t.acked.contains(&ack.uuid) {
                t.acked.push_back(ack.uuid.clone());
                if t.acked.len() > 4 {
                    t.acked.pop_front();
                }
            }
        }
        let completes = self
            .tasks
            .get(&key)
            .is_some_and(|t| t.terminal_uuid.as_deref() == Some(ack.uuid.as_str()));
        if completes {
            self.complete_task(framework_id, &ack.task_id);
        }
        self.send_agent(
            &ack.agent_id,
            MasterToAgent::AckStatusUpdate {
                framework_id: framework_id.clone(),
                task_id: ack.task_id,
                uuid: ack.uuid,
            },
        );
        Ok(())
    }

    pub(crate) fn kill(&mut self, now: Now, framework_id: &FrameworkId, kill: Kill) {
        let key = (framework_id.clone(), kill.task_id.clone());
        match self.tasks.get(&key) {
            Some(task) if !task.state.is_terminal() => {
                let agent_id = task.info.agent_id.clone();
                let kill_policy = kill.kill_policy.or_else(|| task.info.kill_policy.clone());
                self.send_agent(
                    &agent_id,
                    MasterToAgent::KillTask {
                        framework_id: framework_id.clone(),
                        task_id: kill.task_id,
                        kill_policy,
                    },
                );
            }
            Some(_) => {}
            None if self.unreachable_tasks.contains_key(&key) => {
                // Its agent is unreachable: the kill is carried out if it comes back.
                if let Some(t) = self.unreachable_tasks.remove(&key) {
                    if let Some(u) = self.unreachable_agents.get_mut(&t.info.agent_id) {
                        u.kill_on_return.insert(key.clone());
                        self.dirty.agents.insert(t.info.agent_id.clone());
                    }
                    self.dirty.tasks.insert(key.clone());
                    info!(framework_id = %framework_id, task_id = %key.1, "kill of an unreachable task recorded for the agent's return");
                }
            }
            None if self.frameworks.get(framework_id).is_some_and(|f| {
                f.completed_tasks
                    .iter()
                    .any(|t| t.info.task_id == kill.task_id)
            }) =>
            {
                // It has ended and its framework was told so: an "unknown" answer now would
                // follow a terminal state with a non-terminal one (found by the simulator,
                // seed 94: a duplicated KILL arriving after TASK_GONE).
                info!(framework_id = %framework_id, task_id = %kill.task_id, "ignoring KILL of a completed task");
            }
            None => {
                // As Mesos: a KILL of a task the master does not know is answered by
                // reconciling that task (TASK_GONE on a live agent that lacks it, TASK_UNKNOWN
                // for an unknown agent, ...), so the answer agrees with what reconciliation
                // already said (found by the simulator, seed 481: TASK_UNKNOWN after TASK_GONE).
                self.reconcile(
                    now,
                    framework_id,
                    Reconcile {
                        tasks: vec![ReconcileTask {
                            task_id: kill.task_id,
                            agent_id: kill.agent_id,
                        }],
                    },
                );
            }
        }
    }

    /// RECONCILE: explicit (listed tasks) or implicit (every known task).
    pub(crate) fn reconcile(&mut self, now: Now, framework_id: &FrameworkId, r: Reconcile) {
        let pa = self
            .frameworks
            .get(framework_id)
            .is_some_and(|f| f.partition_aware());
        let mut updates = Vec::new();
        let latest = |m: &Master, t: &Task| {
            let mut s = m.master_status(
                now,
                &t.info.task_id,
                Some(&t.info.agent_id),
                t.state,
                "REASON_RECONCILIATION",
                "Reconciliation: Latest task state",
            );
            s.executor_id = t.executor_id.clone();
            if let Some(last) = t.statuses.last() {
                s.healthy = last.healthy;
            }
            s
        };
        let from = (framework_id.clone(), TaskId::new(""));
        if r.tasks.is_empty() {
            // Every task the master knows, unreachable ones included.
            for map in [&self.tasks, &self.unreachable_tasks] {
                for ((f, _), t) in map.range(from.clone()..) {
                    if f != framework_id {
                        break;
                    }
                    updates.push(latest(self, t));
                }
            }
        } else {
            for rt in r.tasks {
                let key = (framework_id.clone(), rt.task_id.clone());
                if let Some(t) = self
                    .tasks
                    .get(&key)
                    .or_else(|| self.unreachable_tasks.get(&key))
                {
                    updates.push(latest(self, t));
                    continue;
                }
                // A task that ended by the master's decision whose framework has not yet
                // acknowledged that end: the same end (Mesos keeps a task whose terminal update
                // awaits acknowledgement and answers its state). Answering "unknown" would
                // follow TASK_GONE with TASK_UNKNOWN when a resent end and a reconciliation
                // cross (found by the simulator, seed 22).
                if let Some(p) = self
                    .outbox
                    .get(&key)
                    .filter(|p| p.status.state.is_terminal())
                {
                    let mut s = self.master_status(
                        now,
                        &rt.task_id,
                        p.status.agent_id.as_ref(),
                        p.status.state,
                        "REASON_RECONCILIATION",
                        "Reconciliation: Latest task state",
                    );
                    s.executor_id = p.status.executor_id.clone();
                    updates.push(s);
                    continue;
                }
                // An unknown task on an unreachable agent may still run there (Mesos answers
                // TASK_UNREACHABLE for partition-aware frameworks, TASK_LOST otherwise).
                if let Some(a) = rt
                    .agent_id
                    .as_ref()
                    .filter(|a| self.unreachable_agents.contains_key(*a))
                {
                    updates.push(self.master_status(
                        now,
                        &rt.task_id,
                        Some(a),
                        if pa {
                            TaskState::Unreachable
                        } else {
                            TaskState::Lost
                        },
                        "REASON_RECONCILIATION",
                        "Reconciliation: Task is on an unreachable agent",
                    ));
                    continue;
                }
                // An agent marked gone: what it ran was written off (Mesos answers
                // TASK_GONE_BY_OPERATOR for agents an operator marked gone; ours are gone by
                // age or replacement, so TASK_GONE, as the update sent when it went).
                if let Some(a) = rt
                    .agent_id
                    .as_ref()
                    .filter(|a| self.gone_agents.contains_key(*a))
                {
                    updates.push(self.master_status(
                        now,
                        &rt.task_id,
                        Some(a),
                        if pa { TaskState::Gone } else { TaskState::Lost },
                        "REASON_RECONCILIATION",
                        "Reconciliation: Task is on an agent that is gone",
                    ));
                    continue;
                }
                // Without a registry, an agent we do not know may be one that ran before this
                // master started and has not re-registered yet: like Mesos for a recovering
                // agent, do not answer yet; the framework asks again later.
                let recovering = rt.agent_id.as_ref().is_some_and(|a| {
                    !self.agents.contains_key(a)
                        && self.recovering_until.is_some_and(|u| now.mono < u)
                });
                if recovering {
                    continue;
                }
                // Completed tasks count as unknown, as in Mesos.
                let (state, msg) = match &rt.agent_id {
                    Some(a) if self.agents.contains_key(a) => (
                        if pa { TaskState::Gone } else { TaskState::Lost },
                        "Reconciliation: Task is unknown to the agent",
                    ),
                    _ => (
                        if pa {
                            TaskState::Unknown
                        } else {
                            TaskState::Lost
                        },
                        "Reconciliation: Task is unknown",
                    ),
                };
                updates.push(self.master_status(
                    now,
                    &rt.task_id,
                    rt.agent_id.as_ref(),
                    state,
                    "REASON_RECONCILIATION",
                    msg,
                ));
            }
        }
        for s in updates {
            self.send_event(framework_id, Event::update(s));
        }
    }
}
