//! `mantle bench launch`: the time from a scheduler sending ACCEPT to it receiving
//! TASK_RUNNING, measured against a real cluster.
//!
//! It starts a master and agents as child processes (`local::LocalCluster`), subscribes as a
//! Mesos v1 HTTP scheduler over the real API, and launches tasks one at a time: wait for an
//! offer, ACCEPT with one LAUNCH of `sleep 60`, wait for TASK_RUNNING (the measured span),
//! KILL it, wait for TASK_KILLED, next. Every update with a UUID is acknowledged at once, as
//! a scheduler must: the agent forwards a task's next update only after the previous one is
//! acknowledged, so the span includes acknowledging TASK_STARTING.
//! Offers that are not used are kept for the next task; when one is used, the others are
//! declined with `refuse_seconds` 0 so they come straight back.
//! The cluster is stopped on every path (success, error, Ctrl-C/SIGTERM).
//!
//! `mantle bench dns` runs the same loop with `mantle dns` in the cluster and measures, for
//! each task, the time from the scheduler decoding TASK_RUNNING to `<task>.mantle-bench.mesos`
//! answering an A record over real UDP (polled every millisecond).

use crate::local::{agent_ip, free_port, LocalCluster, LocalOptions};
use anyhow::{bail, Context};
use futures::StreamExt;
use mantle_api::mesos::{CommandInfo, Filters, FrameworkInfo, Offer, TaskInfo, TaskStatus};
use mantle_api::recordio::Decoder;
use mantle_api::scheduler::{
    Accept, Acknowledge, Call, CallType, Decline, Event, EventType, Kill, Launch, Operation,
    Subscribe,
};
use mantle_api::{resources_from_wire, resources_to_wire};
use mantle_model::{FrameworkId, OfferId, Resources, TaskId, TaskState};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// The CNI network of `--cni-plugins-dir` runs.
const BENCH_NETWORK: &str = "mantle-bench";
/// Resources each task asks for.
pub const TASK_RESOURCES: &str = "cpus:0.1;mem:32";
/// The command each task runs; it is killed long before it ends.
pub const TASK_COMMAND: &str = "sleep 60";
/// The command of each task when launches overlap (`--concurrency` above 1): the issue's
/// `true`, which ends by itself and frees its resources for the next launches.
pub const SHORT_TASK_COMMAND: &str = "true";
/// Resources each bench agent offers (fixed, so results do not depend on the machine's size).
pub const AGENT_RESOURCES: &str = "cpus:4;mem:4096;disk:4096;ports:[31000-32000]";
/// How long any one step (an offer, an update) may take before the bench gives up.
pub(crate) const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of each scheduler call (not of the event stream).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest event record accepted from the master.
const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// Options of `mantle bench launch`.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub tasks: usize,
    pub agents: u8,
    pub work_dir: PathBuf,
    /// The `mantle` binary, run as master and agents.
    pub program: PathBuf,
    /// The agents' `--isolation`; with cgroups the report adds the machine's floor (fork+exec
    /// and cgroup create/remove) measured in the same run.
    pub isolation: Option<String>,
    /// How many launches may be in flight at once (ACCEPT sent, TASK_RUNNING not yet seen);
    /// 1 launches one task after another and kills each.
    pub concurrency: usize,
    /// Whether the bench framework asks agents to checkpoint (`FrameworkInfo.checkpoint`), as
    /// Marathon does: its tasks' updates are then on disk before they are sent.
    pub checkpoint: bool,
    /// CNI plugins (with `loopback`): every task then joins a loopback-only CNI network, so
    /// the figures include its network namespace and attach (`network/cni`).
    pub cni_plugins: Option<PathBuf>,
}

/// The bare cost of what a launch must do at least, measured on this machine.
#[derive(Debug, Clone)]
pub struct Floor {
    /// `true` started and waited for, one after another.
    pub fork_exec: Vec<Duration>,
    /// A container's cgroups created with limits and removed again.
    pub cgroup: Vec<Duration>,
}

/// The measured launch latencies, in launch order.
#[derive(Debug, Clone)]
pub struct Report {
    pub agents: u8,
    pub latencies: Vec<Duration>,
    /// ACCEPT sent to TASK_STARTING received, per task (launches one at a time only; empty
    /// otherwise): the rest of a latency is TASK_STARTING's acknowledgement going round
    /// through the scheduler, which the agent waits for before it sends TASK_RUNNING.
    pub starting: Vec<Duration>,
    /// Wall time of the whole launch loop (offers, kills and all).
    pub elapsed: Duration,
    pub isolation: Option<String>,
    pub floor: Option<Floor>,
    pub concurrency: usize,
    pub checkpoint: bool,
    /// The tasks joined a CNI network.
    pub networked: bool,
}

/// Summary statistics of a sample, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub min: f64,
    pub median: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Stats {
    /// `None` for an empty sample. The median is the middle value (the mean of the two
    /// middle values for an even count); p90 and p99 use the nearest-rank method.
    pub fn of(sample: &[Duration]) -> Option<Stats> {
        let mut ms: Vec<f64> = sample.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        ms.sort_by(f64::total_cmp);
        let n = ms.len();
        let (first, last) = (*ms.first()?, *ms.last()?);
        let median = if n % 2 == 1 {
            ms[n / 2]
        } else {
            (ms[n / 2 - 1] + ms[n / 2]) / 2.0
        };
        let rank = |p: f64| {
            let r = ((p / 100.0) * n as f64).ceil() as usize;
            ms[r.clamp(1, n) - 1]
        };
        Some(Stats {
            min: first,
            median,
            p90: rank(90.0),
            p99: rank(99.0),
            max: last,
        })
    }
}

impl Report {
    /// The results table and a one-line summary, as printed by `mantle bench launch` (no
    /// trailing newline).
    pub fn render(&self) -> String {
        let n = self.latencies.len();
        let Some(s) = Stats::of(&self.latencies) else {
            return "no tasks launched".to_string();
        };
        let mut out = format!(
            "launch latency, ACCEPT sent to TASK_RUNNING received ({n} tasks, {} agent{}):\n",
            self.agents,
            if self.agents == 1 { "" } else { "s" }
        );
        for (name, v) in [
            ("min", s.min),
            ("median", s.median),
            ("p90", s.p90),
            ("p99", s.p99),
            ("max", s.max),
        ] {
            out.push_str(&format!("  {name:<7}{v:>10.3} ms\n"));
        }
        if let Some(st) = Stats::of(&self.starting) {
            out.push_str(&format!(
                "of which ACCEPT sent to TASK_STARTING received: median {:.3} ms, p99 {:.3} ms (the rest is TASK_STARTING's acknowledgement going round before TASK_RUNNING)\n",
                st.median, st.p99
            ));
        }
        if let Some(f) = &self.floor {
            if let (Some(fe), Some(cg)) = (Stats::of(&f.fork_exec), Stats::of(&f.cgroup)) {
                let floor = fe.median + cg.median;
                let rate = n as f64 / self.elapsed.as_secs_f64().max(1e-9);
                let floor_rate = 1000.0 / floor.max(1e-9);
                out.push_str(&format!(
                    "floor on this machine ({} runs each): fork+exec of `true` median {:.3} ms, cgroups create+remove median {:.3} ms, together {:.3} ms\n",
                    f.fork_exec.len(), fe.median, cg.median, floor
                ));
                out.push_str(&format!(
                    "launches per second: {rate:.1} against a floor of {floor_rate:.1} per second, ratio {:.2}\n",
                    rate / floor_rate
                ));
            }
        }
        let how = if self.concurrency > 1 {
            format!("up to {} at a time", self.concurrency)
        } else {
            "one at a time".to_string()
        };
        out.push_str(&format!(
            "{n} tasks launched {how}{} in {:.1} s{}: median {:.3} ms, p99 {:.3} ms, max {:.3} ms from ACCEPT to TASK_RUNNING",
            match (self.checkpoint, self.networked) {
                (true, true) => " (checkpointed, each on a CNI network)",
                (true, false) => " (checkpointed)",
                (false, true) => " (each on a CNI network)",
                (false, false) => "",
            },
            self.elapsed.as_secs_f64(),
            self.isolation
                .as_ref()
                .map(|i| format!(" with --isolation {i}"))
                .unwrap_or_default(),
            s.median,
            s.p99,
            s.max
        ));
        out
    }
}

/// Runs the launch benchmark: starts a cluster under `work_dir`, launches `tasks` tasks one
/// after another, stops the cluster and returns the latencies.
pub async fn launch(o: BenchOptions) -> anyhow::Result<Report> {
    run(o, false).await
}

/// Runs the DNS benchmark: as `launch`, with `mantle dns` in the cluster; the latencies are
/// from TASK_RUNNING (as the scheduler sees it) to the task's name resolving over UDP.
pub async fn dns(o: BenchOptions) -> anyhow::Result<DnsReport> {
    let r = run(o, true).await?;
    Ok(DnsReport(r))
}

/// The figures of `mantle bench dns`.
#[derive(Debug, Clone)]
pub struct DnsReport(pub Report);

impl DnsReport {
    /// The results table and a summary line, as `Report::render` but naming the DNS span.
    pub fn render(&self) -> String {
        let r = &self.0;
        let n = r.latencies.len();
        let Some(s) = Stats::of(&r.latencies) else {
            return "no tasks launched".to_string();
        };
        let mut out = format!(
            "dns latency, TASK_RUNNING received to <task>.mantle-bench.mesos resolvable over UDP ({n} tasks):\n"
        );
        for (name, v) in [
            ("min", s.min),
            ("median", s.median),
            ("p90", s.p90),
            ("p99", s.p99),
            ("max", s.max),
        ] {
            out.push_str(&format!("  {name:<7}{v:>10.3} ms\n"));
        }
        out.push_str(&format!(
            "{n} tasks resolvable: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms from TASK_RUNNING to an A record",
            s.median, s.p99, s.max
        ));
        out
    }
}

async fn run(o: BenchOptions, with_dns: bool) -> anyhow::Result<Report> {
    if o.tasks == 0 {
        bail!("--tasks must be at least 1");
    }
    if o.agents == 0 {
        bail!("--agents must be at least 1");
    }
    if o.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    if with_dns && o.concurrency > 1 {
        bail!("the DNS bench launches one task at a time; leave out --concurrency");
    }
    let master_port = free_port(&[Ipv4Addr::LOCALHOST])?;
    let agent_ips: Vec<Ipv4Addr> = (0..o.agents).map(agent_ip).collect();
    let agent_port = free_port(&agent_ips)?;
    let dns_ports = if with_dns {
        Some((
            free_port(&[Ipv4Addr::LOCALHOST])?,
            free_port(&[Ipv4Addr::LOCALHOST])?,
        ))
    } else {
        None
    };
    let local = LocalOptions {
        agents: o.agents,
        master_port,
        agent_port,
        work_dir: o.work_dir.clone(),
        agent_resources: Some(AGENT_RESOURCES.to_string()),
        marathon_port: None,
        dns_ports,
        program: o.program.clone(),
        agent_args: match &o.isolation {
            Some(i) => vec![
                "--isolation".into(),
                i.clone(),
                "--cgroups-root".into(),
                format!("mantle-bench/{}", std::process::id()),
            ],
            None => Vec::new(),
        },
    };
    let mut local = local;
    let container = match &o.cni_plugins {
        None => None,
        Some(plugins) => {
            // One loopback-only network: the namespace and the attach are what is measured,
            // and nothing talks beyond the machine.
            let conf = o.work_dir.join("cni");
            std::fs::create_dir_all(&conf)
                .with_context(|| format!("creating {}", conf.display()))?;
            let network = serde_json::json!({"cniVersion": "0.4.0", "name": BENCH_NETWORK, "type": "loopback"});
            std::fs::write(conf.join("bench.conf"), network.to_string())
                .with_context(|| format!("writing {}", conf.display()))?;
            local.agent_args.extend([
                "--network-cni-config-dir".to_string(),
                conf.display().to_string(),
                "--network-cni-plugins-dir".to_string(),
                plugins.display().to_string(),
            ]);
            Some(serde_json::json!({"type": "MESOS", "network_infos": [{"name": BENCH_NETWORK}]}))
        }
    };
    info!(work_dir = %o.work_dir.display(), master_port, agent_port, agents = o.agents, "starting bench cluster");
    let mut cluster = LocalCluster::start(&local)
        .await
        .with_context(|| format!("starting the cluster (logs in {})", o.work_dir.display()))?;
    let master = local.master_url();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let terminated = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    let result = tokio::select! {
        r = async {
            if o.concurrency > 1 {
                run_overlapping(&master, o.tasks, o.concurrency, o.checkpoint, container.clone()).await
            } else {
                run_launches(&master, o.tasks, o.checkpoint, dns_ports.map(|(p, _)| std::net::SocketAddr::from((Ipv4Addr::LOCALHOST, p))), container.clone()).await
            }
        } => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        _ = terminated => Err(anyhow::anyhow!("terminated")),
        d = cluster.died() => Err(anyhow::anyhow!("{d} during the benchmark")),
    };
    info!("stopping bench cluster");
    cluster.stop().await;
    if o.isolation
        .as_deref()
        .is_some_and(|i| i.contains("cgroups/"))
    {
        // The agent drops its sandboxes from the page cache 40 s after their containers end,
        // and the bench's agent is gone before that: do it here, or each run leaves a dying
        // memory cgroup per launch behind and the next runs are slower (see `sandbox::uncache`).
        let dir = o.work_dir.clone();
        let dropped = tokio::task::spawn_blocking(move || {
            nix::unistd::sync();
            crate::sandbox::uncache(&dir, usize::MAX)
        })
        .await
        .unwrap_or(0);
        debug!(
            files = dropped,
            "dropped the bench's files from the page cache"
        );
    }
    let Launched {
        latencies,
        starting,
        elapsed,
    } = result.with_context(|| {
        format!(
            "benchmark failed (cluster logs in {})",
            o.work_dir.display()
        )
    })?;
    let floor = match &o.isolation {
        Some(i) if i.contains("cgroups/") => Some(measure_floor(latencies.len().min(1000)).await?),
        _ => None,
    };
    Ok(Report {
        agents: o.agents,
        latencies,
        starting,
        elapsed,
        isolation: o.isolation.clone(),
        floor,
        concurrency: o.concurrency,
        checkpoint: o.checkpoint,
        networked: o.cni_plugins.is_some(),
    })
}

/// Measures the floor of a cgroups launch: `runs` fork+execs of `true`, and `runs` containers'
/// cgroups created with limits and removed, one after another.
async fn measure_floor(runs: usize) -> anyhow::Result<Floor> {
    let fork_exec = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<Duration>> {
        let mut v = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t = Instant::now();
            let st = std::process::Command::new("true").status()?;
            if !st.success() {
                bail!("`true` failed: {st}");
            }
            v.push(t.elapsed());
        }
        Ok(v)
    })
    .await??;
    let cg = crate::cgroups::Cgroups::new(crate::cgroups::Settings {
        root: format!("mantle-bench/floor-{}", std::process::id()),
        enable_cfs: false,
        pids_max: None,
        favor_dynmods: false,
    })?;
    let limits = crate::cgroups::Limits {
        cpus: 0.1,
        mem_mb: 64.0,
    };
    let mut cgroup = Vec::with_capacity(runs);
    for i in 0..runs {
        let id = format!("floor-{i}");
        let t = Instant::now();
        cg.create(&id, limits)?;
        cg.destroy(&id).await?;
        cgroup.push(t.elapsed());
    }
    cg.remove_root();
    Ok(Floor { fork_exec, cgroup })
}

/// What a launch loop measured.
struct Launched {
    latencies: Vec<Duration>,
    /// ACCEPT to TASK_STARTING per task, when measured.
    starting: Vec<Duration>,
    elapsed: Duration,
}

async fn run_launches(
    master: &str,
    tasks: usize,
    checkpoint: bool,
    dns: Option<std::net::SocketAddr>,
    container: Option<serde_json::Value>,
) -> anyhow::Result<Launched> {
    let need = Resources::parse(TASK_RESOURCES).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut s = SchedulerClient::subscribe(master, checkpoint).await?;
    s.container = container;
    info!(framework_id = %s.framework_id, "subscribed");
    let started = Instant::now();
    let mut held: Vec<Offer> = Vec::new();
    let mut latencies = Vec::with_capacity(tasks);
    let mut starting = Vec::with_capacity(tasks);
    for i in 0..tasks {
        let offer = s.take_offer(&mut held, &need).await?;
        // Leftover offers go back at once, with no filter, so the allocator can offer them
        // again; they are declined before ACCEPT so that the decline is not inside the span.
        let others: Vec<OfferId> = held.drain(..).map(|o| o.id).collect();
        if !others.is_empty() {
            s.decline(others).await?;
        }
        let task_id = TaskId::new(format!("bench-{i}"));
        let accept = s.accept_call(&offer, std::slice::from_ref(&task_id), &need, TASK_COMMAND);
        let sent = Instant::now();
        s.last_starting = None;
        s.call(accept).await.context("ACCEPT")?;
        let running = s
            .await_state(&task_id, TaskState::Running, &mut held)
            .await?;
        if let Some(at) = s.last_starting {
            starting.push(at.saturating_duration_since(sent));
        }
        let latency = match dns {
            None => running.saturating_duration_since(sent),
            Some(server) => {
                let name = format!("{task_id}.mantle-bench.mesos.");
                resolvable(server, &name)
                    .await?
                    .saturating_duration_since(running)
            }
        };
        debug!(task = %task_id, ms = latency.as_secs_f64() * 1000.0, "running");
        latencies.push(latency);
        let mut kill = Call::new(CallType::Kill, Some(s.framework_id.clone()));
        kill.kill = Some(Kill {
            task_id: task_id.clone(),
            agent_id: Some(offer.agent_id.clone()),
            kill_policy: None,
        });
        s.call(kill).await.context("KILL")?;
        s.await_state(&task_id, TaskState::Killed, &mut held)
            .await?;
    }
    let elapsed = started.elapsed();
    let leftover: Vec<OfferId> = held.into_iter().map(|o| o.id).collect();
    if !leftover.is_empty() {
        s.decline(leftover).await?;
    }
    Ok(Launched {
        latencies,
        starting,
        elapsed,
    })
}

/// Launches `tasks` `true` tasks keeping up to `window` launches in flight: each offer is
/// packed with as many tasks as fit and the window allows (one ACCEPT), updates are
/// acknowledged without waiting, and a task's latency is ACCEPT sent to TASK_RUNNING
/// received. The elapsed time runs from the first ACCEPT to the last TASK_RUNNING.
async fn run_overlapping(
    master: &str,
    tasks: usize,
    window: usize,
    checkpoint: bool,
    container: Option<serde_json::Value>,
) -> anyhow::Result<Launched> {
    let need = Resources::parse(TASK_RESOURCES).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut s = SchedulerClient::subscribe(master, checkpoint).await?;
    s.container = container;
    info!(framework_id = %s.framework_id, window, "subscribed");
    let mut held: Vec<Offer> = Vec::new();
    // Launched and not yet RUNNING, with when their ACCEPT went out; and launched, not ended.
    let mut sent: std::collections::HashMap<TaskId, Instant> = Default::default();
    let mut live: std::collections::HashSet<TaskId> = Default::default();
    let mut latencies = Vec::with_capacity(tasks);
    let mut next = 0usize;
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    let (ack_err_tx, mut ack_err) = mpsc::unbounded_channel::<String>();
    while latencies.len() < tasks {
        // Launch while the window has room and a held offer fits a task.
        while next < tasks && live.len() < window {
            let fits = |o: &Offer| {
                resources_from_wire(&o.resources, "offer.resources")
                    .is_ok_and(|r| r.contains(&need))
            };
            let Some(i) = held.iter().position(fits) else {
                break;
            };
            let offer = held.remove(i);
            let mut free = resources_from_wire(&offer.resources, "offer.resources")
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let mut ids = Vec::new();
            while next < tasks && live.len() + ids.len() < window && free.contains(&need) {
                free.subtract(&need);
                ids.push(TaskId::new(format!("bench-{next}")));
                next += 1;
            }
            let accept = s.accept_call(&offer, &ids, &need, SHORT_TASK_COMMAND);
            let at = Instant::now();
            first.get_or_insert(at);
            for id in ids {
                sent.insert(id.clone(), at);
                live.insert(id);
            }
            s.call(accept).await.context("ACCEPT")?;
        }
        if let Ok(e) = ack_err.try_recv() {
            bail!("ACKNOWLEDGE failed: {e}");
        }
        let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
        let (at, event) = s
            .next_event(deadline)
            .await
            .with_context(|| format!("{} of {tasks} tasks running", latencies.len()))?;
        let status = match (&event.kind, &event.update) {
            (EventType::Update, Some(u)) => u.status.clone(),
            _ => {
                s.absorb(event, &mut held).await?;
                continue;
            }
        };
        // Acknowledge without waiting for the answer: the loop goes on launching.
        s.ack_in_background(&status, &ack_err_tx);
        if status.state == TaskState::Running {
            if let Some(t0) = sent.remove(&status.task_id) {
                latencies.push(at.saturating_duration_since(t0));
                last = at;
            }
        } else if status.state.is_terminal() {
            live.remove(&status.task_id);
            if status.state != TaskState::Finished {
                bail!(
                    "{} ended {:?}: {}",
                    status.task_id,
                    status.state,
                    status.message.unwrap_or_default()
                );
            }
        }
    }
    let leftover: Vec<OfferId> = held.into_iter().map(|o| o.id).collect();
    if !leftover.is_empty() {
        s.decline(leftover).await?;
    }
    let elapsed = first.map_or(Duration::ZERO, |f| last.saturating_duration_since(f));
    Ok(Launched {
        latencies,
        starting: Vec::new(),
        elapsed,
    })
}

/// Posts a call and expects 202.
pub(crate) async fn post_call(
    http: &reqwest::Client,
    url: &str,
    stream_id: &str,
    call: &Call,
) -> anyhow::Result<()> {
    let resp = http
        .post(url)
        .header("Content-Type", "application/json")
        .header("Mesos-Stream-Id", stream_id)
        .timeout(CALL_TIMEOUT)
        .json(call)
        .send()
        .await?;
    let status = resp.status();
    if status != reqwest::StatusCode::ACCEPTED {
        let body = resp.text().await.unwrap_or_default();
        bail!("{:?} answered {status}: {body}", call.kind);
    }
    Ok(())
}

/// Polls `server` over UDP every millisecond until `name` has an A record; the time it did.
async fn resolvable(server: std::net::SocketAddr, name: &str) -> anyhow::Result<Instant> {
    use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
    use hickory_proto::rr::{Name, RecordType};
    let socket = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    socket.connect(server).await?;
    let query = Query::query(Name::from_ascii(name)?, RecordType::A);
    let deadline = Instant::now() + STEP_TIMEOUT;
    let mut buf = vec![0u8; 2048];
    for id in 0u16.. {
        if Instant::now() > deadline {
            bail!("{name} did not resolve within {STEP_TIMEOUT:?}");
        }
        let mut msg = Message::new();
        msg.set_id(id)
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .add_query(query.clone());
        socket.send(&msg.to_vec()?).await?;
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(200), socket.recv(&mut buf)).await
        {
            if let Ok(reply) = Message::from_vec(&buf[..n]) {
                if reply.id() == id
                    && reply.response_code() == ResponseCode::NoError
                    && !reply.answers().is_empty()
                {
                    return Ok(Instant::now());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    bail!("{name} did not resolve")
}

/// A minimal v1 scheduler: one SUBSCRIBE stream read by a background task, calls as POSTs.
pub(crate) struct SchedulerClient {
    pub(crate) http: reqwest::Client,
    pub(crate) url: String,
    pub(crate) framework_id: FrameworkId,
    pub(crate) stream_id: String,
    /// Events with the time they were decoded; an `Err` when the stream failed or ended.
    events: mpsc::UnboundedReceiver<Result<(Instant, Event), String>>,
    reader: tokio::task::JoinHandle<()>,
    /// When the last TASK_STARTING seen by `await_state` was decoded.
    pub(crate) last_starting: Option<Instant>,
    /// The `container` of every task launched (a CNI network), if any.
    pub(crate) container: Option<serde_json::Value>,
}

impl Drop for SchedulerClient {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl SchedulerClient {
    pub(crate) async fn subscribe(
        master: &str,
        checkpoint: bool,
    ) -> anyhow::Result<SchedulerClient> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        let url = format!("{master}/api/v1/scheduler");
        let mut call = Call::new(CallType::Subscribe, None);
        call.subscribe = Some(Subscribe {
            framework_info: FrameworkInfo {
                user: std::env::var("USER").unwrap_or_else(|_| "mantle".to_string()),
                name: "mantle-bench".to_string(),
                checkpoint: checkpoint.then_some(true),
                ..FrameworkInfo::default()
            },
            suppressed_roles: Vec::new(),
        });
        let resp = http
            .post(&url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
            .json(&call)
            .send()
            .await
            .context("SUBSCRIBE")?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            bail!("SUBSCRIBE answered {status}: {body}");
        }
        let stream_id = resp
            .headers()
            .get("Mesos-Stream-Id")
            .and_then(|v| v.to_str().ok())
            .context("SUBSCRIBE answer has no Mesos-Stream-Id header")?
            .to_string();
        let (tx, mut events) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_events(resp, tx));
        let (_, first) = tokio::time::timeout(STEP_TIMEOUT, events.recv())
            .await
            .context("no SUBSCRIBED event in time")?
            .context("event stream ended before SUBSCRIBED")?
            .map_err(|e| anyhow::anyhow!(e))?;
        let Some(subscribed) = first
            .subscribed
            .filter(|_| first.kind == EventType::Subscribed)
        else {
            bail!("first event is {:?}, not SUBSCRIBED", first.kind);
        };
        Ok(SchedulerClient {
            http,
            url,
            framework_id: subscribed.framework_id,
            stream_id,
            events,
            reader,
            last_starting: None,
            container: None,
        })
    }

    /// Posts a call and expects 202.
    pub(crate) async fn call(&self, call: Call) -> anyhow::Result<()> {
        post_call(&self.http, &self.url, &self.stream_id, &call).await
    }

    async fn decline(&self, offer_ids: Vec<OfferId>) -> anyhow::Result<()> {
        let mut call = Call::new(CallType::Decline, Some(self.framework_id.clone()));
        call.decline = Some(Decline {
            offer_ids,
            filters: Some(Filters {
                refuse_seconds: Some(0.0),
            }),
        });
        self.call(call).await.context("DECLINE")
    }

    fn accept_call(
        &self,
        offer: &Offer,
        task_ids: &[TaskId],
        need: &Resources,
        command: &str,
    ) -> Call {
        let tasks: Vec<TaskInfo> = task_ids
            .iter()
            .map(|task_id| TaskInfo {
                name: task_id.to_string(),
                task_id: task_id.clone(),
                agent_id: offer.agent_id.clone(),
                resources: resources_to_wire(need, None),
                executor: None,
                command: Some(CommandInfo {
                    value: Some(command.to_string()),
                    ..CommandInfo::default()
                }),
                kill_policy: None,
                data: None,
                extra: self
                    .container
                    .iter()
                    .map(|c| ("container".to_string(), c.clone()))
                    .collect(),
            })
            .collect();
        self.launch_call(offer, tasks)
    }

    /// ACCEPT of `offer` with one LAUNCH of `tasks`.
    pub(crate) fn launch_call(&self, offer: &Offer, tasks: Vec<TaskInfo>) -> Call {
        let mut call = Call::new(CallType::Accept, Some(self.framework_id.clone()));
        call.accept = Some(Accept {
            offer_ids: vec![offer.id.clone()],
            operations: vec![Operation {
                kind: "LAUNCH".to_string(),
                launch: Some(Launch { task_infos: tasks }),
                launch_group: None,
            }],
            filters: None,
        });
        call
    }

    /// The next event, or an error on timeout, stream end or an ERROR event.
    pub(crate) async fn next_event(
        &mut self,
        deadline: tokio::time::Instant,
    ) -> anyhow::Result<(Instant, Event)> {
        let (at, event) = tokio::time::timeout_at(deadline, self.events.recv())
            .await
            .map_err(|_| anyhow::anyhow!("nothing happened within {STEP_TIMEOUT:?}"))?
            .context("the event stream ended")?
            .map_err(|e| anyhow::anyhow!(e))?;
        if event.kind == EventType::Error {
            let message = event.error.map(|e| e.message).unwrap_or_default();
            bail!("the master sent ERROR: {message}");
        }
        Ok((at, event))
    }

    /// Handles an event that is not the one being waited for: offers are kept, rescinded
    /// offers dropped, updates acknowledged.
    pub(crate) async fn absorb(&self, event: Event, held: &mut Vec<Offer>) -> anyhow::Result<()> {
        match event.kind {
            EventType::Offers => held.extend(event.offers.map(|o| o.offers).unwrap_or_default()),
            EventType::Rescind => {
                if let Some(r) = event.rescind {
                    held.retain(|o| o.id != r.offer_id);
                }
            }
            EventType::Update => {
                if let Some(u) = event.update {
                    self.ack(&u.status).await?;
                    warn!(task = %u.status.task_id, state = ?u.status.state, "unexpected update");
                }
            }
            EventType::Failure => warn!(failure = ?event.failure, "FAILURE event"),
            _ => {}
        }
        Ok(())
    }

    /// An offer from `held` that has room for `need`, waiting for OFFERS if there is none.
    pub(crate) async fn take_offer(
        &mut self,
        held: &mut Vec<Offer>,
        need: &Resources,
    ) -> anyhow::Result<Offer> {
        let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
        loop {
            let fits = held.iter().position(|o| {
                resources_from_wire(&o.resources, "offer.resources").is_ok_and(|r| r.contains(need))
            });
            if let Some(i) = fits {
                return Ok(held.remove(i));
            }
            let (_, event) = self
                .next_event(deadline)
                .await
                .context("waiting for an offer")?;
            self.absorb(event, held).await?;
        }
    }

    /// Waits for an update of `task_id` in `state` and returns when it was received; any
    /// other terminal state of that task is an error.
    async fn await_state(
        &mut self,
        task_id: &TaskId,
        state: TaskState,
        held: &mut Vec<Offer>,
    ) -> anyhow::Result<Instant> {
        let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
        loop {
            let (at, event) = self
                .next_event(deadline)
                .await
                .with_context(|| format!("waiting for {task_id} to reach {state:?}"))?;
            let status = match (&event.kind, &event.update) {
                (EventType::Update, Some(u)) if u.status.task_id == *task_id => u.status.clone(),
                _ => {
                    self.absorb(event, held).await?;
                    continue;
                }
            };
            self.ack(&status).await?;
            if status.state == TaskState::Starting {
                self.last_starting = Some(at);
            }
            if status.state == state {
                return Ok(at);
            }
            if status.state.is_terminal() {
                bail!(
                    "{task_id} reached {:?} ({}) while waiting for {state:?}",
                    status.state,
                    status.message.unwrap_or_default()
                );
            }
        }
    }

    async fn ack(&self, status: &TaskStatus) -> anyhow::Result<()> {
        match self.ack_call(status) {
            Some(call) => self.call(call).await.context("ACKNOWLEDGE"),
            None => Ok(()),
        }
    }

    /// Sends the ACKNOWLEDGE an update needs without waiting for the answer; a failure is
    /// reported on `errors`.
    pub(crate) fn ack_in_background(
        &self,
        status: &TaskStatus,
        errors: &mpsc::UnboundedSender<String>,
    ) {
        let Some(call) = self.ack_call(status) else {
            return;
        };
        let (http, url, stream, errors) = (
            self.http.clone(),
            self.url.clone(),
            self.stream_id.clone(),
            errors.clone(),
        );
        tokio::spawn(async move {
            if let Err(e) = post_call(&http, &url, &stream, &call).await {
                let _ = errors.send(e.to_string());
            }
        });
    }

    /// The ACKNOWLEDGE an update needs, if it carries a uuid.
    pub(crate) fn ack_call(&self, status: &TaskStatus) -> Option<Call> {
        let (Some(uuid), Some(agent_id)) = (&status.uuid, &status.agent_id) else {
            return None;
        };
        let mut call = Call::new(CallType::Acknowledge, Some(self.framework_id.clone()));
        call.acknowledge = Some(Acknowledge {
            agent_id: agent_id.clone(),
            task_id: status.task_id.clone(),
            uuid: uuid.clone(),
        });
        Some(call)
    }
}

/// Reads the SUBSCRIBE response as RecordIO, stamping each event with the time it was
/// decoded. Ends with an `Err` item when the stream fails, ends or is malformed.
async fn read_events(
    resp: reqwest::Response,
    tx: mpsc::UnboundedSender<Result<(Instant, Event), String>>,
) {
    let mut body = resp.bytes_stream();
    let mut decoder = Decoder::new(MAX_EVENT_BYTES);
    loop {
        let chunk = match body.next().await {
            Some(Ok(c)) => c,
            Some(Err(e)) => {
                let _ = tx.send(Err(format!("event stream failed: {e}")));
                return;
            }
            None => {
                let _ = tx.send(Err("the master closed the event stream".to_string()));
                return;
            }
        };
        decoder.feed(&chunk);
        loop {
            match decoder.next_record() {
                Ok(Some(record)) => {
                    let at = Instant::now();
                    let item = serde_json::from_slice::<Event>(&record)
                        .map(|e| (at, e))
                        .map_err(|e| format!("undecodable event: {e}"));
                    let failed = item.is_err();
                    if tx.send(item).is_err() || failed {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(Err(format!("bad RecordIO framing: {e}")));
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|x| Duration::from_millis(*x)).collect()
    }

    #[test]
    fn stats_use_middle_median_and_nearest_rank_percentiles() {
        assert_eq!(Stats::of(&[]), None);
        let one = Stats::of(&ms(&[7])).expect("one value");
        assert_eq!(
            (one.min, one.median, one.p99, one.max),
            (7.0, 7.0, 7.0, 7.0)
        );
        let even = Stats::of(&ms(&[4, 1, 3, 2])).expect("values");
        assert_eq!(even.median, 2.5);
        assert_eq!((even.min, even.max), (1.0, 4.0));
        // 1..=100 ms: nearest rank p90 is the 90th value, p99 the 99th.
        let hundred: Vec<u64> = (1..=100).rev().collect();
        let s = Stats::of(&ms(&hundred)).expect("values");
        assert_eq!((s.median, s.p90, s.p99, s.max), (50.5, 90.0, 99.0, 100.0));
    }

    #[test]
    fn report_prints_each_figure_and_a_summary_line() {
        let r = Report {
            agents: 1,
            latencies: ms(&[10, 20, 30]),
            starting: ms(&[4, 6, 8]),
            elapsed: Duration::from_secs(2),
            isolation: None,
            floor: None,
            concurrency: 1,
            checkpoint: false,
            networked: false,
        };
        let text = r.render();
        let median = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("median"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok());
        assert_eq!(median, Some(20.0), "{text}");
        for name in ["min", "p90", "p99", "max"] {
            assert!(text.lines().any(|l| l.trim().starts_with(name)), "{text}");
        }
        assert!(text.contains("3 tasks launched"), "{text}");
        assert!(
            text.contains("ACCEPT sent to TASK_STARTING received: median 6.000 ms"),
            "{text}"
        );
    }
}
