//! Framework lifecycle: SUBSCRIBE (new, re-subscribe, failover to a new connection),
//! disconnection and `failover_timeout`, TEARDOWN, UPDATE_FRAMEWORK, SUPPRESS/REVIVE, and the
//! dispatch of every other call to its handler.

use crate::{CallError, ConnId, Framework, Master, Output, Subscription, MAX_COMPLETED_FRAMEWORKS};
use mantle_api::internal::MasterToAgent;
use mantle_api::mesos::FrameworkInfo;
use mantle_api::scheduler::{Call, CallType, Event, Subscribe, Subscribed};
use mantle_model::{validate_id, AgentId, FrameworkId, Now, TaskId, TaskState};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;
use tracing::info;

fn validate_framework_info(info: &FrameworkInfo) -> Result<Vec<String>, CallError> {
    let roles = info.effective_roles();
    if info.has_capability("MULTI_ROLE") && info.role.is_some() {
        return Err(CallError::BadRequest(
            "'FrameworkInfo.role' must not be set when the MULTI_ROLE capability is declared"
                .into(),
        ));
    }
    if !info.has_capability("MULTI_ROLE") && !info.roles.is_empty() {
        return Err(CallError::BadRequest(
            "'FrameworkInfo.roles' needs the MULTI_ROLE capability".into(),
        ));
    }
    let mut seen = BTreeSet::new();
    for role in &roles {
        if !seen.insert(role) {
            return Err(CallError::BadRequest(format!(
                "'FrameworkInfo.roles' contains duplicate role '{role}'"
            )));
        }
        validate_role(role)?;
    }
    if let Some(t) = info.failover_timeout {
        if !t.is_finite() || t < 0.0 {
            return Err(CallError::BadRequest(format!(
                "'FrameworkInfo.failover_timeout' must be a non-negative finite number, got {t}"
            )));
        }
    }
    if let Some(id) = &info.id {
        validate_id(id.as_str())
            .map_err(|e| CallError::BadRequest(format!("'FrameworkInfo.id' is invalid: {e}")))?;
    }
    Ok(roles)
}

/// Mesos role rules (`roles::validate`): not empty, not `.`/`..`, no leading `-`, no
/// whitespace, `/` only as a separator, no control characters.
fn validate_role(role: &str) -> Result<(), CallError> {
    let bad = |why: &str| {
        Err(CallError::BadRequest(format!(
            "role '{role}' is invalid: {why}"
        )))
    };
    if role == "*" {
        return Ok(());
    }
    if role.is_empty() {
        return bad("empty");
    }
    for part in role.split('/') {
        if part.is_empty() || part == "." || part == ".." || part.starts_with('-') {
            return bad(
                "each '/'-separated part must be non-empty, not '.', '..' or start with '-'",
            );
        }
        if part
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '*')
        {
            return bad("whitespace, control characters and '*' are not allowed");
        }
    }
    Ok(())
}

impl Master {
    /// SUBSCRIBE on connection `conn`. On success the shell answers 200 and streams
    /// everything sent to `conn`, starting with SUBSCRIBED.
    pub fn subscribe(
        &mut self,
        now: Now,
        conn: ConnId,
        call_framework_id: Option<FrameworkId>,
        subscribe: Subscribe,
    ) -> Result<Subscription, CallError> {
        let info = subscribe.framework_info;
        let roles = validate_framework_info(&info)?;
        if let Some(id) = &call_framework_id {
            if info.id.as_ref() != Some(id) {
                return Err(CallError::BadRequest(
                    "'framework_id' differs from 'subscribe.framework_info.id'".into(),
                ));
            }
        }
        let stream_id = self.new_stream_id();
        let framework_id = match info.id.clone() {
            Some(id) if self.framework_removed(&id) => {
                return Err(CallError::Forbidden(format!(
                    "Framework {id} has been removed"
                )));
            }
            Some(id) => id,
            None => {
                let id = FrameworkId::new(format!("{}-{:04}", self.master_id, self.next_framework));
                self.next_framework += 1;
                id
            }
        };
        let mut info = info;
        info.id = Some(framework_id.clone());
        let suppressed = subscribe.suppressed_roles;
        let heartbeat = self.config.heartbeat_interval;

        if let Some(existing) = self.frameworks.get_mut(&framework_id) {
            // Re-subscription: same framework, maybe a new connection (scheduler failover).
            if let Some(old) = existing.conn.take() {
                if old != conn {
                    self.outputs.push(Output::ToFramework {
                        conn: old,
                        event: Event::error("Framework failed over"),
                    });
                    self.outputs.push(Output::CloseFramework { conn: old });
                }
            }
            existing.info = info;
            existing.roles = roles.clone();
            existing.conn = Some(conn);
            existing.stream_id = stream_id.clone();
            existing.active = true;
            existing.recovered = false;
            existing.failover_deadline = None;
            existing.failover_deadline_wall = None;
            existing.unregistered_time = None;
            existing.reregistered_time = Some(now.wall_secs);
            existing.next_heartbeat = now.mono + heartbeat;
            info!(framework_id = %framework_id, "framework re-subscribed");
            // Outstanding offers went to the old scheduler instance: take them back.
            let offers: Vec<_> = existing.offers.iter().cloned().collect();
            for id in offers {
                self.remove_offer(&id, None, false);
            }
            self.allocator
                .update_framework(&framework_id, &roles, &suppressed);
            self.allocator.set_framework_active(&framework_id, true);
            // Agents hold the updates the framework missed until their next retry (10 s
            // and more): ask those running its tasks to resend them now.
            let agents: BTreeSet<AgentId> = self
                .tasks
                .range((framework_id.clone(), TaskId::new(""))..)
                .take_while(|((f, _), _)| *f == framework_id)
                .map(|(_, t)| t.info.agent_id.clone())
                .collect();
            for a in agents {
                self.send_agent(
                    &a,
                    MasterToAgent::UpdateFramework {
                        framework_id: framework_id.clone(),
                    },
                );
            }
        } else {
            info!(framework_id = %framework_id, name = %info.name, "framework subscribed");
            self.allocator
                .add_framework(framework_id.clone(), &roles, &suppressed, true);
            self.frameworks.insert(
                framework_id.clone(),
                Framework {
                    id: framework_id.clone(),
                    info,
                    roles,
                    conn: Some(conn),
                    stream_id: stream_id.clone(),
                    active: true,
                    recovered: false,
                    registered_time: now.wall_secs,
                    reregistered_time: None,
                    unregistered_time: None,
                    failover_deadline: None,
                    failover_deadline_wall: None,
                    next_heartbeat: now.mono + heartbeat,
                    offers: BTreeSet::new(),
                    tasks: BTreeSet::new(),
                    completed_tasks: VecDeque::new(),
                    executors: BTreeMap::new(),
                },
            );
        }
        self.dirty_framework(&framework_id);
        let subscribed = Subscribed {
            framework_id: framework_id.clone(),
            heartbeat_interval_seconds: heartbeat.as_secs_f64(),
            master_info: self.master_info(),
        };
        self.outputs.push(Output::ToFramework {
            conn,
            event: Event::subscribed(subscribed),
        });
        // What the master told it that it has not acknowledged comes again, after SUBSCRIBED.
        self.resend_master_updates(now, &framework_id);
        self.allocation_pending = true;
        Ok(Subscription {
            framework_id,
            stream_id,
        })
    }

    /// Every call but SUBSCRIBE. `stream_id` is the request's `Mesos-Stream-Id` header.
    pub fn call(&mut self, now: Now, stream_id: Option<&str>, call: Call) -> Result<(), CallError> {
        let framework_id = call.framework_id.clone().ok_or_else(|| {
            CallError::BadRequest("Expecting 'framework_id' to be present".into())
        })?;
        let Some(stream_id) = stream_id else {
            return Err(CallError::BadRequest(
                "All non-subscribe calls should include the 'Mesos-Stream-Id' header".into(),
            ));
        };
        let Some(framework) = self.frameworks.get(&framework_id) else {
            // Mesos answers 400 here (403 only for a known but disconnected framework).
            return Err(CallError::BadRequest("Framework cannot be found".into()));
        };
        if framework.conn.is_none() {
            return Err(CallError::Forbidden("Framework is not subscribed".into()));
        }
        if framework.stream_id != stream_id {
            return Err(CallError::BadRequest(format!(
                "The stream ID '{stream_id}' included in this request didn't match the stream ID currently associated with framework ID {framework_id}"
            )));
        }
        let missing =
            |field: &str| CallError::BadRequest(format!("Expecting '{field}' to be present"));
        match call.kind {
            CallType::Subscribe => Err(CallError::BadRequest(
                "SUBSCRIBE must be sent without a Mesos-Stream-Id on a new connection".into(),
            )),
            CallType::Teardown => {
                self.remove_framework(now, &framework_id, "teardown");
                Ok(())
            }
            CallType::Accept => {
                let accept = call.accept.ok_or_else(|| missing("accept"))?;
                self.accept(now, &framework_id, accept);
                Ok(())
            }
            CallType::Decline => {
                let decline = call.decline.ok_or_else(|| missing("decline"))?;
                let refuse = crate::refuse_duration(decline.filters.as_ref());
                for id in decline.offer_ids {
                    if self
                        .offers
                        .get(&id)
                        .is_some_and(|o| o.framework_id == framework_id)
                    {
                        self.remove_offer(&id, Some((now, refuse)), false);
                    } else {
                        tracing::warn!(framework_id = %framework_id, offer_id = %id, "ignoring DECLINE of unknown offer");
                    }
                }
                Ok(())
            }
            CallType::Revive => {
                let roles = call.revive.map(|r| r.roles).unwrap_or_default();
                self.check_roles(&framework_id, &roles)?;
                self.allocator.revive(&framework_id, &roles);
                self.allocation_pending = true;
                Ok(())
            }
            CallType::Suppress => {
                let roles = call.suppress.map(|r| r.roles).unwrap_or_default();
                self.check_roles(&framework_id, &roles)?;
                self.allocator.suppress(&framework_id, &roles);
                Ok(())
            }
            CallType::Kill => {
                let kill = call.kill.ok_or_else(|| missing("kill"))?;
                self.kill(now, &framework_id, kill);
                Ok(())
            }
            CallType::Shutdown => {
                let s = call.shutdown.ok_or_else(|| missing("shutdown"))?;
                self.require_agent(&s.agent_id)?;
                self.send_agent(
                    &s.agent_id,
                    MasterToAgent::ShutdownExecutor {
                        framework_id,
                        executor_id: s.executor_id,
                    },
                );
                Ok(())
            }
            CallType::Acknowledge => {
                let ack = call.acknowledge.ok_or_else(|| missing("acknowledge"))?;
                self.acknowledge(&framework_id, ack)
            }
            CallType::Reconcile => {
                let r = call.reconcile.unwrap_or_default();
                self.reconcile(now, &framework_id, r);
                Ok(())
            }
            CallType::Message => {
                let m = call.message.ok_or_else(|| missing("message"))?;
                self.require_agent(&m.agent_id)?;
                self.send_agent(
                    &m.agent_id,
                    MasterToAgent::FrameworkMessage {
                        framework_id,
                        executor_id: m.executor_id,
                        data: m.data,
                    },
                );
                Ok(())
            }
            CallType::UpdateFramework => {
                let u = call
                    .update_framework
                    .ok_or_else(|| missing("update_framework"))?;
                self.update_framework(&framework_id, u.framework_info, u.suppressed_roles)
            }
            CallType::Request
            | CallType::AcceptInverseOffers
            | CallType::DeclineInverseOffers
            | CallType::AcknowledgeOperationStatus
            | CallType::ReconcileOperations => {
                // Mesos accepts these and has nothing to do for them without inverse offers
                // or offer operations; answering 202 keeps clients that send them working.
                Ok(())
            }
            CallType::Unknown => Err(CallError::BadRequest("Unknown call type".into())),
        }
    }

    fn require_agent(&self, agent_id: &AgentId) -> Result<(), CallError> {
        if self.agents.contains_key(agent_id) {
            Ok(())
        } else {
            Err(CallError::BadRequest(format!(
                "Unknown agent ID '{agent_id}'"
            )))
        }
    }

    fn check_roles(&self, framework_id: &FrameworkId, roles: &[String]) -> Result<(), CallError> {
        let Some(f) = self.frameworks.get(framework_id) else {
            return Ok(());
        };
        for r in roles {
            if !f.roles.contains(r) {
                return Err(CallError::BadRequest(format!(
                    "Role '{r}' is not one of the framework's roles"
                )));
            }
        }
        Ok(())
    }

    fn update_framework(
        &mut self,
        framework_id: &FrameworkId,
        mut info: FrameworkInfo,
        suppressed: Vec<String>,
    ) -> Result<(), CallError> {
        if info.id.as_ref() != Some(framework_id) {
            return Err(CallError::BadRequest(
                "'update_framework.framework_info.id' must match the framework ID".into(),
            ));
        }
        let roles = validate_framework_info(&info)?;
        for r in &suppressed {
            if !roles.contains(r) {
                return Err(CallError::BadRequest(format!(
                    "Suppressed role '{r}' is not one of the framework's roles"
                )));
            }
        }
        if let Some(f) = self.frameworks.get_mut(framework_id) {
            if f.info.user != info.user {
                return Err(CallError::BadRequest(
                    "'FrameworkInfo.user' cannot be changed".into(),
                ));
            }
            info.id = Some(framework_id.clone());
            f.info = info;
            f.roles = roles.clone();
        }
        self.dirty_framework(framework_id);
        self.allocator
            .update_framework(framework_id, &roles, &suppressed);
        self.allocation_pending = true;
        Ok(())
    }

    /// The framework's event stream on `conn` ended.
    pub fn framework_disconnected(&mut self, now: Now, conn: ConnId) {
        let Some(framework_id) = self
            .frameworks
            .values()
            .find(|f| f.conn == Some(conn))
            .map(|f| f.id.clone())
        else {
            return;
        };
        let Some(f) = self.frameworks.get_mut(&framework_id) else {
            return;
        };
        f.conn = None;
        f.active = false;
        f.unregistered_time = Some(now.wall_secs);
        let timeout = f
            .info
            .failover_timeout
            .map(|s| Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX))
            .unwrap_or(Duration::ZERO);
        f.failover_deadline = Some(now.mono.saturating_add(timeout));
        f.failover_deadline_wall = Some(now.wall_secs + timeout.as_secs_f64().min(1e12));
        info!(framework_id = %framework_id, failover_timeout = ?timeout, "framework disconnected");
        self.dirty.frameworks.insert(framework_id.clone());
        let offers: Vec<_> = f.offers.iter().cloned().collect();
        for id in offers {
            self.remove_offer(&id, None, false);
        }
        self.allocator.set_framework_active(&framework_id, false);
        if timeout.is_zero() {
            self.remove_framework(now, &framework_id, "failover timeout");
        }
    }

    /// Whether a framework was removed (torn down or timed out): it may not come back.
    pub(crate) fn framework_removed(&self, id: &FrameworkId) -> bool {
        self.removed_frameworks.contains(id)
    }

    pub(crate) fn expire_frameworks(&mut self, now: Now) {
        let expired: Vec<FrameworkId> = self
            .frameworks
            .values()
            .filter(|f| f.conn.is_none() && f.failover_deadline.is_some_and(|d| d <= now.mono))
            .map(|f| f.id.clone())
            .collect();
        for id in expired {
            self.remove_framework(now, &id, "failover timeout");
        }
    }

    /// Removes a framework: its offers are recovered, its tasks killed on their agents and
    /// recorded as `TASK_KILLED`, its stream closed.
    pub(crate) fn remove_framework(&mut self, now: Now, framework_id: &FrameworkId, why: &str) {
        let Some(f) = self.frameworks.get(framework_id) else {
            return;
        };
        info!(framework_id = %framework_id, reason = why, "removing framework");
        let offers: Vec<_> = f.offers.iter().cloned().collect();
        let task_ids: Vec<_> = f.tasks.iter().cloned().collect();
        let mut agents: BTreeSet<AgentId> = f.executors.keys().map(|(a, _)| a.clone()).collect();
        for id in offers {
            self.remove_offer(&id, None, false);
        }
        for task_id in task_ids {
            if let Some(t) = self.tasks.get(&(framework_id.clone(), task_id.clone())) {
                agents.insert(t.info.agent_id.clone());
            }
            self.finish_task_locally(
                now,
                framework_id,
                &task_id,
                TaskState::Killed,
                "Framework removed",
            );
        }
        for agent_id in &agents {
            self.send_agent(
                agent_id,
                MasterToAgent::ShutdownFramework {
                    framework_id: framework_id.clone(),
                },
            );
        }
        let Some(mut f) = self.frameworks.remove(framework_id) else {
            return;
        };
        for ((agent_id, _), (_, resources, role)) in std::mem::take(&mut f.executors) {
            self.allocator
                .recover(framework_id, &role, &agent_id, &resources, None);
        }
        self.allocator.remove_framework(framework_id);
        if let Some(conn) = f.conn.take() {
            self.outputs.push(Output::CloseFramework { conn });
        }
        f.active = false;
        f.unregistered_time.get_or_insert(now.wall_secs);
        // Its tasks on unreachable agents end with it; they are killed if their agent returns.
        let unreachable: Vec<_> = self
            .unreachable_tasks
            .keys()
            .filter(|(fid, _)| fid == framework_id)
            .cloned()
            .collect();
        for key in unreachable {
            if let Some(t) = self.unreachable_tasks.remove(&key) {
                if let Some(u) = self.unreachable_agents.get_mut(&t.info.agent_id) {
                    u.kill_on_return.insert(key.clone());
                    self.dirty.agents.insert(t.info.agent_id.clone());
                }
            }
            self.dirty.tasks.insert(key);
        }
        self.drop_master_updates(framework_id);
        self.removed_frameworks.insert(framework_id.clone());
        self.dirty_framework(framework_id);
        self.completed_frameworks.push_back(f);
        while self.completed_frameworks.len() > MAX_COMPLETED_FRAMEWORKS {
            self.completed_frameworks.pop_front();
        }
        self.allocation_pending = true;
    }
}
