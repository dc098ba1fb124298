//! A deterministic simulator of a whole Mantle cluster (issue #5, after TigerBeetle's VOPR).
//!
//! One thread runs the pure cores — the master (`mantle-master`), N agents (`mantle-agent`) and
//! the service scheduler (`mantle-marathon`) — from a single `u64` seed, with a simulated
//! clock, a simulated network between them, simulated executors and tasks, and faults:
//! messages delayed, dropped, duplicated and reordered, connections reset, links partitioned
//! until they heal, tasks that exit on their own, and crashes and restarts of every
//! component. The glue between the cores (`world.rs`) mirrors what the I/O shells in
//! `mantle-server` do with each core's outputs. After every step, `check.rs` checks the
//! invariants of REFERENCE §3.4 that the cores make checkable; a violation stops the run with
//! the seed and the tail of the trace, and the same seed replays the same run.
//!
//! What the simulator owns: the event queue and clock, the network model, the simulated
//! executors, the workload (Marathon API calls), fault injection and the checkers. It owns
//! no cluster decision: every decision is made by the cores themselves.
//!
//! Restarts modelled, as the shells behave today:
//! - the master restarts from its registry (the `Persist` outputs applied so far, through
//!   JSON as the redb store keeps them); agents re-register with their IDs and
//!   tasks, the service scheduler re-subscribes with its framework ID;
//! - the service scheduler restarts from its persisted records (what `marathon_store.rs`
//!   keeps: framework ID, apps, versions, instances, deployments), round-tripped through JSON
//!   as the store does;
//! - an agent restarts from its checkpoint (a whole checkpoint plus the journal records
//!   replayed onto it, as `server/src/agent_checkpoint.rs` keeps them) and re-registers with
//!   its ID; its executors outlive it, keep their updates in an outbox, subscribe again
//!   naming the tasks they know, and send the outbox in order.

mod check;
mod rng;
mod workload;
mod world;

use std::fmt;

/// What a run does.
#[derive(Debug, Clone)]
pub struct Options {
    /// Events processed while faults and workload run (the chaos phase).
    pub steps: u64,
    /// Number of agents; `None` picks 2 to 5 from the seed.
    pub agents: Option<usize>,
    /// Inject faults (network, crashes, task exits). Without, only the workload runs.
    pub faults: bool,
    /// Crash and restart agents. An agent has no durable state yet, so its tasks die with it.
    pub agent_crashes: bool,
    /// Longest time, in simulated milliseconds after the faults stop, for the desired
    /// instances to be running (the convergence bound).
    pub converge_within_ms: u64,
    /// Trace lines kept for a failure report.
    pub tail: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            steps: 300,
            agents: None,
            faults: true,
            agent_crashes: true,
            converge_within_ms: 15 * 60 * 1000,
            tail: 40,
        }
    }
}

/// What a successful run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub seed: u64,
    /// Events processed, chaos and quiet phase together.
    pub steps: u64,
    /// Simulated time at the end, in milliseconds.
    pub sim_ms: u64,
    /// FNV-1a hash of the whole trace: equal for two runs of one seed.
    pub trace_hash: u64,
    pub agents: usize,
    pub tasks_launched: u64,
    pub api_calls: u64,
    pub faults: u64,
    pub crashes: u64,
    /// Simulated time from the end of faults to convergence, in milliseconds.
    pub converged_after_ms: u64,
}

/// An invariant violation (or a run that did not converge).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub seed: u64,
    pub step: u64,
    pub sim_ms: u64,
    /// Which invariant: `resource-sanity`, `no-lost-update`, `no-lost-intent`,
    /// `no-surprise-kill`, `bounded-duplicates` or `convergence`.
    pub invariant: &'static str,
    pub message: String,
    /// The steps processed before the violation, oldest first.
    pub tail: Vec<String>,
    pub trace_hash: u64,
    /// The chaos-phase length the run used (to replay it).
    pub steps_option: u64,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {} violated {} at step {} (t={} ms): {}",
            self.seed, self.invariant, self.step, self.sim_ms, self.message
        )?;
        writeln!(
            f,
            "replay: mantle sim --seed {} --steps {}",
            self.seed, self.steps_option
        )?;
        writeln!(f, "last {} steps:", self.tail.len())?;
        for line in &self.tail {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Failure {}

/// Runs one simulation from `seed`.
pub fn run(seed: u64, options: &Options) -> Result<Summary, Failure> {
    world::World::new(seed, options.clone()).run()
}

/// What a run of many seeds found.
#[derive(Debug, Clone, Default)]
pub struct Soak {
    pub runs: u64,
    pub failures: Vec<Failure>,
    /// Events processed over all runs.
    pub steps: u64,
}

/// Runs `count` seeds from `first` (`mantle sim`), calling `report` after each run.
pub fn soak(
    first: u64,
    count: u64,
    options: &Options,
    mut report: impl FnMut(&Result<Summary, Failure>),
) -> Soak {
    let mut out = Soak::default();
    for seed in first..first.saturating_add(count) {
        let r = run(seed, options);
        report(&r);
        out.runs += 1;
        match r {
            Ok(s) => out.steps += s.steps,
            Err(f) => {
                out.steps += f.step;
                out.failures.push(f);
            }
        }
    }
    out
}
