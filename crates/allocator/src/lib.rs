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

/// Dense index of an agent, framework or role inside the allocator. Names are interned once
/// when they are added, so a cycle compares and copies integers, never strings.
type Slot = u32;

#[derive(Debug, Clone)]
struct AgentEntry {
    id: AgentId,
    total: Resources,
    /// Offered plus used: everything not free.
    allocated: Resources,
    active: bool,
}

#[derive(Debug, Clone)]
struct FrameworkEntry {
    id: FrameworkId,
    roles: BTreeSet<Slot>,
    suppressed: BTreeSet<Slot>,
    active: bool,
    /// Refusal filters by agent slot.
    filters: BTreeMap<Slot, Vec<Filter>>,
}

#[derive(Debug, Clone)]
struct Filter {
    resources: Resources,
    until: Duration,
}

#[derive(Debug, Clone)]
struct RoleEntry {
    name: String,
    frameworks: Sorter<Slot>,
}

/// A slab of entries addressed by slot, with a name index; freed slots are reused.
#[derive(Debug, Clone)]
struct Slab<K: Ord + Clone, V> {
    index: BTreeMap<K, Slot>,
    entries: Vec<Option<V>>,
    free: Vec<Slot>,
}

impl<K: Ord + Clone, V> Slab<K, V> {
    fn new() -> Self {
        Slab {
            index: BTreeMap::new(),
            entries: Vec::new(),
            free: Vec::new(),
        }
    }
    fn slot<Q>(&self, k: &Q) -> Option<Slot>
    where
        K: std::borrow::Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.index.get(k).copied()
    }
    fn get(&self, s: Slot) -> Option<&V> {
        self.entries.get(s as usize).and_then(Option::as_ref)
    }
    fn get_mut(&mut self, s: Slot) -> Option<&mut V> {
        self.entries.get_mut(s as usize).and_then(Option::as_mut)
    }
    fn by_key<Q>(&self, k: &Q) -> Option<&V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.slot(k).and_then(|s| self.get(s))
    }
    /// Inserts or replaces the entry for `k`, returning its slot.
    fn insert(&mut self, k: K, v: V) -> Slot {
        if let Some(s) = self.slot(&k) {
            self.entries[s as usize] = Some(v);
            return s;
        }
        let s = match self.free.pop() {
            Some(s) => {
                self.entries[s as usize] = Some(v);
                s
            }
            None => {
                self.entries.push(Some(v));
                (self.entries.len() - 1) as Slot
            }
        };
        self.index.insert(k, s);
        s
    }
    fn remove(&mut self, k: &K) -> Option<(Slot, V)> {
        let s = self.index.remove(k)?;
        let v = self.entries.get_mut(s as usize)?.take()?;
        self.free.push(s);
        Some((s, v))
    }
    fn iter(&self) -> impl Iterator<Item = (Slot, &V)> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.as_ref().map(|v| (i as Slot, v)))
    }
    fn values_mut(&mut self) -> impl Iterator<Item = &mut V> + '_ {
        self.entries.iter_mut().filter_map(Option::as_mut)
    }
}

/// The allocator's whole state.
#[derive(Debug, Clone)]
pub struct Allocator {
    agents: Slab<AgentId, AgentEntry>,
    frameworks: Slab<FrameworkId, FrameworkEntry>,
    /// Roles are never removed, so their slots are stable.
    roles: Slab<String, RoleEntry>,
    role_sorter: Sorter<Slot>,
    weights: BTreeMap<String, f64>,
    /// Sum of all agents' known scalars.
    cluster_total: [i64; 4],
    rng: ChaCha8Rng,
}

impl Allocator {
    /// An empty allocator. `weights` maps roles to weights (absent roles weigh 1).
    pub fn new(seed: u64, weights: BTreeMap<String, f64>) -> Self {
        Allocator {
            agents: Slab::new(),
            frameworks: Slab::new(),
            roles: Slab::new(),
            role_sorter: Sorter::new(),
            weights,
            cluster_total: [0; 4],
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    fn refresh_totals(&mut self) {
        let mut total = [0i64; 4];
        for (_, a) in self.agents.iter() {
            for (t, x) in total.iter_mut().zip(a.total.known_scalars()) {
                *t = t.saturating_add(x);
            }
        }
        self.cluster_total = total;
        self.role_sorter.set_total(total);
        for r in self.roles.values_mut() {
            r.frameworks.set_total(total);
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
        if let Some((slot, _)) = self.agents.remove(&agent_id) {
            self.drop_filters_for_agent(slot);
        }
        self.agents.insert(
            agent_id.clone(),
            AgentEntry {
                id: agent_id.clone(),
                total,
                allocated: Resources::new(),
                active: true,
            },
        );
        self.refresh_totals();
        for (framework_id, role, resources) in used {
            self.track_by_id(framework_id, role, &agent_id, resources);
        }
    }

    fn drop_filters_for_agent(&mut self, agent: Slot) {
        for f in self.frameworks.values_mut() {
            f.filters.remove(&agent);
        }
    }

    /// Removes an agent; everything allocated on it is forgotten.
    pub fn remove_agent(&mut self, agent_id: &AgentId) {
        if let Some((slot, _)) = self.agents.remove(agent_id) {
            self.drop_filters_for_agent(slot);
        }
        self.refresh_totals();
    }

    /// Stops (or resumes) offering an agent's resources, e.g. while it is disconnected.
    pub fn set_agent_active(&mut self, agent_id: &AgentId, active: bool) {
        if let Some(s) = self.agents.slot(agent_id) {
            if let Some(a) = self.agents.get_mut(s) {
                a.active = active;
            }
        }
    }

    fn ensure_role(&mut self, role: &str) -> Slot {
        if let Some(s) = self.roles.slot(role) {
            return s;
        }
        let mut frameworks = Sorter::new();
        frameworks.set_total(self.cluster_total);
        let slot = self.roles.insert(
            role.to_string(),
            RoleEntry {
                name: role.to_string(),
                frameworks,
            },
        );
        let weight = self.weights.get(role).copied().unwrap_or(1.0);
        self.role_sorter.add(slot, weight);
        self.role_sorter.set_total(self.cluster_total);
        slot
    }

    /// Adds a framework subscribed to `roles`, some of them suppressed.
    pub fn add_framework(
        &mut self,
        framework_id: FrameworkId,
        roles: &[String],
        suppressed: &[String],
        active: bool,
    ) {
        let role_slots: BTreeSet<Slot> = roles.iter().map(|r| self.ensure_role(r)).collect();
        let suppressed: BTreeSet<Slot> = suppressed.iter().map(|r| self.ensure_role(r)).collect();
        let slot = match self.frameworks.slot(&framework_id) {
            Some(s) => {
                // Already known (e.g. tracked from an agent's running tasks): keep its filters.
                if let Some(e) = self.frameworks.get_mut(s) {
                    e.roles = role_slots.clone();
                    e.suppressed = suppressed;
                    e.active = active;
                }
                s
            }
            None => self.frameworks.insert(
                framework_id.clone(),
                FrameworkEntry {
                    id: framework_id.clone(),
                    roles: role_slots.clone(),
                    suppressed,
                    active,
                    filters: BTreeMap::new(),
                },
            ),
        };
        for r in &role_slots {
            if let Some(role) = self.roles.get_mut(*r) {
                role.frameworks.add(slot, 1.0);
            }
        }
        self.sync_activity(slot);
    }

    /// Changes a framework's roles and suppressed roles (UPDATE_FRAMEWORK, re-subscribe).
    pub fn update_framework(
        &mut self,
        framework_id: &FrameworkId,
        roles: &[String],
        suppressed: &[String],
    ) {
        let Some(slot) = self.frameworks.slot(framework_id) else {
            return;
        };
        let new_roles: BTreeSet<Slot> = roles.iter().map(|r| self.ensure_role(r)).collect();
        let suppressed: BTreeSet<Slot> = suppressed.iter().map(|r| self.ensure_role(r)).collect();
        for r in &new_roles {
            if let Some(role) = self.roles.get_mut(*r) {
                if !role.frameworks.contains(&slot) {
                    role.frameworks.add(slot, 1.0);
                }
            }
        }
        let old_roles = self
            .frameworks
            .get(slot)
            .map(|e| e.roles.clone())
            .unwrap_or_default();
        for old in old_roles.difference(&new_roles) {
            // A framework keeps its allocation in a role it left until those resources come
            // back; it just stops being offered more of it.
            if let Some(role) = self.roles.get_mut(*old) {
                role.frameworks.set_active(&slot, false);
            }
        }
        if let Some(e) = self.frameworks.get_mut(slot) {
            e.roles = new_roles;
            e.suppressed = suppressed;
        }
        self.sync_activity(slot);
    }

    /// Removes a framework. Its allocations must have been recovered first.
    pub fn remove_framework(&mut self, framework_id: &FrameworkId) {
        if let Some((slot, _)) = self.frameworks.remove(framework_id) {
            // Clients may linger in roles it left (see `update_framework`): remove everywhere.
            for role in self.roles.values_mut() {
                role.frameworks.remove(&slot);
            }
            self.sync_roles();
        }
    }

    /// Marks a framework connected (offers flow) or disconnected (no offers).
    pub fn set_framework_active(&mut self, framework_id: &FrameworkId, active: bool) {
        let Some(slot) = self.frameworks.slot(framework_id) else {
            return;
        };
        if let Some(e) = self.frameworks.get_mut(slot) {
            e.active = active;
        }
        self.sync_activity(slot);
    }

    /// SUPPRESS: no offers for `roles` (all the framework's roles when empty).
    pub fn suppress(&mut self, framework_id: &FrameworkId, roles: &[String]) {
        let Some(slot) = self.frameworks.slot(framework_id) else {
            return;
        };
        let named: Vec<Slot> = roles.iter().map(|r| self.ensure_role(r)).collect();
        if let Some(e) = self.frameworks.get_mut(slot) {
            if named.is_empty() {
                let all: Vec<Slot> = e.roles.iter().copied().collect();
                e.suppressed.extend(all);
            } else {
                e.suppressed.extend(named);
            }
        }
        self.sync_activity(slot);
    }

    /// REVIVE: un-suppress `roles` (all when empty) and drop the framework's refusal filters.
    pub fn revive(&mut self, framework_id: &FrameworkId, roles: &[String]) {
        let Some(slot) = self.frameworks.slot(framework_id) else {
            return;
        };
        let named: Vec<Slot> = roles
            .iter()
            .filter_map(|r| self.roles.slot(r.as_str()))
            .collect();
        if let Some(e) = self.frameworks.get_mut(slot) {
            if roles.is_empty() {
                e.suppressed.clear();
            } else {
                for r in named {
                    e.suppressed.remove(&r);
                }
            }
            e.filters.clear();
        }
        self.sync_activity(slot);
    }

    fn sync_activity(&mut self, slot: Slot) {
        let Some(e) = self.frameworks.get(slot) else {
            return;
        };
        let wanted: Vec<(Slot, bool)> = e
            .roles
            .iter()
            .map(|r| (*r, e.active && !e.suppressed.contains(r)))
            .collect();
        for (r, on) in wanted {
            if let Some(role) = self.roles.get_mut(r) {
                role.frameworks.set_active(&slot, on);
            }
        }
        self.sync_roles();
    }

    fn sync_roles(&mut self) {
        let states: Vec<(Slot, bool)> = self
            .roles
            .iter()
            .map(|(s, r)| (s, r.frameworks.active_count() > 0))
            .collect();
        for (s, any) in states {
            self.role_sorter.set_active(&s, any);
        }
    }

    /// Interns the framework (inactive, if new) so resources can be charged to it.
    fn framework_slot(&mut self, framework_id: &FrameworkId) -> Slot {
        if let Some(s) = self.frameworks.slot(framework_id) {
            return s;
        }
        self.frameworks.insert(
            framework_id.clone(),
            FrameworkEntry {
                id: framework_id.clone(),
                roles: BTreeSet::new(),
                suppressed: BTreeSet::new(),
                active: false,
                filters: BTreeMap::new(),
            },
        )
    }

    fn track_by_id(
        &mut self,
        framework_id: &FrameworkId,
        role: &str,
        agent_id: &AgentId,
        resources: &Resources,
    ) {
        let Some(agent) = self.agents.slot(agent_id) else {
            return;
        };
        let role = self.ensure_role(role);
        let framework = self.framework_slot(framework_id);
        self.track(framework, role, agent, resources);
    }

    fn track(&mut self, framework: Slot, role: Slot, agent: Slot, resources: &Resources) {
        if let Some(a) = self.agents.get_mut(agent) {
            a.allocated.add(resources);
        }
        let known = resources.known_scalars();
        if let Some(r) = self.roles.get_mut(role) {
            if !r.frameworks.contains(&framework) {
                r.frameworks.add(framework, 1.0);
                r.frameworks.set_active(&framework, false);
            }
            r.frameworks.allocate(&framework, known);
        }
        self.role_sorter.allocate(&role, known);
    }

    /// Records resources as used outside an offer cycle (tasks on a re-registering agent).
    pub fn add_used(
        &mut self,
        framework_id: &FrameworkId,
        role: &str,
        agent_id: &AgentId,
        resources: &Resources,
    ) {
        self.track_by_id(framework_id, role, agent_id, resources);
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
        let agent = self.agents.slot(agent_id);
        if let Some(a) = agent.and_then(|s| self.agents.get_mut(s)) {
            a.allocated.subtract(resources);
        }
        let known = resources.known_scalars();
        let framework = self.frameworks.slot(framework_id);
        if let Some(role) = self.roles.slot(role) {
            if let (Some(f), Some(r)) = (framework, self.roles.get_mut(role)) {
                r.frameworks.unallocate(&f, known);
            }
            self.role_sorter.unallocate(&role, known);
        }
        if let (Some((now, refuse)), Some(f), Some(agent)) = (refuse, framework, agent) {
            if !refuse.is_zero() && !resources.is_empty() {
                if let Some(e) = self.frameworks.get_mut(f) {
                    e.filters.entry(agent).or_default().push(Filter {
                        resources: resources.clone(),
                        until: now + refuse,
                    });
                }
            }
        }
    }

    /// The earliest time a live filter expires, so the shell can wake up for it.
    pub fn next_filter_expiry(&self) -> Option<Duration> {
        self.frameworks
            .iter()
            .flat_map(|(_, f)| f.filters.values())
            .flatten()
            .map(|f| f.until)
            .min()
    }

    /// Free resources of an agent.
    pub fn available(&self, agent_id: &AgentId) -> Option<Resources> {
        self.agents
            .by_key(agent_id)
            .map(|a| a.total.minus(&a.allocated))
    }

    /// Dominant share of a framework in `role` (for state endpoints and tests).
    pub fn framework_share(&self, framework_id: &FrameworkId, role: &str) -> f64 {
        match (self.frameworks.slot(framework_id), self.roles.by_key(role)) {
            (Some(f), Some(r)) => r.frameworks.share(&f),
            _ => 0.0,
        }
    }

    fn filtered(&self, framework: Slot, agent: Slot, offer: &Resources, now: Duration) -> bool {
        self.frameworks
            .get(framework)
            .and_then(|f| f.filters.get(&agent))
            .is_some_and(|fs| {
                fs.iter()
                    .any(|f| f.until > now && f.resources.contains(offer))
            })
    }

    fn expire_filters(&mut self, now: Duration) {
        for f in self.frameworks.values_mut() {
            f.filters.retain(|_, fs| {
                fs.retain(|f| f.until > now);
                !fs.is_empty()
            });
        }
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
        let mut order: Vec<Slot> = self
            .agents
            .iter()
            .filter(|(_, a)| a.active && worth_offering(&a.total, &a.allocated))
            .map(|(s, _)| s)
            .collect();
        order.shuffle(&mut self.rng);
        let mut out = Vec::new();
        for agent in order {
            let Some(entry) = self.agents.get(agent) else {
                continue;
            };
            let free = entry.total.minus(&entry.allocated);
            let Some((role, framework)) = self.pick(agent, &free, now) else {
                continue;
            };
            self.track(framework, role, agent, &free);
            let (Some(a), Some(f), Some(r)) = (
                self.agents.get(agent),
                self.frameworks.get(framework),
                self.roles.get(role),
            ) else {
                continue;
            };
            out.push(Allocation {
                framework_id: f.id.clone(),
                role: r.name.clone(),
                agent_id: a.id.clone(),
                resources: free,
            });
        }
        out
    }

    fn pick(&self, agent: Slot, free: &Resources, now: Duration) -> Option<(Slot, Slot)> {
        for role in self.role_sorter.iter_active() {
            let Some(entry) = self.roles.get(*role) else {
                continue;
            };
            for framework in entry.frameworks.iter_active() {
                if !self.filtered(*framework, agent, free, now) {
                    return Some((*role, *framework));
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
