//! The `mantle` binary: parses arguments and dispatches to the daemons (`master`, `agent`, `marathon`, `dns`,
//! `local`, the hidden `executor`), the client commands and `bench`.

mod logging;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "mantle",
    version,
    about = "A cluster manager: Mesos-compatible master and agents"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the master (Mesos v1 scheduler API, DRF offers).
    Master(MasterArgs),
    /// Run an agent, or list agents (`mantle agent list`).
    Agent(AgentCommand),
    /// Run a whole local cluster: a master, N agents and the service scheduler as processes.
    Local(LocalArgs),
    /// Run the Marathon-compatible service scheduler (a framework of the master).
    Marathon(MarathonArgs),
    /// Run the Mesos-DNS-compatible DNS server and HTTP API, following the master's events.
    Dns(DnsArgs),
    /// Frameworks known to the master.
    Framework {
        #[command(subcommand)]
        command: ListCommand,
    },
    /// Apps of the service scheduler (Marathon API).
    App {
        #[command(subcommand)]
        command: AppCommand,
    },
    /// Deployments of the service scheduler (Marathon API).
    Deployment {
        #[command(subcommand)]
        command: DeploymentCommand,
    },
    /// Tasks: list (master, or the service scheduler with --app), kill, read their logs.
    Task {
        #[command(subcommand)]
        command: TaskCommand,
    },
    /// Benchmarks against a real local cluster.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Run the deterministic cluster simulator over seeds (`mantle-sim`); a failure prints
    /// its seed, which replays the same run.
    Sim(SimArgs),
    /// The built-in executor, started by agents (not for direct use).
    #[command(hide = true)]
    Executor,
    /// The executor of `mantle bench updates`, started by its agent (not for direct use).
    #[command(hide = true)]
    BenchExecutor {
        #[arg(long)]
        updates: usize,
    },
    /// Copies standard input to a sandbox log file with size-based rotation (started by
    /// agents, not for direct use).
    #[command(hide = true)]
    LogWriter(LogWriterArgs),
}

#[derive(Args)]
struct LogWriterArgs {
    #[arg(long)]
    file: PathBuf,
    #[arg(long)]
    max_size: u64,
    #[arg(long)]
    keep: u32,
}

#[derive(Args)]
struct MasterArgs {
    /// Address to listen on. Without credentials configured Mantle listens on loopback only.
    #[arg(long, default_value = "127.0.0.1", env = "MANTLE_MASTER_IP")]
    ip: Ipv4Addr,
    #[arg(long, default_value_t = 5050, env = "MANTLE_MASTER_PORT")]
    port: u16,
    /// Directory for the master's state.
    #[arg(long, env = "MANTLE_MASTER_WORK_DIR")]
    work_dir: Option<PathBuf>,
    /// Time between batch allocations, in seconds (Mesos --allocation_interval).
    #[arg(long, default_value_t = 1.0, value_parser = positive_secs)]
    allocation_interval: f64,
    /// Role weights, e.g. `web=2,batch=1`.
    #[arg(long, default_value = "")]
    weights: String,
    /// Seconds between pings an agent must answer (Mesos --agent_ping_timeout); an agent
    /// silent for this times --max-agent-ping-timeouts, or disconnected that long, is marked
    /// unreachable.
    #[arg(long, default_value_t = 15.0, value_parser = positive_secs)]
    agent_ping_timeout: f64,
    /// Missed pings before an agent is unreachable (Mesos --max_agent_ping_timeouts).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    max_agent_ping_timeouts: u32,
    /// Seconds agents known to the registry have to re-register with a restarted master
    /// (Mesos --agent_reregister_timeout).
    #[arg(long, default_value_t = 600.0, value_parser = positive_secs)]
    agent_reregister_timeout: f64,
    /// At most this many agents marked unreachable per period, e.g. `1/10mins` (Mesos
    /// --agent_removal_rate_limit); no limit by default.
    #[arg(long)]
    agent_removal_rate_limit: Option<String>,
    /// Share of agents (0 to 1) that may be silent at once before the master assumes it is
    /// the one cut off and marks none unreachable.
    #[arg(long, default_value_t = 0.5)]
    agent_removal_limit: f64,
    /// Seconds an unreachable agent may come back with its tasks; later it is gone (Mesos
    /// --registry_max_agent_age, two weeks).
    #[arg(long, default_value_t = 14.0 * 86400.0, value_parser = positive_age)]
    registry_max_agent_age: f64,
    /// Seconds before an unanswered offer is rescinded (Mesos --offer_timeout); 0 keeps
    /// offers until they are answered, as Mesos does by default.
    #[arg(long, default_value_t = 300.0, value_parser = non_negative_secs)]
    offer_timeout: f64,
    /// The service scheduler's URL (`http://127.0.0.1:8080`), which the web UI reaches through
    /// the master at `/marathon/v2/...`; without it those requests answer 503.
    #[arg(long, env = "MANTLE_MASTER_MARATHON_URL")]
    marathon_url: Option<String>,
}

#[derive(Args)]
struct MarathonArgs {
    /// The master's URL.
    #[arg(
        long,
        default_value = "http://127.0.0.1:5050",
        env = "MANTLE_MASTER_URL"
    )]
    master: String,
    /// Address of the Marathon REST API (loopback only without credentials).
    #[arg(
        long,
        default_value = "127.0.0.1:8080",
        env = "MANTLE_MARATHON_ADDRESS"
    )]
    http_address: std::net::SocketAddr,
    /// Directory for the durable store (apps, versions, deployments, instances).
    #[arg(long, env = "MANTLE_MARATHON_WORK_DIR")]
    work_dir: Option<PathBuf>,
    /// How instances are placed when several offers fit: `spread` or `binpack`.
    #[arg(long, default_value = "spread")]
    placement: mantle_marathon::placement::Strategy,
    /// Milliseconds between periodic task reconciliations with the master (Marathon's
    /// `--reconciliation_interval`); every (re)subscription reconciles too. 0 turns it off.
    #[arg(
        long,
        alias = "reconciliation_interval",
        default_value_t = mantle_server::marathon::RECONCILIATION_INTERVAL_MS
    )]
    reconciliation_interval: u64,
    /// Milliseconds a task may stay STAGING before it is killed and replaced (Marathon's
    /// `--task_launch_timeout`). 0 turns it off.
    #[arg(
        long,
        alias = "task_launch_timeout",
        default_value_t = mantle_server::marathon::TASK_LAUNCH_TIMEOUT_MS
    )]
    task_launch_timeout: u64,
}

#[derive(Args)]
struct DnsArgs {
    /// The master's URL.
    #[arg(
        long,
        default_value = "http://127.0.0.1:5050",
        env = "MANTLE_MASTER_URL"
    )]
    master: String,
    /// UDP and TCP address of the DNS server (loopback only without credentials).
    #[arg(long, default_value = "127.0.0.1:8053", env = "MANTLE_DNS_LISTEN")]
    listen: std::net::SocketAddr,
    /// Address of the Mesos-DNS HTTP API (loopback only without credentials).
    #[arg(long, default_value = "127.0.0.1:8123", env = "MANTLE_DNS_HTTP_LISTEN")]
    http_listen: std::net::SocketAddr,
    /// Do not serve the HTTP API.
    #[arg(long)]
    no_http: bool,
    /// The domain served (Mesos-DNS `domain`).
    #[arg(long, default_value = "mesos", env = "MANTLE_DNS_DOMAIN")]
    domain: String,
    /// Upstream resolvers for names outside the domain, e.g. `127.0.0.53:53,10.0.0.2:53`.
    /// Without any, such names are REFUSED.
    #[arg(long, value_delimiter = ',', env = "MANTLE_DNS_RESOLVERS")]
    resolvers: Vec<std::net::SocketAddr>,
    /// TTL of the records, in seconds (Mesos-DNS `ttl`).
    #[arg(long, default_value_t = mantle_dns::records::DEFAULT_TTL)]
    ttl: u32,
    /// Labels follow RFC 952 (24 characters, starting with a letter) instead of RFC 1123.
    #[arg(long)]
    enforce_rfc952: bool,
    /// Where task addresses come from, in order (Mesos-DNS `IPSources`).
    #[arg(long, value_delimiter = ',', default_value = "netinfo,mesos,host")]
    ip_sources: Vec<mantle_dns::IpSource>,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
struct AgentCommand {
    #[command(subcommand)]
    list: Option<ListCommand>,
    #[command(flatten)]
    run: AgentArgs,
}

#[derive(Args)]
struct AgentArgs {
    /// The master's `host:port`.
    #[arg(long, default_value = "127.0.0.1:5050", env = "MANTLE_MASTER")]
    master: String,
    /// Address to listen on (loopback only without credentials).
    #[arg(long, default_value = "127.0.0.1", env = "MANTLE_AGENT_IP")]
    ip: Ipv4Addr,
    #[arg(long, default_value_t = 5051, env = "MANTLE_AGENT_PORT")]
    port: u16,
    /// Directory for sandboxes.
    #[arg(long, env = "MANTLE_AGENT_WORK_DIR")]
    work_dir: Option<PathBuf>,
    /// Resources, e.g. `cpus:4;mem:4096;disk:20000;ports:[31000-32000]` (detected if absent).
    #[arg(long)]
    resources: Option<String>,
    /// Attributes, e.g. `rack:a;zone:z1`.
    #[arg(long, default_value = "")]
    attributes: String,
    /// First retry of an unacknowledged status update, in seconds (doubles up to 600).
    #[arg(long, default_value_t = 10.0, value_parser = positive_secs)]
    status_update_retry: f64,
    /// Isolators, as Mesos names them: `posix/cpu,posix/mem` (process groups, no limits) or
    /// `cgroups/cpu,cgroups/mem[,cgroups/pids]` (cgroup v1 or v2 limits; needs root).
    #[arg(long, default_value = "posix/cpu,posix/mem")]
    isolation: String,
    /// With cgroups isolation, also cap cpu with a CFS quota (not only weight it by shares).
    #[arg(long)]
    cgroups_enable_cfs: bool,
    /// With cgroups/pids, the most processes one container may have.
    #[arg(long, default_value_t = 4096)]
    cgroups_pids_max: u64,
    /// Path of this agent's cgroups under each hierarchy (default `mantle/agent-<ip>-<port>`,
    /// so agents sharing a machine never touch each other's containers).
    #[arg(long)]
    cgroups_root: Option<String>,
    /// With cgroups isolation, turn on the kernel's `favordynmods` (Linux 6.0 and later) so
    /// that a launch joining its cgroups does not wait for an RCU grace period: the agent
    /// mounts a controller-less hierarchy `name=mantle` at /run/mantle/cgroup-favordynmods,
    /// which turns it on for the whole machine while mounted (forks and exits get slightly
    /// dearer). `false` leaves the kernel as it is.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    cgroups_favor_dynmods: bool,
    /// Containerizers, as in Mesos: `mesos` (processes, isolated per `--isolation`) and
    /// `docker` (tasks with `container.type: DOCKER`, through the Docker Engine API).
    #[arg(long, default_value = "mesos")]
    containerizers: String,
    /// The Docker daemon's unix socket, for the docker containerizer.
    #[arg(
        long,
        default_value = "/var/run/docker.sock",
        env = "MANTLE_DOCKER_SOCKET"
    )]
    docker_socket: String,
    /// After a restart: `reconnect` takes over the executors a previous run left (from the
    /// checkpoint in the work dir), `cleanup` kills them and starts afresh.
    #[arg(long, default_value = "reconnect", value_parser = ["reconnect", "cleanup"])]
    recover: String,
    /// Rotate each executor's stdout and stderr past this many bytes, keeping `--sandbox-log-keep`
    /// old files (0: never rotate).
    #[arg(long, default_value_t = 10 * 1024 * 1024)]
    sandbox_log_max_size: u64,
    #[arg(long, default_value_t = 5)]
    sandbox_log_keep: u32,
    /// Seconds after which a finished sandbox is removed (shortened as the disk fills; Mesos's
    /// `--gc_delay`, one week).
    #[arg(long, default_value_t = 7.0 * 86400.0, value_parser = positive_secs_any)]
    gc_delay: f64,
    /// Fraction of the disk to keep free (Mesos's `--gc_disk_headroom`).
    #[arg(long, default_value_t = 0.1)]
    gc_disk_headroom: f64,
    /// Bytes the fetcher's cache (of `uris` with `cache: true`) may hold; the least recently
    /// used downloads are evicted to make room (Mesos's `--fetcher_cache_size`, 2 GB).
    #[arg(long, default_value_t = 2 * 1024 * 1024 * 1024)]
    fetcher_cache_size: u64,
    /// Seconds between disk checks and sandbox collections.
    #[arg(long, default_value_t = 60.0, value_parser = positive_secs)]
    disk_watch_interval: f64,
    /// CNI network configurations, one per file (`*.conf`, `*.json`, or `*.conflist` for a
    /// chain of plugins): containers that name a network in `container.network_infos` get a
    /// network namespace joined to it (Mesos's `network/cni` isolator and
    /// `--network_cni_config_dir`).
    #[arg(long)]
    network_cni_config_dir: Option<PathBuf>,
    /// Where the CNI plugins the configurations name are (Debian's
    /// containernetworking-plugins: /usr/lib/cni).
    #[arg(long)]
    network_cni_plugins_dir: Option<PathBuf>,
    /// Image providers of the `mesos` containerizer: `docker` runs containers whose
    /// `container.mesos.image` names a Docker image in a root filesystem made from it (Mesos's
    /// `--image_providers`); needs root and --docker-registry.
    #[arg(long)]
    image_providers: Option<String>,
    /// A directory of `docker save` archives, `<repository>:<tag>.tar`, where images come from
    /// (Mesos's local `--docker_registry`; no remote registry is read).
    #[arg(long)]
    docker_registry: Option<PathBuf>,
    /// Where images are kept, flattened (Mesos's `--docker_store_dir`); default
    /// `<work-dir>/store/docker`.
    #[arg(long)]
    docker_store_dir: Option<PathBuf>,
    /// Run each task as its user (the command's `user`, else the framework's); needs root.
    /// Off by default: every task runs as the agent's user.
    #[arg(long)]
    switch_user: bool,
    /// Built-in executors to keep started ahead of launches, so a launch hands its container
    /// to a process that is already loaded; one done with its container serves the next (up
    /// to 64 each; at most 16 times this many are kept free). 0: start one per launch. Not used
    /// with namespaces/pid, or without `mantle-executor` beside `mantle`.
    #[arg(long, default_value_t = 4, env = "MANTLE_AGENT_EXECUTOR_STANDBY")]
    executor_standby: usize,
}

#[derive(Subcommand, Clone, Copy)]
enum ListCommand {
    /// List them as a table (or JSON with --json).
    List {
        /// Master URL.
        #[arg(
            long,
            default_value = "http://127.0.0.1:5050",
            env = "MANTLE_MASTER_URL"
        )]
        master: Url,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// `--marathon URL`: the service scheduler's Marathon API.
#[derive(Args, Clone, Copy)]
struct MarathonUrl {
    /// URL of the service scheduler's Marathon API.
    #[arg(
        long = "marathon",
        default_value = "http://127.0.0.1:8080",
        env = "MANTLE_MARATHON"
    )]
    url: Url,
}

/// `--master URL` of the client commands.
#[derive(Args, Clone, Copy)]
struct MasterUrl {
    /// Master URL.
    #[arg(
        id = "master",
        value_name = "URL",
        long = "master",
        default_value = "http://127.0.0.1:5050",
        env = "MANTLE_MASTER_URL"
    )]
    url: Url,
}

/// Options of the commands that start a deployment.
#[derive(Args, Clone, Copy)]
struct DeployOpts {
    /// Print the deployment id and return instead of showing progress until it finishes.
    #[arg(long)]
    detach: bool,
    /// Override a deployment that holds the app (`?force=true`); it stops without rollback.
    #[arg(long)]
    force: bool,
}

impl DeployOpts {
    fn wait(self) -> mantle_cli::marathon::Wait {
        if self.detach {
            mantle_cli::marathon::Wait::Detach
        } else {
            mantle_cli::marathon::Wait::Progress
        }
    }
}

#[derive(Subcommand)]
enum AppCommand {
    /// Create an app from a JSON app definition (`-` reads stdin).
    Add {
        file: PathBuf,
        #[command(flatten)]
        marathon: MarathonUrl,
        /// Print the deployment id and return instead of showing progress.
        #[arg(long)]
        detach: bool,
    },
    /// List apps with running/healthy instance counts.
    List {
        #[command(flatten)]
        marathon: MarathonUrl,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one app and its tasks.
    Show {
        id: String,
        #[command(flatten)]
        marathon: MarathonUrl,
        /// Print the app's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change an app with the fields of a JSON file (merged into the current definition).
    Update {
        id: String,
        file: PathBuf,
        #[command(flatten)]
        marathon: MarathonUrl,
        #[command(flatten)]
        opts: DeployOpts,
    },
    /// Set the number of instances.
    Scale {
        id: String,
        instances: u32,
        #[command(flatten)]
        marathon: MarathonUrl,
        #[command(flatten)]
        opts: DeployOpts,
    },
    /// Replace every task with a rolling deployment.
    Restart {
        id: String,
        #[command(flatten)]
        marathon: MarathonUrl,
        #[command(flatten)]
        opts: DeployOpts,
    },
    /// Remove an app and kill its tasks.
    Remove {
        id: String,
        #[command(flatten)]
        marathon: MarathonUrl,
        #[command(flatten)]
        opts: DeployOpts,
    },
    /// List an app's versions, newest first.
    Versions {
        id: String,
        #[command(flatten)]
        marathon: MarathonUrl,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Deploy an earlier version of an app again.
    Rollback {
        id: String,
        version: String,
        #[command(flatten)]
        marathon: MarathonUrl,
        #[command(flatten)]
        opts: DeployOpts,
    },
}

#[derive(Subcommand)]
enum DeploymentCommand {
    /// List running deployments.
    List {
        #[command(flatten)]
        marathon: MarathonUrl,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show progress of a running deployment until it finishes.
    Watch {
        id: String,
        #[command(flatten)]
        marathon: MarathonUrl,
    },
    /// Cancel a deployment; the server rolls the app back with a new deployment
    /// (with --force it just stops, without rollback).
    Cancel {
        id: String,
        #[command(flatten)]
        marathon: MarathonUrl,
        #[command(flatten)]
        opts: DeployOpts,
    },
}

#[derive(Subcommand)]
enum TaskCommand {
    /// List tasks: the master's, or with --app the service scheduler's tasks of that app.
    List {
        #[command(flatten)]
        master: MasterUrl,
        #[command(flatten)]
        marathon: MarathonUrl,
        /// List the tasks of this app from the service scheduler.
        #[arg(long)]
        app: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Kill a task of the service scheduler; it is replaced unless --scale is given.
    Kill {
        id: String,
        #[command(flatten)]
        marathon: MarathonUrl,
        /// Shrink the app by one instead of replacing the task.
        #[arg(long)]
        scale: bool,
        /// Forget the task at once instead of waiting for its end.
        #[arg(long, conflicts_with = "scale")]
        wipe: bool,
        /// With --scale, print the deployment id and return instead of showing progress.
        #[arg(long)]
        detach: bool,
    },
    /// Print a task's stdout (or stderr), read from its sandbox through its agent.
    Log {
        id: String,
        #[command(flatten)]
        master: MasterUrl,
        /// Print stderr instead of stdout.
        #[arg(long)]
        stderr: bool,
        /// Keep printing new output until interrupted.
        #[arg(long, short)]
        follow: bool,
    },
}

/// A URL argument (kept as text; checked for a scheme).
#[derive(Clone, Copy)]
struct Url(&'static str);

impl std::str::FromStr for Url {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if !(s.starts_with("http://") || s.starts_with("https://")) {
            return Err(format!(
                "'{s}' must start with http:// (e.g. http://127.0.0.1:5050)"
            ));
        }
        Ok(Url(Box::leak(s.to_string().into_boxed_str())))
    }
}

#[derive(Args)]
struct LocalArgs {
    /// Number of agents, on 127.0.0.2, 127.0.0.3, ...
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=200))]
    agents: u8,
    #[arg(long, default_value_t = 5050)]
    master_port: u16,
    #[arg(long, default_value_t = 5051)]
    agent_port: u16,
    /// Work directory (default: a fresh directory under the system temp dir).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Resources of each agent (detected if absent).
    #[arg(long)]
    agent_resources: Option<String>,
    /// Port of the service scheduler on 127.0.0.1.
    #[arg(long, default_value_t = 8080)]
    marathon_port: u16,
    /// Do not start the service scheduler.
    #[arg(long)]
    no_marathon: bool,
    /// Port of the DNS server (UDP and TCP) on 127.0.0.1.
    #[arg(long, default_value_t = 8053)]
    dns_port: u16,
    /// Port of the DNS server's HTTP API on 127.0.0.1.
    #[arg(long, default_value_t = 8123)]
    dns_http_port: u16,
    /// Do not start the DNS server.
    #[arg(long)]
    no_dns: bool,
    /// Every agent's `--isolation`, e.g. `cgroups/cpu,cgroups/mem` (needs root).
    #[arg(long)]
    isolation: Option<String>,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Time from ACCEPT to TASK_RUNNING, one task at a time, on a fresh cluster.
    Launch(BenchLaunchArgs),
    /// Time from TASK_RUNNING to the task's name resolving in `mantle dns`, on a fresh cluster.
    Dns(BenchLaunchArgs),
    /// Status updates per second from an executor to a scheduler, each acknowledged, on a
    /// fresh cluster with one agent.
    Updates(BenchUpdatesArgs),
}

#[derive(Args)]
struct BenchUpdatesArgs {
    /// Number of tasks, all on one executor; each task's updates go one at a time.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    tasks: u32,
    /// TASK_RUNNING updates each task sends before TASK_FINISHED.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    updates: u32,
    /// Work directory for the cluster's logs and sandboxes (default: a fresh directory under
    /// the system temp dir).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// The bench framework asks for checkpointing (`FrameworkInfo.checkpoint`, as Marathon).
    #[arg(long)]
    checkpoint: bool,
}

#[derive(Args)]
struct BenchLaunchArgs {
    /// Number of tasks to launch, one after another.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    tasks: u32,
    /// Number of agents, on 127.0.0.2, 127.0.0.3, ...
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=200))]
    agents: u8,
    /// Work directory for the cluster's logs and sandboxes (default: a fresh directory under
    /// the system temp dir).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// The agents' `--isolation`, e.g. `cgroups/cpu,cgroups/mem` (needs root); with cgroups
    /// the report compares the launch rate with this machine's fork+exec and cgroup floor.
    #[arg(long)]
    isolation: Option<String>,
    /// Launches in flight at once (`bench launch` only): above 1, each task runs `true` and
    /// offers are packed with as many tasks as fit; 1 launches and kills one after another.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    concurrency: u32,
    /// The bench framework asks for checkpointing (`FrameworkInfo.checkpoint`, as Marathon).
    #[arg(long)]
    checkpoint: bool,
    /// Put every task on a loopback-only CNI network made of the `loopback` plugin in this
    /// directory (Debian's containernetworking-plugins: /usr/lib/cni), so the figures include
    /// each container's network namespace and attach (needs root).
    #[arg(long)]
    cni_plugins_dir: Option<PathBuf>,
}

/// A number of seconds, at most ten years.
fn positive_secs_any(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !v.is_finite() || v <= 0.0 || v > 10.0 * 365.0 * 86400.0 {
        return Err(format!(
            "'{s}' must be a number of seconds between 0 and ten years"
        ));
    }
    Ok(v)
}

fn positive_secs(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !v.is_finite() || v <= 0.0 || v > 86400.0 {
        return Err(format!(
            "'{s}' must be a number of seconds between 0 and 86400"
        ));
    }
    Ok(v)
}

/// Seconds from 0 (off) up to one year.
fn non_negative_secs(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !v.is_finite() || !(0.0..=365.0 * 86400.0).contains(&v) {
        return Err(format!(
            "'{s}' must be a number of seconds between 0 (off) and one year"
        ));
    }
    Ok(v)
}

/// Seconds, up to ten years (for ages kept in the registry).
fn positive_age(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !v.is_finite() || v <= 0.0 || v > 10.0 * 365.0 * 86400.0 {
        return Err(format!(
            "'{s}' must be a number of seconds, more than 0, at most ten years"
        ));
    }
    Ok(v)
}

fn parse_weights(text: &str) -> anyhow::Result<std::collections::BTreeMap<String, f64>> {
    let mut out = std::collections::BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (role, w) = part
            .split_once('=')
            .with_context(|| format!("--weights: '{part}' must look like role=2"))?;
        let w: f64 = w
            .parse()
            .with_context(|| format!("--weights: '{w}' is not a number"))?;
        if !w.is_finite() || w <= 0.0 {
            anyhow::bail!("--weights: weight of '{role}' must be a positive number");
        }
        out.insert(role.to_string(), w);
    }
    Ok(out)
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
}

fn default_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("mantle-{name}-{}", std::process::id()))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    logging::init_tracing();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            std::process::ExitCode::FAILURE
        }
    }
}

/// Prints an error and its causes for people: `error: ...` and one `caused by:` line each,
/// without the backtrace that `RUST_BACKTRACE` would add to anyhow's debug form.
#[allow(clippy::print_stderr)]
fn report(e: &anyhow::Error) {
    eprintln!("error: {e}");
    for cause in e.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Master(a) => {
            let dir = a.work_dir.unwrap_or_else(|| default_dir("master"));
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create --work-dir {}", dir.display()))?;
            let mut config = mantle_master::Config::new(a.ip, a.port, rand_seed());
            config.allocation_interval = Duration::from_secs_f64(a.allocation_interval);
            config.agent_ping_timeout = Duration::from_secs_f64(a.agent_ping_timeout);
            config.max_agent_ping_timeouts = a.max_agent_ping_timeouts;
            config.agent_reregister_timeout = Duration::from_secs_f64(a.agent_reregister_timeout);
            config.agent_removal_interval = a
                .agent_removal_rate_limit
                .as_deref()
                .map(mantle_master::parse_rate)
                .transpose()
                .map_err(|e| anyhow::anyhow!("--agent-removal-rate-limit: {e}"))?;
            if !(0.0..=1.0).contains(&a.agent_removal_limit) {
                anyhow::bail!("--agent-removal-limit must be between 0 and 1");
            }
            config.agent_removal_limit = a.agent_removal_limit;
            config.registry_max_agent_age = Duration::from_secs_f64(a.registry_max_agent_age);
            config.offer_timeout =
                (a.offer_timeout > 0.0).then(|| Duration::from_secs_f64(a.offer_timeout));
            config.weights = parse_weights(&a.weights)?;
            let listener = tokio::net::TcpListener::bind((a.ip, a.port))
                .await
                .with_context(|| format!("cannot listen on {}:{}", a.ip, a.port))?;
            if let Ok(addr) = listener.local_addr() {
                config.port = addr.port();
            }
            let marathon = a
                .marathon_url
                .as_deref()
                .map(mantle_server::ui::parse_marathon_url)
                .transpose()?;
            let ui = mantle_server::ui::Ui::new(marathon)?;
            mantle_server::master::serve(listener, config, &dir, ui, shutdown_signal()).await
        }
        Command::Agent(AgentCommand {
            list: Some(ListCommand::List { master, json }),
            ..
        }) => print(mantle_cli::list(master.0, mantle_cli::Listing::Agents, json).await?),
        Command::Agent(AgentCommand { list: None, run: a }) => {
            let dir = a.work_dir.unwrap_or_else(|| default_dir("agent"));
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create --work-dir {}", dir.display()))?;
            let resources = match &a.resources {
                Some(text) => mantle_model::Resources::parse(text)
                    .map_err(|e| anyhow::anyhow!("--resources: {e}"))?,
                None => mantle_server::agent::detect_resources(&dir),
            };
            let attributes = mantle_model::Attribute::parse_all(&a.attributes)
                .map_err(|e| anyhow::anyhow!("--attributes: {e}"))?;
            let listener = tokio::net::TcpListener::bind((a.ip, a.port))
                .await
                .with_context(|| format!("cannot listen on {}:{}", a.ip, a.port))?;
            let port = listener.local_addr().map(|x| x.port()).unwrap_or(a.port);
            let isolators = mantle_server::agent::parse_isolation(&a.isolation)
                .map_err(|e| anyhow::anyhow!("--isolation: {e}"))?;
            let pids = isolators.pids;
            if isolators.pid_namespace && !std::path::Path::new("/usr/bin/unshare").exists() {
                anyhow::bail!("--isolation namespaces/pid needs util-linux's /usr/bin/unshare");
            }
            let isolation = if isolators.cgroups {
                let root = a
                    .cgroups_root
                    .clone()
                    .unwrap_or_else(|| format!("mantle/agent-{}-{port}", a.ip));
                if root
                    .split('/')
                    .any(|p| p.is_empty() || p == "." || p == "..")
                {
                    anyhow::bail!("--cgroups-root '{root}': use a relative path such as mantle/a1");
                }
                mantle_server::agent::Isolation::Cgroups(mantle_server::cgroups::Settings {
                    root,
                    enable_cfs: a.cgroups_enable_cfs,
                    pids_max: pids.then_some(a.cgroups_pids_max),
                    favor_dynmods: a.cgroups_favor_dynmods,
                })
            } else {
                mantle_server::agent::Isolation::Posix
            };
            let mut docker = false;
            for c in a.containerizers.split(',').map(str::trim) {
                match c {
                    "mesos" => {}
                    "docker" => docker = true,
                    other => anyhow::bail!(
                        "--containerizers: unknown containerizer '{other}'; use mesos, docker or docker,mesos"
                    ),
                }
            }
            let docker_socket = docker.then(|| {
                a.docker_socket
                    .strip_prefix("unix://")
                    .unwrap_or(&a.docker_socket)
                    .to_string()
            });
            // As in Mesos, the isolator is on whenever networks are configured.
            let cni = match (&a.network_cni_config_dir, &a.network_cni_plugins_dir) {
                (Some(config), Some(plugins)) => {
                    for tool in [mantle_server::agent::UNSHARE, mantle_server::agent::NSENTER] {
                        if !std::path::Path::new(tool).exists() {
                            anyhow::bail!("CNI networks need util-linux's {tool}");
                        }
                    }
                    // Per agent, in the runtime directory (namespaces end with a reboot).
                    let root = std::path::Path::new(mantle_server::cni::RUNTIME_DIR)
                        .join(format!("agent-{}-{port}", a.ip));
                    Some(
                        mantle_server::cni::Cni::new(config, plugins, &root)
                            .map_err(|e| anyhow::anyhow!("{e}"))?,
                    )
                }
                (None, None) if isolators.cni => anyhow::bail!(
                    "--isolation network/cni needs --network-cni-config-dir and --network-cni-plugins-dir"
                ),
                (None, None) => None,
                (Some(_), None) => anyhow::bail!(
                    "--network-cni-config-dir needs --network-cni-plugins-dir (where the CNI plugins are)"
                ),
                (None, Some(_)) => anyhow::bail!(
                    "--network-cni-plugins-dir needs --network-cni-config-dir (the CNI networks)"
                ),
            };
            let provisioner = match (a.image_providers.as_deref(), &a.docker_registry) {
                (None, None) => None,
                (None, Some(_)) => anyhow::bail!(
                    "--docker-registry needs --image-providers docker (the images it holds run in the mesos containerizer)"
                ),
                (Some(p), _) if p != "docker" => anyhow::bail!(
                    "--image-providers: '{p}' is not supported; the one provider is 'docker'"
                ),
                (Some(_), None) => anyhow::bail!(
                    "--image-providers docker needs --docker-registry DIR (a directory of `docker save` archives named <repository>:<tag>.tar)"
                ),
                (Some(_), Some(registry)) => {
                    let store = a
                        .docker_store_dir
                        .clone()
                        .unwrap_or_else(|| dir.join("store").join("docker"));
                    Some(std::sync::Arc::new(
                        mantle_server::provisioner::Provisioner::new(registry, &store, &dir)
                            .map_err(|e| anyhow::anyhow!("{e}"))?,
                    ))
                }
            };
            let recover = if a.recover == "cleanup" {
                mantle_server::agent::Recover::Cleanup
            } else {
                mantle_server::agent::Recover::Reconnect
            };
            if !(0.0..1.0).contains(&a.gc_disk_headroom) {
                anyhow::bail!("--gc-disk-headroom must be at least 0 and less than 1");
            }
            let options = mantle_server::agent::AgentOptions {
                log_max_size: a.sandbox_log_max_size,
                log_keep: a.sandbox_log_keep,
                gc_delay: Duration::from_secs_f64(a.gc_delay),
                gc_disk_headroom: a.gc_disk_headroom,
                fetcher_cache_size: a.fetcher_cache_size,
                disk_watch_interval: Duration::from_secs_f64(a.disk_watch_interval),
                pid_namespace: isolators.pid_namespace,
                switch_user: a.switch_user,
                executor_standby: a.executor_standby,
                recover,
                isolation,
                docker_socket,
                cni,
                provisioner,
                master: a.master,
                ip: a.ip.to_string(),
                port,
                work_dir: dir,
                resources,
                attributes,
                status_update_retry: Duration::from_secs_f64(a.status_update_retry),
                executor_program: std::env::current_exe()
                    .context("cannot find the mantle binary to run executors")?,
            };
            mantle_server::agent::serve(listener, options, shutdown_signal()).await
        }
        Command::Local(a) => {
            let options = mantle_server::local::LocalOptions {
                agents: a.agents,
                master_port: a.master_port,
                agent_port: a.agent_port,
                work_dir: a.work_dir.unwrap_or_else(|| default_dir("local")),
                agent_resources: a.agent_resources,
                marathon_port: (!a.no_marathon).then_some(a.marathon_port),
                dns_ports: (!a.no_dns).then_some((a.dns_port, a.dns_http_port)),
                program: std::env::current_exe().context("cannot find the mantle binary")?,
                agent_args: match a.isolation {
                    Some(i) => vec!["--isolation".into(), i],
                    None => Vec::new(),
                },
            };
            mantle_server::local::run(options).await
        }
        Command::Marathon(a) => {
            if !a.http_address.ip().is_loopback() {
                anyhow::bail!(
                    "--http-address {}: without credentials configured the service scheduler listens on loopback only",
                    a.http_address
                );
            }
            let options = mantle_server::marathon::MarathonOptions {
                master: a.master,
                http_address: a.http_address,
                work_dir: a.work_dir.unwrap_or_else(|| default_dir("marathon")),
                strategy: a.placement,
                reconciliation_interval_ms: a.reconciliation_interval,
                task_launch_timeout_ms: a.task_launch_timeout,
            };
            mantle_server::marathon::run(options, shutdown_signal()).await
        }
        Command::Dns(a) => {
            for (flag, addr) in [("--listen", a.listen), ("--http-listen", a.http_listen)] {
                if !addr.ip().is_loopback() {
                    anyhow::bail!(
                        "{flag} {addr}: without credentials configured the DNS server listens on loopback only"
                    );
                }
            }
            let mut config = mantle_dns::Config::new(&a.domain);
            if config.domain.is_empty() {
                anyhow::bail!("--domain must not be empty");
            }
            config.ttl = a.ttl;
            config.spec = if a.enforce_rfc952 {
                mantle_dns::LabelSpec::Rfc952
            } else {
                mantle_dns::LabelSpec::Rfc1123
            };
            config.ip_sources = a.ip_sources;
            config.leader = mantle_server::dns::leader_from_url(&a.master);
            config.listener = Some(a.listen.ip());
            config.resolvers = a.resolvers;
            config.dns_port = a.listen.port();
            let http_listen = (!a.no_http).then_some(a.http_listen);
            config.http_listener = http_listen;
            let options = mantle_server::dns::DnsOptions {
                master: a.master.trim_end_matches('/').to_string(),
                listen: a.listen,
                http_listen,
                config,
            };
            mantle_server::dns::run(options, shutdown_signal()).await
        }
        Command::Framework {
            command: ListCommand::List { master, json },
        } => print(mantle_cli::list(master.0, mantle_cli::Listing::Frameworks, json).await?),
        Command::Task { command } => task(command).await,
        Command::App { command } => app(command).await,
        Command::Deployment { command } => deployment(command).await,
        Command::Bench {
            command: BenchCommand::Launch(a),
        } => {
            let options = mantle_server::bench::BenchOptions {
                tasks: a.tasks as usize,
                agents: a.agents,
                work_dir: a.work_dir.unwrap_or_else(|| default_dir("bench")),
                program: std::env::current_exe().context("cannot find the mantle binary")?,
                isolation: a.isolation,
                concurrency: a.concurrency as usize,
                checkpoint: a.checkpoint,
                cni_plugins: a.cni_plugins_dir,
            };
            print(mantle_server::bench::launch(options).await?.render())
        }
        Command::Bench {
            command: BenchCommand::Dns(a),
        } => {
            let options = mantle_server::bench::BenchOptions {
                tasks: a.tasks as usize,
                agents: a.agents,
                work_dir: a.work_dir.unwrap_or_else(|| default_dir("bench")),
                program: std::env::current_exe().context("cannot find the mantle binary")?,
                isolation: a.isolation,
                concurrency: a.concurrency as usize,
                checkpoint: a.checkpoint,
                cni_plugins: a.cni_plugins_dir,
            };
            print(mantle_server::bench::dns(options).await?.render())
        }
        Command::Bench {
            command: BenchCommand::Updates(a),
        } => {
            let options = mantle_server::bench_updates::UpdatesOptions {
                tasks: a.tasks as usize,
                updates: a.updates as usize,
                work_dir: a.work_dir.unwrap_or_else(|| default_dir("bench")),
                program: std::env::current_exe().context("cannot find the mantle binary")?,
                checkpoint: a.checkpoint,
            };
            print(mantle_server::bench_updates::run(options).await?.render())
        }
        Command::Executor => mantle_server::executor::run().await,
        Command::BenchExecutor { updates } => mantle_server::bench_updates::executor(updates).await,
        Command::LogWriter(a) => mantle_server::sandbox::write_rotating(
            std::io::stdin().lock(),
            &a.file,
            a.max_size,
            a.keep,
        )
        .with_context(|| format!("writing {}", a.file.display())),
        Command::Sim(a) => {
            let mut options = mantle_sim::Options::default();
            options.steps = a.steps.unwrap_or(options.steps);
            let (first, count) = a.seed.map_or((a.first, a.seeds), |s| (s, 1));
            let started = std::time::Instant::now();
            let soak = mantle_sim::soak(first, count, &options, |r| match r {
                Ok(s) if count == 1 => print(format!("{s:?}")).unwrap_or(()),
                Err(f) => {
                    use std::io::Write;
                    let _ = writeln!(std::io::stderr(), "{f}");
                }
                Ok(_) => {}
            });
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            print(format!(
                "{} seeds from {first}, {} failed, {} steps, {secs:.1} s ({:.0} seeds/minute)",
                soak.runs,
                soak.failures.len(),
                soak.steps,
                soak.runs as f64 * 60.0 / secs
            ))?;
            match soak.failures.len() {
                0 => Ok(()),
                n => Err(anyhow::anyhow!("{n} of {} seeds failed", soak.runs)),
            }
        }
    }
}

#[derive(Args)]
struct SimArgs {
    /// How many seeds to run.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// The first seed of the range.
    #[arg(long, default_value_t = 0)]
    first: u64,
    /// Run only this seed (to replay a failure).
    #[arg(long)]
    seed: Option<u64>,
    /// Events in the fault phase of each run.
    #[arg(long)]
    steps: Option<u64>,
}

async fn app(c: AppCommand) -> anyhow::Result<()> {
    use mantle_cli::marathon::{Marathon, Wait};
    let mut err = std::io::stderr();
    let m = |u: MarathonUrl| Marathon::new(u.url.0);
    let out = match c {
        AppCommand::Add {
            file,
            marathon,
            detach,
        } => {
            let wait = if detach { Wait::Detach } else { Wait::Progress };
            m(marathon)?.add(&file, wait, &mut err).await?
        }
        AppCommand::List { marathon, json } => m(marathon)?.list_apps(json).await?,
        AppCommand::Show { id, marathon, json } => m(marathon)?.show(&id, json).await?,
        AppCommand::Update {
            id,
            file,
            marathon,
            opts,
        } => {
            m(marathon)?
                .update(&id, &file, opts.force, opts.wait(), &mut err)
                .await?
        }
        AppCommand::Scale {
            id,
            instances,
            marathon,
            opts,
        } => {
            m(marathon)?
                .scale(&id, instances, opts.force, opts.wait(), &mut err)
                .await?
        }
        AppCommand::Restart { id, marathon, opts } => {
            m(marathon)?
                .restart(&id, opts.force, opts.wait(), &mut err)
                .await?
        }
        AppCommand::Remove { id, marathon, opts } => {
            m(marathon)?
                .remove(&id, opts.force, opts.wait(), &mut err)
                .await?
        }
        AppCommand::Versions { id, marathon, json } => m(marathon)?.versions(&id, json).await?,
        AppCommand::Rollback {
            id,
            version,
            marathon,
            opts,
        } => {
            m(marathon)?
                .rollback(&id, &version, opts.force, opts.wait(), &mut err)
                .await?
        }
    };
    print(out)
}

async fn deployment(c: DeploymentCommand) -> anyhow::Result<()> {
    use mantle_cli::marathon::Marathon;
    let mut err = std::io::stderr();
    let out = match c {
        DeploymentCommand::List { marathon, json } => {
            Marathon::new(marathon.url.0)?
                .list_deployments(json)
                .await?
        }
        DeploymentCommand::Watch { id, marathon } => {
            Marathon::new(marathon.url.0)?.watch(&id, &mut err).await?
        }
        DeploymentCommand::Cancel { id, marathon, opts } => {
            Marathon::new(marathon.url.0)?
                .cancel(&id, opts.force, opts.wait(), &mut err)
                .await?
        }
    };
    print(out)
}

async fn task(c: TaskCommand) -> anyhow::Result<()> {
    use mantle_cli::marathon::{Marathon, Wait};
    match c {
        TaskCommand::List {
            master,
            marathon,
            app,
            json,
        } => match app {
            Some(app) => print(
                Marathon::new(marathon.url.0)?
                    .list_tasks(&app, json)
                    .await?,
            ),
            None => print(mantle_cli::list(master.url.0, mantle_cli::Listing::Tasks, json).await?),
        },
        TaskCommand::Kill {
            id,
            marathon,
            scale,
            wipe,
            detach,
        } => {
            if !mantle_cli::marathon::is_marathon_task_id(&id) {
                anyhow::bail!(
                    "'{id}' is not a task id of the service scheduler (like prod_web.instance-<uuid>._app.1); only its tasks can be killed from the CLI"
                );
            }
            let wait = if detach { Wait::Detach } else { Wait::Progress };
            let out = Marathon::new(marathon.url.0)?
                .kill_task(&id, scale, wipe, wait, &mut std::io::stderr())
                .await?;
            print(out)
        }
        TaskCommand::Log {
            id,
            master,
            stderr,
            follow,
        } => {
            let mut out = std::io::stdout();
            mantle_cli::tasklog::log(master.url.0, &id, stderr, follow, &mut out).await
        }
    }
}

#[allow(clippy::print_stdout)]
fn print(text: String) -> anyhow::Result<()> {
    println!("{text}");
    Ok(())
}

fn rand_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ (u64::from(std::process::id()) << 32)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
