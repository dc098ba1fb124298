//! Agents: registration and re-registration, messages from agents, disconnection and removal
//! after `agent_removal_timeout`.

use crate::{Agent, CallError, ConnId, Framework, Master, Output};
use mantle_api::internal::{AgentEnvelope, AgentToMaster, MasterToAgent, RegisterAgent};
use mantle_api::scheduler::{Event, Failure};
use mantle_api::{attributes_from_wire, resources_from_wire};
use mantle_model::{validate_id, AgentId, FrameworkId, Now, TaskState};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
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
                // A new agent at the address of a disconnected one replaces it.
                let stale: Vec<AgentId> = self
                    .agents
                    .values()
                    .filter(|a| {
                        a.hostname == reg.hostname && a.port == reg.port && a.conn.is_none()
                    })
                    .map(|a| a.id.clone())
                    .collect();
                for id in stale {
                    self.remove_agent(
                        now,
                        &id,
                        "replaced by a new agent at the same address",
                        true,
                    );
                }
                let id = AgentId::new(format!("{}-S{}", self.master_id, self.next_agent));
                self.next_agent += 1;
                id
            }
        };

        if let Some(existing) = self.agents.get_mut(&agent_id) {
            if let Some(old) = existing.conn.take() {
                self.outputs.push(Output::CloseAgent { conn: old });
            }
            existing.conn = Some(conn);
            existing.stream_id = stream_id.clone();
            existing.removal_deadline = None;
            existing.reregistered_time = Some(now.wall_secs);
            existing.next_ping = now.mono + self.config.agent_ping_interval;
            info!(agent_id = %agent_id, "agent re-registered");
            self.reconcile_agent_tasks(now, &agent_id, &reg);
            self.allocator.set_agent_active(&agent_id, true);
        } else {
            info!(agent_id = %agent_id, hostname = %reg.hostname, resources = %total, "agent registered");
            self.agents.insert(
                agent_id.clone(),
                Agent {
                    id: agent_id.clone(),
                    hostname: reg.hostname.clone(),
                    port: reg.port,
                    attributes,
                    total: total.clone(),
                    conn: Some(conn),
                    stream_id: stream_id.clone(),
                    registered_time: now.wall_secs,
                    reregistered_time: None,
                    version: reg.version.clone(),
                    removal_deadline: None,
                    next_ping: now.mono + self.config.agent_ping_interval,
                    offers: BTreeSet::new(),
                    tasks: BTreeSet::new(),
                },
            );
            self.allocator.add_agent(agent_id.clone(), total, &[]);
            // An agent unknown to us with tasks: the master restarted. Adopt what it runs.
            self.adopt_agent_tasks(now, &agent_id, &reg);
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

    fn ensure_recovered_framework(&mut self, now: Now, info: &mantle_api::mesos::FrameworkInfo) {
        let Some(id) = info.id.clone() else { return };
        if self.frameworks.contains_key(&id) || self.completed_frameworks.iter().any(|f| f.id == id)
        {
            return;
        }
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
                next_heartbeat: now.mono,
                offers: BTreeSet::new(),
                tasks: BTreeSet::new(),
                completed_tasks: VecDeque::new(),
                executors: BTreeMap::new(),
            },
        );
    }

    fn adopt_agent_tasks(&mut self, now: Now, agent_id: &AgentId, reg: &RegisterAgent) {
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
        for t in &reg.tasks {
            if t.state.is_terminal()
                || self
                    .tasks
                    .contains_key(&(t.framework_id.clone(), t.task.task_id.clone()))
            {
                continue;
            }
            let Some(f) = self.frameworks.get(&t.framework_id) else {
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
    }

    /// On re-registration: tasks the master thinks run there but the agent does not report
    /// are lost; tasks the agent reports but the master does not know are adopted.
    fn reconcile_agent_tasks(&mut self, now: Now, agent_id: &AgentId, reg: &RegisterAgent) {
        let reported: BTreeSet<(FrameworkId, mantle_model::TaskId)> = reg
            .tasks
            .iter()
            .map(|t| (t.framework_id.clone(), t.task.task_id.clone()))
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
            if !reported.contains(&(framework_id.clone(), task_id.clone())) {
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
                    self.send_event(&framework_id, Event::update(s));
                }
            }
        }
        self.adopt_agent_tasks(now, agent_id, reg);
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
        match envelope.message {
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
        let _ = now;
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
        let deadline = now.mono + self.config.agent_removal_timeout;
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

    pub(crate) fn expire_agents(&mut self, now: Now) {
        let expired: Vec<AgentId> = self
            .agents
            .values()
            .filter(|a| a.conn.is_none() && a.removal_deadline.is_some_and(|d| d <= now.mono))
            .map(|a| a.id.clone())
            .collect();
        for id in expired {
            self.remove_agent(now, &id, "agent did not reconnect in time", false);
        }
    }

    /// Removes an agent: offers rescinded, tasks lost (for partition-aware frameworks:
    /// unreachable, or gone when `gone`, because a new agent replaced it and its tasks
    /// cannot come back, as Mesos's `__removeSlave`), every framework told with FAILURE.
    pub(crate) fn remove_agent(&mut self, now: Now, agent_id: &AgentId, why: &str, gone: bool) {
        let Some(agent) = self.agents.get(agent_id) else {
            return;
        };
        warn!(agent_id = %agent_id, reason = why, "removing agent");
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
            let state = match (pa, gone) {
                (true, true) => TaskState::Gone,
                (true, false) => TaskState::Unreachable,
                (false, _) => TaskState::Lost,
            };
            // Unreachable is not terminal for the framework, but the agent is gone from this
            // master, so the task leaves the books either way.
            let status = self.finish_task_locally(now, &framework_id, &task_id, state, why);
            if let Some(s) = status {
                self.send_event(&framework_id, Event::update(s));
            }
        }
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
    }
}
