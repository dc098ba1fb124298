//! `mantle local`: a whole cluster on one machine, one process per daemon (the master on
//! 127.0.0.1, agents on 127.0.0.2, 127.0.0.3, ...), each with its own work dir. Ctrl-C or
//! SIGTERM stops every process it started; agents kill their executors on the way out.

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
    let out = std::fs::File::create(&log)?;
    let err = out.try_clone()?;
    let child = Command::new(program)
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

async fn stop_all(procs: &mut [Proc]) {
    // Agents first, so they can kill their executors while the master still listens.
    for p in procs.iter().rev() {
        if let Some(pid) = p.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
    for p in procs.iter_mut().rev() {
        match tokio::time::timeout(Duration::from_secs(5), p.child.wait()).await {
            Ok(_) => info!(process = %p.name, "stopped"),
            Err(_) => {
                warn!(process = %p.name, "did not stop in 5 s; killing");
                let _ = p.child.kill().await;
            }
        }
    }
}

/// Runs the cluster until a signal arrives or a process dies.
pub async fn run(o: LocalOptions) -> anyhow::Result<()> {
    std::fs::create_dir_all(&o.work_dir)?;
    let mut procs: Vec<Proc> = Vec::new();
    let result = start(&o, &mut procs).await;
    if let Err(e) = result {
        stop_all(&mut procs).await;
        return Err(e);
    }
    let master = format!("http://127.0.0.1:{}", o.master_port);
    let mut lines = vec![
        "Mantle local cluster is up.".to_string(),
        format!("  master     {master}  (Mesos v1 scheduler API: {master}/api/v1/scheduler, state: {master}/master/state)"),
    ];
    for i in 0..o.agents {
        lines.push(format!(
            "  agent {}    http://127.0.0.{}:{}",
            i + 1,
            i + 2,
            o.agent_port
        ));
    }
    if let Some(port) = o.marathon_port {
        lines.push(format!(
            "  marathon   http://127.0.0.1:{port}  (Marathon REST API: /v2/apps, /v2/deployments, /v2/events)"
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
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let died = async {
        loop {
            for p in procs.iter_mut() {
                if let Ok(Some(status)) = p.child.try_wait() {
                    return format!("{} exited with {status}", p.name);
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    let why = tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupted".to_string(),
        _ = term.recv() => "terminated".to_string(),
        d = died => d,
    };
    info!(reason = %why, "stopping local cluster");
    stop_all(&mut procs).await;
    Ok(())
}

async fn start(o: &LocalOptions, procs: &mut Vec<Proc>) -> anyhow::Result<()> {
    let master_dir = o.work_dir.join("master");
    std::fs::create_dir_all(&master_dir)?;
    let args = vec![
        "master".into(),
        "--ip".into(),
        "127.0.0.1".into(),
        "--port".into(),
        o.master_port.to_string(),
        "--work-dir".into(),
        master_dir.to_string_lossy().into_owned(),
    ];
    procs.push(spawn(
        &o.program,
        "master",
        &args,
        o.work_dir.join("master.log"),
    )?);
    let master_url = format!("http://127.0.0.1:{}/health", o.master_port);
    if let Some(p) = procs.last_mut() {
        wait_healthy(&master_url, &mut p.child).await?;
    }
    for i in 0..o.agents {
        let ip = format!("127.0.0.{}", i + 2);
        let dir = o.work_dir.join(format!("agent-{}", i + 1));
        std::fs::create_dir_all(&dir)?;
        let mut args = vec![
            "agent".into(),
            "--master".into(),
            format!("127.0.0.1:{}", o.master_port),
            "--ip".into(),
            ip.clone(),
            "--port".into(),
            o.agent_port.to_string(),
            "--work-dir".into(),
            dir.to_string_lossy().into_owned(),
        ];
        if let Some(r) = &o.agent_resources {
            args.push("--resources".into());
            args.push(r.clone());
        }
        let name = format!("agent-{}", i + 1);
        procs.push(spawn(
            &o.program,
            &name,
            &args,
            o.work_dir.join(format!("{name}.log")),
        )?);
        let url = format!("http://{ip}:{}/health", o.agent_port);
        if let Some(p) = procs.last_mut() {
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
        procs.push(spawn(
            &o.program,
            "marathon",
            &args,
            o.work_dir.join("marathon.log"),
        )?);
        let url = format!("http://127.0.0.1:{port}/ping");
        if let Some(p) = procs.last_mut() {
            wait_healthy(&url, &mut p.child).await?;
        }
    }
    Ok(())
}
