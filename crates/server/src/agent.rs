//! The agent daemon: registers with the master over the agent protocol, runs executors as
//! processes (each in its own process group, in its sandbox), serves the v1 executor API,
//! `/state` and the sandbox `/files` endpoints, all around one `mantle_agent::Agent` actor.

use crate::agent_checkpoint::CheckpointStore;
use crate::clock::Clock;
use crate::http::{self, EventStream};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use futures::StreamExt;
use mantle_agent::{Agent, CallError, Config, ConnId, ExecutorKind, Output};
use mantle_api::executor::{Call as ExecCall, CallType as ExecCallType};
use mantle_api::internal::{AgentEnvelope, MasterToAgent, RegisterAgent};
use mantle_api::recordio::Decoder;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

/// How long the agent waits without hearing from the master (pings every 5 s) before it
/// drops the connection and re-registers.
const MASTER_SILENCE_LIMIT: Duration = Duration::from_secs(20);
/// How often containers are checked for a memory limitation (also checked at once when one of
/// their tasks ends).
const LIMIT_CHECK_INTERVAL: Duration = Duration::from_millis(250);
/// Most commands handled between two checkpoint writes.
const MAX_BATCH: usize = 512;

type Reply<T> = oneshot::Sender<T>;
type CallReply = Reply<Result<(), CallError>>;

enum Cmd {
    FromMaster(MasterToAgent),
    MasterDisconnected,
    Registration(Reply<RegisterAgent>),
    ExecSubscribe {
        call: ExecCall,
        reply: Reply<Result<EventStream, CallError>>,
    },
    ExecCall {
        call: ExecCall,
        reply: Reply<Result<(), CallError>>,
    },
    ExecGone {
        conn: ConnId,
    },
    ExecStarted {
        container_id: String,
        pid: i32,
    },
    ExecExited {
        container_id: String,
        status: Option<i32>,
    },
    /// A standby executor is done with its container: an exit with status 0 for the
    /// container; `done` once taken (its event stream is then closed).
    ExecReleased {
        container_id: String,
        done: oneshot::Sender<()>,
    },
    State(Reply<serde_json::Value>),
    /// The container could not be set up or hit a limit.
    ContainerFailed {
        container_id: String,
        reason: &'static str,
        message: String,
    },
    /// Periodic look at the containers' limits (cgroups isolation only).
    CheckLimits,
    /// The container was attached to its CNI networks.
    ContainerNetworked {
        container_id: String,
        network_infos: Vec<serde_json::Value>,
    },
    Containers(Reply<Vec<mantle_agent::ContainerInfo>>),
}

/// How executors are isolated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Isolation {
    /// Each executor in its own process group; no limits (Mesos's `posix/cpu,posix/mem`).
    Posix,
    /// Each executor and its tasks in their own cgroups with cpu and memory limits.
    Cgroups(crate::cgroups::Settings),
}

/// The isolators `--isolation` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Isolators {
    pub cgroups: bool,
    pub pids: bool,
    /// `namespaces/pid`: a pid and mount namespace per executor, with its own /proc and /tmp.
    pub pid_namespace: bool,
    /// `network/cni`: containers that name networks get a network namespace joined to them.
    pub cni: bool,
}

/// Parses `--isolation` (Mesos's isolator names): `posix/cpu,posix/mem` (the default) or
/// `cgroups/cpu,cgroups/mem` (plus `cgroups/pids`), either with `namespaces/pid`.
pub fn parse_isolation(text: &str) -> Result<Isolators, String> {
    let mut cgroups = None;
    let mut out = Isolators::default();
    for name in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if name == "namespaces/pid" || name == "filesystem/linux" {
            out.pid_namespace = true;
            continue;
        }
        if name == "network/cni" {
            out.cni = true;
            continue;
        }
        let c = match name {
            "posix/cpu" | "posix/mem" => false,
            "cgroups/cpu" | "cgroups/mem" => true,
            "cgroups/pids" => {
                out.pids = true;
                true
            }
            other => {
                return Err(format!(
                "unknown isolator '{other}'; use posix/cpu,posix/mem or cgroups/cpu,cgroups/mem[,cgroups/pids], optionally with namespaces/pid and network/cni"
            ))
            }
        };
        if cgroups.is_some_and(|x| x != c) {
            return Err("cannot mix posix/* and cgroups/* isolators".into());
        }
        cgroups = Some(c);
    }
    out.cgroups = cgroups.unwrap_or(false);
    Ok(out)
}

/// Options of `mantle agent`.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// `host:port` of the master.
    pub master: String,
    pub ip: String,
    pub port: u16,
    pub work_dir: PathBuf,
    pub resources: mantle_model::Resources,
    pub attributes: Vec<mantle_model::Attribute>,
    pub status_update_retry: Duration,
    /// This binary: run as `log-writer`, and as the built-in executor when no
    /// `mantle-executor` lies beside it.
    pub executor_program: PathBuf,
    pub isolation: Isolation,
    /// `namespaces/pid`: each executor in its own pid and mount namespace.
    pub pid_namespace: bool,
    /// Rotate an executor's `stdout`/`stderr` past this many bytes (0: never).
    pub log_max_size: u64,
    /// Rotated log files kept per stream.
    pub log_keep: u32,
    /// Finished sandboxes are removed after this long (less as the disk fills).
    pub gc_delay: Duration,
    /// Fraction of the disk to keep free; with it, sandboxes age out faster.
    pub gc_disk_headroom: f64,
    /// Bytes the fetcher's cache may hold (`--fetcher-cache-size`).
    pub fetcher_cache_size: u64,
    /// How often disk usage is checked and old sandboxes removed.
    pub disk_watch_interval: Duration,
    /// Run tasks as their `user` (the task's command user, else the framework's).
    pub switch_user: bool,
    /// The Docker daemon's unix socket when the docker containerizer is enabled.
    pub docker_socket: Option<String>,
    /// The `network/cni` isolator, when the agent has CNI networks.
    pub cni: Option<crate::cni::Cni>,
    /// Images for the `mesos` containerizer (`--image-providers docker`).
    pub provisioner: Option<std::sync::Arc<crate::provisioner::Provisioner>>,
    pub recover: Recover,
    /// How many built-in executors to keep started ahead of launches (0: none).
    pub executor_standby: usize,
}

/// What a starting agent does with what a previous run left (`--recover`, as Mesos).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recover {
    /// Take over the live executors from the checkpoint (strict: an unreadable checkpoint
    /// stops the agent rather than lose track of what runs).
    Reconnect,
    /// Kill whatever the checkpoint names and start afresh.
    Cleanup,
}

/// Whether `pid` is a live (not zombie) executor of container `container_id`: its environment
/// names the container, or it is a standby executor working in the container's sandbox, so a
/// recycled pid is never taken for it.
fn executor_alive(pid: i32, container_id: &str) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, r)| r.split_whitespace().next());
    if matches!(state, None | Some("Z") | Some("X")) {
        return false;
    }
    let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    let want = format!("MESOS_CONTAINER_ID={container_id}");
    if env.split(|b| *b == 0).any(|v| v == want.as_bytes()) {
        return true;
    }
    // A standby executor got its container's environment after it started, which
    // /proc/<pid>/environ does not show; it runs in the container's sandbox, `.../runs/<id>`
    // (and only a standby is taken by its sandbox: a task there is not an executor).
    if !env
        .split(|b| *b == 0)
        .any(|v| v == b"MANTLE_EXECUTOR_STANDBY=1")
    {
        return false;
    }
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
    cwd.file_name().is_some_and(|n| n == container_id)
        && cwd
            .parent()
            .and_then(|p| p.file_name())
            .is_some_and(|n| n == "runs")
}

/// Watches a recovered executor (not this process's child, so it cannot be waited for) and
/// reports its exit.
fn watch_recovered(container_id: String, pid: i32, tx: mpsc::UnboundedSender<Cmd>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if !executor_alive(pid, &container_id) {
                let _ = tx.send(Cmd::ExecExited {
                    container_id,
                    status: None,
                });
                return;
            }
            if tx.is_closed() {
                return;
            }
        }
    });
}

impl AgentOptions {
    /// The label value marking this agent's Docker containers.
    pub fn docker_label(&self) -> String {
        format!("agent-{}-{}", self.ip, self.port)
    }
}

#[derive(Clone)]
struct AppState {
    tx: mpsc::UnboundedSender<Cmd>,
    sandbox_root: PathBuf,
    cgroups: Option<std::sync::Arc<crate::cgroups::Cgroups>>,
    /// The Docker daemon and this agent's label on its containers, with `--containerizers
    /// docker`.
    docker: Option<(bollard::Docker, String)>,
}

/// Resources of this machine when `--resources` is not given: all cpus, memory less 1 GiB
/// (at least half), free disk of the work dir less 5 GiB (at least half), ports 31000-32000.
pub fn detect_resources(work_dir: &Path) -> mantle_model::Resources {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as f64;
    let mem_mb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(1024.0);
    let mem = (mem_mb - 1024.0).max(mem_mb / 2.0).floor();
    let disk_mb = nix::sys::statvfs::statvfs(work_dir)
        .map(|s| s.blocks_available() as f64 * s.fragment_size() as f64 / 1048576.0)
        .unwrap_or(10240.0);
    let disk = (disk_mb - 5120.0).max(disk_mb / 2.0).floor();
    let text = format!("cpus:{cpus};mem:{mem};disk:{disk};ports:[31000-32000]");
    mantle_model::Resources::parse(&text).unwrap_or_default()
}

/// Runs the agent on a bound listener until `shutdown` resolves; executors it started are
/// killed on the way out.
pub async fn serve(
    listener: tokio::net::TcpListener,
    options: AgentOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let sandbox_root = options.work_dir.join("slaves");
    std::fs::create_dir_all(&sandbox_root)?;
    let sandbox_root = std::fs::canonicalize(&sandbox_root)?;
    // What a previous run of this agent left: executors to take over, or to kill.
    let mut store = CheckpointStore::new(options.work_dir.join("meta"));
    let previous = store.read()?;
    let mut recovered: BTreeMap<String, i32> = BTreeMap::new();
    let previous = match (previous, options.recover) {
        (Some(cp), Recover::Reconnect) => {
            for (cid, pid) in &cp.pids {
                if executor_alive(*pid, cid) {
                    recovered.insert(cid.clone(), *pid);
                }
            }
            info!(
                executors = cp.core.executors.len(),
                alive = recovered.len(),
                "recovering from the checkpoint"
            );
            Some(cp.core)
        }
        (Some(cp), Recover::Cleanup) => {
            for (cid, pid) in &cp.pids {
                if executor_alive(*pid, cid) {
                    warn!(container_id = %cid, pid, "--recover cleanup: killing an executor");
                    kill_group(*pid, nix::sys::signal::Signal::SIGKILL);
                }
            }
            None
        }
        (None, _) => None,
    };
    let cgroups = match &options.isolation {
        Isolation::Posix => None,
        Isolation::Cgroups(settings) => {
            let cg = crate::cgroups::Cgroups::new(settings.clone())?;
            // Whatever a previous run left that is not being recovered is an orphan.
            for id in cg
                .containers()
                .into_iter()
                .filter(|id| !recovered.contains_key(id))
            {
                warn!(container_id = %id, "destroying an orphaned container");
                if let Err(e) = cg.destroy(&id).await {
                    warn!(container_id = %id, error = %e, "could not destroy an orphaned container");
                }
            }
            info!(layout = ?cg.layout(), root = %settings.root, "cgroups isolation");
            Some(std::sync::Arc::new(cg))
        }
    };
    if let Some(cni) = &options.cni {
        // Namespaces a previous run left for containers not being recovered are orphans.
        for id in cni
            .containers()
            .into_iter()
            .filter(|id| !recovered.contains_key(id))
        {
            warn!(container_id = %id, "detaching an orphaned container from its networks");
            let (cni, id2) = (cni.clone(), id.clone());
            let detached = tokio::task::spawn_blocking(move || cni.detach(&id2)).await;
            if let Ok(Err(e)) = detached {
                warn!(container_id = %id, error = %e, "could not detach an orphaned container");
            }
        }
    }
    if let Some(prov) = options.provisioner.clone() {
        // Root filesystems a previous run left for containers not being recovered.
        let recovered: Vec<String> = recovered.keys().cloned().collect();
        let _ = tokio::task::spawn_blocking(move || {
            for id in prov
                .containers()
                .into_iter()
                .filter(|id| !recovered.contains(id))
            {
                warn!(container_id = %id, "removing an orphaned container's root filesystem");
                prov.destroy(&id);
            }
        })
        .await;
    }
    let docker = match &options.docker_socket {
        None => None,
        Some(socket) => {
            let d = crate::docker::connect(socket)
                .await
                .map_err(|e| anyhow::anyhow!("--containerizers docker: {e}"))?;
            // Every container this agent left behind that no recovered executor owns is an
            // orphan.
            for name in crate::docker::containers_of(&d, &options.docker_label())
                .await
                .map_err(|e| anyhow::anyhow!("listing Docker containers: {e}"))?
                .into_iter()
                .filter(|n| {
                    !recovered
                        .keys()
                        .any(|cid| crate::docker::is_of_container(n, cid))
                })
            {
                warn!(container = %name, "removing an orphaned Docker container");
                if let Err(e) = crate::docker::remove(&d, &name).await {
                    warn!(container = %name, error = %e, "could not remove an orphaned container");
                }
            }
            info!(%socket, "docker containerizer");
            Some(d)
        }
    };
    let clock = Clock::new();
    let seed = clock.now().wall_secs.to_bits() ^ u64::from(options.port);
    let config = Config {
        hostname: options.ip.clone(),
        port: options.port,
        resources: options.resources.clone(),
        attributes: options.attributes.clone(),
        sandbox_root: sandbox_root.to_string_lossy().into_owned(),
        status_update_retry_min: options.status_update_retry,
        seed,
    };
    let mut agent = match previous {
        Some(cp) => Agent::recover(config, clock.now(), cp, |cid| recovered.contains_key(cid)),
        None => Agent::new(config, clock.now()),
    };
    if let Some(cni) = &options.cni {
        for cid in recovered.keys() {
            if let Some(a) = cni.attached(cid) {
                agent.container_networked(cid, a.network_infos);
            }
        }
    }
    let (tx, rx) = mpsc::unbounded_channel();
    for (cid, pid) in &recovered {
        watch_recovered(cid.clone(), *pid, tx.clone());
    }
    let (to_master_tx, to_master_rx) = mpsc::unbounded_channel();
    // Connections to the master leave from the agent's own address, so the master (and
    // a firewall) sees the agent where it says it is.
    let source = options
        .ip
        .parse::<std::net::IpAddr>()
        .ok()
        .filter(|ip| !ip.is_unspecified());
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .local_address(source)
        .build()?;
    let pids = std::sync::Arc::new(std::sync::Mutex::new(recovered.clone()));
    tokio::spawn(actor(
        agent,
        clock,
        rx,
        tx.clone(),
        to_master_tx,
        options.clone(),
        pids.clone(),
        cgroups.clone(),
        Some(store),
    ));
    tokio::spawn(sandbox_gc(
        options.clone(),
        sandbox_root.clone(),
        tx.clone(),
    ));
    tokio::spawn(master_link(
        client.clone(),
        options.master.clone(),
        tx.clone(),
    ));
    tokio::spawn(master_sender(client, options.master.clone(), to_master_rx));
    let state = AppState {
        tx,
        sandbox_root,
        cgroups: cgroups.clone(),
        docker: docker.clone().map(|d| (d, options.docker_label())),
    };
    let app = Router::new()
        .route("/api/v1/executor", any(executor_api))
        .route("/slave(1)/api/v1/executor", any(executor_api))
        .route("/state", get(state_endpoint))
        .route("/state.json", get(state_endpoint))
        .route("/slave(1)/state", get(state_endpoint))
        .route("/slave(1)/state.json", get(state_endpoint))
        .route("/health", get(|| async { StatusCode::OK }))
        .route("/files/browse", get(files_browse))
        .route("/files/read", get(files_read))
        .route("/files/read.json", get(files_read))
        .route("/files/browse.json", get(files_browse))
        .route("/files/download", get(files_download))
        .route("/files/download.json", get(files_download))
        .route("/monitor/statistics", get(monitor_statistics))
        .route("/monitor/statistics.json", get(monitor_statistics))
        .route("/slave(1)/monitor/statistics", get(monitor_statistics))
        .fallback(http::not_found)
        .layer(DefaultBodyLimit::max(http::MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(|r, n| {
            crate::http::refuse_oversized(crate::http::MAX_BODY_BYTES, r, n)
        }))
        .with_state(state);
    info!(ip = %options.ip, port = options.port, "agent started");
    let result = tokio::select! {
        r = axum::serve(http::nodelay(listener), app) => r,
        _ = shutdown => { info!("agent stopping"); Ok(()) }
    };
    // Leave nothing behind: kill every executor process group we started.
    let groups: Vec<i32> = pids
        .lock()
        .map(|m| m.values().copied().collect())
        .unwrap_or_default();
    // SIGTERM first: the built-in executor then kills its tasks' process groups; whatever
    // is still there a second later is killed outright.
    for pgid in &groups {
        kill_group(*pgid, nix::sys::signal::Signal::SIGTERM);
    }
    if !groups.is_empty() {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for pgid in groups {
        kill_group(pgid, nix::sys::signal::Signal::SIGKILL);
    }
    if let Some(cg) = &cgroups {
        for id in cg.containers() {
            if let Err(e) = cg.destroy(&id).await {
                warn!(container_id = %id, error = %e, "could not destroy a container");
            }
        }
        cg.remove_root();
    }
    if let Some(cni) = options.cni.clone() {
        let _ = tokio::task::spawn_blocking(move || {
            for id in cni.containers() {
                if let Err(e) = cni.detach(&id) {
                    warn!(container_id = %id, error = %e, "could not detach a container from its networks");
                }
            }
            cni.remove_root();
        })
        .await;
    }
    if let Some(prov) = options.provisioner.clone() {
        let _ = tokio::task::spawn_blocking(move || {
            for id in prov.containers() {
                prov.destroy(&id);
            }
        })
        .await;
    }
    if let Some(d) = &docker {
        for name in crate::docker::containers_of(d, &options.docker_label())
            .await
            .unwrap_or_default()
        {
            let _ = crate::docker::remove(d, &name).await;
        }
    }
    result?;
    Ok(())
}

fn kill_group(pgid: i32, signal: nix::sys::signal::Signal) {
    if pgid > 1 {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), signal);
    }
}

#[allow(clippy::too_many_arguments)] // the actor owns the shell's pieces; a struct would only rename them
async fn actor(
    mut agent: Agent,
    clock: Clock,
    mut rx: mpsc::UnboundedReceiver<Cmd>,
    tx: mpsc::UnboundedSender<Cmd>,
    to_master: mpsc::UnboundedSender<(AgentEnvelope, ())>,
    options: AgentOptions,
    pids: std::sync::Arc<std::sync::Mutex<BTreeMap<String, i32>>>,
    cgroups: Option<std::sync::Arc<crate::cgroups::Cgroups>>,
    mut checkpoints: Option<CheckpointStore>,
) {
    // Standby executors, started now so the first launches find them ready.
    let standbys = Standbys::new(&options, tx.clone(), cgroups.as_deref());
    if let Some(s) = &standbys {
        s.refill();
    }
    let mut execs: BTreeMap<ConnId, mpsc::Sender<Bytes>> = BTreeMap::new();
    let mut next_conn: ConnId = 1;
    // Executor calls answered once the checkpoint that holds them is written.
    let mut deferred: Vec<(CallReply, Result<(), CallError>)> = Vec::new();
    // Containers with cgroups, and the memory limit each was given (for messages).
    let mut limited: BTreeMap<String, mantle_agent::ContainerLimits> = BTreeMap::new();
    if cgroups.is_some() {
        // Recovered containers are watched for limitations as before the restart.
        for c in agent.containers() {
            limited.insert(c.container_id, c.limits);
        }
    }
    let fetcher = crate::fetcher::Fetcher::new(
        options.work_dir.join("fetcher-cache"),
        options.fetcher_cache_size,
    );
    if cgroups.is_some() {
        let tick = tx.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(LIMIT_CHECK_INTERVAL);
            loop {
                every.tick().await;
                if tick.send(Cmd::CheckLimits).is_err() {
                    return;
                }
            }
        });
    }
    // Looks for a memory limitation of `container_id`; reports it once.
    let check_oom = |agent: &mut Agent,
                     limited: &mut BTreeMap<String, mantle_agent::ContainerLimits>,
                     container_id: &str,
                     now| {
        let Some(cg) = &cgroups else { return };
        let Some(limits) = limited.get(container_id).copied() else {
            return;
        };
        if cg.oom_kills(container_id) == 0 {
            return;
        }
        limited.remove(container_id);
        let usage = cg.usage(container_id);
        let message = format!(
            "Memory limit exceeded: Requested: {}MB Maximum Used: {}MB",
            (limits.mem_mb.round() as u64),
            usage.mem_max_bytes / (1024 * 1024)
        );
        warn!(container_id, %message, "container limitation");
        agent.container_failed(
            now,
            container_id,
            "REASON_CONTAINER_LIMITATION_MEMORY",
            &message,
        );
    };
    // A container's executor exited or was released: the container ends.
    let container_ended = |agent: &mut Agent,
                           limited: &mut BTreeMap<String, mantle_agent::ContainerLimits>,
                           now,
                           container_id: String,
                           status: Option<i32>| {
        check_oom(agent, limited, &container_id, now);
        limited.remove(&container_id);
        let sandbox = agent.sandbox_of(&container_id).map(PathBuf::from);
        agent.executor_exited(now, &container_id, status);
        let cni = options.cni.clone();
        let provisioner = options.provisioner.clone();
        if cgroups.is_none() && cni.is_none() && provisioner.is_none() {
            return;
        }
        let cgroups = cgroups.clone();
        // And whatever left the executor's group but not the cgroup.
        tokio::spawn(async move {
            if let Some(cg) = &cgroups {
                if let Err(e) = cg.destroy(&container_id).await {
                    warn!(%container_id, error = %e, "could not destroy a container");
                }
            }
            // Its root filesystem once nothing of it runs.
            if let Some(prov) = provisioner {
                let id = container_id.clone();
                let _ = tokio::task::spawn_blocking(move || prov.destroy(&id)).await;
            }
            // Off its networks once nothing of it runs.
            if let Some(cni) = cni {
                let id = container_id.clone();
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || cni.detach(&id)).await {
                    warn!(%container_id, error = %e, "could not detach a container from its networks");
                }
            }
            if cgroups.is_none() {
                return;
            }
            // The sandbox's files stay in the page cache charged to the removed memory
            // cgroup, which the kernel then keeps as a dying cgroup (one per launch, and
            // thousands slow every cgroup operation): once the kernel has written them back,
            // drop them.
            let Some(dir) = sandbox else { return };
            tokio::time::sleep(SANDBOX_UNCACHE_DELAY).await;
            let _ = tokio::task::spawn_blocking(move || {
                crate::sandbox::uncache(&dir, SANDBOX_UNCACHE_MAX_FILES)
            })
            .await;
        });
    };
    loop {
        let deadline = agent.next_deadline().map(|d| clock.instant(d));
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { break };
                // Take what else is waiting too: one checkpoint write covers the whole batch
                // (group commit).
                let mut batch = vec![cmd];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(c) => batch.push(c),
                        Err(_) => break,
                    }
                }
                for cmd in batch {
                let now = clock.now();
                match cmd {
                    Cmd::FromMaster(m) => agent.from_master(now, m),
                    Cmd::MasterDisconnected => agent.master_disconnected(),
                    Cmd::Registration(reply) => { let _ = reply.send(agent.registration()); }
                    Cmd::ExecSubscribe { call, reply } => {
                        let conn = next_conn;
                        next_conn += 1;
                        match agent.executor_subscribe(now, conn, &call) {
                            Ok(first) => {
                                let (stx, srx) = mpsc::channel(http::STREAM_BUFFER);
                                let _ = stx.try_send(http::frame(&first));
                                execs.insert(conn, stx);
                                let gone = tx.clone();
                                let _ = reply.send(Ok(EventStream::new(srx, move || { let _ = gone.send(Cmd::ExecGone { conn }); })));
                            }
                            Err(e) => { let _ = reply.send(Err(e)); }
                        }
                    }
                    Cmd::ExecCall { call, reply } => {
                        // A task that ends may have ended by the OOM killer: say so first.
                        let terminal = call.update.as_ref().is_some_and(|u| u.status.state.is_terminal());
                        if terminal {
                            if let Some(cid) = agent.container_of(&call.framework_id, &call.executor_id) {
                                check_oom(&mut agent, &mut limited, &cid, now);
                            }
                        }
                        deferred.push((reply, agent.executor_call(now, call)));
                    }
                    Cmd::ExecGone { conn } => { execs.remove(&conn); agent.executor_disconnected(conn); }
                    Cmd::ExecStarted { container_id, pid } => {
                        if let Ok(mut m) = pids.lock() { m.insert(container_id, pid); }
                    }
                    Cmd::ExecReleased { container_id, done } => {
                        // Its process serves on: nothing of it is killed.
                        if let Ok(mut m) = pids.lock() {
                            m.remove(&container_id);
                        }
                        container_ended(&mut agent, &mut limited, now, container_id, Some(0));
                        let _ = done.send(());
                    }
                    Cmd::ExecExited { container_id, status } => {
                        if let Ok(mut m) = pids.lock() {
                            // Whatever the executor left in its group goes with it.
                            if let Some(pgid) = m.remove(&container_id) {
                                kill_group(pgid, nix::sys::signal::Signal::SIGKILL);
                            }
                        }
                        container_ended(&mut agent, &mut limited, now, container_id, status);
                    }
                    Cmd::State(reply) => { let _ = reply.send(agent.state()); }
                    Cmd::ContainerFailed { container_id, reason, message } => {
                        agent.container_failed(now, &container_id, reason, &message);
                    }
                    Cmd::CheckLimits => {
                        let ids: Vec<String> = limited.keys().cloned().collect();
                        for id in ids {
                            check_oom(&mut agent, &mut limited, &id, now);
                        }
                    }
                    Cmd::Containers(reply) => { let _ = reply.send(agent.containers()); }
                    Cmd::ContainerNetworked { container_id, network_infos } => {
                        agent.container_networked(&container_id, network_infos);
                    }
                }
                }
            }
            _ = sleep => {}
        }
        let now = clock.now();
        if agent.next_deadline().is_some_and(|d| now.mono >= d) {
            agent.tick(now);
        }
        // Durable before it is acknowledged or acted on: an executor's update is answered, and
        // anything is sent to the master, only once the checkpoint holding it is written.
        let mut durable = true;
        if let Some(store) = checkpoints.as_mut() {
            let pids_now = pids.lock().map(|m| m.clone()).unwrap_or_default();
            if let Err(e) = store.write(&mut agent, &pids_now) {
                durable = false;
                // Nothing is acknowledged that is not on disk: executors retry their updates.
                warn!(error = %e, "cannot write the agent checkpoint");
                for (reply, _) in deferred.drain(..) {
                    let _ = reply.send(Err(CallError::ServiceUnavailable(format!(
                        "Agent cannot checkpoint: {e}"
                    ))));
                }
            }
        }
        for (reply, result) in deferred.drain(..) {
            let _ = reply.send(result);
        }
        for out in agent.take_outputs() {
            match out {
                Output::ToMaster(message) => {
                    debug!(?message, "to master");
                    // An update that is not on disk is not sent: it stays queued in the core and
                    // goes out on its next retry, once a checkpoint holding it is written.
                    if !durable
                        && matches!(
                            message,
                            mantle_api::internal::AgentToMaster::StatusUpdate { .. }
                        )
                    {
                        continue;
                    }
                    if let (Some(agent_id), Some(stream_id)) = (agent.agent_id(), agent.stream_id())
                    {
                        let envelope = AgentEnvelope {
                            agent_id: agent_id.clone(),
                            stream_id: stream_id.to_string(),
                            message,
                        };
                        let _ = to_master.send((envelope, ()));
                    }
                }
                Output::ToExecutor { conn, event } => {
                    if let Some(s) = execs.get(&conn) {
                        if s.try_send(http::frame(&event)).is_err() {
                            execs.remove(&conn);
                        }
                    }
                }
                Output::CloseExecutor { conn } => {
                    execs.remove(&conn);
                }
                Output::KillExecutor { container_id } => {
                    let pgid = pids.lock().ok().and_then(|m| m.get(&container_id).copied());
                    if let Some(pgid) = pgid {
                        kill_group(pgid, nix::sys::signal::Signal::SIGKILL);
                    }
                    if let Some(cg) = cgroups.clone() {
                        tokio::spawn(async move {
                            if let Err(e) = cg.kill_all(&container_id).await {
                                warn!(%container_id, error = %e, "could not kill a container");
                            }
                        });
                    }
                }
                Output::UpdateContainer {
                    container_id,
                    limits,
                } => {
                    if let Some(cg) = &cgroups {
                        let l = crate::cgroups::Limits {
                            cpus: limits.cpus,
                            mem_mb: limits.mem_mb,
                        };
                        match cg.update(&container_id, l) {
                            Ok(()) => {
                                limited.insert(container_id, limits);
                            }
                            Err(e) => {
                                warn!(%container_id, error = %e, "could not update a container's limits")
                            }
                        }
                    }
                }
                Output::LaunchExecutor {
                    framework_id,
                    executor_id,
                    container_id,
                    directory,
                    kind,
                    role,
                    limits,
                    uris,
                    checkpoint,
                    docker,
                    container,
                } => {
                    let image = match container.as_ref().and_then(crate::provisioner::image_of) {
                        None => None,
                        Some(Err(e)) => {
                            launch_failed(&tx, container_id, e.to_string());
                            continue;
                        }
                        Some(Ok(_)) if options.provisioner.is_none() => {
                            launch_failed(
                                &tx,
                                container_id,
                                "container.mesos.image: this agent runs no images (start it with --image-providers docker and --docker-registry DIR, or run the image as container.type DOCKER on an agent with --containerizers docker,mesos)".to_string(),
                            );
                            continue;
                        }
                        Some(Ok(_)) if !matches!(kind, ExecutorKind::Builtin) => {
                            launch_failed(
                                &tx,
                                container_id,
                                "container.mesos.image: only command tasks and task groups (the built-in executor) run in images here, not a custom executor".to_string(),
                            );
                            continue;
                        }
                        Some(Ok(name)) => Some(name),
                    };
                    let networks = container
                        .as_ref()
                        .and_then(crate::cni::Request::of_container);
                    if let (Some(n), None) = (&networks, &options.cni) {
                        let name = n
                            .networks
                            .first()
                            .and_then(|i| i.get("name"))
                            .and_then(|v| v.as_str())
                            .unwrap_or("");
                        launch_failed(
                            &tx,
                            container_id,
                            format!("container.network_infos names network '{name}', but this agent has no CNI networks (start it with --network-cni-config-dir and --network-cni-plugins-dir)"),
                        );
                        continue;
                    }
                    let mut procs_files = Vec::new();
                    if let Some(cg) = &cgroups {
                        let l = crate::cgroups::Limits {
                            cpus: limits.cpus,
                            mem_mb: limits.mem_mb,
                        };
                        match cg.create(&container_id, l) {
                            Ok(()) => {
                                procs_files = cg.procs_files(&container_id);
                                limited.insert(container_id.clone(), limits);
                            }
                            Err(e) => {
                                warn!(%container_id, error = %e, "could not create the container's cgroups");
                                launch_failed(
                                    &tx,
                                    container_id,
                                    format!("Failed to create the container's cgroups: {e}"),
                                );
                                continue;
                            }
                        }
                    }
                    let spec = LaunchSpec {
                        framework_id: framework_id.to_string(),
                        executor_id: executor_id.to_string(),
                        agent_id: agent.agent_id().map(|a| a.to_string()).unwrap_or_default(),
                        container_id,
                        directory: PathBuf::from(directory),
                        kind,
                        role,
                        procs_files,
                        checkpoint,
                        docker,
                        network: None,
                        rootfs: None,
                    };
                    let uris = match uris {
                        Ok(u) => u,
                        Err(e) => {
                            let message = format!(
                                "Failed to fetch all URIs for container '{}': {e}",
                                spec.container_id
                            );
                            launch_failed(&tx, spec.container_id, message);
                            continue;
                        }
                    };
                    if uris.is_empty() && networks.is_none() && image.is_none() {
                        launch_executor(&options, spec, tx.clone(), standbys.as_ref());
                    } else {
                        let (fetcher, options, tx) = (fetcher.clone(), options.clone(), tx.clone());
                        let standbys = standbys.clone();
                        tokio::spawn(async move {
                            let mut spec = spec;
                            if let (Some(request), Some(cni)) = (networks, options.cni.clone()) {
                                let id = spec.container_id.clone();
                                let attached =
                                    tokio::task::spawn_blocking(move || cni.attach(&id, &request))
                                        .await
                                        .map_err(|e| e.to_string())
                                        .and_then(|r| r.map_err(|e| e.to_string()));
                                match attached {
                                    Ok(a) => {
                                        // Taken by the actor before anything the executor says.
                                        let _ = tx.send(Cmd::ContainerNetworked {
                                            container_id: spec.container_id.clone(),
                                            network_infos: a.network_infos.clone(),
                                        });
                                        spec.network = Some(a);
                                    }
                                    Err(e) => {
                                        warn!(container_id = %spec.container_id, error = %e, "network attach failed");
                                        launch_failed(&tx, spec.container_id, format!("Failed to attach the container to its networks: {e}"));
                                        return;
                                    }
                                }
                            }
                            if let (Some(name), Some(prov)) = (image, options.provisioner.clone()) {
                                let (id, dir) = (spec.container_id.clone(), spec.directory.clone());
                                // The CNI files for its /etc, when it joined networks.
                                let etc = spec
                                    .network
                                    .as_ref()
                                    .and_then(|n| n.netns.parent().map(Path::to_path_buf));
                                let provisioned = tokio::task::spawn_blocking(move || {
                                    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
                                    prov.provision(&id, &name, &dir, etc.as_deref())
                                        .map_err(|e| e.to_string())
                                })
                                .await
                                .map_err(|e| e.to_string())
                                .and_then(|r| r);
                                match provisioned {
                                    Ok(rootfs) => spec.rootfs = Some(rootfs),
                                    Err(e) => {
                                        warn!(container_id = %spec.container_id, error = %e, "provisioning failed");
                                        launch_failed(
                                            &tx,
                                            spec.container_id,
                                            format!(
                                                "Failed to provision the container's image: {e}"
                                            ),
                                        );
                                        return;
                                    }
                                }
                            }
                            if uris.is_empty() {
                                launch_executor(&options, spec, tx, standbys.as_ref());
                                return;
                            }
                            let fetched = match tokio::fs::create_dir_all(&spec.directory).await {
                                Ok(()) => fetcher
                                    .fetch_all(&uris, &spec.directory)
                                    .await
                                    .map_err(|e| e.to_string()),
                                Err(e) => Err(e.to_string()),
                            };
                            match fetched {
                                Ok(()) => launch_executor(&options, spec, tx, standbys.as_ref()),
                                Err(e) => {
                                    let message = format!(
                                        "Failed to fetch all URIs for container '{}': {e}",
                                        spec.container_id
                                    );
                                    warn!(container_id = %spec.container_id, %message, "fetch failed");
                                    launch_failed(&tx, spec.container_id, message);
                                }
                            }
                        });
                    }
                }
            }
        }
    }
}

/// A container that never got an executor: its tasks fail with the reason, then it is
/// reported gone like an exited executor (which also removes its cgroups).
fn launch_failed(tx: &mpsc::UnboundedSender<Cmd>, container_id: String, message: String) {
    let _ = tx.send(Cmd::ContainerFailed {
        container_id: container_id.clone(),
        reason: "REASON_CONTAINER_LAUNCH_FAILED",
        message,
    });
    let _ = tx.send(Cmd::ExecExited {
        container_id,
        status: None,
    });
}

struct LaunchSpec {
    framework_id: String,
    executor_id: String,
    agent_id: String,
    container_id: String,
    directory: PathBuf,
    kind: ExecutorKind,
    role: String,
    /// `cgroup.procs` files the executor joins before it runs (cgroups isolation).
    procs_files: Vec<String>,
    checkpoint: bool,
    /// It runs a DOCKER task (no `namespaces/pid`: that is the `mesos` containerizer's).
    docker: bool,
    /// Its network and UTS namespaces (`network/cni`), when it joined networks.
    network: Option<crate::cni::Attached>,
    /// Its root filesystem, made from its image (`provisioner`).
    rootfs: Option<PathBuf>,
}

/// Writes the shell's own pid into every `cgroup.procs` listed (colon-separated) in
/// `MANTLE_CGROUP_PROCS`, then execs its arguments; exit code 125 when a cgroup can't be joined.
const CGROUP_JOIN_SCRIPT: &str = r#"IFS=:
for f in $MANTLE_CGROUP_PROCS; do
  echo $$ > "$f" || { echo "mantle: cannot join cgroup $f" >&2; exit 125; }
done
unset IFS MANTLE_CGROUP_PROCS
exec "$@""#;

/// Starts a `mantle log-writer` for `file` and returns the pipe to give the executor as that
/// stream. The writer is its own process, so it outlives an agent restart as the executor
/// does, and it ends when every writer of the pipe has.
fn log_writer(options: &AgentOptions, file: &Path) -> std::io::Result<Stdio> {
    let mut child = std::process::Command::new(&options.executor_program)
        .arg("log-writer")
        .arg("--file")
        .arg(file)
        .arg("--max-size")
        .arg(options.log_max_size.to_string())
        .arg("--keep")
        .arg(options.log_keep.to_string())
        .env("MANTLE_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let pipe = child
        .stdin
        .take()
        .ok_or_else(|| std::io::Error::other("log writer has no stdin"))?;
    // Reap it when it ends.
    tokio::task::spawn_blocking(move || child.wait());
    Ok(Stdio::from(pipe))
}

/// Removes finished sandboxes as they age out (`sandbox::max_age`), checking every
/// `disk_watch_interval`.
async fn sandbox_gc(options: AgentOptions, root: PathBuf, tx: mpsc::UnboundedSender<Cmd>) {
    let mut every = tokio::time::interval(options.disk_watch_interval);
    loop {
        every.tick().await;
        let (reply, rx) = oneshot::channel();
        if tx.send(Cmd::Containers(reply)).is_err() {
            return;
        }
        let Ok(live) = rx.await else { return };
        let live: Vec<PathBuf> = live
            .into_iter()
            .map(|c| PathBuf::from(c.directory))
            .collect();
        let root2 = root.clone();
        let (gc_delay, headroom) = (options.gc_delay, options.gc_disk_headroom);
        let removed = tokio::task::spawn_blocking(move || {
            let usage = crate::sandbox::disk_usage(&root2);
            let age = crate::sandbox::max_age(gc_delay, headroom, usage);
            let dirs = crate::sandbox::run_dirs(&root2);
            let gone = crate::sandbox::to_collect(
                std::time::SystemTime::now(),
                &dirs,
                &|p| live.iter().any(|l| l == p),
                age,
            );
            for d in &gone {
                if let Err(e) = std::fs::remove_dir_all(d) {
                    warn!(dir = %d.display(), error = %e, "cannot remove an old sandbox");
                }
            }
            gone.len()
        })
        .await
        .unwrap_or(0);
        if removed > 0 {
            info!(removed, "removed old sandboxes");
        }
    }
}

/// The built-in executor's program and arguments: `mantle-executor` beside `program` when it
/// is there (the same executor without the rest of Mantle, so it starts several times
/// faster), else `program executor`.
fn builtin_executor(program: &Path) -> (String, Vec<String>) {
    let small = program.with_file_name("mantle-executor");
    if small.is_file() {
        (small.to_string_lossy().into_owned(), Vec::new())
    } else {
        (
            program.to_string_lossy().into_owned(),
            vec!["executor".to_string()],
        )
    }
}

/// util-linux's `unshare`, used for `namespaces/pid`.
pub const UNSHARE: &str = "/usr/bin/unshare";

/// Run inside the new namespaces: a /proc of the new pid namespace over an image's root
/// filesystem's (`MANTLE_ROOTFS`: the provisioner mounted the host's), a private /tmp (the
/// sandbox's `tmp/`), then the executor in its sandbox. The new /tmp hides whatever lay under
/// the old one, so the executor program's directory, the sandbox and an image's root (with
/// what is mounted in it), when they lie under /tmp, are bound back at their own paths
/// through descriptors opened before (`--no-canonicalize`, or mount would resolve the
/// descriptor's link to the hidden path).
const NAMESPACE_SCRIPT: &str = r#"S="$MESOS_SANDBOX"; P="$(dirname "$1")"; R="$MANTLE_ROOTFS"
fail() { echo "mantle: $1" >&2; exit 125; }
if [ -n "$R" ]; then { mount -t proc proc "$R/proc" && exec 5<"$R"; } || fail "cannot mount the image's /proc"; fi
mkdir -p "$S/tmp" && chmod 1777 "$S/tmp" && exec 3<"$S" 4<"$P" && mount --bind "$S/tmp" /tmp || fail "cannot set up the private /tmp"
case "$P" in /tmp/*) { mkdir -p "$P" && mount --no-canonicalize --bind /proc/self/fd/4 "$P"; } || fail "cannot keep $P visible";; esac
case "$S" in /tmp/*) { mkdir -p "$S" && mount --no-canonicalize --bind /proc/self/fd/3 "$S"; } || fail "cannot keep the sandbox visible";; esac
case "$R" in /tmp/*) { mkdir -p "$R" && mount --no-canonicalize --rbind /proc/self/fd/5 "$R"; } || fail "cannot keep the image's root visible";; esac
exec 3<&- 4<&- 5<&-
cd "$S" && exec "$@""#;

/// Starts an executor process in its sandbox, in a new process group, with the `MESOS_*`
/// environment executor libraries expect (Mesos `executorEnvironment`), and reports its exit.
fn launch_executor(
    options: &AgentOptions,
    spec: LaunchSpec,
    tx: mpsc::UnboundedSender<Cmd>,
    standbys: Option<&Standbys>,
) {
    // The built-in executor rotates its (and its tasks') output itself; other executors
    // get a `mantle log-writer` per stream.
    let rotate_inside = options.log_max_size > 0 && matches!(spec.kind, ExecutorKind::Builtin);
    if let Err(e) = prepare_sandbox(&spec.directory) {
        start_failed(&spec, &e, &tx);
        return;
    }
    if let (ExecutorKind::Builtin, Some(standbys)) = (&spec.kind, standbys) {
        let mut env = container_env(&spec);
        env.extend(procs_env(&spec));
        // Its output goes to the sandbox from the start (a failure to join the cgroups or to
        // set up rotation is written there); rotation, if asked for, then takes it over.
        let assignment = crate::standby::Assignment {
            directory: spec.directory.clone(),
            env,
            open_output: true,
            leave: standbys.home.clone(),
        };
        let pid = standbys.assign(&spec.container_id, &assignment, &tx);
        standbys.refill();
        if let Some(pid) = pid {
            info!(executor_id = %spec.executor_id, pid, dir = %spec.directory.display(), "executor started (standby)");
            return;
        }
    }
    let started = (|| -> std::io::Result<tokio::process::Child> {
        // O_APPEND: the executor, its tasks and the Docker log copier all write these files,
        // and none may overwrite another's lines.
        let open = |name: &str| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(spec.directory.join(name))
        };
        let (stdout, stderr) = if options.log_max_size > 0 && !rotate_inside {
            (
                log_writer(options, &spec.directory.join("stdout"))?,
                log_writer(options, &spec.directory.join("stderr"))?,
            )
        } else {
            (Stdio::from(open("stdout")?), Stdio::from(open("stderr")?))
        };
        // The program and its arguments; with cgroups, a shell joins the container's cgroups
        // first and then execs it, so not even its first instruction runs outside them.
        let (program, args, env): (String, Vec<String>, Vec<(String, String)>) = match &spec.kind {
            ExecutorKind::Builtin => {
                let (program, args) = builtin_executor(&options.executor_program);
                (program, args, Vec::new())
            }
            ExecutorKind::Custom(command) => {
                let value = command.value.clone().unwrap_or_default();
                let env = command
                    .environment
                    .iter()
                    .flat_map(|e| e.variables.iter())
                    .map(|v| (v.name.clone(), v.value.clone().unwrap_or_default()))
                    .collect();
                if command.shell.unwrap_or(true) {
                    ("/bin/sh".into(), vec!["-c".into(), value], env)
                } else {
                    let args = command.arguments.iter().skip(1).cloned().collect();
                    (value, args, env)
                }
            }
        };
        // With namespaces/pid: util-linux's unshare gives the executor a pid namespace (it is
        // pid 1 there, so nothing it starts outlives it) and a mount namespace with its own
        // /proc, and a shell bind-mounts the sandbox's tmp/ over /tmp before exec'ing it.
        let pid_namespace = options.pid_namespace && !spec.docker;
        let (program, args) = if pid_namespace {
            let mut a: Vec<String> = [
                "--pid",
                "--fork",
                "--kill-child",
                "--mount-proc",
                "--propagation",
                "private",
                "/bin/sh",
                "-c",
                NAMESPACE_SCRIPT,
                "mantle-namespaces",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            a.push(program);
            a.extend(args);
            (UNSHARE.to_string(), a)
        } else {
            (program, args)
        };
        // On CNI networks a custom executor runs in the container's namespaces (and so must
        // reach the agent from there, as in Mesos); the built-in one stays on the host network
        // and starts its tasks there (see `executor`).
        let (program, args) = match &spec.network {
            Some(n) if !matches!(spec.kind, ExecutorKind::Builtin) => crate::cni::command_in(
                &n.netns.display().to_string(),
                &n.utsns.display().to_string(),
                program,
                args,
            ),
            _ => (program, args),
        };
        // `mantle-executor` joins its cgroups itself, before it does anything else, which
        // saves a shell per launch; any other program (or one in namespaces) is wrapped.
        let joins_itself = matches!(spec.kind, ExecutorKind::Builtin)
            && !pid_namespace
            && args.is_empty()
            && program.ends_with("/mantle-executor");
        let mut cmd = if spec.procs_files.is_empty() || joins_itself {
            let mut c = tokio::process::Command::new(&program);
            c.args(&args);
            c
        } else {
            let mut c = tokio::process::Command::new("/bin/sh");
            c.arg("-c")
                .arg(CGROUP_JOIN_SCRIPT)
                .arg("mantle-cgroup-join")
                .arg(&program)
                .args(&args);
            c
        };
        cmd.envs(procs_env(&spec));
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.current_dir(&spec.directory)
            .envs(container_env(&spec))
            .envs(agent_env(options, rotate_inside))
            // Not a standby, even if the agent was started with the variable set.
            .env_remove(crate::standby::STANDBY_ENV)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0)
            .kill_on_drop(false);
        cmd.spawn()
    })();
    let container_id = spec.container_id.clone();
    match started {
        Ok(mut child) => {
            let pid = child.id().map(|p| p as i32).unwrap_or(0);
            info!(executor_id = %spec.executor_id, pid, dir = %spec.directory.display(), "executor started");
            let _ = tx.send(Cmd::ExecStarted {
                container_id: container_id.clone(),
                pid,
            });
            tokio::spawn(async move {
                let status = child.wait().await.ok().map(exit_code);
                let _ = tx.send(Cmd::ExecExited {
                    container_id,
                    status,
                });
            });
        }
        Err(e) => start_failed(&spec, &e, &tx),
    }
}

/// Creates the sandbox, and refuses a launch onto a full disk: an executor started on a disk
/// with no room left dies before it can say why (its own output cannot be written).
fn prepare_sandbox(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let fs = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
    if fs.blocks_available() == 0 {
        return Err(std::io::Error::from(nix::errno::Errno::ENOSPC));
    }
    Ok(())
}

/// Sandbox not writable, disk full, program missing: the tasks fail saying so.
fn start_failed(spec: &LaunchSpec, e: &std::io::Error, tx: &mpsc::UnboundedSender<Cmd>) {
    warn!(executor_id = %spec.executor_id, error = %e, "failed to start executor");
    launch_failed(
        tx,
        spec.container_id.clone(),
        format!(
            "Failed to start the executor in {}: {e}",
            spec.directory.display()
        ),
    );
}

/// An exit status as the agent core takes it: the exit code, or minus the signal.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| -status.signal().unwrap_or(0))
}

/// `MANTLE_CGROUP_PROCS`: the `cgroup.procs` files the executor joins (cgroups isolation).
fn procs_env(spec: &LaunchSpec) -> Option<(String, String)> {
    (!spec.procs_files.is_empty()).then(|| {
        (
            "MANTLE_CGROUP_PROCS".to_string(),
            spec.procs_files.join(":"),
        )
    })
}

/// The `MESOS_*` environment of one container's executor (Mesos `executorEnvironment`).
fn container_env(spec: &LaunchSpec) -> Vec<(String, String)> {
    let dir = spec.directory.to_string_lossy().into_owned();
    [
        ("MESOS_FRAMEWORK_ID", spec.framework_id.clone()),
        ("MESOS_EXECUTOR_ID", spec.executor_id.clone()),
        ("MESOS_DIRECTORY", dir.clone()),
        ("MESOS_SANDBOX", dir),
        ("MESOS_SLAVE_ID", spec.agent_id.clone()),
        ("MESOS_AGENT_ID", spec.agent_id.clone()),
        (
            "MESOS_CHECKPOINT",
            if spec.checkpoint { "1" } else { "0" }.to_string(),
        ),
        ("MESOS_ALLOCATION_ROLE", spec.role.clone()),
        ("MESOS_CONTAINER_ID", spec.container_id.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .chain(
        spec.rootfs
            .iter()
            .map(|r| (ROOTFS_ENV.to_string(), r.to_string_lossy().into_owned())),
    )
    .chain(spec.network.iter().flat_map(|n| {
        // The built-in executor starts its tasks and checks in these namespaces.
        [
            (
                NETNS_ENV.to_string(),
                n.netns.to_string_lossy().into_owned(),
            ),
            (
                UTSNS_ENV.to_string(),
                n.utsns.to_string_lossy().into_owned(),
            ),
        ]
    }))
    .collect()
}

/// The container's network namespace (`network/cni`), in its executor's environment.
pub const NETNS_ENV: &str = "MANTLE_NETNS";
/// The container's UTS namespace (`network/cni`), in its executor's environment.
pub const UTSNS_ENV: &str = "MANTLE_UTSNS";
/// The container's root filesystem from its image (`provisioner`), in its executor's
/// environment.
pub const ROOTFS_ENV: &str = "MANTLE_ROOTFS";

/// util-linux's `nsenter`, which runs a container's processes in its namespaces.
pub const NSENTER: &str = "/usr/bin/nsenter";

/// The part of an executor's environment every container of this agent shares (so a standby
/// executor starts with it).
fn agent_env(options: &AgentOptions, rotate_inside: bool) -> Vec<(String, String)> {
    let endpoint = format!("{}:{}", options.ip, options.port);
    let mut env: Vec<(String, String)> = [
        ("MESOS_SLAVE_PID", format!("slave(1)@{endpoint}")),
        ("MESOS_AGENT_ENDPOINT", endpoint),
        ("MESOS_RECOVERY_TIMEOUT", "15mins".to_string()),
        ("MESOS_HTTP_COMMAND_EXECUTOR", "1".to_string()),
        (
            "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD",
            http::mesos_duration(mantle_agent::EXECUTOR_SHUTDOWN_GRACE),
        ),
        (
            "MANTLE_SWITCH_USER",
            if options.switch_user { "1" } else { "0" }.to_string(),
        ),
        ("LIBPROCESS_PORT", "0".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Some(socket) = &options.docker_socket {
        env.push(("MANTLE_DOCKER_SOCKET".to_string(), socket.clone()));
        env.push(("MANTLE_DOCKER_AGENT".to_string(), options.docker_label()));
    }
    if rotate_inside {
        env.push((
            "MANTLE_LOG_MAX_SIZE".to_string(),
            options.log_max_size.to_string(),
        ));
        env.push(("MANTLE_LOG_KEEP".to_string(), options.log_keep.to_string()));
    }
    env
}

/// How long after a container with cgroups is destroyed its sandbox's files are dropped
/// from the page cache: past the kernel's 30 s dirty-page expiry, so they are clean by then.
const SANDBOX_UNCACHE_DELAY: Duration = Duration::from_secs(40);
/// At most this many files of a sandbox are dropped from the page cache.
const SANDBOX_UNCACHE_MAX_FILES: usize = 10_000;

/// How long a released standby's event stream may take to end before the standby is let go.
const STANDBY_STREAM_END_WAIT: Duration = Duration::from_secs(5);
/// How long after a launch took a standby executor its replacement starts.
const STANDBY_REFILL_DELAY: Duration = Duration::from_millis(25);
/// Standbys kept free, counting those back from a container, per `--executor-standby`: the
/// ones beyond exit.
const STANDBY_KEEP_FACTOR: usize = 16;

/// The agent's standby executors (see `crate::standby`), and how it starts more.
#[derive(Clone)]
struct Standbys {
    pool: std::sync::Arc<std::sync::Mutex<crate::standby::Pool>>,
    /// How many to keep ready.
    size: usize,
    /// `mantle-executor`.
    program: String,
    options: AgentOptions,
    tx: mpsc::UnboundedSender<Cmd>,
    /// The `cgroup.procs` files of the agent's own cgroups, where standbys start and go back
    /// to from a container (empty without cgroups).
    home: Vec<String>,
}

impl Standbys {
    /// Standbys when this agent can use them: `--executor-standby` above 0, `mantle-executor`
    /// beside the agent's program, and no namespaces (those executors start inside
    /// `unshare`).
    fn new(
        options: &AgentOptions,
        tx: mpsc::UnboundedSender<Cmd>,
        cgroups: Option<&crate::cgroups::Cgroups>,
    ) -> Option<Standbys> {
        if options.executor_standby == 0 || options.pid_namespace {
            return None;
        }
        let (program, args) = builtin_executor(&options.executor_program);
        if !args.is_empty() {
            return None;
        }
        // Without a way back from the containers' cgroups a standby serves one container
        // and exits (it cannot leave: see `standby::leave`).
        let home = match cgroups {
            None => Vec::new(),
            Some(cg) => std::fs::read_to_string("/proc/self/cgroup")
                .ok()
                .and_then(|own| cg.own_procs_files(&own))
                .unwrap_or_else(|| {
                    warn!("cannot tell the agent's own cgroups; standby executors serve one container each");
                    Vec::new()
                }),
        };
        Some(Standbys {
            pool: Default::default(),
            size: options.executor_standby,
            program,
            options: options.clone(),
            tx,
            home,
        })
    }

    /// Hands the container to a free standby and records its pid (`ExecStarted`) before the
    /// standby can exit as that container's executor. With none free it starts one for this
    /// container (it reads the assignment once it is up), so that it too serves on after it;
    /// `None` only when standbys cannot be had.
    fn assign(
        &self,
        container_id: &str,
        assignment: &crate::standby::Assignment,
        tx: &mpsc::UnboundedSender<Cmd>,
    ) -> Option<i32> {
        let started = |pid| {
            let _ = tx.send(Cmd::ExecStarted {
                container_id: container_id.to_string(),
                pid,
            });
        };
        {
            let mut pool = self.pool.lock().ok()?;
            if let Some(pid) = pool.assign(container_id, assignment, started) {
                return Some(pid);
            }
            if !pool.reserve_one() {
                return None;
            }
        }
        // Started outside the pool's lock, which the standbys' waiters take too.
        let standby = self
            .spawn_one()
            .map_err(|e| warn!(error = %e, "cannot start a standby executor"))
            .ok();
        let mut pool = self.pool.lock().ok()?;
        pool.started(standby);
        pool.assign(container_id, assignment, started)
    }

    /// Starts standbys, off the caller's path, until `size` are ready or starting.
    fn refill(&self) {
        let need = self
            .pool
            .lock()
            .map(|mut p| p.reserve(self.size))
            .unwrap_or(0);
        if need == 0 {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            // Not while the launch that took one still needs the cores.
            tokio::time::sleep(STANDBY_REFILL_DELAY).await;
            for _ in 0..need {
                let started = me
                    .spawn_one()
                    .map_err(|e| warn!(error = %e, "cannot start a standby executor"))
                    .ok();
                if let Ok(mut p) = me.pool.lock() {
                    p.started(started);
                }
            }
        });
    }

    fn spawn_one(&self) -> std::io::Result<crate::standby::Standby> {
        use crate::standby::Standby;
        // Its control line. The agent's launches never wait on it: a write that does not fit
        // fails (that standby is then not used) instead of blocking the actor.
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        ours.set_nonblocking(true)?;
        let line = tokio::net::UnixStream::from_std(ours.try_clone()?)?;
        let rotate_inside = self.options.log_max_size > 0;
        let child = tokio::process::Command::new(&self.program)
            .envs(agent_env(&self.options, rotate_inside))
            .env(crate::standby::STANDBY_ENV, "1")
            .current_dir(&self.options.work_dir)
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
            .stdout(Stdio::null())
            // Until it has a sandbox, what it says goes to the agent's log.
            .stderr(Stdio::inherit())
            .process_group(0)
            .kill_on_drop(false)
            .spawn()?;
        let pid = child.id().map(|p| p as i32).unwrap_or(0);
        let (assigned, containers) = mpsc::unbounded_channel::<String>();
        let standby = Standby {
            pid,
            control: std::sync::Arc::new(ours),
            assigned,
        };
        let waiter = StandbyWaiter {
            again: standby.clone(),
            containers,
            tx: self.tx.clone(),
            pool: self.pool.clone(),
            keep: self.size * STANDBY_KEEP_FACTOR,
        };
        tokio::spawn(waiter.run(child, line));
        Ok(standby)
    }
}

/// The agent's side of one standby: waits for its exit, and carries the executor API over
/// its control line (calls to the actor, answers and events back) while it serves a
/// container.
struct StandbyWaiter {
    /// The standby as the pool holds it, to put back after a release.
    again: crate::standby::Standby,
    /// Which container it was handed, as the pool sends it.
    containers: mpsc::UnboundedReceiver<String>,
    tx: mpsc::UnboundedSender<Cmd>,
    pool: std::sync::Arc<std::sync::Mutex<crate::standby::Pool>>,
    /// Free standbys kept at most.
    keep: usize,
}

impl StandbyWaiter {
    async fn run(mut self, mut child: tokio::process::Child, line: tokio::net::UnixStream) {
        use crate::standby::{FromStandby, ToStandby};
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let (read, mut write) = line.into_split();
        let mut lines = tokio::io::BufReader::new(read).lines();
        let mut reading = true;
        // The container it serves, and whether it served any.
        let mut serving: Option<String> = None;
        let mut served = false;
        // Its executor API: the event stream once subscribed, and the answers to its calls
        // in the order of the calls.
        let mut events: Option<http::EventStream> = None;
        let mut answers = futures::stream::FuturesOrdered::new();
        loop {
            tokio::select! {
                status = child.wait() => {
                    let status = status.ok().map(exit_code);
                    self.exited(&mut serving, &mut served, status);
                    return;
                }
                line = lines.next_line(), if reading => match line {
                    Ok(Some(l)) => match serde_json::from_str::<FromStandby>(&l) {
                        Ok(FromStandby::Call(call)) => answers.push_back(answer(self.tx.clone(), call)),
                        Ok(FromStandby::Released) => {
                            if !self.released(&mut serving, &mut served, &mut events, &mut write).await {
                                return;
                            }
                        }
                        Err(e) => debug!(pid = self.again.pid, error = %e, "undecodable line from a standby executor"),
                    },
                    // It closed its end: its exit follows.
                    Ok(None) | Err(_) => reading = false,
                },
                Some((status, message, stream)) = answers.next(), if !answers.is_empty() => {
                    // A new stream replaces any older one, which is dropped (and gone).
                    if stream.is_some() {
                        events = stream;
                    }
                    let answer = crate::standby::line_of(&ToStandby::Answer { status, message });
                    if let Ok(a) = answer {
                        let _ = write.write_all(&a).await;
                    }
                }
                frame = next_frame(&mut events) => {
                    let line = match frame {
                        Some(f) => crate::standby::event_line(&f),
                        None => {
                            events = None;
                            crate::standby::line_of(&ToStandby::Ended).unwrap_or_default()
                        }
                    };
                    let _ = write.write_all(&line).await;
                }
            }
        }
    }

    /// What the pool handed it so far. Under the pool's lock an assignment is either complete
    /// (line written, container sent) or not begun.
    fn take_assigned(&mut self, serving: &mut Option<String>, served: &mut bool) {
        while let Ok(c) = self.containers.try_recv() {
            *serving = Some(c);
            *served = true;
        }
    }

    fn exited(&mut self, serving: &mut Option<String>, served: &mut bool, status: Option<i32>) {
        let pool = self.pool.clone();
        let Ok(mut p) = pool.lock() else { return };
        self.take_assigned(serving, served);
        match serving.take() {
            // Reported as the exit of the container it serves.
            Some(container_id) => {
                drop(p);
                let _ = self.tx.send(Cmd::ExecExited {
                    container_id,
                    status,
                });
            }
            None if *served => p.ended_idle(self.again.pid),
            None => {
                let failures = p.ended_unassigned(self.again.pid);
                warn!(
                    pid = self.again.pid,
                    ?status,
                    failures,
                    "a standby executor ended unassigned"
                );
                if failures == crate::standby::MAX_FAILURES {
                    warn!("standby executors keep ending; launches start their executors directly");
                }
            }
        }
    }

    /// It is done with its container: the actor ends the container (and closes its event
    /// stream), the stream's end is said on the line, and only then is it free for the next
    /// one, so that `ended` never follows a new assignment. False when the agent is stopping.
    async fn released(
        &mut self,
        serving: &mut Option<String>,
        served: &mut bool,
        events: &mut Option<http::EventStream>,
        write: &mut tokio::net::unix::OwnedWriteHalf,
    ) -> bool {
        use tokio::io::AsyncWriteExt;
        if let Ok(_p) = self.pool.clone().lock() {
            self.take_assigned(serving, served);
        }
        let Some(container_id) = serving.take() else {
            return true;
        };
        let (done, taken) = oneshot::channel();
        if self
            .tx
            .send(Cmd::ExecReleased { container_id, done })
            .is_err()
            || taken.await.is_err()
        {
            return false;
        }
        if let Some(mut stream) = events.take() {
            // The actor closed the stream with the container; should it ever not, the standby
            // is not reused (its line is shut, so it exits) rather than waited for.
            let drained = tokio::time::timeout(STANDBY_STREAM_END_WAIT, async {
                while let Some(Ok(f)) = stream.next().await {
                    let _ = write.write_all(&crate::standby::event_line(&f)).await;
                }
            })
            .await;
            if drained.is_err() {
                warn!(
                    pid = self.again.pid,
                    "a released standby's event stream did not end; it exits"
                );
                let _ = self.again.control.shutdown(std::net::Shutdown::Both);
                return true;
            }
            let ended = crate::standby::line_of(&crate::standby::ToStandby::Ended);
            let _ = write.write_all(&ended.unwrap_or_default()).await;
        }
        let again = self.again.clone();
        let kept = self
            .pool
            .lock()
            .is_ok_and(|mut p| p.released(again, self.keep));
        debug!(pid = self.again.pid, kept, "standby executor released");
        true
    }
}

/// The next frame of `events`, or never when there is none.
async fn next_frame(events: &mut Option<http::EventStream>) -> Option<Bytes> {
    match events.as_mut() {
        Some(s) => s.next().await.and_then(Result::ok),
        None => std::future::pending().await,
    }
}

/// Hands a standby's call to the actor, as the executor API's HTTP handler does, and gives
/// the HTTP status it would answer with (and the event stream of a SUBSCRIBE).
async fn answer(
    tx: mpsc::UnboundedSender<Cmd>,
    call: ExecCall,
) -> (u16, String, Option<http::EventStream>) {
    let refused = |e: CallError| {
        let (status, message) = exec_refusal(e);
        (status.as_u16(), message, None)
    };
    let stopping = (503, "Agent is shutting down".to_string(), None);
    if call.kind == ExecCallType::Subscribe {
        let (reply, rx) = oneshot::channel();
        if tx.send(Cmd::ExecSubscribe { call, reply }).is_err() {
            return stopping;
        }
        return match rx.await {
            Ok(Ok(stream)) => (200, String::new(), Some(stream)),
            Ok(Err(e)) => refused(e),
            Err(_) => stopping,
        };
    }
    let (reply, rx) = oneshot::channel();
    if tx.send(Cmd::ExecCall { call, reply }).is_err() {
        return stopping;
    }
    match rx.await {
        Ok(Ok(())) => (202, String::new(), None),
        Ok(Err(e)) => refused(e),
        Err(_) => stopping,
    }
}

/// Keeps a registration stream open to the master, re-registering after any loss.
async fn master_link(client: reqwest::Client, master: String, tx: mpsc::UnboundedSender<Cmd>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let (reply, rx) = oneshot::channel();
        if tx.send(Cmd::Registration(reply)).is_err() {
            return;
        }
        let Ok(reg) = rx.await else { return };
        let url = format!("http://{master}/api/internal/agent/register");
        match client.post(&url).json(&reg).send().await {
            Ok(resp) if resp.status().is_success() => {
                backoff = Duration::from_millis(200);
                let mut stream = resp.bytes_stream();
                let mut decoder = Decoder::new(http::MAX_BODY_BYTES);
                'read: loop {
                    let chunk =
                        match tokio::time::timeout(MASTER_SILENCE_LIMIT, stream.next()).await {
                            Ok(Some(Ok(c))) => c,
                            Ok(Some(Err(e))) => {
                                warn!(error = %e, "master stream failed");
                                break;
                            }
                            Ok(None) => {
                                warn!("master closed the stream");
                                break;
                            }
                            Err(_) => {
                                warn!("no word from the master; reconnecting");
                                break;
                            }
                        };
                    decoder.feed(&chunk);
                    loop {
                        match decoder.next_record() {
                            Ok(Some(record)) => {
                                match serde_json::from_slice::<MasterToAgent>(&record) {
                                    Ok(m) => {
                                        let _ = tx.send(Cmd::FromMaster(m));
                                    }
                                    Err(e) => warn!(error = %e, "undecodable message from master"),
                                }
                            }
                            Ok(None) => break,
                            Err(e) => {
                                warn!(error = %e, "bad framing from master");
                                break 'read;
                            }
                        }
                    }
                }
                let _ = tx.send(Cmd::MasterDisconnected);
            }
            Ok(resp) => {
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                warn!(%status, %text, "master refused registration");
            }
            Err(e) => debug!(error = %e, "cannot reach master"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Posts agent messages to the master in order. Failures are dropped: the status update
/// manager resends what matters.
async fn master_sender(
    client: reqwest::Client,
    master: String,
    mut rx: mpsc::UnboundedReceiver<(AgentEnvelope, ())>,
) {
    let one = format!("http://{master}/api/internal/agent/message");
    let many = format!("http://{master}/api/internal/agent/messages");
    while let Some((envelope, ())) = rx.recv().await {
        // What queued up while the last POST was out goes in one POST, in order, which the
        // master handles as one step (one registry commit).
        let mut batch = vec![envelope];
        while batch.len() < 256 {
            match rx.try_recv() {
                Ok((e, ())) => batch.push(e),
                Err(_) => break,
            }
        }
        let sent = if batch.len() == 1 {
            client.post(&one).json(&batch[0]).send().await
        } else {
            client.post(&many).json(&batch).send().await
        };
        match sent {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => {
                warn!(status = %r.status(), messages = batch.len(), "master rejected an agent message")
            }
            Err(e) => debug!(error = %e, "cannot send to master"),
        }
    }
}

async fn ask<T>(state: &AppState, make: impl FnOnce(Reply<T>) -> Cmd) -> Result<T, Response> {
    let (reply, rx) = oneshot::channel();
    state
        .tx
        .send(make(reply))
        .map_err(|_| http::error(StatusCode::SERVICE_UNAVAILABLE, "Agent is shutting down"))?;
    rx.await
        .map_err(|_| http::error(StatusCode::SERVICE_UNAVAILABLE, "Agent is shutting down"))
}

/// The executor API's status for a refused call, and its message.
fn exec_refusal(e: CallError) -> (StatusCode, String) {
    match e {
        CallError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
        CallError::Forbidden(m) => (StatusCode::FORBIDDEN, m),
        CallError::ServiceUnavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, m),
    }
}

fn exec_error(e: CallError) -> Response {
    let (status, message) = exec_refusal(e);
    http::error(status, message)
}

async fn executor_api(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let call: ExecCall = match http::decode_call(&method, &headers, &body, "Call") {
        Ok(c) => c,
        Err(r) => return r,
    };
    if call.kind == ExecCallType::Subscribe {
        if !http::accepts_json(&headers) {
            return http::not_acceptable();
        }
        return match ask(&state, |reply| Cmd::ExecSubscribe { call, reply }).await {
            Ok(Ok(stream)) => http::stream_response(stream, &[]),
            Ok(Err(e)) => exec_error(e),
            Err(r) => r,
        };
    }
    match ask(&state, |reply| Cmd::ExecCall { call, reply }).await {
        Ok(Ok(())) => http::accepted(),
        Ok(Err(e)) => exec_error(e),
        Err(r) => r,
    }
}

async fn state_endpoint(State(state): State<AppState>) -> Response {
    match ask(&state, Cmd::State).await {
        Ok(v) => http::json(&v),
        Err(r) => r,
    }
}

/// Resolves a `/files` path inside the sandbox root, following symlinks, and refuses
/// anything that ends up outside it (`..`, absolute paths elsewhere, links out, NUL bytes).
fn resolve_sandbox_path(root: &Path, requested: &str) -> Result<PathBuf, Response> {
    if requested.is_empty() {
        return Err(http::error(
            StatusCode::BAD_REQUEST,
            "Expecting 'path=value' in query.\n",
        ));
    }
    if requested.contains('\0') {
        return Err(http::error(
            StatusCode::BAD_REQUEST,
            format!("'{}' is inaccessible.\n", requested.replace('\0', "\\0")),
        ));
    }
    // Refuse climbing and foreign absolute paths before touching the disk, so that answers
    // never tell whether something outside the sandboxes exists.
    let climbs = Path::new(requested)
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir));
    if climbs || (Path::new(requested).is_absolute() && !Path::new(requested).starts_with(root)) {
        return Err(http::error(
            StatusCode::BAD_REQUEST,
            format!("'{requested}' is inaccessible.\n"),
        ));
    }
    let candidate = if Path::new(requested).is_absolute() {
        PathBuf::from(requested)
    } else {
        root.join(requested)
    };
    let real =
        std::fs::canonicalize(&candidate).map_err(|_| StatusCode::NOT_FOUND.into_response())?;
    if !real.starts_with(root) {
        return Err(http::error(
            StatusCode::BAD_REQUEST,
            format!("'{requested}' is inaccessible.\n"),
        ));
    }
    Ok(real)
}

fn mode_string(mode: u32, is_dir: bool) -> String {
    let mut s = String::with_capacity(10);
    s.push(if is_dir { 'd' } else { '-' });
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

async fn files_browse(
    State(state): State<AppState>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let requested = q.get("path").cloned().unwrap_or_default();
    let dir = match resolve_sandbox_path(&state.sandbox_root, &requested) {
        Ok(p) => p,
        Err(r) => return r,
    };
    if !dir.is_dir() {
        return http::json(&serde_json::json!([]));
    }
    let Ok(read) = std::fs::read_dir(&dir) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    use std::os::unix::fs::MetadataExt;
    let mut entries: Vec<serde_json::Value> = read
        .filter_map(Result::ok)
        .filter_map(|e| {
            let md = std::fs::symlink_metadata(e.path()).ok()?;
            let path = format!("{}/{}", requested.trim_end_matches('/'), e.file_name().to_string_lossy());
            Some(serde_json::json!({
                "path": path, "nlink": md.nlink(), "size": md.size(), "mtime": md.mtime() as f64,
                "mode": mode_string(md.mode(), md.is_dir()), "uid": md.uid().to_string(), "gid": md.gid().to_string(),
            }))
        })
        .collect();
    entries.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
    http::json(&serde_json::Value::Array(entries))
}

/// Longest read `/files/read` returns at once (Mesos: 16 pages).
const FILES_READ_MAX: u64 = 65536;

async fn files_read(
    State(state): State<AppState>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let requested = q.get("path").cloned().unwrap_or_default();
    let parse = |name: &str| -> Result<i64, Response> {
        match q.get(name) {
            None => Ok(-1),
            Some(v) => {
                let n: i64 = v.parse().map_err(|_| {
                    http::error(
                        StatusCode::BAD_REQUEST,
                        format!("Failed to parse {name}: '{v}' is not a number.\n"),
                    )
                })?;
                if n < -1 {
                    return Err(http::error(
                        StatusCode::BAD_REQUEST,
                        format!("Negative {name} provided: {n}.\n"),
                    ));
                }
                Ok(n)
            }
        }
    };
    let (offset, length) = match (parse("offset"), parse("length")) {
        (Ok(o), Ok(l)) => (o, l),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let file = match resolve_sandbox_path(&state.sandbox_root, &requested) {
        Ok(p) => p,
        Err(r) => return r,
    };
    if file.is_dir() {
        return http::error(StatusCode::BAD_REQUEST, "Cannot read a directory.\n");
    }
    // Read only the window asked for: a sandbox file may be far larger than memory.
    let Ok(mut f) = std::fs::File::open(&file) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    if offset == -1 {
        return http::json(&serde_json::json!({"data": "", "offset": size}));
    }
    let start = (offset as u64).min(size);
    let max = if length == -1 {
        FILES_READ_MAX
    } else {
        (length as u64).min(FILES_READ_MAX)
    };
    let mut buf = Vec::with_capacity(max.min(size - start) as usize);
    use std::io::{Read, Seek};
    if f.seek(std::io::SeekFrom::Start(start)).is_err()
        || f.take(max).read_to_end(&mut buf).is_err()
    {
        return http::error(StatusCode::INTERNAL_SERVER_ERROR, "Failed to read file.\n");
    }
    let data = String::from_utf8_lossy(&buf).into_owned();
    http::json(&serde_json::json!({"data": data, "offset": offset}))
}

/// `/files/download?path=...`: the whole file as an attachment, streamed.
async fn files_download(
    State(state): State<AppState>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let requested = q.get("path").cloned().unwrap_or_default();
    let file = match resolve_sandbox_path(&state.sandbox_root, &requested) {
        Ok(p) => p,
        Err(r) => return r,
    };
    if file.is_dir() {
        return http::error(StatusCode::BAD_REQUEST, "Cannot download a directory.\n");
    }
    let Ok(f) = tokio::fs::File::open(&file).await else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().replace(['"', '\\', '\r', '\n'], "_"))
        .unwrap_or_default();
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(f));
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = axum::http::HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(axum::http::header::CONTENT_DISPOSITION, v);
    }
    r
}

/// `/monitor/statistics`: one entry per running executor with its container's usage and limits
/// (Mesos's `ResourceUsage` JSON): from Docker's stats for an executor running Docker
/// containers (summed when it runs several), else from its cgroups. Without either only the
/// limits Mantle gave it are known, so usage fields are absent.
async fn monitor_statistics(State(state): State<AppState>) -> Response {
    let (reply, rx) = oneshot::channel();
    if state.tx.send(Cmd::Containers(reply)).is_err() {
        return http::error(StatusCode::SERVICE_UNAVAILABLE, "Agent is stopping\n");
    }
    let Ok(containers) = rx.await else {
        return http::error(StatusCode::SERVICE_UNAVAILABLE, "Agent is stopping\n");
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    // Docker's usage of each executor's containers (`mesos-<container id>[-n]`).
    let mut in_docker: BTreeMap<String, crate::cgroups::Usage> = BTreeMap::new();
    if let Some((d, label)) = &state.docker {
        let names = crate::docker::containers_of(d, label)
            .await
            .unwrap_or_default();
        // Asked all at once: each answer takes the daemon a moment.
        let asks = containers.iter().flat_map(|c| {
            names
                .iter()
                .filter(|n| crate::docker::is_of_container(n, &c.container_id))
                .map(move |name| async move { (c, crate::docker::usage(d, name).await) })
        });
        for (c, usage) in futures::future::join_all(asks).await {
            if let Some(u) = usage {
                in_docker
                    .entry(c.container_id.clone())
                    .or_insert(crate::cgroups::Usage {
                        cpus_limit: c.limits.cpus,
                        ..Default::default()
                    })
                    .add(&u);
            }
        }
    }
    let entries: Vec<serde_json::Value> = containers
        .into_iter()
        .map(|c| {
            let mut stats = serde_json::json!({"timestamp": now});
            let usage = in_docker
                .remove(&c.container_id)
                .or_else(|| state.cgroups.as_ref().map(|cg| cg.usage(&c.container_id)));
            match usage {
                Some(u) => {
                    stats["cpus_user_time_secs"] = u.cpus_user_time_secs.into();
                    stats["cpus_system_time_secs"] = u.cpus_system_time_secs.into();
                    stats["cpus_limit"] = u.cpus_limit.into();
                    if let Some(n) = u.cpus_nr_periods {
                        stats["cpus_nr_periods"] = n.into();
                    }
                    if let Some(n) = u.cpus_nr_throttled {
                        stats["cpus_nr_throttled"] = n.into();
                    }
                    if let Some(t) = u.cpus_throttled_time_secs {
                        stats["cpus_throttled_time_secs"] = t.into();
                    }
                    stats["mem_total_bytes"] = u.mem_total_bytes.into();
                    stats["mem_rss_bytes"] = u.mem_rss_bytes.into();
                    stats["mem_limit_bytes"] = u.mem_limit_bytes.into();
                    stats["processes"] = u.processes.into();
                }
                None => {
                    stats["cpus_limit"] = c.limits.cpus.into();
                    stats["mem_limit_bytes"] = crate::cgroups::memory_for(c.limits.mem_mb).into();
                }
            }
            serde_json::json!({
                "executor_id": c.executor_id.as_str(),
                "executor_name": c.name,
                "framework_id": c.framework_id.as_str(),
                "source": c.source,
                "container_id": c.container_id,
                "statistics": stats,
            })
        })
        .collect();
    http::json(&serde_json::Value::Array(entries))
}
