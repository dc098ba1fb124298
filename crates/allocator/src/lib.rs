//! The DRF allocator: decides which framework is offered which agent's free resources.
//!
//! Pure and deterministic: no clock (time comes in as `now`), no I/O, randomness only from its
//! own seeded RNG (agent order is shuffled each cycle, as Mesos does, to spread load).
//!
//! Policy (Mesos `docs/allocation-module.md`, `docs/weights.md`): two-level weighted Dominant
//! Resource Fairness. Roles are ordered by their dominant share divided by their weight;
//! inside a role, frameworks by their dominant share. For each agent with free resources, the
//! first role and framework in that order that wants them (active, not suppressed for the role,
//! not filtered for that agent) gets all of the agent's free resources as one offer.
//!
//! Invariants:
//! - per agent, `allocated <= total`, so nothing is ever offered twice or over-committed;
//! - a framework sees no resources from an agent while a refusal filter covering them is live;
//! - suppressed (framework, role) pairs get nothing until revived.

mod sorter;

use mantle_model::{AgentId, FrameworkId, Resources};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sorter::Sorter;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Smallest bundle worth offering (Mesos `--min_allocatable_resources` default
/// `cpus:0.01|mem:32`): an agent with less free cpus *and* less free memory is skipped.
pub const MIN_CPUS_MILLIS: i64 = 10;
/// See [`MIN_CPUS_MILLIS`].
pub const MIN_MEM_MILLIS: i64 = 32_000;

/// One decision of a cycle: offer `resources` on `agent_id` to `framework_id` for `role`.
#[derive(Debug, Clone, PartialEq)]
pub struct Allocation {
    pub framework_id: FrameworkId,
    pub role: String,
    pub agent_id: AgentId,
    pub resources: Resources,
}

#[derive(Debug, Clone)]
struct AgentEntry {
    total: Resources,
    /// Offered plus used: everything not free.
    allocated: Resources,
    active: bool,
}

#[derive(Debug, Clone)]
struct FrameworkEntry {
    roles: BTreeSet<String>,
    suppressed: BTreeSet<String>,
    active: bool,
}

#[derive(Debug, Clone)]
struct Filter {
    resources: Resources,
    until: Duration,
}

#[derive(Debug, Clone)]
struct RoleEntry {
    frameworks: Sorter<FrameworkId>,
}

/// The allocator's whole state.
#[derive(Debug, Clone)]
pub struct Allocator {
    agents: BTreeMap<AgentId, AgentEntry>,
    frameworks: BTreeMap<FrameworkId, FrameworkEntry>,
    roles: BTreeMap<String, RoleEntry>,
    role_sorter: Sorter<String>,
    weights: BTreeMap<String, f64>,
    filters: BTreeMap<FrameworkId, BTreeMap<AgentId, Vec<Filter>>>,
    rng: ChaCha8Rng,
}

impl Allocator {
    /// An empty allocator. `weights` maps roles to weights (absent roles weigh 1).
    pub fn new(seed: u64, weights: BTreeMap<String, f64>) -> Self {
        Allocator {
            agents: BTreeMap::new(),
            frameworks: BTreeMap::new(),
            roles: BTreeMap::new(),
            role_sorter: Sorter::new(),
            weights,
            filters: BTreeMap::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    fn refresh_totals(&mut self) {
        let mut total = Resources::new();
        for a in self.agents.values() {
            total.add(&a.total);
        }
        let known = total.known_scalars();
        self.role_sorter.set_total(known);
        for r in self.roles.values_mut() {
            r.frameworks.set_total(known);
        }
    }

    /// Adds an agent with `total` resources, `used` of which are already allocated (a
    /// re-registering agent's running tasks, given per framework and role).
    pub fn add_agent(
        &mut self,
        agent_id: AgentId,
        total: Resources,
        used: &[(FrameworkId, String, Resources)],
    ) {
        self.agents.insert(
            agent_id.clone(),
            AgentEntry {
                total,
                allocated: Resources::new(),
                active: true,
            },
        );
        self.refresh_totals();
        for (framework_id, role, resources) in used {
            self.track(framework_id, role, &agent_id, resources);
        }
    }

    /// Removes an agent; everything allocated on it is forgotten.
    pub fn remove_agent(&mut self, agent_id: &AgentId) {
        self.agents.remove(agent_id);
        for per_agent in self.filters.values_mut() {
            per_agent.remove(agent_id);
        }
        self.refresh_totals();
    }

    /// Stops (or resumes) offering an agent's resources, e.g. while it is disconnected.
    pub fn set_agent_active(&mut self, agent_id: &AgentId, active: bool) {
        if let Some(a) = self.agents.get_mut(agent_id) {
            a.active = active;
        }
    }

    fn ensure_role(&mut self, role: &str) {
        if !self.roles.contains_key(role) {
            let mut frameworks = Sorter::new();
            let mut total = Resources::new();
            for a in self.agents.values() {
                total.add(&a.total);
            }
            frameworks.set_total(total.known_scalars());
            self.roles
                .insert(role.to_string(), RoleEntry { frameworks });
            let weight = self.weights.get(role).copied().unwrap_or(1.0);
            self.role_sorter.add(role.to_string(), weight);
            self.role_sorter.set_total(total.known_scalars());
        }
    }

    /// Adds a framework subscribed to `roles`, some of them suppressed.
    pub fn add_framework(
        &mut self,
        framework_id: FrameworkId,
        roles: &[String],
        suppressed: &[String],
        active: bool,
    ) {
        for role in roles {
            self.ensure_role(role);
            if let Some(r) = self.roles.get_mut(role) {
                r.frameworks.add(framework_id.clone(), 1.0);
            }
        }
        self.frameworks.insert(
            framework_id.clone(),
            FrameworkEntry {
                roles: roles.iter().cloned().collect(),
                suppressed: suppressed.iter().cloned().collect(),
                active,
            },
        );
        self.sync_activity(&framework_id);
    }

    /// Changes a framework's roles and suppressed roles (UPDATE_FRAMEWORK, re-subscribe).
    pub fn update_framework(
        &mut self,
        framework_id: &FrameworkId,
        roles: &[String],
        suppressed: &[String],
    ) {
        let Some(entry) = self.frameworks.get(framework_id).cloned() else {
            return;
        };
        for role in roles {
            self.ensure_role(role);
            if let Some(r) = self.roles.get_mut(role) {
                if !r.frameworks.contains(framework_id) {
                    r.frameworks.add(framework_id.clone(), 1.0);
                }
            }
        }
        let new_roles: BTreeSet<String> = roles.iter().cloned().collect();
        for old in entry.roles.difference(&new_roles) {
            // A framework keeps its allocation in a role it left until those resources come
            // back; it just stops being offered more of it.
            if let Some(r) = self.roles.get_mut(old) {
                r.frameworks.set_active(framework_id, false);
            }
        }
        if let Some(e) = self.frameworks.get_mut(framework_id) {
            e.roles = new_roles;
            e.suppressed = suppressed.iter().cloned().collect();
        }
        self.sync_activity(framework_id);
    }

    /// Removes a framework. Its allocations must have been recovered first.
    pub fn remove_framework(&mut self, framework_id: &FrameworkId) {
        if let Some(entry) = self.frameworks.remove(framework_id) {
            for role in &entry.roles {
                if let Some(r) = self.roles.get_mut(role) {
                    r.frameworks.remove(framework_id);
                }
            }
        }
        self.filters.remove(framework_id);
    }

    /// Marks a framework connected (offers flow) or disconnected (no offers).
    pub fn set_framework_active(&mut self, framework_id: &FrameworkId, active: bool) {
        if let Some(e) = self.frameworks.get_mut(framework_id) {
            e.active = active;
        }
        self.sync_activity(framework_id);
    }

    /// SUPPRESS: no offers for `roles` (all the framework's roles when empty).
    pub fn suppress(&mut self, framework_id: &FrameworkId, roles: &[String]) {
        if let Some(e) = self.frameworks.get_mut(framework_id) {
            let roles: Vec<String> = if roles.is_empty() {
                e.roles.iter().cloned().collect()
            } else {
                roles.to_vec()
            };
            e.suppressed.extend(roles);
        }
        self.sync_activity(framework_id);
    }

    /// REVIVE: un-suppress `roles` (all when empty) and drop the framework's refusal filters.
    pub fn revive(&mut self, framework_id: &FrameworkId, roles: &[String]) {
        if let Some(e) = self.frameworks.get_mut(framework_id) {
            if roles.is_empty() {
                e.suppressed.clear();
            } else {
                for r in roles {
                    e.suppressed.remove(r);
                }
            }
        }
        self.filters.remove(framework_id);
        self.sync_activity(framework_id);
    }

    fn sync_activity(&mut self, framework_id: &FrameworkId) {
        let Some(e) = self.frameworks.get(framework_id) else {
            return;
        };
        for role in &e.roles {
            let on = e.active && !e.suppressed.contains(role);
            if let Some(r) = self.roles.get_mut(role) {
                r.frameworks.set_active(framework_id, on);
            }
        }
        let roles: Vec<String> = self.roles.keys().cloned().collect();
        for role in roles {
            let any = self
                .roles
                .get(&role)
                .is_some_and(|r| r.frameworks.active_count() > 0);
            self.role_sorter.set_active(&role, any);
        }
    }

    fn track(
        &mut self,
        framework_id: &FrameworkId,
        role: &str,
        agent_id: &AgentId,
        resources: &Resources,
    ) {
        self.ensure_role(role);
        if let Some(a) = self.agents.get_mut(agent_id) {
            a.allocated.add(resources);
        }
        let known = resources.known_scalars();
        if let Some(r) = self.roles.get_mut(role) {
            if !r.frameworks.contains(framework_id) {
                r.frameworks.add(framework_id.clone(), 1.0);
                r.frameworks.set_active(framework_id, false);
            }
            r.frameworks.allocate(framework_id, known);
        }
        self.role_sorter.allocate_by(role, known);
    }

    /// Records resources as used outside an offer cycle (tasks on a re-registering agent).
    pub fn add_used(
        &mut self,
        framework_id: &FrameworkId,
        role: &str,
        agent_id: &AgentId,
        resources: &Resources,
    ) {
        self.track(framework_id, role, agent_id, resources);
    }

    /// Gives resources back (declined or unused offer, finished task). With `refuse` set,
    /// the framework is not offered them on this agent again before `now + refuse`.
    pub fn recover(
        &mut self,
        framework_id: &FrameworkId,
        role: &str,
        agent_id: &AgentId,
        resources: &Resources,
        refuse: Option<(Duration, Duration)>,
    ) {
        if let Some(a) = self.agents.get_mut(agent_id) {
            a.allocated.subtract(resources);
        }
        let known = resources.known_scalars();
        if let Some(r) = self.roles.get_mut(role) {
            r.frameworks.unallocate(framework_id, known);
        }
        self.role_sorter.unallocate_by(role, known);
        if let Some((now, refuse)) = refuse {
            if !refuse.is_zero()
                && !resources.is_empty()
                && self.frameworks.contains_key(framework_id)
            {
                self.filters
                    .entry(framework_id.clone())
                    .or_default()
                    .entry(agent_id.clone())
                    .or_default()
                    .push(Filter {
                        resources: resources.clone(),
                        until: now + refuse,
                    });
            }
        }
    }

    /// The earliest time a live filter expires, so the shell can wake up for it.
    pub fn next_filter_expiry(&self) -> Option<Duration> {
        self.filters
            .values()
            .flat_map(|m| m.values())
            .flatten()
            .map(|f| f.until)
            .min()
    }

    /// Free resources of an agent.
    pub fn available(&self, agent_id: &AgentId) -> Option<Resources> {
        self.agents
            .get(agent_id)
            .map(|a| a.total.minus(&a.allocated))
    }

    /// Dominant share of a framework in `role` (for state endpoints and tests).
    pub fn framework_share(&self, framework_id: &FrameworkId, role: &str) -> f64 {
        self.roles
            .get(role)
            .map(|r| r.frameworks.share(framework_id))
            .unwrap_or(0.0)
    }

    fn filtered(
        &self,
        framework_id: &FrameworkId,
        agent_id: &AgentId,
        offer: &Resources,
        now: Duration,
    ) -> bool {
        self.filters
            .get(framework_id)
            .and_then(|per_agent| per_agent.get(agent_id))
            .is_some_and(|fs| {
                fs.iter()
                    .any(|f| f.until > now && f.resources.contains(offer))
            })
    }

    fn expire_filters(&mut self, now: Duration) {
        self.filters.retain(|_, per_agent| {
            per_agent.retain(|_, fs| {
                fs.retain(|f| f.until > now);
                !fs.is_empty()
            });
            !per_agent.is_empty()
        });
    }

    /// One allocation cycle: offers every agent's free resources to the framework DRF picks.
    pub fn allocate(&mut self, now: Duration) -> Vec<Allocation> {
        self.expire_filters(now);
        if self.role_sorter.active_count() == 0 {
            // Nobody wants anything: skip the walk over every agent.
            return Vec::new();
        }
        // Only agents with enough free cpus or memory are worth a look; deciding that from the
        // fixed scalar array avoids cloning anything for the (usual) fully used agents.
        let mut order: Vec<&AgentId> = self
            .agents
            .iter()
            .filter(|(_, a)| a.active && worth_offering(&a.total, &a.allocated))
            .map(|(id, _)| id)
            .collect();
        order.shuffle(&mut self.rng);
        let order: Vec<AgentId> = order.into_iter().cloned().collect();
        let mut out = Vec::new();
        for agent_id in order {
            let Some(agent) = self.agents.get(&agent_id) else {
                continue;
            };
            if !worth_offering(&agent.total, &agent.allocated) {
                continue;
            }
            let free = agent.total.minus(&agent.allocated);
            let Some((role, framework_id)) = self.pick(&agent_id, &free, now) else {
                continue;
            };
            self.track(&framework_id, &role, &agent_id, &free);
            out.push(Allocation {
                framework_id,
                role,
                agent_id,
                resources: free,
            });
        }
        out
    }

    fn pick(
        &self,
        agent_id: &AgentId,
        free: &Resources,
        now: Duration,
    ) -> Option<(String, FrameworkId)> {
        for role in self.role_sorter.iter_active() {
            let Some(entry) = self.roles.get(role) else {
                continue;
            };
            for framework_id in entry.frameworks.iter_active() {
                if !self.filtered(framework_id, agent_id, free, now) {
                    return Some((role.clone(), framework_id.clone()));
                }
            }
        }
        None
    }
}

/// Whether an agent's free cpus or memory reach the minimum worth offering.
fn worth_offering(total: &Resources, allocated: &Resources) -> bool {
    let [tc, tm, ..] = total.known_scalars();
    let [ac, am, ..] = allocated.known_scalars();
    tc - ac >= MIN_CPUS_MILLIS || tm - am >= MIN_MEM_MILLIS
}

#[cfg(test)]
mod tests;
