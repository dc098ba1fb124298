//! The checkers: REFERENCE §3.4 invariants, run after every step (and at the end of a run).
//!
//! - resource sanity: the master's own books (`Master::audit`) and, physically, what the
//!   simulated executors run on each agent fits the agent;
//! - no lost update: per task, the updates the scheduler sees keep the executor's order, and
//!   a terminal state is never followed by a non-terminal one; at the end, every update an
//!   executor produced was seen by the scheduler or is still queued for retry on its agent
//!   (across crashes of that agent too: it recovers its queue from its checkpoint);
//! - no lost intent: every acknowledged API write is in the scheduler's state, across its
//!   restarts, and nothing deleted comes back;
//! - no surprise kills: checked where a simulated executor is told to kill (`world.rs`);
//! - bounded duplicates: per app, running instances <= target + ceil(maximumOverCapacity x
//!   target) (at least one spare, Marathon's tight-bounds allowance) + unreachable ones, where
//!   the target is the largest acknowledged one since the app last settled;
//! - convergence: after faults stop, within a bound, every app runs exactly its instances,
//!   all current, and nothing runs that the scheduler does not know.

use crate::workload::Intent;
use crate::world::World;
use mantle_api::mesos::TaskStatus;
use mantle_model::{Resources, TaskState};
use std::collections::BTreeMap;

impl World {
    pub(crate) fn check_step(&mut self) {
        if self.violation.is_some() {
            return;
        }
        if let Some(Err(e)) = self.master.core.as_ref().map(|m| m.audit()) {
            self.violate("resource-sanity", format!("master books: {e}"));
            return;
        }
        for (i, a) in self.agents.iter().enumerate() {
            let mut used = Resources::new();
            for e in a.execs.values().filter(|e| e.alive) {
                for t in e.tasks.values().filter(|t| !t.state.is_terminal()) {
                    used.add(&t.resources);
                }
            }
            if !a.total.contains(&used) {
                let msg = format!(
                    "agent{i} runs tasks holding {used}, more than its {}",
                    a.total
                );
                self.violate("resource-sanity", msg);
                return;
            }
        }
        self.check_intent();
        self.check_duplicates();
    }

    /// An UPDATE reaches the scheduler.
    pub(crate) fn check_update_seen(&mut self, status: &TaskStatus) {
        let id = status.task_id.to_string();
        if let Some(uuid) = &status.uuid {
            self.seen_uuids.insert(uuid.clone());
        }
        let Some(track) = self.tracks.get_mut(&id) else {
            return;
        };
        let mut problem = None;
        if let Some(first) = track.seen_terminal {
            if !status.state.is_terminal() {
                problem = Some(format!(
                    "task {id}: the scheduler saw {} after the terminal {}",
                    status.state.as_str(),
                    first.as_str()
                ));
            }
        } else if status.state.is_terminal() {
            track.seen_terminal = Some(status.state);
        }
        if let Some(uuid) = &status.uuid {
            if let Some(k) = track.produced.iter().position(|(u, _)| u == uuid) {
                if let Some(m) = track.max_seen.filter(|m| k < *m) {
                    problem = Some(format!(
                        "task {id}: the scheduler saw update #{k} ({}) after #{m} ({})",
                        track.produced[k].1.as_str(),
                        track.produced[m].1.as_str()
                    ));
                }
                track.max_seen = Some(track.max_seen.map_or(k, |m| m.max(k)));
            }
        }
        if let Some(p) = problem {
            self.violate("no-lost-update", p);
        }
    }

    pub(crate) fn check_intent(&mut self) {
        let Some(core) = self.marathon.core.as_ref() else {
            return;
        };
        let mut problems = Vec::new();
        let mut gone = Vec::new();
        for (id, intent) in &self.intent {
            match (intent, core.app(id)) {
                (Intent::Present(_), None) => {
                    problems.push(format!("acknowledged app {id} is missing"))
                }
                (Intent::Present(n), Some(a)) if a.instances != *n => problems.push(format!(
                    "app {id} has {} instances, {n} were acknowledged",
                    a.instances
                )),
                (Intent::Deleting, None) => gone.push(id.clone()),
                (Intent::Gone, Some(_)) => problems.push(format!("deleted app {id} came back")),
                _ => {}
            }
        }
        for a in core.apps() {
            if !self.intent.contains_key(&a.id) {
                problems.push(format!("app {} appeared without being created", a.id));
            }
        }
        for id in gone {
            self.intent.insert(id, Intent::Gone);
        }
        if let Some(p) = problems.into_iter().next() {
            self.violate("no-lost-intent", p);
        }
    }

    /// Live (launched, not ended) tasks per app, and how many of them sit where the master
    /// cannot see them.
    fn live_per_app(&self) -> BTreeMap<String, (u32, u32)> {
        let master_up = self.master.core.is_some();
        let mut out: BTreeMap<String, (u32, u32)> = BTreeMap::new();
        for a in &self.agents {
            let reachable = master_up
                && a.conn
                    .and_then(|c| self.conns.get(&c))
                    .is_some_and(|c| c.master_open && c.peer_open);
            for e in a.execs.values().filter(|e| e.alive) {
                for (t, _) in e.tasks.iter().filter(|(_, t)| !t.state.is_terminal()) {
                    let app = self
                        .tracks
                        .get(t.as_str())
                        .map(|x| x.app.clone())
                        .unwrap_or_default();
                    let entry = out.entry(app).or_default();
                    entry.0 += 1;
                    if !reachable {
                        entry.1 += 1;
                    }
                }
            }
        }
        out
    }

    fn check_duplicates(&mut self) {
        let live = self.live_per_app();
        let core = self.marathon.core.as_ref();
        let mut problem = None;
        let mut ids: Vec<String> = self.intent.keys().cloned().collect();
        ids.extend(live.keys().cloned());
        ids.sort();
        ids.dedup();
        for id in ids {
            let target = match self.intent.get(&id) {
                Some(Intent::Present(n)) => *n,
                _ => 0,
            };
            let moc = core
                .and_then(|c| c.app(&id))
                .map(|a| a.upgrade_strategy.maximum_over_capacity);
            let entry = self
                .bound
                .entry(id.clone())
                .or_insert((target, moc.unwrap_or(0.0)));
            entry.0 = entry.0.max(target);
            if let Some(m) = moc {
                entry.1 = entry.1.max(m);
            }
            let (b, moc) = *entry;
            let (running, hidden) = live.get(&id).copied().unwrap_or((0, 0));
            let unreachable = hidden
                + core.map_or(0, |c| {
                    c.instances_of(&id)
                        .filter(|i| matches!(i.state, TaskState::Unreachable | TaskState::Unknown))
                        .count() as u32
                });
            let spare = ((f64::from(b) * moc).ceil() as u32).max(1);
            let allowed = b + spare + unreachable;
            if running > allowed && problem.is_none() {
                problem = Some(format!(
                    "app {id} runs {running} instances; allowed {allowed} (target {b}, over-capacity {spare}, unreachable {unreachable})"
                ));
            }
            let settled =
                core.is_some_and(|c| c.deployments_of(&id).next().is_none()) && running <= target;
            if settled {
                *entry = (target, moc.min(entry.1));
                if let Some(m) = self.marathon.core.as_ref().and_then(|c| c.app(&id)) {
                    entry.1 = m.upgrade_strategy.maximum_over_capacity;
                }
            }
        }
        if let Some(p) = problem {
            self.violate("bounded-duplicates", p);
        }
    }

    /// Whether the cluster has converged; `Err` says what is still off.
    pub(crate) fn converged(&self) -> Result<(), String> {
        let Some(master) = self.master.core.as_ref() else {
            return Err("master down".into());
        };
        let _ = master;
        let Some(core) = self.marathon.core.as_ref() else {
            return Err("scheduler down".into());
        };
        if !core.connected() || self.marathon.conn.is_none() {
            return Err("scheduler not subscribed".into());
        }
        for (i, a) in self.agents.iter().enumerate() {
            if a.core.is_none() || a.conn.is_none() {
                return Err(format!("agent{i} not registered"));
            }
        }
        if let Some(d) = core.deployments().next() {
            let apps: Vec<String> = d
                .parts
                .iter()
                .map(|p| {
                    let inst: Vec<String> = core
                        .instances_of(&p.app_id)
                        .map(|i| {
                            format!(
                                "{:?}{}{}",
                                i.state,
                                if i.kill_requested { "/killing" } else { "" },
                                if core
                                    .app(&p.app_id)
                                    .is_some_and(|a| a.version_info.last_config_change_at
                                        == i.config_version)
                                {
                                    ""
                                } else {
                                    "/old"
                                }
                            )
                        })
                        .collect();
                    format!(
                        "{} {:?} step {} done {} target {:?} instances {inst:?}",
                        p.app_id,
                        p.action,
                        p.step,
                        p.done,
                        core.app(&p.app_id).map(|a| a.instances)
                    )
                })
                .collect();
            return Err(format!("deployment {} still running: {apps:?}", d.id));
        }
        let mut live: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for a in &self.agents {
            for e in a.execs.values().filter(|e| e.alive) {
                for (t, _) in e.tasks.iter().filter(|(_, t)| !t.state.is_terminal()) {
                    let Some(i) = core.instance(t.as_str()) else {
                        return Err(format!("task {t} runs but the scheduler does not know it"));
                    };
                    live.entry(i.app_id.clone())
                        .or_default()
                        .push(t.to_string());
                }
            }
        }
        for app in core.apps() {
            let tasks = live.remove(&app.id).unwrap_or_default();
            if tasks.len() != app.instances as usize {
                return Err(format!(
                    "app {} runs {} of {} instances",
                    app.id,
                    tasks.len(),
                    app.instances
                ));
            }
            for t in &tasks {
                let Some(i) = core.instance(t) else { continue };
                if i.state != TaskState::Running
                    || i.kill_requested
                    || i.config_version != app.version_info.last_config_change_at
                {
                    return Err(format!(
                        "task {t} of {} is {:?}, not a current running instance",
                        app.id, i.state
                    ));
                }
            }
        }
        if let Some((app, tasks)) = live.into_iter().next() {
            return Err(format!("app {app} is gone but runs {tasks:?}"));
        }
        for (id, intent) in &self.intent {
            if *intent == Intent::Deleting && core.app(id).is_some() {
                return Err(format!("app {id} is still being deleted"));
            }
        }
        Ok(())
    }

    /// No lost update: every update an executor produced was seen by the scheduler or is
    /// still queued on its agent, whose checkpoint keeps it across a crash.
    pub(crate) fn check_end(&self) -> Result<(), String> {
        let mut pending = std::collections::BTreeSet::new();
        for a in &self.agents {
            for (_, s) in a
                .core
                .as_ref()
                .map(|c| c.pending_updates())
                .unwrap_or_default()
            {
                if let Some(u) = s.uuid {
                    pending.insert(u);
                }
            }
        }
        for (id, t) in &self.tracks {
            for (uuid, state) in &t.produced {
                if !self.seen_uuids.contains(uuid) && !pending.contains(uuid) {
                    return Err(format!("task {id}: update {} was lost", state.as_str()));
                }
            }
        }
        Ok(())
    }
}
