//! `mantle local`: a whole cluster on one machine, one process per daemon (the master on
//! 127.0.0.1, agents on 127.0.0.2, 127.0.0.3, ...), each with its own work dir. The master
//! serves the web UI and is told the service scheduler's URL for it. Ctrl-C or
//! SIGTERM stops every process it started; agents kill their executors on the way out.
//!
//! `LocalCluster` is also used by `mantle bench`, which needs the same cluster of real
//! processes but drives it itself.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};
use tracing::{info, warn};

/// Options of `mantle local`.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    pub agents: u8,
    pub master_port: u16,
    pub agent_port: u16,
    pub work_dir: PathBuf,
    pub agent_resources: Option<String>,
    pub program: PathBuf,
    /// Port of the service scheduler on 127.0.0.1 (`None`: do not start it).
    pub marathon_port: Option<u16>,
    /// DNS port (UDP and TCP) and HTTP API port of `mantle dns` on 127.0.0.1 (`None`: do not
    /// start it).
    pub dns_ports: Option<(u16, u16)>,
    /// Extra flags for every agent (e.g. `--isolation cgroups/cpu,cgroups/mem`).
    pub agent_args: Vec<String>,
}

impl LocalOptions {
    /// The master's base URL, `http://127.0.0.1:<master_port>`.
    pub fn master_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.master_port)
    }
}

/// The address of agent `index` (0-based): 127.0.0.2, 127.0.0.3, ...
pub fn agent_ip(index: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, index.saturating_add(2))
}

/// Where [`free_port`] looks: below Linux's ephemeral range (32768-60999), so the port
/// cannot be handed to an outgoing connection between our check and the daemon's bind, and
/// clear of the agents' default task ports (31000-32000) and Mantle's well-known ports.
const PORT_POOL: std::ops::Range<u16> = 20_000..30_000;

/// A TCP port that is free on every one of `ips` right now. Successive calls in a process
/// walk the pool from a per-process starting point, so concurrent tests do not pick the
/// same port. Another process may still take it before we bind it.
pub fn free_port(ips: &[Ipv4Addr]) -> anyhow::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    if ips.is_empty() {
        anyhow::bail!("free_port needs at least one address");
    }
    let span = u32::from(PORT_POOL.end - PORT_POOL.start);
    let start = (std::process::id().wrapping_mul(7919)) % span;
    let _ = NEXT.compare_exchange(u32::MAX, start, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::SeqCst) % span;
        let port = PORT_POOL.start + n as u16;
        if ips
            .iter()
            .all(|ip| std::net::TcpListener::bind((*ip, port)).is_ok())
        {
            return Ok(port);
        }
    }
    anyhow::bail!("found no port free on all of {ips:?} in {PORT_POOL:?}")
}

struct Proc {
    name: String,
    child: Child,
}

async fn wait_healthy(url: &str, child: &mut Child) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if let Ok(Some(status)) = child.try_wait() {
            anyhow::bail!("process exited with {status} before {url} answered");
        }
        if client
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("{url} did not answer within 10 s")
}

fn spawn(program: &PathBuf, name: &str, args: &[String], log: PathBuf) -> anyhow::Result<Proc> {
    spawn_in(program, name, args, log, None)
}

/// As `spawn`, optionally in `cwd` (so that a process with no path arguments can still be
/// found under the work dir, as the orphan checks look for).
fn spawn_in(
    program: &PathBuf,
    name: &str,
    args: &[String],
    log: PathBuf,
    cwd: Option<&std::path::Path>,
) -> anyhow::Result<Proc> {
    let out = std::fs::File::create(&log)?;
    let err = out.try_clone()?;
    let mut command = Command::new(program);
    if let Some(dir) = cwd {
        command.current_dir(dir);
    }
    let child = command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .kill_on_drop(true)
        .spawn()?;
    Ok(Proc {
        name: name.to_string(),
        child,
    })
}

/// A running master and agents, each a child process of this one. `stop` ends them all;
/// dropping it without `stop` kills them with SIGKILL (which leaves agents no time to kill
/// their executors), so every path should call `stop`.
pub struct LocalCluster {
    procs: Vec<Proc>,
}

impl LocalCluster {
    /// Starts the master, waits for its health check, then each agent in turn. If anything
    /// fails, whatever was started is stopped before the error is returned.
    pub async fn start(o: &LocalOptions) -> anyhow::Result<LocalCluster> {
        std::fs::create_dir_all(&o.work_dir)?;
        let mut cluster = LocalCluster { procs: Vec::new() };
        if let Err(e) = cluster.start_all(o).await {
            cluster.stop().await;
            return Err(e);
        }
        Ok(cluster)
    }

    async fn start_all(&mut self, o: &LocalOptions) -> anyhow::Result<()> {
        let master_dir = o.work_dir.join("master");
        std::fs::create_dir_all(&master_dir)?;
        let mut args = vec![
            "master".into(),
            "--ip".into(),
            "127.0.0.1".into(),
            "--port".into(),
            o.master_port.to_string(),
            "--work-dir".into(),
            master_dir.to_string_lossy().into_owned(),
        ];
        if let Some(port) = o.marathon_port {
            // The web UI reaches the service scheduler through the master.
            args.push("--marathon-url".into());
            args.push(format!("http://127.0.0.1:{port}"));
        }
        self.procs.push(spawn(
            &o.program,
            "master",
            &args,
            o.work_dir.join("master.log"),
        )?);
        let master_health = format!("{}/health", o.master_url());
        if let Some(p) = self.procs.last_mut() {
            wait_healthy(&master_health, &mut p.child).await?;
        }
        for i in 0..o.agents {
            let ip = agent_ip(i);
            let dir = o.work_dir.join(format!("agent-{}", i + 1));
            std::fs::create_dir_all(&dir)?;
            let mut args = vec![
                "agent".into(),
                "--master".into(),
                format!("127.0.0.1:{}", o.master_port),
                "--ip".into(),
                ip.to_string(),
                "--port".into(),
                o.agent_port.to_string(),
                "--work-dir".into(),
                dir.to_string_lossy().into_owned(),
            ];
            if let Some(r) = &o.agent_resources {
                args.push("--resources".into());
                args.push(r.clone());
            }
            args.extend(o.agent_args.iter().cloned());
            let name = format!("agent-{}", i + 1);
            self.procs.push(spawn(
                &o.program,
                &name,
                &args,
                o.work_dir.join(format!("{name}.log")),
            )?);
            let url = format!("http://{ip}:{}/health", o.agent_port);
            if let Some(p) = self.procs.last_mut() {
                wait_healthy(&url, &mut p.child).await?;
            }
        }
        if let Some(port) = o.marathon_port {
            let dir = o.work_dir.join("marathon");
            std::fs::create_dir_all(&dir)?;
            let args = vec![
                "marathon".into(),
                "--master".into(),
                format!("http://127.0.0.1:{}", o.master_port),
                "--http-address".into(),
                format!("127.0.0.1:{port}"),
                "--work-dir".into(),
                dir.to_string_lossy().into_owned(),
            ];
            self.procs.push(spawn(
                &o.program,
                "marathon",
                &args,
                o.work_dir.join("marathon.log"),
            )?);
            let url = format!("http://127.0.0.1:{port}/ping");
            if let Some(p) = self.procs.last_mut() {
                wait_healthy(&url, &mut p.child).await?;
            }
        }
        if let Some((dns_port, http_port)) = o.dns_ports {
            let args = vec![
                "dns".into(),
                "--master".into(),
                format!("http://127.0.0.1:{}", o.master_port),
                "--listen".into(),
                format!("127.0.0.1:{dns_port}"),
                "--http-listen".into(),
                format!("127.0.0.1:{http_port}"),
            ];
            let log = o.work_dir.join("dns.log");
            let dir = std::path::absolute(&o.work_dir)?;
            self.procs
                .push(spawn_in(&o.program, "dns", &args, log, Some(&dir))?);
            let url = format!("http://127.0.0.1:{http_port}/health");
            if let Some(p) = self.procs.last_mut() {
                wait_healthy(&url, &mut p.child).await?;
            }
        }
        Ok(())
    }

    /// Resolves when one of the processes exits, naming it and its exit status.
    pub async fn died(&mut self) -> String {
        loop {
            for p in self.procs.iter_mut() {
                if let Ok(Some(status)) = p.child.try_wait() {
                    return format!("{} exited with {status}", p.name);
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Stops every process: SIGTERM to all (agents first, so they can kill their executors
    /// while the master still listens), then SIGKILL to any that has not exited after 5 s.
    pub async fn stop(&mut self) {
        for p in self.procs.iter().rev() {
            if let Some(pid) = p.child.id() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
        }
        for p in self.procs.iter_mut().rev() {
            match tokio::time::timeout(Duration::from_secs(5), p.child.wait()).await {
                Ok(_) => info!(process = %p.name, "stopped"),
                Err(_) => {
                    warn!(process = %p.name, "did not stop in 5 s; killing");
                    let _ = p.child.kill().await;
                }
            }
        }
        self.procs.clear();
    }
}

/// Runs the cluster until a signal arrives or a process dies.
pub async fn run(o: LocalOptions) -> anyhow::Result<()> {
    // The SIGTERM handler goes in before any process starts, so that a SIGTERM during
    // start-up stops what was started instead of killing this process and orphaning them.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    std::fs::create_dir_all(&o.work_dir)?;
    let mut cluster = LocalCluster { procs: Vec::new() };
    let started = tokio::select! {
        r = cluster.start_all(&o) => Some(r),
        _ = tokio::signal::ctrl_c() => None,
        _ = term.recv() => None,
    };
    match started {
        Some(Ok(())) => {}
        Some(Err(e)) => {
            cluster.stop().await;
            return Err(e);
        }
        None => {
            info!("stopping local cluster during start-up");
            cluster.stop().await;
            return Ok(());
        }
    }
    let master = o.master_url();
    let mut lines = vec![
        "Mantle local cluster is up.".to_string(),
        format!("  web UI     {master}/  (open it in a browser)"),
        format!("  master     {master}  (Mesos v1 scheduler API: {master}/api/v1/scheduler, state: {master}/master/state)"),
    ];
    for i in 0..o.agents {
        lines.push(format!(
            "  agent {}    http://{}:{}",
            i + 1,
            agent_ip(i),
            o.agent_port
        ));
    }
    if let Some(port) = o.marathon_port {
        lines.push(format!(
            "  marathon   http://127.0.0.1:{port}  (Marathon REST API: /v2/apps, /v2/deployments, /v2/events)"
        ));
    }
    if let Some((dns_port, http_port)) = o.dns_ports {
        lines.push(format!(
            "  dns        127.0.0.1:{dns_port} udp+tcp, http://127.0.0.1:{http_port}  (try: dig @127.0.0.1 -p {dns_port} leader.mesos)"
        ));
    }
    lines.push(format!(
        "  work dir   {}  (logs: *.log)",
        o.work_dir.display()
    ));
    lines.push(format!("Try: mantle agent list --master {master}"));
    lines.push("Press Ctrl-C to stop every process.".to_string());
    #[allow(clippy::print_stdout)]
    {
        println!("{}", lines.join("\n"));
    }
    let why = tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupted".to_string(),
        _ = term.recv() => "terminated".to_string(),
        d = cluster.died() => d,
    };
    info!(reason = %why, "stopping local cluster");
    cluster.stop().await;
    Ok(())
}
