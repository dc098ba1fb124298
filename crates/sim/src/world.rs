//! The simulated cluster: event queue, clock, network, nodes, simulated executors, faults, and
//! the glue that turns one core's outputs into another core's inputs the way the shells in
//! `mantle-server` do (`master.rs`, `agent.rs`, `marathon.rs`, `executor.rs`).
//!
//! Network model. Master and agent talk over one stream per registration (master to agent)
//! plus POSTs (agent to master); the scheduler over one SUBSCRIBE stream (master to
//! scheduler) plus POSTed calls. Stream data is delivered in order; while a link is
//! partitioned it waits (TCP retransmits) until the partition heals, unless the receiver
//! gives up on the silent stream first (the agent after 20 s, the scheduler after three
//! heartbeats), which closes it. A POST is delayed, and may be dropped (the shells drop a
//! failed POST), duplicated or overtake an earlier one; during a partition it fails. A
//! connection reset closes both ends; each end learns of it after a delay. A crashed node
//! loses every connection; the far ends learn of it like of a reset.

use crate::rng::Rng;
use crate::workload::Intent;
use crate::{Failure, Options, Summary};
use base64::Engine;
use mantle_agent::{Agent, ExecutorKind};
use mantle_api::executor as exec;
use mantle_api::internal::{AgentEnvelope, MasterToAgent, RegisterAgent};
use mantle_api::scheduler::{Call, CallType, Event, EventType};
use mantle_marathon::core::{Core, Effect, Snapshot, Write};
use mantle_master::Master;
use mantle_model::{Now, Resources, TaskId, TaskState};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

/// Simulated milliseconds.
pub(crate) type Ms = u64;
pub(crate) type ConnId = u64;

const AGENT_SILENCE: Ms = 20_000;
const CONNECT_TIMEOUT: Ms = 5_000;
const SCHEDULER_TIMER: Ms = 1_000;
const RECONCILE_EVERY: u64 = 60;
const ACK_WAIT: Ms = 5_000;
/// How often an executor whose agent is away tries to subscribe again.
const EXEC_RESUBSCRIBE: Ms = 1_000;
const CONVERGE_POLL: Ms = 5_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Node {
    Master,
    Agent(usize),
    Marathon,
}

#[derive(Debug)]
enum Payload {
    Register {
        agent: usize,
        attempt: u64,
        reg: Box<RegisterAgent>,
    },
    AgentMsg {
        envelope: Box<AgentEnvelope>,
    },
    Subscribe {
        attempt: u64,
        call: Box<Call>,
    },
    SchedCall {
        stream_id: String,
        call: Box<Call>,
    },
    ToAgent {
        conn: ConnId,
        message: Box<MasterToAgent>,
    },
    ToFramework {
        conn: ConnId,
        event: Box<Event>,
    },
    /// A connection end closed (FIN or RST); `to_master` says which end hears of it.
    Closed {
        conn: ConnId,
        to_master: bool,
    },
}

#[derive(Debug)]
enum Ev {
    Net {
        payload: Payload,
        master_inc: u32,
    },
    MasterTick {
        at: Ms,
    },
    AgentTick {
        agent: usize,
        at: Ms,
    },
    MarathonTimer {
        inc: u32,
    },
    AgentConnect {
        agent: usize,
        attempt: u64,
    },
    MarathonConnect {
        attempt: u64,
    },
    AgentSilence {
        agent: usize,
        conn: ConnId,
    },
    MarathonSilence {
        conn: ConnId,
    },
    /// Executors belong to their container, not to an agent incarnation: with
    /// checkpointing they outlive their agent and subscribe to the next one.
    ExecSubscribe {
        agent: usize,
        container: String,
    },
    ExecEvent {
        agent: usize,
        inc: u32,
        conn: u64,
        event: Box<exec::Event>,
    },
    ExecUpdate {
        agent: usize,
        container: String,
        task: TaskId,
        state: TaskState,
        natural: bool,
    },
    ExecExit {
        agent: usize,
        container: String,
        code: i32,
    },
    Workload,
    Fault,
    Restart(Node),
    Heal(Node),
    ConvergeCheck,
}

pub(crate) struct Conn {
    pub(crate) peer: Node,
    master_inc: u32,
    pub(crate) master_open: bool,
    pub(crate) peer_open: bool,
    attempt: u64,
    stream_id: Option<String>,
    fifo_to_peer: Ms,
    fifo_to_master: Ms,
}

pub(crate) struct MasterNode {
    pub(crate) core: Option<Master>,
    /// The master's durable registry: every `Persist` output applied when the step that
    /// produced it ends (before its other outputs act), as `master_store.rs` commits them.
    registry: mantle_master::registry::Snapshot,
    inc: u32,
    tick_at: Option<Ms>,
}

pub(crate) struct SimTask {
    pub(crate) state: TaskState,
    killing: bool,
    pub(crate) resources: Resources,
}

pub(crate) struct SimExec {
    framework_id: mantle_model::FrameworkId,
    executor_id: mantle_model::ExecutorId,
    conn: Option<u64>,
    pub(crate) tasks: BTreeMap<TaskId, SimTask>,
    unacked: BTreeSet<String>,
    pub(crate) alive: bool,
    shutdown: bool,
    exit_scheduled: bool,
    /// Updates made while the executor had no agent to take them (it was restarting), sent
    /// in order once it has subscribed again (`server/src/executor.rs`'s outbox).
    outbox: std::collections::VecDeque<(TaskId, TaskState)>,
}

impl SimExec {
    fn live_tasks(&self) -> usize {
        self.tasks
            .values()
            .filter(|t| !t.state.is_terminal())
            .count()
    }
}

pub(crate) struct AgentNode {
    pub(crate) core: Option<Agent>,
    pub(crate) inc: u32,
    pub(crate) conn: Option<ConnId>,
    attempt: u64,
    backoff: Ms,
    last_heard: Ms,
    tick_at: Option<Ms>,
    pub(crate) execs: BTreeMap<String, SimExec>,
    next_exec_conn: u64,
    post_fifo: Ms,
    pub(crate) total: Resources,
    /// The agent's checkpoint as its shell keeps it: a whole checkpoint with the journal
    /// records since replayed onto it (`server/src/agent_checkpoint.rs`), and the structure
    /// of that whole checkpoint. A restarted agent recovers from it.
    durable: Option<mantle_agent::Checkpoint>,
    durable_structure: Option<mantle_agent::Checkpoint>,
    /// `Agent::changes` at the last write: no call since, nothing to write.
    durable_changes: Option<u64>,
}

/// The service scheduler's durable records, as JSON, as `marathon_store.rs` keeps them.
#[derive(Default)]
pub(crate) struct Store {
    framework_id: Option<String>,
    apps: BTreeMap<String, String>,
    versions: BTreeMap<String, String>,
    instances: BTreeMap<String, String>,
    deployments: BTreeMap<String, String>,
}

fn enc<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

impl Store {
    fn apply(&mut self, w: &Write) {
        match w {
            Write::FrameworkId(id) => self.framework_id = Some(id.clone()),
            Write::App(a) => {
                self.apps.insert(a.id.clone(), enc(a));
            }
            Write::DeleteApp(id) => {
                self.apps.remove(id);
            }
            Write::Version(a) => {
                self.versions
                    .insert(format!("{}\u{0}{}", a.id, a.version), enc(a));
            }
            Write::DeleteVersions(id) => {
                let lo = format!("{id}\u{0}");
                let hi = format!("{id}\u{1}");
                let keys: Vec<String> = self
                    .versions
                    .range(lo..hi)
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in keys {
                    self.versions.remove(&k);
                }
            }
            Write::Instance(i) => {
                self.instances.insert(i.task_id.clone(), enc(i));
            }
            Write::DeleteInstance(id) => {
                self.instances.remove(id);
            }
            Write::Deployment(d) => {
                self.deployments.insert(d.id.clone(), enc(d));
            }
            Write::DeleteDeployment(id) => {
                self.deployments.remove(id);
            }
        }
    }

    fn load(&self) -> Result<Snapshot, String> {
        fn all<T: serde::de::DeserializeOwned>(
            m: &BTreeMap<String, String>,
        ) -> Result<Vec<T>, String> {
            m.iter()
                .map(|(k, v)| {
                    serde_json::from_str(v).map_err(|e| format!("record {k} does not load: {e}"))
                })
                .collect()
        }
        Ok(Snapshot {
            framework_id: self.framework_id.clone(),
            apps: all(&self.apps)?,
            versions: all(&self.versions)?,
            instances: all(&self.instances)?,
            deployments: all(&self.deployments)?,
        })
    }
}

pub(crate) struct MarathonNode {
    pub(crate) core: Option<Core>,
    pub(crate) inc: u32,
    pub(crate) conn: Option<ConnId>,
    stream_id: Option<String>,
    attempt: u64,
    backoff: Ms,
    last_heard: Ms,
    silence: Ms,
    timer_count: u64,
    post_fifo: Ms,
    store: Store,
}

/// What the checkers know of one task.
#[derive(Default)]
pub(crate) struct Track {
    pub(crate) app: String,
    pub(crate) agent: usize,
    /// Updates the executor produced (uuid, state), in order.
    pub(crate) produced: Vec<(String, TaskState)>,
    pub(crate) max_seen: Option<usize>,
    pub(crate) seen_terminal: Option<TaskState>,
}

pub(crate) struct World {
    pub(crate) seed: u64,
    pub(crate) opts: Options,
    pub(crate) rng: Rng,
    pub(crate) now: Ms,
    queue: BTreeMap<(Ms, u64), Ev>,
    seq: u64,
    pub(crate) step: u64,
    pub(crate) quiet: bool,
    quiet_since: Ms,
    pub(crate) master: MasterNode,
    pub(crate) agents: Vec<AgentNode>,
    pub(crate) marathon: MarathonNode,
    pub(crate) conns: BTreeMap<ConnId, Conn>,
    next_conn: ConnId,
    partitions: BTreeMap<Node, Ms>,
    // checkers' state
    pub(crate) tracks: BTreeMap<String, Track>,
    pub(crate) seen_uuids: BTreeSet<String>,
    pub(crate) sched_kills: BTreeSet<String>,
    pub(crate) intent: BTreeMap<String, Intent>,
    pub(crate) bound: BTreeMap<String, (u32, f64)>,
    pub(crate) violation: Option<(&'static str, String)>,
    // trace
    hash: u64,
    tail: VecDeque<String>,
    // counters
    pub(crate) tasks_launched: u64,
    pub(crate) api_calls: u64,
    pub(crate) app_seq: u64,
    faults: u64,
    crashes: u64,
}

pub(crate) fn now_of(ms: Ms) -> Now {
    Now::at(Duration::from_millis(ms))
}

fn ms_of(d: Duration) -> Ms {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn agent_config(i: usize, seed: u64) -> mantle_agent::Config {
    mantle_agent::Config {
        hostname: format!("10.0.0.{}", i + 1),
        port: 5051,
        resources: Resources::parse("cpus:4;mem:4096;disk:4096;ports:[31000-31099]")
            .unwrap_or_default(),
        attributes: Vec::new(),
        sandbox_root: "/sim/slaves".into(),
        status_update_retry_min: mantle_agent::STATUS_UPDATE_RETRY_MIN,
        seed,
    }
}

fn marathon_config(seed: u64) -> mantle_marathon::core::Config {
    mantle_marathon::core::Config {
        framework_name: "marathon".into(),
        role: "*".into(),
        user: "root".into(),
        hostname: "10.0.0.100".into(),
        webui_url: None,
        strategy: mantle_marathon::placement::Strategy::Spread,
        seed,
        // The world reconciles every RECONCILE_EVERY timers itself, as the shell once did.
        reconciliation_interval_ms: 0,
        task_launch_timeout_ms: 300_000,
    }
}

impl World {
    pub(crate) fn new(seed: u64, opts: Options) -> World {
        let mut rng = Rng::new(seed);
        let n = opts
            .agents
            .unwrap_or_else(|| rng.range(2, 5) as usize)
            .max(1);
        let master_seed = rng.fork();
        let master = Master::new(
            mantle_master::Config::new(std::net::Ipv4Addr::new(10, 0, 0, 254), 5050, master_seed),
            now_of(0),
        );
        let agents = (0..n)
            .map(|i| {
                let cfg = agent_config(i, rng.fork());
                let total = cfg.resources.clone();
                AgentNode {
                    core: Some(Agent::new(cfg, now_of(0))),
                    inc: 0,
                    conn: None,
                    attempt: 0,
                    backoff: 200,
                    last_heard: 0,
                    tick_at: None,
                    execs: BTreeMap::new(),
                    next_exec_conn: 1,
                    post_fifo: 0,
                    total,
                    durable: None,
                    durable_structure: None,
                    durable_changes: None,
                }
            })
            .collect();
        let marathon = MarathonNode {
            core: Some(Core::new(marathon_config(rng.fork()), Snapshot::default())),
            inc: 0,
            conn: None,
            stream_id: None,
            attempt: 0,
            backoff: 200,
            last_heard: 0,
            silence: 60_000,
            timer_count: 0,
            post_fifo: 0,
            store: Store::default(),
        };
        let tail_cap = opts.tail;
        let mut w = World {
            seed,
            opts,
            rng,
            now: 0,
            queue: BTreeMap::new(),
            seq: 0,
            step: 0,
            quiet: false,
            quiet_since: 0,
            master: MasterNode {
                core: Some(master),
                registry: Default::default(),
                inc: 0,
                tick_at: None,
            },
            agents,
            marathon,
            conns: BTreeMap::new(),
            next_conn: 1,
            partitions: BTreeMap::new(),
            tracks: BTreeMap::new(),
            seen_uuids: BTreeSet::new(),
            sched_kills: BTreeSet::new(),
            intent: BTreeMap::new(),
            bound: BTreeMap::new(),
            violation: None,
            hash: 0xcbf2_9ce4_8422_2325,
            tail: VecDeque::with_capacity(tail_cap),
            tasks_launched: 0,
            api_calls: 0,
            app_seq: 0,
            faults: 0,
            crashes: 0,
        };
        for i in 0..n {
            let d = w.rng.range(0, 500);
            w.at(
                d,
                Ev::AgentConnect {
                    agent: i,
                    attempt: 0,
                },
            );
        }
        let d = w.rng.range(0, 500);
        w.at(d, Ev::MarathonConnect { attempt: 0 });
        w.at(SCHEDULER_TIMER, Ev::MarathonTimer { inc: 0 });
        w.at(1_000, Ev::Workload);
        if w.opts.faults {
            w.at(2_000, Ev::Fault);
        }
        w
    }

    // ----- bookkeeping -----

    fn at(&mut self, delay: Ms, ev: Ev) {
        self.seq += 1;
        self.queue.insert((self.now + delay, self.seq), ev);
    }

    pub(crate) fn trace(&mut self, line: String) {
        for b in line.as_bytes() {
            self.hash ^= u64::from(*b);
            self.hash = self.hash.wrapping_mul(0x0100_0000_01b3);
        }
        self.hash ^= 0xff;
        self.hash = self.hash.wrapping_mul(0x0100_0000_01b3);
        if self.opts.tail > 0 {
            if self.tail.len() == self.opts.tail {
                self.tail.pop_front();
            }
            self.tail
                .push_back(format!("#{} t={} {line}", self.step, self.now));
        }
    }

    pub(crate) fn violate(&mut self, invariant: &'static str, message: String) {
        if self.violation.is_none() {
            self.violation = Some((invariant, message));
        }
    }

    fn failure(&self, invariant: &'static str, message: String) -> Failure {
        Failure {
            seed: self.seed,
            step: self.step,
            sim_ms: self.now,
            invariant,
            message,
            tail: self.tail.iter().cloned().collect(),
            trace_hash: self.hash,
            steps_option: self.opts.steps,
        }
    }

    fn partitioned(&self, n: Node) -> Option<Ms> {
        self.partitions.get(&n).copied().filter(|t| *t > self.now)
    }

    fn latency(&mut self) -> Ms {
        if !self.quiet && self.opts.faults && self.rng.chance(0.05) {
            self.rng.range(100, 3_000)
        } else {
            self.rng.range(1, 20)
        }
    }

    /// Sends a POST from `from` to the master. It fails during a partition, and may be
    /// dropped, duplicated or reordered.
    fn post(&mut self, from: Node, payload: Payload) {
        let faulty = self.opts.faults && !self.quiet;
        if self.partitioned(from).is_some() || (faulty && self.rng.chance(0.02)) {
            self.trace(format!("drop POST {from:?}->master {}", short(&payload)));
            return;
        }
        let lat = self.latency();
        // The service scheduler's shell sends its calls one at a time, each after the last
        // was answered (`call_sender`), so they cannot overtake each other; an agent's can.
        let reorder = faulty && self.rng.chance(0.03) && from != Node::Marathon;
        let fifo = match from {
            Node::Agent(i) => &mut self.agents[i].post_fifo,
            _ => &mut self.marathon.post_fifo,
        };
        let mut when = self.now + lat;
        if !reorder {
            when = when.max(*fifo);
            *fifo = when;
        }
        let dup = faulty && self.rng.chance(0.02);
        let master_inc = self.master.inc;
        if dup {
            if let Some(copy) = dup_payload(&payload) {
                self.seq += 1;
                self.queue.insert(
                    (when + 1, self.seq),
                    Ev::Net {
                        payload: copy,
                        master_inc,
                    },
                );
            }
        }
        self.seq += 1;
        self.queue.insert(
            (when, self.seq),
            Ev::Net {
                payload,
                master_inc,
            },
        );
    }

    /// Sends stream data on `conn`, in order; held back while the link is partitioned.
    fn stream(&mut self, conn: ConnId, to_master: bool, payload: Payload) {
        let lat = self.latency();
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let heal = self.partitioned(c.peer).unwrap_or(0);
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let fifo = if to_master {
            &mut c.fifo_to_master
        } else {
            &mut c.fifo_to_peer
        };
        let when = (self.now + lat).max(*fifo).max(heal + lat);
        *fifo = when;
        let master_inc = c.master_inc;
        self.seq += 1;
        self.queue.insert(
            (when, self.seq),
            Ev::Net {
                payload,
                master_inc,
            },
        );
    }

    /// Closes the master's end of `conn` and tells the peer.
    fn close_master_end(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            if c.master_open {
                c.master_open = false;
                self.stream(
                    conn,
                    false,
                    Payload::Closed {
                        conn,
                        to_master: false,
                    },
                );
            }
        }
    }

    /// Closes the peer's end of `conn` and tells the master.
    fn close_peer_end(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            if c.peer_open {
                c.peer_open = false;
                self.stream(
                    conn,
                    true,
                    Payload::Closed {
                        conn,
                        to_master: true,
                    },
                );
            }
        }
    }

    // ----- the run -----

    pub(crate) fn run(mut self) -> Result<Summary, Failure> {
        let mut converged_at = None;
        while let Some(((t, _), ev)) = self.queue.pop_first() {
            self.now = t;
            self.step += 1;
            if !self.quiet && self.step > self.opts.steps {
                self.begin_quiet();
            }
            if let Ev::ConvergeCheck = ev {
                match self.converged() {
                    Ok(()) => {
                        converged_at = Some(self.now);
                        break;
                    }
                    Err(why) if self.now - self.quiet_since > self.opts.converge_within_ms => {
                        return Err(self.failure(
                            "convergence",
                            format!(
                                "not converged {} ms after faults stopped: {why}",
                                self.now - self.quiet_since
                            ),
                        ));
                    }
                    Err(_) => self.at(CONVERGE_POLL, Ev::ConvergeCheck),
                }
                continue;
            }
            self.handle(ev);
            self.settle();
            self.check_step();
            if let Some((inv, msg)) = self.violation.take() {
                return Err(self.failure(inv, msg));
            }
        }
        let Some(at) = converged_at else {
            return Err(self.failure("convergence", "the event queue ran dry".into()));
        };
        if let Err(msg) = self.check_end() {
            return Err(self.failure("no-lost-update", msg));
        }
        Ok(Summary {
            seed: self.seed,
            steps: self.step,
            sim_ms: self.now,
            trace_hash: self.hash,
            agents: self.agents.len(),
            tasks_launched: self.tasks_launched,
            api_calls: self.api_calls,
            faults: self.faults,
            crashes: self.crashes,
            converged_after_ms: at - self.quiet_since,
        })
    }

    /// Faults and workload stop; partitions heal; crashed nodes come back.
    fn begin_quiet(&mut self) {
        self.quiet = true;
        self.quiet_since = self.now;
        self.trace("quiet: faults stop".into());
        self.partitions.clear();
        if self.master.core.is_none() {
            self.restart(Node::Master);
        }
        if self.marathon.core.is_none() {
            self.restart(Node::Marathon);
        }
        for i in 0..self.agents.len() {
            if self.agents[i].core.is_none() {
                self.restart(Node::Agent(i));
            }
        }
        self.at(CONVERGE_POLL, Ev::ConvergeCheck);
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Net {
                payload,
                master_inc,
            } => self.deliver(payload, master_inc),
            Ev::MasterTick { at } => {
                if self.master.tick_at == Some(at) {
                    self.master.tick_at = None;
                    self.trace("master tick".into());
                    let now = now_of(self.now);
                    if let Some(m) = self.master.core.as_mut() {
                        m.tick(now);
                    }
                }
            }
            Ev::AgentTick { agent, at } => {
                if self.agents[agent].tick_at == Some(at) {
                    self.agents[agent].tick_at = None;
                    self.trace(format!("agent{agent} tick"));
                    let now = now_of(self.now);
                    if let Some(a) = self.agents[agent].core.as_mut() {
                        a.tick(now);
                    }
                }
            }
            Ev::MarathonTimer { inc } => self.marathon_timer(inc),
            Ev::AgentConnect { agent, attempt } => self.agent_connect(agent, attempt),
            Ev::MarathonConnect { attempt } => self.marathon_connect(attempt),
            Ev::AgentSilence { agent, conn } => {
                let a = &self.agents[agent];
                if a.conn == Some(conn) && self.now >= a.last_heard + AGENT_SILENCE {
                    self.trace(format!(
                        "agent{agent} hears nothing on conn {conn}: reconnects"
                    ));
                    self.agent_lost_master(agent);
                }
            }
            Ev::MarathonSilence { conn } => {
                let m = &self.marathon;
                if m.conn == Some(conn) && self.now >= m.last_heard + m.silence {
                    self.trace(format!(
                        "marathon hears nothing on conn {conn}: re-subscribes"
                    ));
                    self.marathon_lost_master();
                }
            }
            Ev::ExecSubscribe { agent, container } => self.exec_subscribe(agent, &container),
            Ev::ExecEvent {
                agent,
                inc,
                conn,
                event,
            } => self.exec_event(agent, inc, conn, *event),
            Ev::ExecUpdate {
                agent,
                container,
                task,
                state,
                natural,
            } => {
                if natural && self.quiet {
                    return;
                }
                self.exec_update(agent, &container, task, state)
            }
            Ev::ExecExit {
                agent,
                container,
                code,
            } => self.exec_exit(agent, &container, code),
            Ev::Workload => {
                if !self.quiet {
                    self.workload();
                    let d = self.rng.range(200, 15_000);
                    self.at(d, Ev::Workload);
                }
            }
            Ev::Fault => {
                if !self.quiet {
                    self.fault();
                    let d = self.rng.range(200, 10_000);
                    self.at(d, Ev::Fault);
                }
            }
            Ev::Restart(node) => self.restart(node),
            Ev::Heal(node) => {
                if self.partitions.get(&node).is_some_and(|t| *t <= self.now) {
                    self.partitions.remove(&node);
                    self.trace(format!("partition master<->{node:?} heals"));
                }
            }
            Ev::ConvergeCheck => {}
        }
    }

    // ----- network delivery -----

    fn deliver(&mut self, payload: Payload, master_inc: u32) {
        let now = now_of(self.now);
        match payload {
            Payload::Register {
                agent,
                attempt,
                reg,
            } => {
                if !self.master_reachable(master_inc) {
                    return;
                }
                let conn = self.next_conn;
                self.next_conn += 1;
                let inc = self.master.inc;
                let Some(m) = self.master.core.as_mut() else {
                    return;
                };
                match m.agent_register(now, conn, *reg) {
                    Ok((id, _)) => {
                        self.trace(format!(
                            "master registers agent{agent} as {id} on conn {conn}"
                        ));
                        self.conns.insert(
                            conn,
                            Conn {
                                peer: Node::Agent(agent),
                                master_inc: inc,
                                master_open: true,
                                peer_open: true,
                                attempt,
                                stream_id: None,
                                fifo_to_peer: 0,
                                fifo_to_master: 0,
                            },
                        );
                    }
                    Err(e) => self.trace(format!("master refuses agent{agent}: {e}")),
                }
            }
            Payload::AgentMsg { envelope } => {
                if !self.master_reachable(master_inc) {
                    return;
                }
                let line = format!(
                    "master <- {} {}",
                    envelope.agent_id,
                    agent_msg_short(&envelope.message)
                );
                self.trace(line);
                if let Some(m) = self.master.core.as_mut() {
                    if let Err(e) = m.agent_message(now, *envelope) {
                        self.trace(format!("  refused: {e}"));
                    }
                }
            }
            Payload::Subscribe { attempt, call } => {
                if !self.master_reachable(master_inc) {
                    return;
                }
                let conn = self.next_conn;
                self.next_conn += 1;
                let inc = self.master.inc;
                let Some(m) = self.master.core.as_mut() else {
                    return;
                };
                let call = *call;
                let Some(sub) = call.subscribe else { return };
                match m.subscribe(now, conn, call.framework_id, sub) {
                    Ok(s) => {
                        self.trace(format!(
                            "master subscribes {} on conn {conn}",
                            s.framework_id
                        ));
                        self.conns.insert(
                            conn,
                            Conn {
                                peer: Node::Marathon,
                                master_inc: inc,
                                master_open: true,
                                peer_open: true,
                                attempt,
                                stream_id: Some(s.stream_id),
                                fifo_to_peer: 0,
                                fifo_to_master: 0,
                            },
                        );
                    }
                    Err(e) => self.trace(format!("master refuses SUBSCRIBE: {e}")),
                }
            }
            Payload::SchedCall { stream_id, call } => {
                if !self.master_reachable(master_inc) {
                    return;
                }
                self.trace(format!("master <- marathon {}", call_short(&call)));
                if let Some(m) = self.master.core.as_mut() {
                    if let Err(e) = m.call(now, Some(&stream_id), *call) {
                        self.trace(format!("  refused: {e}"));
                    }
                }
            }
            Payload::ToAgent { conn, message } => self.agent_from_master(conn, *message),
            Payload::ToFramework { conn, event } => self.marathon_from_master(conn, *event),
            Payload::Closed { conn, to_master } => {
                let Some(c) = self.conns.get(&conn) else {
                    return;
                };
                let peer = c.peer;
                if to_master {
                    if !(c.master_open && c.master_inc == self.master.inc) {
                        return;
                    }
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.master_open = false;
                    }
                    self.trace(format!("master: conn {conn} to {peer:?} closed"));
                    if let Some(m) = self.master.core.as_mut() {
                        match peer {
                            Node::Marathon => m.framework_disconnected(now, conn),
                            _ => m.agent_disconnected(now, conn),
                        }
                    }
                } else {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.peer_open = false;
                    }
                    match peer {
                        Node::Agent(i) if self.agents[i].conn == Some(conn) => {
                            self.trace(format!("agent{i}: master closed conn {conn}"));
                            self.agent_lost_master(i);
                        }
                        Node::Marathon if self.marathon.conn == Some(conn) => {
                            self.trace(format!("marathon: master closed conn {conn}"));
                            self.marathon_lost_master();
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    fn master_reachable(&self, sent_to_inc: u32) -> bool {
        self.master.core.is_some() && self.master.inc == sent_to_inc
    }

    // ----- agents and their master link (server/src/agent.rs) -----

    fn agent_connect(&mut self, i: usize, attempt: u64) {
        let a = &mut self.agents[i];
        if a.core.is_none() || a.conn.is_some() || attempt != a.attempt {
            return;
        }
        a.attempt += 1;
        let attempt = a.attempt;
        let Some(reg) = a.core.as_ref().map(Agent::registration) else {
            return;
        };
        self.trace(format!(
            "agent{i} registers (attempt {attempt}, id {:?})",
            reg.agent_id.as_ref().map(|x| x.to_string())
        ));
        self.post(
            Node::Agent(i),
            Payload::Register {
                agent: i,
                attempt,
                reg: Box::new(reg),
            },
        );
        // Nothing back in time: try again.
        let backoff = self.agents[i].backoff;
        self.agents[i].backoff = (backoff * 2).min(5_000);
        self.at(
            CONNECT_TIMEOUT + backoff,
            Ev::AgentConnect { agent: i, attempt },
        );
    }

    fn agent_from_master(&mut self, conn: ConnId, message: MasterToAgent) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let Node::Agent(i) = c.peer else { return };
        if !c.peer_open {
            return;
        }
        let attempt = c.attempt;
        let a = &mut self.agents[i];
        if a.core.is_none() {
            // A crashed agent: the kernel resets the connection.
            self.close_peer_end(conn);
            return;
        }
        if a.conn != Some(conn) {
            if a.conn.is_none() && a.attempt == attempt {
                a.conn = Some(conn);
                a.backoff = 200;
            } else {
                // An answer to an attempt the agent gave up on: it hangs up.
                self.close_peer_end(conn);
                return;
            }
        }
        a.last_heard = self.now;
        self.at(AGENT_SILENCE, Ev::AgentSilence { agent: i, conn });
        if !matches!(message, MasterToAgent::Ping) {
            self.trace(format!("agent{i} <- {}", master_msg_short(&message)));
        }
        let now = now_of(self.now);
        if let Some(core) = self.agents[i].core.as_mut() {
            core.from_master(now, message);
        }
    }

    fn agent_lost_master(&mut self, i: usize) {
        let a = &mut self.agents[i];
        let Some(conn) = a.conn.take() else { return };
        if let Some(core) = a.core.as_mut() {
            core.master_disconnected();
        }
        let backoff = a.backoff;
        let attempt = a.attempt;
        self.close_peer_end(conn);
        self.at(backoff, Ev::AgentConnect { agent: i, attempt });
    }

    // ----- the service scheduler and its master link (server/src/marathon.rs) -----

    fn marathon_connect(&mut self, attempt: u64) {
        let m = &mut self.marathon;
        if m.core.is_none() || m.conn.is_some() || attempt != m.attempt {
            return;
        }
        m.attempt += 1;
        let attempt = m.attempt;
        let Some(call) = m.core.as_ref().map(Core::subscribe_call) else {
            return;
        };
        self.trace(format!("marathon subscribes (attempt {attempt})"));
        self.post(
            Node::Marathon,
            Payload::Subscribe {
                attempt,
                call: Box::new(call),
            },
        );
        let backoff = self.marathon.backoff;
        self.marathon.backoff = (backoff * 2).min(3_000);
        self.at(
            CONNECT_TIMEOUT * 2 + backoff,
            Ev::MarathonConnect { attempt },
        );
    }

    fn marathon_from_master(&mut self, conn: ConnId, event: Event) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if !c.peer_open {
            return;
        }
        let attempt = c.attempt;
        let stream_id = c.stream_id.clone();
        let m = &mut self.marathon;
        if m.core.is_none() {
            // Nobody listens (it crashed while its SUBSCRIBE was on the way): the kernel
            // resets the connection, and the master hears of it.
            self.close_peer_end(conn);
            return;
        }
        if m.conn != Some(conn) {
            if m.conn.is_none() && m.attempt == attempt {
                m.conn = Some(conn);
                m.stream_id = stream_id;
                m.backoff = 200;
            } else {
                self.close_peer_end(conn);
                return;
            }
        }
        m.last_heard = self.now;
        if let Some(s) = &event.subscribed {
            m.silence = ((s.heartbeat_interval_seconds * 3.0).clamp(5.0, 300.0) * 1000.0) as Ms;
        }
        let silence = m.silence;
        self.at(silence, Ev::MarathonSilence { conn });
        if event.kind != EventType::Heartbeat {
            self.trace(format!("marathon <- {}", event_short(&event)));
        }
        if event.kind == EventType::Update {
            if let Some(u) = &event.update {
                self.check_update_seen(&u.status);
            }
        }
        let now = now_of(self.now);
        if let Some(core) = self.marathon.core.as_mut() {
            core.on_event(event, now);
        }
    }

    fn marathon_lost_master(&mut self) {
        let m = &mut self.marathon;
        let Some(conn) = m.conn.take() else { return };
        m.stream_id = None;
        if let Some(core) = m.core.as_mut() {
            core.disconnected();
        }
        let backoff = m.backoff;
        let attempt = m.attempt;
        self.close_peer_end(conn);
        self.at(backoff, Ev::MarathonConnect { attempt });
    }

    fn marathon_timer(&mut self, inc: u32) {
        if inc != self.marathon.inc || self.marathon.core.is_none() {
            return;
        }
        self.marathon.timer_count += 1;
        let now = now_of(self.now);
        let reconcile = self.marathon.timer_count % RECONCILE_EVERY == 0;
        if let Some(core) = self.marathon.core.as_mut() {
            if reconcile {
                if core.connected() {
                    core.reconcile_all();
                }
            } else {
                core.tick(now);
            }
        }
        self.at(SCHEDULER_TIMER, Ev::MarathonTimer { inc });
    }

    // ----- simulated executors (server/src/executor.rs) -----

    fn exec_subscribe(&mut self, i: usize, container: &str) {
        let a = &mut self.agents[i];
        let Some(e) = a.execs.get(container) else {
            return;
        };
        if !e.alive || e.conn.is_some() {
            return;
        }
        if a.core.is_none() {
            // The agent is restarting: the executor tries again every second.
            self.at(
                EXEC_RESUBSCRIBE,
                Ev::ExecSubscribe {
                    agent: i,
                    container: container.to_string(),
                },
            );
            return;
        }
        // The tasks it was given, as a real executor names them when it subscribes again.
        let unacknowledged_tasks = e
            .tasks
            .keys()
            .filter_map(|id| {
                serde_json::from_value(serde_json::json!({"name": id.as_str(),
                    "task_id": {"value": id.as_str()}, "agent_id": {"value": ""}}))
                .ok()
            })
            .collect();
        let call = exec::Call {
            executor_id: e.executor_id.clone(),
            framework_id: e.framework_id.clone(),
            kind: exec::CallType::Subscribe,
            subscribe: Some(exec::Subscribe {
                unacknowledged_tasks,
                unacknowledged_updates: Vec::new(),
            }),
            update: None,
            message: None,
        };
        let conn = a.next_exec_conn;
        a.next_exec_conn += 1;
        let now = now_of(self.now);
        let Some(core) = a.core.as_mut() else { return };
        match core.executor_subscribe(now, conn, &call) {
            Ok(_) => {
                if let Some(e) = a.execs.get_mut(container) {
                    e.conn = Some(conn);
                }
                self.trace(format!("agent{i} executor {} subscribed", call.executor_id));
                // What it could not send while its agent was away goes now, in order.
                while let Some((task, state)) = self.agents[i]
                    .execs
                    .get_mut(container)
                    .and_then(|e| e.outbox.pop_front())
                {
                    self.send_update(i, container, task, state);
                }
                self.maybe_exit(i, container);
            }
            Err(err) => {
                self.trace(format!(
                    "agent{i} executor {} refused: {err}",
                    call.executor_id
                ));
                if let Some(e) = self.agents[i].execs.get_mut(container) {
                    e.outbox.clear();
                }
                self.at(
                    1,
                    Ev::ExecExit {
                        agent: i,
                        container: container.to_string(),
                        code: 1,
                    },
                );
            }
        }
    }

    fn exec_event(&mut self, i: usize, inc: u32, conn: u64, event: exec::Event) {
        if self.agents[i].inc != inc {
            return;
        }
        let Some(container) = self.agents[i]
            .execs
            .iter()
            .find(|(_, e)| e.conn == Some(conn) && e.alive)
            .map(|(k, _)| k.clone())
        else {
            return;
        };
        match event.kind {
            exec::EventType::Launch | exec::EventType::LaunchGroup => {
                let tasks: Vec<mantle_api::mesos::TaskInfo> =
                    match (event.launch, event.launch_group) {
                        (Some(l), _) => vec![l.task],
                        (_, Some(g)) => g.task_group.tasks,
                        _ => Vec::new(),
                    };
                for t in tasks {
                    let resources =
                        mantle_api::resources_from_wire(&t.resources, "task").unwrap_or_default();
                    let task_id = t.task_id.clone();
                    self.trace(format!("agent{i} launches {task_id}"));
                    self.tasks_launched += 1;
                    let track = self.tracks.entry(task_id.to_string()).or_default();
                    track.agent = i;
                    if let Some(e) = self.agents[i].execs.get_mut(&container) {
                        e.tasks.insert(
                            task_id.clone(),
                            SimTask {
                                state: TaskState::Staging,
                                killing: false,
                                resources,
                            },
                        );
                    }
                    let d = self.rng.range(1, 20);
                    self.at(
                        d,
                        Ev::ExecUpdate {
                            agent: i,
                            container: container.clone(),
                            task: task_id.clone(),
                            state: TaskState::Starting,
                            natural: false,
                        },
                    );
                    let d = d + self.rng.range(5, 200);
                    let faulty = self.opts.faults && !self.quiet;
                    let state = if faulty && self.rng.chance(0.03) {
                        TaskState::Failed
                    } else {
                        TaskState::Running
                    };
                    self.at(
                        d,
                        Ev::ExecUpdate {
                            agent: i,
                            container: container.clone(),
                            task: task_id.clone(),
                            state,
                            natural: false,
                        },
                    );
                    if faulty && self.rng.chance(0.15) {
                        let life = d + self.rng.range(1_000, 120_000);
                        let end = if self.rng.chance(0.5) {
                            TaskState::Finished
                        } else {
                            TaskState::Failed
                        };
                        self.at(
                            life,
                            Ev::ExecUpdate {
                                agent: i,
                                container: container.clone(),
                                task: task_id,
                                state: end,
                                natural: true,
                            },
                        );
                    }
                }
            }
            exec::EventType::Kill => {
                let Some(k) = event.kill else { return };
                let id = k.task_id.to_string();
                let live = self.agents[i]
                    .execs
                    .get(&container)
                    .and_then(|e| e.tasks.get(&k.task_id))
                    .is_some_and(|t| !t.state.is_terminal() && !t.killing);
                if !live {
                    return;
                }
                if !self.sched_kills.contains(&id) {
                    self.violate("no-surprise-kill", format!("task {id} on agent{i} got KILL though the scheduler never asked to kill it"));
                }
                if let Some(t) = self.agents[i]
                    .execs
                    .get_mut(&container)
                    .and_then(|e| e.tasks.get_mut(&k.task_id))
                {
                    t.killing = true;
                }
                let d = self.rng.range(10, 3_000);
                self.at(
                    d,
                    Ev::ExecUpdate {
                        agent: i,
                        container,
                        task: k.task_id,
                        state: TaskState::Killed,
                        natural: false,
                    },
                );
            }
            exec::EventType::Shutdown => {
                let Some(e) = self.agents[i].execs.get_mut(&container) else {
                    return;
                };
                e.shutdown = true;
                let live: Vec<TaskId> = e
                    .tasks
                    .iter()
                    .filter(|(_, t)| !t.state.is_terminal() && !t.killing)
                    .map(|(k, _)| k.clone())
                    .collect();
                for t in &live {
                    if let Some(x) = e.tasks.get_mut(t) {
                        x.killing = true;
                    }
                }
                if !live.is_empty() {
                    let ids: Vec<String> = live
                        .iter()
                        .map(|t| t.to_string())
                        .filter(|t| !self.sched_kills.contains(t))
                        .collect();
                    if !ids.is_empty() {
                        self.violate("no-surprise-kill", format!("executor on agent{i} was shut down with running tasks {ids:?} the scheduler never asked to kill"));
                    }
                }
                for t in live {
                    let d = self.rng.range(10, 1_000);
                    self.at(
                        d,
                        Ev::ExecUpdate {
                            agent: i,
                            container: container.clone(),
                            task: t,
                            state: TaskState::Killed,
                            natural: false,
                        },
                    );
                }
                self.maybe_exit(i, &container);
            }
            exec::EventType::Acknowledged => {
                let Some(ack) = event.acknowledged else {
                    return;
                };
                if let Some(e) = self.agents[i].execs.get_mut(&container) {
                    e.unacked.remove(&ack.uuid);
                }
                self.maybe_exit(i, &container);
            }
            _ => {}
        }
    }

    /// The executor exits once every task ended and its terminal update was acknowledged,
    /// or `ACK_WAIT` after the last one ended.
    fn maybe_exit(&mut self, i: usize, container: &str) {
        let Some(e) = self.agents[i].execs.get_mut(container) else {
            return;
        };
        if !e.alive || e.live_tasks() > 0 || (e.tasks.is_empty() && !e.shutdown) {
            return;
        }
        // An executor whose agent is away waits for it, with what it still has to send.
        if e.conn.is_none() || !e.outbox.is_empty() {
            return;
        }
        let delay = if e.unacked.is_empty() { 1 } else { ACK_WAIT };
        if e.unacked.is_empty() || !e.exit_scheduled {
            e.exit_scheduled = true;
            self.at(
                delay,
                Ev::ExecExit {
                    agent: i,
                    container: container.to_string(),
                    code: 0,
                },
            );
        }
    }

    /// The executor sees its task reach `state` and reports it (or keeps it for later, when
    /// its agent is away).
    fn exec_update(&mut self, i: usize, container: &str, task: TaskId, state: TaskState) {
        let Some(e) = self.agents[i].execs.get_mut(container) else {
            return;
        };
        if !e.alive {
            return;
        }
        let Some(t) = e.tasks.get_mut(&task) else {
            return;
        };
        if t.state.is_terminal() || (t.killing && state != TaskState::Killed) {
            return;
        }
        t.state = state;
        if e.conn.is_none() || !e.outbox.is_empty() {
            let note = format!(
                "agent{i} executor keeps {task} {} until its agent is back",
                state.as_str()
            );
            e.outbox.push_back((task, state));
            self.trace(note);
            return;
        }
        self.send_update(i, container, task, state);
    }

    /// The executor POSTs an UPDATE; the agent has made it durable when it answers.
    fn send_update(&mut self, i: usize, container: &str, task: TaskId, state: TaskState) {
        let Some(e) = self.agents[i].execs.get(container) else {
            return;
        };
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.rng.next_u64().to_le_bytes());
        b[8..].copy_from_slice(&self.rng.next_u64().to_le_bytes());
        let uuid = base64::engine::general_purpose::STANDARD.encode(b);
        let mut status = mantle_api::mesos::TaskStatus::new(task.clone(), state);
        status.uuid = Some(uuid.clone());
        status.timestamp = Some(now_of(self.now).wall_secs);
        let call = exec::Call {
            executor_id: e.executor_id.clone(),
            framework_id: e.framework_id.clone(),
            kind: exec::CallType::Update,
            subscribe: None,
            update: Some(exec::CallUpdate { status }),
            message: None,
        };
        let now = now_of(self.now);
        let Some(core) = self.agents[i].core.as_mut() else {
            return;
        };
        match core.executor_call(now, call) {
            Ok(()) => {
                self.trace(format!("agent{i} executor: {task} {}", state.as_str()));
                if state.is_terminal() {
                    if let Some(e) = self.agents[i].execs.get_mut(container) {
                        e.unacked.insert(uuid.clone());
                    }
                }
                self.tracks
                    .entry(task.to_string())
                    .or_default()
                    .produced
                    .push((uuid, state));
                if state.is_terminal() {
                    self.maybe_exit(i, container);
                }
            }
            Err(err) => self.trace(format!("agent{i} refuses update of {task}: {err}")),
        }
    }

    fn exec_exit(&mut self, i: usize, container: &str, code: i32) {
        let Some(e) = self.agents[i].execs.get_mut(container) else {
            return;
        };
        if !e.alive {
            return;
        }
        if code == 0 && (e.conn.is_none() || !e.outbox.is_empty()) {
            // Its agent went away meanwhile: it waits for it (`maybe_exit` again later).
            e.exit_scheduled = false;
            return;
        }
        e.alive = false;
        for t in e.tasks.values_mut() {
            if !t.state.is_terminal() {
                t.state = TaskState::Failed;
            }
        }
        self.trace(format!("agent{i} executor {container} exits with {code}"));
        let now = now_of(self.now);
        if let Some(core) = self.agents[i].core.as_mut() {
            core.executor_exited(now, container, Some(code));
        }
    }

    /// The executor process is killed (SIGKILL from the agent, or its stream closed).
    fn exec_killed(&mut self, i: usize, container: &str, why: &str) {
        let Some(e) = self.agents[i].execs.get(container) else {
            return;
        };
        if !e.alive {
            return;
        }
        let running: Vec<String> = e
            .tasks
            .iter()
            .filter(|(_, t)| !t.state.is_terminal() && !t.killing)
            .map(|(k, _)| k.to_string())
            .filter(|k| !self.sched_kills.contains(k))
            .collect();
        if !running.is_empty() && !e.shutdown {
            self.violate(
                "no-surprise-kill",
                format!("agent{i} {why}: running tasks {running:?} die"),
            );
        }
        self.at(
            1,
            Ev::ExecExit {
                agent: i,
                container: container.to_string(),
                code: -9,
            },
        );
    }

    // ----- settling: drain every core's outputs, run due timers -----

    fn settle(&mut self) {
        for _ in 0..32 {
            let mut busy = false;
            busy |= self.drain_master();
            for i in 0..self.agents.len() {
                busy |= self.drain_agent(i);
            }
            busy |= self.drain_marathon();
            if !busy {
                break;
            }
        }
        // The shell writes before anything it decided goes out; here nothing goes out before
        // the event's end (messages are delivered by later events, and a crash is an event of
        // its own), so one write per agent at the end of each event is the same.
        for i in 0..self.agents.len() {
            self.persist_agent(i);
        }
        // Arm the next timers.
        if let Some(m) = self.master.core.as_ref() {
            let at = ms_of(m.next_deadline()).max(self.now);
            if self.master.tick_at != Some(at) {
                self.master.tick_at = Some(at);
                self.seq += 1;
                self.queue.insert((at, self.seq), Ev::MasterTick { at });
            }
        }
        for i in 0..self.agents.len() {
            let Some(d) = self.agents[i].core.as_ref().and_then(Agent::next_deadline) else {
                continue;
            };
            let at = ms_of(d).max(self.now);
            if self.agents[i].tick_at != Some(at) {
                self.agents[i].tick_at = Some(at);
                self.seq += 1;
                self.queue
                    .insert((at, self.seq), Ev::AgentTick { agent: i, at });
            }
        }
    }

    fn drain_master(&mut self) -> bool {
        let now = now_of(self.now);
        let Some(m) = self.master.core.as_mut() else {
            return false;
        };
        let mut outputs = m.take_outputs();
        if outputs.is_empty() && m.next_deadline() <= now.mono {
            m.tick(now);
            outputs = m.take_outputs();
        }
        if outputs.is_empty() {
            return false;
        }
        for out in outputs {
            match out {
                mantle_master::Output::ToFramework { conn, event } => {
                    if self.conns.get(&conn).is_some_and(|c| c.master_open) {
                        self.stream(
                            conn,
                            false,
                            Payload::ToFramework {
                                conn,
                                event: Box::new(event),
                            },
                        );
                    }
                }
                mantle_master::Output::ToAgent { conn, message } => {
                    if self.conns.get(&conn).is_some_and(|c| c.master_open) {
                        self.stream(
                            conn,
                            false,
                            Payload::ToAgent {
                                conn,
                                message: Box::new(message),
                            },
                        );
                    }
                }
                mantle_master::Output::CloseFramework { conn }
                | mantle_master::Output::CloseAgent { conn } => {
                    self.close_master_end(conn);
                }
                mantle_master::Output::Persist(w) => self.master.registry.apply(&w),
            }
        }
        true
    }

    /// The agent shell's write after a batch (`server/src/agent_checkpoint.rs`): a whole
    /// checkpoint when its structure changed, else the journal records, each round-tripped
    /// through JSON, replayed onto the last one.
    fn persist_agent(&mut self, i: usize) {
        let a = &mut self.agents[i];
        let Some(core) = a.core.as_mut() else { return };
        if a.durable_changes == Some(core.changes()) {
            return;
        }
        a.durable_changes = Some(core.changes());
        let journal = core.take_journal();
        let structure = core.checkpoint_structure();
        match a.durable.as_mut() {
            Some(durable) if a.durable_structure.as_ref() == Some(&structure) => {
                for entry in journal {
                    let entry = serde_json::to_string(&entry)
                        .ok()
                        .and_then(|j| serde_json::from_str(&j).ok());
                    if let Some(entry) = entry {
                        durable.apply(entry);
                    }
                }
            }
            _ => {
                a.durable = Some(core.checkpoint());
                a.durable_structure = Some(structure);
            }
        }
    }

    fn drain_agent(&mut self, i: usize) -> bool {
        let now = now_of(self.now);
        let inc = self.agents[i].inc;
        let Some(core) = self.agents[i].core.as_mut() else {
            return false;
        };
        let mut outputs = core.take_outputs();
        if outputs.is_empty() && core.next_deadline().is_some_and(|d| d <= now.mono) {
            core.tick(now);
            outputs = core.take_outputs();
        }
        if outputs.is_empty() {
            return false;
        }
        let Some(core) = self.agents[i].core.as_ref() else {
            return false;
        };
        let ids = (
            core.agent_id().cloned(),
            core.stream_id().map(str::to_string),
        );
        for out in outputs {
            match out {
                mantle_agent::Output::ToMaster(message) => {
                    if let (Some(agent_id), Some(stream_id)) = ids.clone() {
                        let envelope = AgentEnvelope {
                            agent_id,
                            stream_id,
                            message,
                        };
                        self.post(
                            Node::Agent(i),
                            Payload::AgentMsg {
                                envelope: Box::new(envelope),
                            },
                        );
                    }
                }
                mantle_agent::Output::LaunchExecutor {
                    framework_id,
                    executor_id,
                    container_id,
                    kind,
                    ..
                } => {
                    self.trace(format!(
                        "agent{i} starts executor {executor_id} ({})",
                        if kind == ExecutorKind::Builtin {
                            "builtin"
                        } else {
                            "custom"
                        }
                    ));
                    self.agents[i].execs.insert(
                        container_id.clone(),
                        SimExec {
                            framework_id,
                            executor_id,
                            conn: None,
                            tasks: BTreeMap::new(),
                            unacked: BTreeSet::new(),
                            alive: true,
                            shutdown: false,
                            exit_scheduled: false,
                            outbox: Default::default(),
                        },
                    );
                    let faulty = self.opts.faults && !self.quiet;
                    if !(faulty && self.rng.chance(0.02)) {
                        let d = self.rng.range(5, 300);
                        self.at(
                            d,
                            Ev::ExecSubscribe {
                                agent: i,
                                container: container_id,
                            },
                        );
                    }
                }
                mantle_agent::Output::ToExecutor { conn, event } => {
                    let d = self.rng.range(1, 5);
                    self.at(
                        d,
                        Ev::ExecEvent {
                            agent: i,
                            inc,
                            conn,
                            event: Box::new(event),
                        },
                    );
                }
                mantle_agent::Output::CloseExecutor { conn } => {
                    let c = self.agents[i]
                        .execs
                        .iter()
                        .find(|(_, e)| e.conn == Some(conn) && e.alive)
                        .map(|(k, _)| k.clone());
                    if let Some(c) = c {
                        self.exec_killed(i, &c, "closed an executor's stream");
                    }
                }
                mantle_agent::Output::KillExecutor { container_id } => {
                    self.exec_killed(i, &container_id, "killed an executor");
                }
                // Simulated executors have no cgroups to resize.
                mantle_agent::Output::UpdateContainer { .. } => {}
            }
        }
        true
    }

    fn drain_marathon(&mut self) -> bool {
        let Some(core) = self.marathon.core.as_mut() else {
            return false;
        };
        let effects = core.drain();
        if effects.is_empty() {
            return false;
        }
        // Store writes first, all of them, then the rest (the shell's order).
        for e in &effects {
            if let Effect::Store(w) = e {
                self.marathon.store.apply(w);
            }
        }
        for e in effects {
            let Effect::Call(call) = e else { continue };
            if call.kind == CallType::Kill {
                if let Some(k) = &call.kill {
                    self.sched_kills.insert(k.task_id.to_string());
                }
            }
            if call.kind == CallType::Accept {
                for op in call.accept.iter().flat_map(|a| a.operations.iter()) {
                    for t in op.launch.iter().flat_map(|l| l.task_infos.iter()) {
                        let app = self
                            .marathon
                            .core
                            .as_ref()
                            .and_then(|c| c.instance(t.task_id.as_str()))
                            .map(|i| i.app_id.clone())
                            .unwrap_or_default();
                        self.tracks.entry(t.task_id.to_string()).or_default().app = app;
                    }
                }
            }
            match self.marathon.stream_id.clone() {
                Some(stream_id) => self.post(
                    Node::Marathon,
                    Payload::SchedCall {
                        stream_id,
                        call: Box::new(call),
                    },
                ),
                None => self.trace(format!(
                    "marathon not connected; drops {}",
                    call_short(&call)
                )),
            }
        }
        true
    }

    // ----- faults -----

    fn fault(&mut self) {
        let roll = self.rng.range(0, 99);
        let n = self.agents.len();
        match roll {
            0..=29 => {
                let node = if self.rng.chance(0.3) {
                    Node::Marathon
                } else {
                    Node::Agent(self.rng.index(n))
                };
                let dur = if self.rng.chance(0.3) {
                    self.rng.range(60_000, 150_000)
                } else {
                    self.rng.range(500, 30_000)
                };
                self.trace(format!("fault: partition master<->{node:?} for {dur} ms"));
                self.partitions.insert(node, self.now + dur);
                self.at(dur, Ev::Heal(node));
            }
            30..=49 => {
                let open: Vec<ConnId> = self
                    .conns
                    .iter()
                    .filter(|(_, c)| c.master_open && c.peer_open)
                    .map(|(k, _)| *k)
                    .collect();
                if open.is_empty() {
                    return;
                }
                let conn = open[self.rng.index(open.len())];
                self.trace(format!("fault: reset conn {conn}"));
                // Both ends hear of it: the master's end stays open until the news reaches it
                // (closing it first would make the master ignore the news).
                self.close_peer_end(conn);
                self.stream(
                    conn,
                    false,
                    Payload::Closed {
                        conn,
                        to_master: false,
                    },
                );
                let peer = self.conns.get(&conn).map(|c| c.peer);
                match peer {
                    Some(Node::Agent(i)) if self.agents[i].conn == Some(conn) => {
                        self.agent_lost_master(i)
                    }
                    Some(Node::Marathon) if self.marathon.conn == Some(conn) => {
                        self.marathon_lost_master()
                    }
                    _ => {}
                }
            }
            50..=57 => self.crash(Node::Master),
            58..=67 => self.crash(Node::Marathon),
            68..=75 if self.opts.agent_crashes => {
                let i = self.rng.index(n);
                self.crash(Node::Agent(i));
            }
            _ => return,
        }
        self.faults += 1;
    }

    fn crash(&mut self, node: Node) {
        let down = match node {
            Node::Master => self.master.core.is_none(),
            Node::Marathon => self.marathon.core.is_none(),
            Node::Agent(i) => self.agents[i].core.is_none(),
        };
        if down {
            return;
        }
        self.crashes += 1;
        self.trace(format!("fault: crash {node:?}"));
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        match node {
            Node::Master => {
                self.master.core = None;
                self.master.tick_at = None;
                for c in conns {
                    if self
                        .conns
                        .get(&c)
                        .is_some_and(|x| x.master_inc == self.master.inc)
                    {
                        self.close_master_end(c);
                    }
                }
            }
            Node::Marathon => {
                self.marathon.core = None;
                self.marathon.conn = None;
                self.marathon.stream_id = None;
                for c in conns {
                    if self.conns.get(&c).is_some_and(|x| x.peer == Node::Marathon) {
                        self.close_peer_end(c);
                    }
                }
            }
            Node::Agent(i) => {
                let a = &mut self.agents[i];
                a.core = None;
                a.conn = None;
                a.tick_at = None;
                // Executors of checkpointing frameworks (Marathon's are) outlive their agent:
                // they lose their stream and subscribe again, every second, until one answers.
                let alive: Vec<String> = a
                    .execs
                    .iter_mut()
                    .filter(|(_, e)| e.alive)
                    .map(|(c, e)| {
                        e.conn = None;
                        c.clone()
                    })
                    .collect();
                for container in alive {
                    self.at(
                        EXEC_RESUBSCRIBE,
                        Ev::ExecSubscribe {
                            agent: i,
                            container,
                        },
                    );
                }
                for c in conns {
                    if self.conns.get(&c).is_some_and(|x| x.peer == Node::Agent(i)) {
                        self.close_peer_end(c);
                    }
                }
            }
        }
        let d = self.rng.range(500, 30_000);
        self.at(d, Ev::Restart(node));
    }

    fn restart(&mut self, node: Node) {
        let seed = self.rng.fork();
        match node {
            Node::Master => {
                if self.master.core.is_some() {
                    return;
                }
                self.master.inc += 1;
                let cfg =
                    mantle_master::Config::new(std::net::Ipv4Addr::new(10, 0, 0, 254), 5050, seed);
                // Round-tripped through JSON, as the store keeps it.
                let snapshot = serde_json::to_string(&self.master.registry)
                    .ok()
                    .and_then(|j| serde_json::from_str(&j).ok())
                    .unwrap_or_default();
                self.master.core = Some(Master::recover(cfg, now_of(self.now), snapshot));
                self.trace(format!(
                    "master restarts from its registry (incarnation {})",
                    self.master.inc
                ));
            }
            Node::Marathon => {
                if self.marathon.core.is_some() {
                    return;
                }
                let snapshot = match self.marathon.store.load() {
                    Ok(s) => s,
                    Err(e) => {
                        self.violate(
                            "no-lost-intent",
                            format!("the scheduler's store does not load: {e}"),
                        );
                        Snapshot::default()
                    }
                };
                let m = &mut self.marathon;
                m.inc += 1;
                m.core = Some(Core::new(marathon_config(seed), snapshot));
                m.backoff = 200;
                m.silence = 60_000;
                m.timer_count = 0;
                // A new process: answers to the old one's connection attempts are not its own.
                m.attempt += 1;
                let (inc, attempt) = (m.inc, m.attempt);
                self.trace(format!(
                    "marathon restarts from its store (incarnation {inc})"
                ));
                self.at(SCHEDULER_TIMER, Ev::MarathonTimer { inc });
                let d = self.rng.range(1, 300);
                self.at(d, Ev::MarathonConnect { attempt });
                self.check_intent();
            }
            Node::Agent(i) => {
                if self.agents[i].core.is_some() {
                    return;
                }
                let now = now_of(self.now);
                let a = &mut self.agents[i];
                a.inc += 1;
                // From its checkpoint, round-tripped through JSON as the shell keeps it.
                let checkpoint = a
                    .durable
                    .as_ref()
                    .and_then(|c| serde_json::to_string(c).ok())
                    .and_then(|j| serde_json::from_str::<mantle_agent::Checkpoint>(&j).ok());
                let from_checkpoint = checkpoint.is_some();
                let execs = &a.execs;
                a.core = Some(match checkpoint {
                    Some(cp) => Agent::recover(agent_config(i, seed), now, cp, |c| {
                        execs.get(c).is_some_and(|e| e.alive)
                    }),
                    None => Agent::new(agent_config(i, seed), now),
                });
                // Its first write is a whole checkpoint, as the shell's.
                a.durable_structure = None;
                a.durable_changes = None;
                a.backoff = 200;
                // A new process: answers to the old one's registrations are not its own (found
                // with seed 2239: a restarted, empty agent took the REGISTERED meant for its
                // previous incarnation, so the master believed it still ran that one's tasks).
                a.attempt += 1;
                let attempt = a.attempt;
                self.trace(format!(
                    "agent{i} restarts {}",
                    if from_checkpoint {
                        "from its checkpoint"
                    } else {
                        "empty"
                    }
                ));
                let d = self.rng.range(1, 300);
                self.at(d, Ev::AgentConnect { agent: i, attempt });
            }
        }
    }
}

fn dup_payload(p: &Payload) -> Option<Payload> {
    match p {
        Payload::AgentMsg { envelope } => Some(Payload::AgentMsg {
            envelope: envelope.clone(),
        }),
        Payload::SchedCall { stream_id, call } => Some(Payload::SchedCall {
            stream_id: stream_id.clone(),
            call: call.clone(),
        }),
        _ => None,
    }
}

fn short(p: &Payload) -> String {
    match p {
        Payload::Register { agent, .. } => format!("register agent{agent}"),
        Payload::AgentMsg { envelope } => agent_msg_short(&envelope.message),
        Payload::Subscribe { .. } => "SUBSCRIBE".into(),
        Payload::SchedCall { call, .. } => call_short(call),
        Payload::ToAgent { message, .. } => master_msg_short(message),
        Payload::ToFramework { event, .. } => event_short(event),
        Payload::Closed { conn, .. } => format!("close {conn}"),
    }
}

fn agent_msg_short(m: &mantle_api::internal::AgentToMaster) -> String {
    use mantle_api::internal::AgentToMaster as A;
    match m {
        A::StatusUpdate { status, .. } => {
            format!("UPDATE {} {}", status.task_id, status.state.as_str())
        }
        A::ExecutorMessage { executor_id, .. } => format!("MESSAGE {executor_id}"),
        A::ExecutorExited {
            executor_id,
            status,
            ..
        } => format!("EXITED {executor_id} {status:?}"),
        A::Pong => "PONG".into(),
    }
}

fn master_msg_short(m: &MasterToAgent) -> String {
    match m {
        MasterToAgent::Registered { agent_id, .. } => format!("REGISTERED {agent_id}"),
        MasterToAgent::RunTask { task, .. } => format!("RUN_TASK {}", task.task_id),
        MasterToAgent::RunTaskGroup { executor, .. } => {
            format!("RUN_TASK_GROUP {}", executor.executor_id)
        }
        MasterToAgent::KillTask { task_id, .. } => format!("KILL_TASK {task_id}"),
        MasterToAgent::ShutdownExecutor { executor_id, .. } => {
            format!("SHUTDOWN_EXECUTOR {executor_id}")
        }
        MasterToAgent::ShutdownFramework { framework_id } => {
            format!("SHUTDOWN_FRAMEWORK {framework_id}")
        }
        MasterToAgent::AckStatusUpdate { task_id, .. } => format!("ACK {task_id}"),
        MasterToAgent::FrameworkMessage { .. } => "FRAMEWORK_MESSAGE".into(),
        MasterToAgent::UpdateFramework { .. } => "UPDATE_FRAMEWORK".into(),
        MasterToAgent::Ping => "PING".into(),
    }
}

fn call_short(c: &Call) -> String {
    let mut s = format!("{:?}", c.kind).to_uppercase();
    if let Some(k) = &c.kill {
        s.push_str(&format!(" {}", k.task_id));
    }
    if let Some(a) = &c.accept {
        for op in &a.operations {
            for t in op.launch.iter().flat_map(|l| l.task_infos.iter()) {
                s.push_str(&format!(" {}", t.task_id));
            }
        }
    }
    if let Some(r) = &c.reconcile {
        s.push_str(&format!(" ({} tasks)", r.tasks.len()));
    }
    s
}

fn event_short(e: &Event) -> String {
    let mut s = format!("{:?}", e.kind).to_uppercase();
    if let Some(u) = &e.update {
        s.push_str(&format!(
            " {} {}",
            u.status.task_id,
            u.status.state.as_str()
        ));
        if let Some(r) = &u.status.reason {
            s.push_str(&format!(" {r}"));
        }
    }
    if let Some(o) = &e.offers {
        s.push_str(&format!(" x{}", o.offers.len()));
    }
    s
}
