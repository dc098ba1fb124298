//! Agents: registration and re-registration, messages from agents (`PONG` among them),
//! health (pings), disconnection, and marking agents unreachable or gone.
//!
//! An agent is *overdue* when it has been silent for `agent_ping_timeout` x
//! `max_agent_ping_timeouts` (it answers pings but has not), when its stream ended that long
//! ago, or when a restarted master has not seen it re-register within
//! `agent_reregister_timeout`. Overdue agents are marked unreachable (Mesos
//! `Master::markUnreachable`): their offers are rescinded, tasks of `PARTITION_AWARE`
//! frameworks go `TASK_UNREACHABLE` and are kept aside, the others go `TASK_LOST`, and every
//! framework gets a FAILURE event. At most one agent is marked per `agent_removal_interval`
//! (Mesos `--agent_removal_rate_limit`), and none while more than `agent_removal_limit` of
//! the agents (and at least two) are silent at once: then the master assumes that it is the
//! one cut off. An unreachable agent that re-registers gets its partition-aware tasks back as
//! they are (the frameworks get an update with the state it reports); the tasks the
//! frameworks were told are lost are killed. After `registry_max_agent_age` it is gone.

use crate::registry::AgentStanding;
use crate::{Agent, CallError, ConnId, Framework, GoneAgent, Master, Output, UnreachableAgent};
use mantle_api::internal::{AgentEnvelope, AgentToMaster, MasterToAgent, RegisterAgent};
use mantle_api::scheduler::{Event, Failure};
use mantle_api::{attributes_from_wire, resources_from_wire};
use mantle_model::{validate_id, AgentId, FrameworkId, Now, TaskId, TaskState};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;
use tracing::{info, warn};

impl Master {
    /// An agent (re-)registers on connection `conn`. Returns its ID and the stream ID its
    /// later messages must carry.
    pub fn agent_register(
        &mut self,
        now: Now,
        conn: ConnId,
        reg: RegisterAgent,
    ) -> Result<(AgentId, String), CallError> {
        let bad = |m: String| CallError::BadRequest(m);
        if reg.hostname.is_empty()
            || reg.hostname.len() > 253
            || reg
                .hostname
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(bad("'hostname' must be a non-empty host name".into()));
        }
        let total =
            resources_from_wire(&reg.resources, "resources").map_err(|e| bad(e.to_string()))?;
        let attributes = attributes_from_wire(&reg.attributes).map_err(|e| bad(e.to_string()))?;
        if let Some(id) = &reg.agent_id {
            validate_id(id.as_str()).map_err(|e| bad(format!("'agent_id' is invalid: {e}")))?;
        }
        for t in &reg.tasks {
            resources_from_wire(&t.task.resources, "tasks[].task.resources")
                .map_err(|e| bad(e.to_string()))?;
        }
        let stream_id = self.new_stream_id();
        let agent_id = match &reg.agent_id {
            Some(id) => id.clone(),
            None => {
                // A new agent at the address of a known one replaces it: two agents cannot
                // listen on one address, so the old one restarted without its state (its
                // stream may not even have ended yet, behind a partition).
                let stale: Vec<AgentId> = self
                    .agents
                    .values()
                    .filter(|a| a.hostname == reg.hostname && a.port == reg.port)
                    .map(|a| a.id.clone())
                    .collect();
                for id in stale {
                    self.remove_agent(now, &id, "replaced by a new agent at the same address");
                }
                let stale: Vec<AgentId> = self
                    .unreachable_agents
                    .iter()
                    .filter(|(_, u)| u.record.hostname == reg.hostname && u.record.port == reg.port)
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in stale {
                    self.replace_unreachable(now, &id);
                }
                let id = AgentId::new(format!("{}-S{}", self.master_id, self.next_agent));
                self.next_agent += 1;
                id
            }
        };

        // An agent coming back after it was marked unreachable: put its partition-aware
        // tasks back on the books, then treat it as any re-registering agent.
        let mut kill_on_return = BTreeSet::new();
        let unreachable = self.unreachable_agents.remove(&agent_id);
        let gone = unreachable.is_none() && self.gone_agents.remove(&agent_id).is_some();
        let returning = unreachable.is_some() || gone;
        if returning {
            self.admit(
                now,
                conn,
                &agent_id,
                &stream_id,
                &reg,
                total.clone(),
                attributes.clone(),
            );
        }
        if let Some(u) = unreachable {
            info!(agent_id = %agent_id, "unreachable agent re-registered");
            kill_on_return = u.kill_on_return;
            if let Some(a) = self.agents.get_mut(&agent_id) {
                a.registered_time = u.record.registered_time;
                a.reregistered_time = Some(now.wall_secs);
            }
            self.restore_unreachable_tasks(&agent_id);
        } else if gone {
            // Gone: what it still runs was written off; kill it all (it is admitted empty).
            warn!(agent_id = %agent_id, "gone agent re-registered; killing its tasks");
            for t in &reg.tasks {
                kill_on_return.insert((t.framework_id.clone(), t.task.task_id.clone()));
            }
        }

        if returning {
            self.reconcile_agent_tasks(now, &agent_id, &reg, &kill_on_return);
            self.allocator.set_agent_active(&agent_id, true);
        } else if let Some(existing) = self.agents.get_mut(&agent_id) {
            if let Some(old) = existing.conn.take() {
                self.outputs.push(Output::CloseAgent { conn: old });
            }
            existing.conn = Some(conn);
            existing.stream_id = stream_id.clone();
            existing.removal_deadline = None;
            existing.last_pong = None;
            existing.recovered = false;
            existing.reregistered_time = Some(now.wall_secs);
            existing.next_ping = now.mono + self.config.ping_every();
            if existing.total != total
                || existing.hostname != reg.hostname
                || existing.port != reg.port
            {
                // Restarted with other resources or at another address: take what it says now.
                existing.total = total.clone();
                existing.hostname = reg.hostname.clone();
                existing.port = reg.port;
                existing.attributes = attributes;
                let used = self.used_on(&agent_id);
                self.allocator.add_agent(agent_id.clone(), total, &used);
            }
            self.dirty_agent(&agent_id);
            info!(agent_id = %agent_id, "agent re-registered");
            self.reconcile_agent_tasks(now, &agent_id, &reg, &BTreeSet::new());
            self.allocator.set_agent_active(&agent_id, true);
        } else {
            info!(agent_id = %agent_id, hostname = %reg.hostname, resources = %total, "agent registered");
            self.admit(now, conn, &agent_id, &stream_id, &reg, total, attributes);
            // An agent unknown to us with tasks: the master restarted without a registry, or
            // lost it. Adopt what it runs.
            self.adopt_agent_tasks(now, &agent_id, &reg, &BTreeSet::new());
        }
        self.outputs.push(Output::ToAgent {
            conn,
            message: MasterToAgent::Registered {
                agent_id: agent_id.clone(),
                stream_id: stream_id.clone(),
            },
        });
        self.allocation_pending = true;
        Ok((agent_id, stream_id))
    }

    /// Adds a newly admitted (or returning) agent to the books and the allocator.
    #[allow(clippy::too_many_arguments)]
    fn admit(
        &mut self,
        now: Now,
        conn: ConnId,
        agent_id: &AgentId,
        stream_id: &str,
        reg: &RegisterAgent,
        total: mantle_model::Resources,
        attributes: Vec<mantle_model::Attribute>,
    ) {
        self.agents.insert(
            agent_id.clone(),
            Agent {
                id: agent_id.clone(),
                hostname: reg.hostname.clone(),
                port: reg.port,
                attributes,
                total: total.clone(),
                conn: Some(conn),
                stream_id: stream_id.to_string(),
                registered_time: now.wall_secs,
                reregistered_time: None,
                version: reg.version.clone(),
                removal_deadline: None,
                next_ping: now.mono + self.config.ping_every(),
                last_pong: None,
                recovered: false,
                offers: BTreeSet::new(),
                tasks: BTreeSet::new(),
            },
        );
        self.allocator.add_agent(agent_id.clone(), total, &[]);
        self.dirty_agent(agent_id);
    }

    /// What live tasks and executors use on an agent, per framework and role.
    fn used_on(&self, agent_id: &AgentId) -> Vec<(FrameworkId, String, mantle_model::Resources)> {
        let mut used = Vec::new();
        if let Some(a) = self.agents.get(agent_id) {
            for key in &a.tasks {
                if let Some(t) = self.tasks.get(key).filter(|t| !t.released) {
                    used.push((t.framework_id.clone(), t.role.clone(), t.resources.clone()));
                }
            }
        }
        for f in self.frameworks.values() {
            for ((a, _), (_, r, role)) in &f.executors {
                if a == agent_id {
                    used.push((f.id.clone(), role.clone(), r.clone()));
                }
            }
        }
        used
    }

    /// Puts an unreachable agent's partition-aware tasks back on the books (still
    /// `TASK_UNREACHABLE` until its registration says how they are).
    fn restore_unreachable_tasks(&mut self, agent_id: &AgentId) {
        let keys: Vec<(FrameworkId, TaskId)> = self
            .unreachable_tasks
            .iter()
            .filter(|(_, t)| &t.info.agent_id == agent_id)
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            let Some(mut task) = self.unreachable_tasks.remove(&key) else {
                continue;
            };
            self.dirty_task(&key.0, &key.1);
            let Some(f) = self.frameworks.get_mut(&key.0) else {
                continue;
            };
            f.tasks.insert(key.1.clone());
            task.released = false;
            self.allocator
                .add_used(&key.0, &task.role, agent_id, &task.resources);
            if let Some(a) = self.agents.get_mut(agent_id) {
                a.tasks.insert(key.clone());
            }
            self.tasks.insert(key, task);
        }
    }

    fn ensure_recovered_framework(&mut self, now: Now, info: &mantle_api::mesos::FrameworkInfo) {
        let Some(id) = info.id.clone() else { return };
        if self.frameworks.contains_key(&id) || self.framework_removed(&id) {
            return;
        }
        self.dirty_framework(&id);
        let roles = info.effective_roles();
        self.allocator.add_framework(id.clone(), &roles, &[], false);
        self.frameworks.insert(
            id.clone(),
            Framework {
                id,
                info: info.clone(),
                roles,
                conn: None,
                stream_id: String::new(),
                active: false,
                recovered: true,
                registered_time: now.wall_secs,
                reregistered_time: None,
                unregistered_time: None,
                failover_deadline: None,
                failover_deadline_wall: None,
                next_heartbeat: now.mono,
                offers: BTreeSet::new(),
                tasks: BTreeSet::new(),
                completed_tasks: VecDeque::new(),
                executors: BTreeMap::new(),
            },
        );
    }

    /// Adopts the tasks an agent reports that the master does not know, except those in
    /// `kill` (and those of removed frameworks), which it tells the agent to kill.
    fn adopt_agent_tasks(
        &mut self,
        now: Now,
        agent_id: &AgentId,
        reg: &RegisterAgent,
        kill: &BTreeSet<(FrameworkId, TaskId)>,
    ) {
        for f in &reg.frameworks {
            self.ensure_recovered_framework(now, f);
        }
        for e in &reg.executors {
            if let Some(f) = self.frameworks.get_mut(&e.framework_id) {
                let resources = resources_from_wire(&e.executor.resources, "executor.resources")
                    .unwrap_or_default();
                let role = f.roles.first().cloned().unwrap_or_else(|| "*".into());
                self.allocator
                    .add_used(&e.framework_id, &role, agent_id, &resources);
                f.executors.insert(
                    (agent_id.clone(), e.executor.executor_id.clone()),
                    (e.executor.clone(), resources, role),
                );
            }
        }
        let mut shutdown = BTreeSet::new();
        for t in &reg.tasks {
            let key = (t.framework_id.clone(), t.task.task_id.clone());
            if t.state.is_terminal() || self.tasks.contains_key(&key) {
                continue;
            }
            if kill.contains(&key) {
                info!(agent_id = %agent_id, task_id = %t.task.task_id, "killing a task the framework was told is lost");
                self.send_agent(
                    agent_id,
                    MasterToAgent::KillTask {
                        framework_id: t.framework_id.clone(),
                        task_id: t.task.task_id.clone(),
                        kill_policy: None,
                    },
                );
                continue;
            }
            let Some(f) = self.frameworks.get(&t.framework_id) else {
                if self.framework_removed(&t.framework_id) {
                    shutdown.insert(t.framework_id.clone());
                }
                continue;
            };
            let role = f.roles.first().cloned().unwrap_or_else(|| "*".into());
            let resources = resources_from_wire(&t.task.resources, "resources").unwrap_or_default();
            self.allocator
                .add_used(&t.framework_id, &role, agent_id, &resources);
            let mut info = t.task.clone();
            info.agent_id = agent_id.clone();
            self.add_task(
                now,
                &t.framework_id,
                t.executor_id.clone(),
                &role,
                info,
                resources,
            );
            if let Some(task) = self
                .tasks
                .get_mut(&(t.framework_id.clone(), t.task.task_id.clone()))
            {
                task.state = t.state;
            }
        }
        // Tasks of a framework removed meanwhile (failover timeout, teardown): as Mesos, the
        // agent is told to shut the framework down.
        for framework_id in shutdown {
            self.send_agent(agent_id, MasterToAgent::ShutdownFramework { framework_id });
        }
    }

    /// On re-registration: tasks the master thinks run there but the agent does not report
    /// are lost; tasks both know take the state the agent reports (a task that was
    /// unreachable is announced to its framework with it); tasks the agent reports but the
    /// master does not know are adopted, or killed when in `kill`.
    fn reconcile_agent_tasks(
        &mut self,
        now: Now,
        agent_id: &AgentId,
        reg: &RegisterAgent,
        kill: &BTreeSet<(FrameworkId, TaskId)>,
    ) {
        let reported: BTreeMap<(FrameworkId, TaskId), TaskState> = reg
            .tasks
            .iter()
            .map(|t| ((t.framework_id.clone(), t.task.task_id.clone()), t.state))
            .collect();
        let known: Vec<(FrameworkId, mantle_model::TaskId)> = self
            .agents
            .get(agent_id)
            .map(|a| a.tasks.iter().cloned().collect())
            .unwrap_or_default();
        for (framework_id, task_id) in known {
            let staging = self
                .tasks
                .get(&(framework_id.clone(), task_id.clone()))
                .is_some_and(|t| t.state == TaskState::Staging);
            // A task still STAGING that the agent does not report never reached it: the
            // RUN_TASK went on a stream the agent had already given up (the agent builds its
            // registration only after it stopped reading the old stream), or none at all.
            let key = (framework_id.clone(), task_id.clone());
            if let Some(state) = reported.get(&key).copied() {
                self.take_reported_state(now, &key, state);
                continue;
            }
            {
                let pa = self
                    .frameworks
                    .get(&framework_id)
                    .is_some_and(|f| f.partition_aware());
                let state = match (pa, staging) {
                    (true, true) => TaskState::Dropped,
                    (true, false) => TaskState::Gone,
                    (false, _) => TaskState::Lost,
                };
                if let Some(s) = self.finish_task_locally(
                    now,
                    &framework_id,
                    &task_id,
                    state,
                    "Task was not found on the agent after it re-registered",
                ) {
                    self.send_master_update(now, &framework_id, s);
                }
            }
        }
        self.adopt_agent_tasks(now, agent_id, reg, kill);
    }

    /// A task known to both sides takes the state the re-registering agent reports, when that
    /// is not terminal (a terminal update comes through the agent's status updates, which are
    /// retried until acknowledged). A task that was unreachable is announced with it.
    fn take_reported_state(&mut self, now: Now, key: &(FrameworkId, TaskId), state: TaskState) {
        let Some(task) = self.tasks.get(key) else {
            return;
        };
        if state.is_terminal() || task.state.is_terminal() || task.state == state {
            return;
        }
        let was_unreachable = task.state == TaskState::Unreachable;
        let mut status = self.master_status(
            now,
            &key.1,
            Some(&task.info.agent_id),
            state,
            "REASON_AGENT_REREGISTERED",
            "Agent re-registered",
        );
        status.executor_id = task.executor_id.clone();
        status.healthy = task
            .statuses
            .iter()
            .rev()
            .find(|s| s.state != TaskState::Unreachable)
            .and_then(|s| s.healthy);
        if let Some(task) = self.tasks.get_mut(key) {
            task.state = state;
            if was_unreachable {
                task.statuses.push(status.clone());
            }
        }
        self.dirty_task(&key.0, &key.1);
        if was_unreachable {
            self.send_master_update(now, &key.0, status);
        }
    }

    /// A message from an agent.
    pub fn agent_message(&mut self, now: Now, envelope: AgentEnvelope) -> Result<(), CallError> {
        let Some(agent) = self.agents.get(&envelope.agent_id) else {
            return Err(CallError::Forbidden(format!(
                "Agent '{}' is not registered",
                envelope.agent_id
            )));
        };
        if agent.stream_id != envelope.stream_id || agent.conn.is_none() {
            return Err(CallError::BadRequest(format!(
                "Stream ID '{}' does not match the agent's current registration",
                envelope.stream_id
            )));
        }
        let agent_id = envelope.agent_id;
        // Any accepted message is a sign of life; a PONG also says the agent answers pings.
        let pong = matches!(envelope.message, AgentToMaster::Pong);
        if let Some(a) = self.agents.get_mut(&agent_id) {
            if pong || a.last_pong.is_some() {
                a.last_pong = Some(now.mono);
            }
        }
        match envelope.message {
            AgentToMaster::Pong => {}
            AgentToMaster::StatusUpdate {
                framework_id,
                status,
            } => self.status_update(&agent_id, framework_id, status),
            AgentToMaster::ExecutorMessage {
                framework_id,
                executor_id,
                data,
            } => {
                self.send_event(&framework_id, Event::message(agent_id, executor_id, data));
            }
            AgentToMaster::ExecutorExited {
                framework_id,
                executor_id,
                status,
            } => {
                let removed = self
                    .frameworks
                    .get_mut(&framework_id)
                    .and_then(|f| f.executors.remove(&(agent_id.clone(), executor_id.clone())));
                // Only executors the framework launched itself get a FAILURE; the built-in
                // executor of a command task is invisible to it, as in Mesos.
                if let Some((_, resources, role)) = removed {
                    self.allocator
                        .recover(&framework_id, &role, &agent_id, &resources, None);
                    self.allocation_pending = true;
                    self.send_event(
                        &framework_id,
                        Event::failure(Failure {
                            agent_id: Some(agent_id),
                            executor_id: Some(executor_id),
                            status: Some(status.unwrap_or(-1)),
                        }),
                    );
                }
            }
        }
        Ok(())
    }

    /// The agent's stream on `conn` ended: stop offering it, rescind its offers, and start the
    /// removal timer.
    pub fn agent_disconnected(&mut self, now: Now, conn: ConnId) {
        let Some(agent_id) = self
            .agents
            .values()
            .find(|a| a.conn == Some(conn))
            .map(|a| a.id.clone())
        else {
            return;
        };
        warn!(agent_id = %agent_id, "agent disconnected");
        let deadline = now.mono + self.config.agent_unreachable_after();
        let offers: Vec<_> = match self.agents.get_mut(&agent_id) {
            Some(a) => {
                a.conn = None;
                a.removal_deadline = Some(deadline);
                a.offers.iter().cloned().collect()
            }
            None => return,
        };
        for id in offers {
            self.remove_offer(&id, None, true);
        }
        self.allocator.set_agent_active(&agent_id, false);
    }

    /// When an agent is due to be marked unreachable, if it can be.
    pub(crate) fn overdue_at(&self, a: &Agent) -> Option<Duration> {
        match (a.conn, a.last_pong) {
            (None, _) => a.removal_deadline,
            (Some(_), Some(last)) => {
                Some(last.saturating_add(self.config.agent_unreachable_after()))
            }
            (Some(_), None) => None,
        }
    }

    /// Whether an agent looks silent: disconnected, or unheard for half the window.
    fn silent(&self, a: &Agent, now: Now) -> bool {
        let half = self.config.agent_unreachable_after() / 2;
        match (a.conn, a.last_pong) {
            (None, _) => true,
            (Some(_), Some(last)) => now.mono.saturating_sub(last) >= half,
            (Some(_), None) => false,
        }
    }

    /// Marks overdue agents unreachable (rate-limited, and not at all when most agents are
    /// silent at once), and forgets unreachable agents older than `registry_max_agent_age`.
    pub(crate) fn expire_agents(&mut self, now: Now) {
        let max_age = self.config.registry_max_agent_age;
        let old: Vec<AgentId> = self
            .unreachable_agents
            .iter()
            .filter(|(_, u)| u.since_mono.saturating_add(max_age) <= now.mono)
            .map(|(id, _)| id.clone())
            .collect();
        for id in old {
            self.mark_gone(now, &id);
        }
        let overdue: Vec<AgentId> = self
            .agents
            .values()
            .filter(|a| self.overdue_at(a).is_some_and(|d| d <= now.mono))
            .map(|a| a.id.clone())
            .collect();
        if overdue.is_empty() || now.mono < self.removal_hold_until {
            return;
        }
        let total = self.agents.len();
        let silent = self.agents.values().filter(|a| self.silent(a, now)).count();
        #[allow(
            clippy::cast_precision_loss,
            reason = "agent counts are far below 2^52"
        )]
        let too_many =
            silent >= 2 && silent as f64 > self.config.agent_removal_limit * total as f64;
        if too_many {
            warn!(
                silent,
                total,
                "most agents are silent at once: assuming this master is cut off, marking none unreachable"
            );
            self.removal_hold_until = now.mono + self.config.ping_every();
            return;
        }
        for id in overdue {
            if now.mono < self.removal_hold_until {
                break;
            }
            if let Some(interval) = self.config.agent_removal_interval {
                self.removal_hold_until = now.mono + interval;
            }
            self.mark_unreachable(now, &id);
        }
    }

    /// Marks an agent unreachable (Mesos `Master::markUnreachable`): offers rescinded, tasks
    /// of partition-aware frameworks `TASK_UNREACHABLE` (kept aside for its return), others
    /// `TASK_LOST` (killed if it returns), every framework told with FAILURE.
    pub(crate) fn mark_unreachable(&mut self, now: Now, agent_id: &AgentId) {
        let Some(agent) = self.agents.get(agent_id) else {
            return;
        };
        warn!(agent_id = %agent_id, "marking agent unreachable");
        let record = crate::registry::agent_record(agent, AgentStanding::Admitted);
        let offers: Vec<_> = agent.offers.iter().cloned().collect();
        let tasks: Vec<_> = agent.tasks.iter().cloned().collect();
        for id in offers {
            self.remove_offer(&id, None, true);
        }
        let mut kill_on_return = BTreeSet::new();
        for key in tasks {
            let pa = self
                .frameworks
                .get(&key.0)
                .is_some_and(|f| f.partition_aware());
            let Some(task) = self.tasks.get(&key) else {
                continue;
            };
            if task.state.is_terminal() {
                // Its end already went to the framework.
                self.complete_task(&key.0, &key.1);
                continue;
            }
            if !pa {
                kill_on_return.insert(key.clone());
                if let Some(s) = self.finish_task_locally(
                    now,
                    &key.0,
                    &key.1,
                    TaskState::Lost,
                    "Agent is unreachable: it missed its pings or did not come back",
                ) {
                    self.send_master_update(now, &key.0, s);
                }
                continue;
            }
            let mut status = self.master_status(
                now,
                &key.1,
                Some(agent_id),
                TaskState::Unreachable,
                "REASON_AGENT_REMOVED",
                "Agent is unreachable: it missed its pings or did not come back",
            );
            status.executor_id = task.executor_id.clone();
            // Mesos stamps when the task became unreachable; schedulers time their
            // unreachable strategies from it.
            status.extra.insert(
                "unreachable_time".into(),
                serde_json::json!({"nanoseconds": (now.wall_secs * 1e9) as i64}),
            );
            let Some(mut task) = self.tasks.remove(&key) else {
                continue;
            };
            if !task.released {
                task.released = true;
                self.allocator
                    .recover(&key.0, &task.role, agent_id, &task.resources, None);
            }
            task.state = TaskState::Unreachable;
            task.statuses.push(status.clone());
            if let Some(f) = self.frameworks.get_mut(&key.0) {
                f.tasks.remove(&key.1);
            }
            self.unreachable_tasks.insert(key.clone(), task);
            self.dirty_task(&key.0, &key.1);
            self.send_master_update(now, &key.0, status);
        }
        self.forget_agent(agent_id);
        self.unreachable_agents.insert(
            agent_id.clone(),
            UnreachableAgent {
                record,
                since: now.wall_secs,
                since_mono: now.mono,
                kill_on_return,
            },
        );
        self.dirty_agent(agent_id);
    }

    /// An unreachable agent past `registry_max_agent_age`: its tasks are forgotten (they
    /// answer reconciliation as unknown) and it may come back only empty.
    fn mark_gone(&mut self, now: Now, agent_id: &AgentId) {
        let Some(u) = self.unreachable_agents.remove(agent_id) else {
            return;
        };
        info!(agent_id = %agent_id, "unreachable agent is too old: marking it gone");
        let keys: Vec<_> = self
            .unreachable_tasks
            .iter()
            .filter(|(_, t)| &t.info.agent_id == agent_id)
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            self.unreachable_tasks.remove(&key);
            self.dirty_task(&key.0, &key.1);
        }
        self.add_gone(now, agent_id, u.record);
    }

    /// An unreachable agent whose address a new agent took: it restarted without its state,
    /// so its tasks are `TASK_GONE` (definitely not running) and it is gone.
    fn replace_unreachable(&mut self, now: Now, agent_id: &AgentId) {
        let Some(u) = self.unreachable_agents.remove(agent_id) else {
            return;
        };
        let keys: Vec<_> = self
            .unreachable_tasks
            .iter()
            .filter(|(_, t)| &t.info.agent_id == agent_id)
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            let Some(task) = self.unreachable_tasks.remove(&key) else {
                continue;
            };
            self.dirty_task(&key.0, &key.1);
            let mut status = self.master_status(
                now,
                &key.1,
                Some(agent_id),
                TaskState::Gone,
                "REASON_AGENT_RESTARTED",
                "Agent restarted without its state: replaced by a new agent at the same address",
            );
            status.executor_id = task.executor_id.clone();
            if let Some(f) = self.frameworks.get_mut(&key.0) {
                let mut task = task;
                task.state = TaskState::Gone;
                task.statuses.push(status.clone());
                f.completed_tasks.push_back(task);
                while f.completed_tasks.len() > crate::MAX_COMPLETED_TASKS {
                    f.completed_tasks.pop_front();
                }
            }
            self.send_master_update(now, &key.0, status);
        }
        self.add_gone(now, agent_id, u.record);
    }

    fn add_gone(&mut self, now: Now, agent_id: &AgentId, record: crate::registry::AgentRecord) {
        self.gone_agents.insert(
            agent_id.clone(),
            GoneAgent {
                record,
                since: now.wall_secs,
            },
        );
        self.dirty_agent(agent_id);
        while self.gone_agents.len() > crate::MAX_GONE_AGENTS {
            let oldest = self
                .gone_agents
                .iter()
                .min_by(|a, b| a.1.since.total_cmp(&b.1.since))
                .map(|(id, _)| id.clone());
            let Some(id) = oldest else { break };
            self.gone_agents.remove(&id);
            self.dirty_agent(&id);
        }
    }

    /// Takes an agent off the books: executors, FAILURE to every framework, its stream, the
    /// allocator.
    fn forget_agent(&mut self, agent_id: &AgentId) {
        let framework_ids: Vec<FrameworkId> = self.frameworks.keys().cloned().collect();
        for fid in &framework_ids {
            if let Some(f) = self.frameworks.get_mut(fid) {
                f.executors.retain(|(a, _), _| a != agent_id);
            }
            self.send_event(
                fid,
                Event::failure(Failure {
                    agent_id: Some(agent_id.clone()),
                    executor_id: None,
                    status: None,
                }),
            );
        }
        if let Some(a) = self.agents.remove(agent_id) {
            if let Some(conn) = a.conn {
                self.outputs.push(Output::CloseAgent { conn });
            }
        }
        self.allocator.remove_agent(agent_id);
        self.dirty_agent(agent_id);
    }

    /// Removes an agent replaced by a new one at its address: its tasks cannot come back, so
    /// they are `TASK_GONE` for partition-aware frameworks and `TASK_LOST` for others (Mesos
    /// `__removeSlave`), and it is remembered as gone.
    pub(crate) fn remove_agent(&mut self, now: Now, agent_id: &AgentId, why: &str) {
        let Some(agent) = self.agents.get(agent_id) else {
            return;
        };
        warn!(agent_id = %agent_id, reason = why, "removing agent");
        let record = crate::registry::agent_record(agent, AgentStanding::Admitted);
        let offers: Vec<_> = agent.offers.iter().cloned().collect();
        let tasks: Vec<_> = agent.tasks.iter().cloned().collect();
        for id in offers {
            self.remove_offer(&id, None, true);
        }
        for (framework_id, task_id) in tasks {
            let pa = self
                .frameworks
                .get(&framework_id)
                .is_some_and(|f| f.partition_aware());
            let state = if pa { TaskState::Gone } else { TaskState::Lost };
            let status = self.finish_task_locally(now, &framework_id, &task_id, state, why);
            if let Some(s) = status {
                self.send_master_update(now, &framework_id, s);
            }
        }
        self.forget_agent(agent_id);
        self.add_gone(now, agent_id, record);
    }
}
