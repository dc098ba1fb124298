//! The master's decisions: framework subscriptions, agent registration, offers, accept
//! validation, task state and status-update forwarding, as a synchronous state machine.
//!
//! The shell (`mantle-server::master`) owns sockets and the clock. It calls one method per
//! input (`subscribe`, `call`, `agent_register`, `agent_message`, `*_disconnected`, `tick`),
//! each with the current time, then drains `take_outputs()` and carries out each `Output`
//! (send an event on a connection, close a connection). Nothing here awaits, reads a clock or
//! touches the network; randomness (IDs, stream IDs) comes from a seeded RNG.
//!
//! Behaviour follows Mesos `docs/scheduler-http-api.md`, `docs/reconciliation.md` and
//! `src/master/master.cpp`; deviations are listed in ARCHITECTURE.md.

mod agents;
mod audit;
mod frameworks;
mod operator;
mod outbox;
pub mod registry;
mod state;
mod tasks;
mod validation;

pub use operator::OperatorTracker;
pub use outbox::{UPDATE_RETRY_MAX, UPDATE_RETRY_MIN};
pub use state::{resources_json, StateView};

use mantle_allocator::Allocator;
use mantle_api::internal::MasterToAgent;
use mantle_api::mesos::{ExecutorInfo, FrameworkInfo, MasterInfo, TaskInfo, TaskStatus};
use mantle_api::scheduler::Event;
use mantle_model::{
    AgentId, Attribute, ExecutorId, FrameworkId, Now, OfferId, Resources, TaskId, TaskState,
};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

/// Default `--allocation-interval` (Mesos `--allocation_interval`).
pub const DEFAULT_ALLOCATION_INTERVAL: Duration = Duration::from_secs(1);
/// Heartbeat interval advertised in SUBSCRIBED (Mesos: 15 s).
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(15);
/// Default `refuse_seconds` of `Filters` (mesos.proto).
pub const DEFAULT_REFUSE: Duration = Duration::from_secs(5);
/// Longest refusal honoured (Mesos caps `refuse_seconds` at a year).
pub const MAX_REFUSE: Duration = Duration::from_secs(365 * 24 * 3600);
/// How often the master pings agents on their stream at most (it pings every
/// `min(this, agent_ping_timeout)`), which also keeps the stream from looking silent to the
/// agent (which gives up after 20 s).
pub const DEFAULT_AGENT_PING_INTERVAL: Duration = Duration::from_secs(5);
/// Mesos `--agent_ping_timeout`.
pub const DEFAULT_AGENT_PING_TIMEOUT: Duration = Duration::from_secs(15);
/// Mesos `--max_agent_ping_timeouts`.
pub const DEFAULT_MAX_AGENT_PING_TIMEOUTS: u32 = 5;
/// Mesos `--agent_reregister_timeout`: how long agents known to the registry have to
/// re-register with a restarted master.
pub const DEFAULT_AGENT_REREGISTER_TIMEOUT: Duration = Duration::from_secs(600);
/// Mesos `--registry_max_agent_age`: how long an unreachable agent may come back.
pub const DEFAULT_REGISTRY_MAX_AGENT_AGE: Duration = Duration::from_secs(14 * 24 * 3600);
/// Share of the admitted agents that may be overdue at once before the master assumes it is
/// the one cut off and marks none unreachable (`--agent-removal-limit`).
pub const DEFAULT_AGENT_REMOVAL_LIMIT: f64 = 0.5;
/// Mantle rescinds offers unanswered for five minutes (Mesos keeps them until answered by
/// default; see ARCHITECTURE.md, deviations).
pub const DEFAULT_OFFER_TIMEOUT: Duration = Duration::from_secs(300);
/// Gone agents remembered (so that one coming back has its tasks killed).
pub const MAX_GONE_AGENTS: usize = 1000;
/// Completed tasks kept per framework for the state endpoints (Mesos
/// `--max_completed_tasks_per_framework` is 1000).
pub const MAX_COMPLETED_TASKS: usize = 1000;
/// Completed frameworks kept (Mesos `--max_completed_frameworks` is 50).
pub const MAX_COMPLETED_FRAMEWORKS: usize = 50;
/// Mixed into the seed of the RNG that draws master-generated update uuids.
const UPDATE_RNG_SALT: u64 = 0x6d61_7374_6572_7570;
/// Statuses kept per task.
const MAX_STATUSES_PER_TASK: usize = 32;
/// The Mesos API version we implement; clients parse it as numbers (pymesos does).
pub const MESOS_VERSION: &str = "1.11.0";

/// A connection handle chosen by the shell (one per event stream).
pub type ConnId = u64;

/// Master settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub hostname: String,
    pub ip: std::net::Ipv4Addr,
    pub port: u16,
    pub allocation_interval: Duration,
    pub heartbeat_interval: Duration,
    pub agent_ping_interval: Duration,
    pub agent_ping_timeout: Duration,
    pub max_agent_ping_timeouts: u32,
    pub agent_reregister_timeout: Duration,
    /// At most one agent marked unreachable per this interval (Mesos
    /// `--agent_removal_rate_limit` N/period is an interval of period/N); none by default.
    pub agent_removal_interval: Option<Duration>,
    pub agent_removal_limit: f64,
    pub registry_max_agent_age: Duration,
    /// Offers unanswered this long are rescinded (Mesos `--offer_timeout`, which has no
    /// default); `None` keeps them until answered.
    pub offer_timeout: Option<Duration>,
    pub weights: BTreeMap<String, f64>,
    pub seed: u64,
}

impl Config {
    /// Defaults for a master at `ip:port`.
    pub fn new(ip: std::net::Ipv4Addr, port: u16, seed: u64) -> Self {
        Config {
            hostname: ip.to_string(),
            ip,
            port,
            allocation_interval: DEFAULT_ALLOCATION_INTERVAL,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            agent_ping_interval: DEFAULT_AGENT_PING_INTERVAL,
            agent_ping_timeout: DEFAULT_AGENT_PING_TIMEOUT,
            max_agent_ping_timeouts: DEFAULT_MAX_AGENT_PING_TIMEOUTS,
            agent_reregister_timeout: DEFAULT_AGENT_REREGISTER_TIMEOUT,
            agent_removal_interval: None,
            agent_removal_limit: DEFAULT_AGENT_REMOVAL_LIMIT,
            registry_max_agent_age: DEFAULT_REGISTRY_MAX_AGENT_AGE,
            offer_timeout: Some(DEFAULT_OFFER_TIMEOUT),
            weights: BTreeMap::new(),
            seed,
        }
    }

    /// How long an agent may stay silent before it is unreachable: `agent_ping_timeout` x
    /// `max_agent_ping_timeouts` (75 s by default).
    pub fn agent_unreachable_after(&self) -> Duration {
        self.agent_ping_timeout
            .saturating_mul(self.max_agent_ping_timeouts.max(1))
    }

    /// How often agents are pinged.
    pub fn ping_every(&self) -> Duration {
        self.agent_ping_interval
            .min(self.agent_ping_timeout)
            .max(Duration::from_millis(10))
    }
}

/// Parses a Mesos rate such as `1/10mins`, `2/1hrs` or `1/20secs` into the interval between
/// two events.
pub fn parse_rate(s: &str) -> Result<Duration, String> {
    let bad = || format!("'{s}' is not a rate like 1/10mins, 2/1hrs or 1/30secs");
    let (n, per) = s.split_once('/').ok_or_else(bad)?;
    let n: u32 = n.trim().parse().map_err(|_| bad())?;
    let per = per.trim();
    let split = per
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(bad)?;
    let (amount, unit) = per.split_at(split);
    let amount: f64 = if amount.is_empty() {
        1.0
    } else {
        amount.parse().map_err(|_| bad())?
    };
    let unit_secs = match unit {
        "ms" | "msecs" => 0.001,
        "s" | "secs" | "sec" => 1.0,
        "mins" | "min" | "m" => 60.0,
        "hrs" | "hr" | "h" => 3600.0,
        "days" | "day" | "d" => 86400.0,
        _ => return Err(bad()),
    };
    if n == 0 || !amount.is_finite() || amount <= 0.0 {
        return Err(bad());
    }
    Duration::try_from_secs_f64(amount * unit_secs / f64::from(n)).map_err(|_| bad())
}

/// An effect for the shell to carry out.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send a scheduler event on a framework's stream.
    ToFramework { conn: ConnId, event: Event },
    /// End a framework's stream (teardown, failover to a new connection).
    CloseFramework { conn: ConnId },
    /// Send a message on an agent's stream.
    ToAgent {
        conn: ConnId,
        message: MasterToAgent,
    },
    /// End an agent's stream.
    CloseAgent { conn: ConnId },
    /// Make a registry change durable. All `Persist` outputs of a step come first, and the
    /// shell commits them (in one transaction) before it carries out any other output of the
    /// step or answers the request behind it.
    Persist(registry::Write),
}

/// A rejected call: the shell turns it into an HTTP status with `message` as the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// 400 Bad Request.
    #[error("{0}")]
    BadRequest(String),
    /// 403 Forbidden (not subscribed, torn down).
    #[error("{0}")]
    Forbidden(String),
}

/// A successful SUBSCRIBE: the shell answers 200 with `Mesos-Stream-Id: stream_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub framework_id: FrameworkId,
    pub stream_id: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Framework {
    pub(crate) id: FrameworkId,
    pub(crate) info: FrameworkInfo,
    pub(crate) roles: Vec<String>,
    pub(crate) conn: Option<ConnId>,
    pub(crate) stream_id: String,
    pub(crate) active: bool,
    pub(crate) recovered: bool,
    pub(crate) registered_time: f64,
    pub(crate) reregistered_time: Option<f64>,
    pub(crate) unregistered_time: Option<f64>,
    pub(crate) failover_deadline: Option<Duration>,
    /// `failover_deadline` in Unix seconds, for the registry.
    pub(crate) failover_deadline_wall: Option<f64>,
    pub(crate) next_heartbeat: Duration,
    pub(crate) offers: BTreeSet<OfferId>,
    pub(crate) tasks: BTreeSet<TaskId>,
    pub(crate) completed_tasks: VecDeque<Task>,
    /// Custom executors launched on agents: (agent, executor) -> info and resources.
    pub(crate) executors: BTreeMap<(AgentId, ExecutorId), (ExecutorInfo, Resources, String)>,
}

impl Framework {
    pub(crate) fn partition_aware(&self) -> bool {
        self.info.has_capability("PARTITION_AWARE")
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Agent {
    pub(crate) id: AgentId,
    pub(crate) hostname: String,
    pub(crate) port: u16,
    pub(crate) attributes: Vec<Attribute>,
    pub(crate) total: Resources,
    pub(crate) conn: Option<ConnId>,
    pub(crate) stream_id: String,
    pub(crate) registered_time: f64,
    pub(crate) reregistered_time: Option<f64>,
    pub(crate) version: String,
    /// While disconnected (or not yet re-registered after a master restart): when it is due
    /// to be marked unreachable.
    pub(crate) removal_deadline: Option<Duration>,
    pub(crate) next_ping: Duration,
    /// When the master last heard from it, once it has answered a ping on this registration
    /// (`None`: it does not answer pings, so only its stream ending counts).
    pub(crate) last_pong: Option<Duration>,
    /// Known from the registry, not re-registered since this master started.
    pub(crate) recovered: bool,
    pub(crate) offers: BTreeSet<OfferId>,
    pub(crate) tasks: BTreeSet<(FrameworkId, TaskId)>,
}

#[derive(Debug, Clone)]
pub(crate) struct Offer {
    pub(crate) id: OfferId,
    pub(crate) framework_id: FrameworkId,
    pub(crate) agent_id: AgentId,
    pub(crate) role: String,
    pub(crate) resources: Resources,
    /// When it is rescinded unanswered (monotonic), with `--offer-timeout`.
    pub(crate) expires: Option<Duration>,
}

#[derive(Debug, Clone)]
pub(crate) struct Task {
    pub(crate) info: TaskInfo,
    pub(crate) framework_id: FrameworkId,
    pub(crate) executor_id: Option<ExecutorId>,
    pub(crate) role: String,
    pub(crate) resources: Resources,
    pub(crate) state: TaskState,
    pub(crate) statuses: Vec<TaskStatus>,
    /// uuid of the latest terminal update, cleared once acknowledged.
    pub(crate) terminal_uuid: Option<String>,
    /// Resources already handed back to the allocator (on the first terminal update).
    pub(crate) released: bool,
    /// uuids of the task's latest acknowledged updates (not persisted): a copy of one of them
    /// that arrives late is stale and is not forwarded again.
    pub(crate) acked: std::collections::VecDeque<String>,
}

/// An agent marked unreachable, kept until it returns or `registry_max_agent_age` passes.
#[derive(Debug, Clone)]
pub(crate) struct UnreachableAgent {
    pub(crate) record: registry::AgentRecord,
    /// Unix seconds.
    pub(crate) since: f64,
    pub(crate) since_mono: Duration,
    pub(crate) kill_on_return: BTreeSet<(FrameworkId, TaskId)>,
}

/// An agent that may not come back with its tasks.
#[derive(Debug, Clone)]
pub(crate) struct GoneAgent {
    pub(crate) record: registry::AgentRecord,
    pub(crate) since: f64,
}

/// The master's whole state.
pub struct Master {
    pub(crate) config: Config,
    pub(crate) master_id: String,
    pub(crate) start_time: f64,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) allocator: Allocator,
    pub(crate) frameworks: BTreeMap<FrameworkId, Framework>,
    pub(crate) completed_frameworks: VecDeque<Framework>,
    /// Every framework removed, also those no longer in `completed_frameworks`.
    pub(crate) removed_frameworks: BTreeSet<FrameworkId>,
    pub(crate) agents: BTreeMap<AgentId, Agent>,
    pub(crate) unreachable_agents: BTreeMap<AgentId, UnreachableAgent>,
    pub(crate) gone_agents: BTreeMap<AgentId, GoneAgent>,
    /// Tasks of partition-aware frameworks on unreachable agents.
    pub(crate) unreachable_tasks: BTreeMap<(FrameworkId, TaskId), Task>,
    /// Overdue agents are not marked unreachable before this time (rate limit, or the master
    /// holding back because most agents are silent at once).
    pub(crate) removal_hold_until: Duration,
    /// Until this time, an agent ID the master does not know may be one that ran before a
    /// restart (only without a registry).
    pub(crate) recovering_until: Option<Duration>,
    pub(crate) dirty: registry::Dirty,
    /// Updates the master generated about tasks, each kept until its framework acknowledges
    /// it (at most one per task: the latest); see `outbox.rs`.
    pub(crate) outbox: BTreeMap<(FrameworkId, TaskId), outbox::PendingUpdate>,
    /// Orders `outbox` entries by when they were made (resends go out in this order).
    pub(crate) next_update_seq: u64,
    /// Draws the uuids of master-generated updates (apart from `rng`, so that stream and
    /// other IDs do not depend on how many updates were made).
    pub(crate) update_rng: ChaCha8Rng,
    pub(crate) offers: BTreeMap<OfferId, Offer>,
    pub(crate) tasks: BTreeMap<(FrameworkId, TaskId), Task>,
    pub(crate) next_framework: u64,
    pub(crate) next_agent: u64,
    pub(crate) next_offer: u64,
    pub(crate) next_allocation: Duration,
    pub(crate) allocation_pending: bool,
    pub(crate) outputs: Vec<Output>,
}

impl Master {
    /// A master with no agents or frameworks, started at `now`.
    pub fn new(config: Config, now: Now) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let master_id = random_uuid(&mut rng);
        let allocator = Allocator::new(rng.next_u64(), config.weights.clone());
        Master {
            master_id,
            start_time: now.wall_secs,
            rng,
            allocator,
            frameworks: BTreeMap::new(),
            completed_frameworks: VecDeque::new(),
            removed_frameworks: BTreeSet::new(),
            agents: BTreeMap::new(),
            unreachable_agents: BTreeMap::new(),
            gone_agents: BTreeMap::new(),
            unreachable_tasks: BTreeMap::new(),
            removal_hold_until: Duration::ZERO,
            recovering_until: Some(now.mono + config.agent_unreachable_after()),
            dirty: registry::Dirty::default(),
            outbox: BTreeMap::new(),
            next_update_seq: 0,
            update_rng: ChaCha8Rng::seed_from_u64(config.seed ^ UPDATE_RNG_SALT),
            offers: BTreeMap::new(),
            tasks: BTreeMap::new(),
            next_framework: 0,
            next_agent: 0,
            next_offer: 0,
            next_allocation: now.mono + config.allocation_interval,
            allocation_pending: false,
            outputs: Vec::new(),
            config,
        }
    }

    /// This master's ID.
    pub fn id(&self) -> &str {
        &self.master_id
    }

    /// `MasterInfo` as sent in SUBSCRIBED.
    pub fn master_info(&self) -> MasterInfo {
        let c = &self.config;
        MasterInfo {
            id: self.master_id.clone(),
            ip: mantle_api::mesos::pack_ipv4(c.ip),
            port: c.port,
            pid: format!("master@{}:{}", c.ip, c.port),
            hostname: c.hostname.clone(),
            version: MESOS_VERSION.to_string(),
            address: mantle_api::mesos::Address {
                hostname: Some(c.hostname.clone()),
                ip: Some(c.ip.to_string()),
                port: c.port,
            },
        }
    }

    /// Effects produced since the last call, in order: the registry writes first, then the
    /// rest (see `Output::Persist`).
    pub fn take_outputs(&mut self) -> Vec<Output> {
        let mut out: Vec<Output> = self
            .registry_writes()
            .into_iter()
            .map(Output::Persist)
            .collect();
        out.append(&mut self.outputs);
        out
    }

    /// The earliest time `tick` has work to do.
    pub fn next_deadline(&self) -> Duration {
        let mut d = self.next_allocation;
        if self.allocation_pending {
            return Duration::ZERO;
        }
        for f in self.frameworks.values() {
            if f.conn.is_some() {
                d = d.min(f.next_heartbeat);
            }
            if let Some(x) = f.failover_deadline {
                d = d.min(x);
            }
        }
        for a in self.agents.values() {
            if a.conn.is_some() {
                d = d.min(a.next_ping);
            }
            if let Some(x) = self.overdue_at(a) {
                d = d.min(x.max(self.removal_hold_until));
            }
        }
        if let Some(x) = self.next_update_retry() {
            d = d.min(x);
        }
        if let Some(x) = self.offers.values().filter_map(|o| o.expires).min() {
            d = d.min(x);
        }
        for u in self.unreachable_agents.values() {
            d = d.min(
                u.since_mono
                    .saturating_add(self.config.registry_max_agent_age),
            );
        }
        if let Some(x) = self.allocator.next_filter_expiry() {
            // A filter expiring matters only at the next batch allocation, not before.
            d = d.min(x.max(self.next_allocation));
        }
        d
    }

    /// Timers: heartbeats, agent pings, resends of unacknowledged master-generated updates,
    /// failover and removal deadlines, batch allocation.
    pub fn tick(&mut self, now: Now) {
        self.heartbeats(now);
        self.retry_master_updates(now);
        self.expire_frameworks(now);
        self.expire_agents(now);
        self.expire_offers(now);
        if self.allocation_pending || now.mono >= self.next_allocation {
            self.allocate(now);
        }
    }

    fn heartbeats(&mut self, now: Now) {
        let interval = self.config.heartbeat_interval;
        for f in self.frameworks.values_mut() {
            if let Some(conn) = f.conn {
                if now.mono >= f.next_heartbeat {
                    f.next_heartbeat = now.mono + interval;
                    self.outputs.push(Output::ToFramework {
                        conn,
                        event: Event::heartbeat(),
                    });
                }
            }
        }
        let ping = self.config.ping_every();
        for a in self.agents.values_mut() {
            if let Some(conn) = a.conn {
                if now.mono >= a.next_ping {
                    a.next_ping = now.mono + ping;
                    self.outputs.push(Output::ToAgent {
                        conn,
                        message: MasterToAgent::Ping,
                    });
                }
            }
        }
    }

    /// Rescinds offers left unanswered past `--offer-timeout`: an ACCEPT or DECLINE lost
    /// on the way (a failed POST) would otherwise hold those resources for ever, and the
    /// framework, which believes it used them, would wait for offers that never come (found
    /// by the simulator, seed 1859).
    fn expire_offers(&mut self, now: Now) {
        let due: Vec<OfferId> = self
            .offers
            .values()
            .filter(|o| o.expires.is_some_and(|e| now.mono >= e))
            .map(|o| o.id.clone())
            .collect();
        for id in due {
            tracing::info!(offer_id = %id, "rescinding an offer unanswered past --offer-timeout");
            self.remove_offer(&id, None, true);
        }
    }

    /// One batch allocation: turns the allocator's decisions into OFFERS events.
    fn allocate(&mut self, now: Now) {
        self.allocation_pending = false;
        self.next_allocation = now.mono + self.config.allocation_interval;
        let decisions = self.allocator.allocate(now.mono);
        let mut per_framework: BTreeMap<FrameworkId, Vec<mantle_api::mesos::Offer>> =
            BTreeMap::new();
        for d in decisions {
            let (Some(agent), Some(framework)) = (
                self.agents.get_mut(&d.agent_id),
                self.frameworks.get_mut(&d.framework_id),
            ) else {
                // The allocator only knows registered agents and frameworks; give it back.
                self.allocator
                    .recover(&d.framework_id, &d.role, &d.agent_id, &d.resources, None);
                continue;
            };
            self.next_offer += 1;
            let id = OfferId::new(format!("{}-O{}", self.master_id, self.next_offer));
            agent.offers.insert(id.clone());
            framework.offers.insert(id.clone());
            let executor_ids: Vec<ExecutorId> = framework
                .executors
                .keys()
                .filter(|(a, _)| *a == d.agent_id)
                .map(|(_, e)| e.clone())
                .collect();
            // Mesos shapes offers by capability: only MULTI_ROLE frameworks see
            // `allocation_info`; the others see the pre-1.2 `role: "*"` on each resource.
            let multi_role = framework.info.has_capability("MULTI_ROLE");
            let mut resources =
                mantle_api::resources_to_wire(&d.resources, multi_role.then_some(d.role.as_str()));
            if !multi_role {
                for r in &mut resources {
                    r.role = Some("*".into());
                }
            }
            let allocation_info = multi_role.then(|| mantle_api::mesos::AllocationInfo {
                role: Some(d.role.clone()),
            });
            let wire = mantle_api::mesos::Offer {
                id: id.clone(),
                framework_id: d.framework_id.clone(),
                agent_id: d.agent_id.clone(),
                hostname: agent.hostname.clone(),
                url: Some(mantle_api::mesos::Url {
                    scheme: "http".into(),
                    address: mantle_api::mesos::Address {
                        hostname: Some(agent.hostname.clone()),
                        ip: Some(agent.hostname.clone()),
                        port: agent.port,
                    },
                    path: Some("/slave(1)".into()),
                }),
                resources,
                attributes: mantle_api::attributes_to_wire(&agent.attributes),
                executor_ids,
                allocation_info,
            };
            per_framework
                .entry(d.framework_id.clone())
                .or_default()
                .push(wire);
            self.offers.insert(
                id.clone(),
                Offer {
                    id,
                    framework_id: d.framework_id,
                    agent_id: d.agent_id,
                    role: d.role,
                    resources: d.resources,
                    expires: self
                        .config
                        .offer_timeout
                        .map(|t| now.mono.saturating_add(t)),
                },
            );
        }
        for (framework_id, offers) in per_framework {
            self.send_event(&framework_id, Event::offers(offers));
        }
    }

    /// Sends an event to a framework if it is connected.
    pub(crate) fn send_event(&mut self, framework_id: &FrameworkId, event: Event) {
        if let Some(conn) = self.frameworks.get(framework_id).and_then(|f| f.conn) {
            self.outputs.push(Output::ToFramework { conn, event });
        }
    }

    /// Sends a message to an agent if it is connected.
    pub(crate) fn send_agent(&mut self, agent_id: &AgentId, message: MasterToAgent) {
        if let Some(conn) = self.agents.get(agent_id).and_then(|a| a.conn) {
            self.outputs.push(Output::ToAgent { conn, message });
        }
    }

    /// Removes an offer and gives its resources back, with an optional refusal filter.
    pub(crate) fn remove_offer(
        &mut self,
        id: &OfferId,
        refuse: Option<(Now, Duration)>,
        rescind: bool,
    ) {
        let Some(offer) = self.offers.remove(id) else {
            return;
        };
        if let Some(a) = self.agents.get_mut(&offer.agent_id) {
            a.offers.remove(id);
        }
        if let Some(f) = self.frameworks.get_mut(&offer.framework_id) {
            f.offers.remove(id);
        }
        self.allocator.recover(
            &offer.framework_id,
            &offer.role,
            &offer.agent_id,
            &offer.resources,
            refuse.map(|(now, d)| (now.mono, d)),
        );
        if rescind {
            self.send_event(&offer.framework_id, Event::rescind(offer.id));
        }
        self.allocation_pending = true;
    }

    pub(crate) fn new_stream_id(&mut self) -> String {
        random_uuid(&mut self.rng)
    }

    /// Read-only view for the state endpoints.
    pub fn view(&self) -> StateView<'_> {
        StateView { master: self }
    }
}

fn random_uuid(rng: &mut ChaCha8Rng) -> String {
    let mut b = [0u8; 16];
    rng.fill_bytes(&mut b);
    uuid::Builder::from_random_bytes(b).into_uuid().to_string()
}

/// Parses `refuse_seconds` into a duration: default 5 s, negative or NaN means no filter,
/// values above a year are capped (Mesos `Master::accept`/`decline`).
pub fn refuse_duration(filters: Option<&mantle_api::mesos::Filters>) -> Duration {
    let secs = filters.and_then(|f| f.refuse_seconds);
    match secs {
        None => DEFAULT_REFUSE,
        Some(s) if !s.is_finite() || s <= 0.0 => {
            if s.is_infinite() && s > 0.0 {
                MAX_REFUSE
            } else {
                Duration::ZERO
            }
        }
        Some(s) => Duration::try_from_secs_f64(s)
            .unwrap_or(MAX_REFUSE)
            .min(MAX_REFUSE),
    }
}

#[cfg(test)]
mod tests;
