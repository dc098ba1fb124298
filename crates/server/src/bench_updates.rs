//! `mantle bench updates`: how many status updates per second a cluster carries end to end,
//! reliably: executor -> agent (made durable, then answered) -> master (in its registry) ->
//! scheduler -> ACKNOWLEDGE -> master -> agent (durable) -> the task's next update.
//!
//! The bench starts a master and one agent as child processes, subscribes as a v1 scheduler
//! and launches `tasks` tasks onto one custom executor, `mantle bench-executor` (hidden; a real
//! v1 HTTP executor). For every task it sends `updates` TASK_RUNNING updates, each with its
//! number in `message`, then TASK_FINISHED, each POSTed to the agent as soon as the agent
//! answered the previous one. The agent keeps at most one update per task in flight, so
//! tasks' updates overlap and a task's next update waits for the acknowledgement of the last.
//! The scheduler acknowledges each update at once and checks that every task's updates
//! arrive in order, each once. No process starts or ends while updates are measured, so the
//! figure is the status update path alone.

use crate::bench::{SchedulerClient, STEP_TIMEOUT};
use crate::local::{agent_ip, free_port, LocalCluster, LocalOptions};
use anyhow::{bail, Context};
use futures::StreamExt;
use mantle_api::executor::{
    Call as ExecCall, CallType as ExecCallType, CallUpdate, EventType as ExecEventType,
};
use mantle_api::mesos::{CommandInfo, ExecutorInfo, TaskInfo, TaskStatus};
use mantle_api::recordio::Decoder;
use mantle_api::resources_to_wire;
use mantle_api::scheduler::EventType;
use mantle_model::{ExecutorId, FrameworkId, Resources, TaskId, TaskState};
use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::{info, warn};

/// Resources of each bench task, and of the executor.
const TASK_RESOURCES: &str = "cpus:0.01;mem:1";
const EXECUTOR_RESOURCES: &str = "cpus:0.1;mem:32";
/// Resources of the bench agent: room for 10,000 tasks.
const AGENT_RESOURCES: &str = "cpus:200;mem:20000;disk:4096;ports:[31000-32000]";
/// The prefix of each update's `message`, followed by its number.
const MESSAGE_PREFIX: &str = "bench update ";

/// Options of `mantle bench updates`.
#[derive(Debug, Clone)]
pub struct UpdatesOptions {
    pub tasks: usize,
    /// TASK_RUNNING updates per task (TASK_FINISHED follows).
    pub updates: usize,
    pub work_dir: PathBuf,
    /// The `mantle` binary, run as master, agent and executor.
    pub program: PathBuf,
    /// `FrameworkInfo.checkpoint`, as Marathon sets it.
    pub checkpoint: bool,
}

/// The figures of `mantle bench updates`.
#[derive(Debug, Clone)]
pub struct UpdatesReport {
    pub tasks: usize,
    pub updates: usize,
    /// Updates received by the scheduler (each once, in order per task).
    pub received: usize,
    /// From the first update received to the last.
    pub elapsed: Duration,
    pub checkpoint: bool,
}

impl UpdatesReport {
    pub fn per_second(&self) -> f64 {
        self.received as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn render(&self) -> String {
        format!(
            "status updates, executor to scheduler and acknowledged back ({} tasks x {} updates{}):\n  \
             received {:>9}\n  elapsed  {:>9.3} s\n\
             {} updates in order and each once: {:.0} updates/s",
            self.tasks,
            self.updates + 1,
            if self.checkpoint { ", checkpointed" } else { "" },
            self.received,
            self.elapsed.as_secs_f64(),
            self.received,
            self.per_second(),
        )
    }
}

/// Runs the bench on a fresh cluster under `work_dir` and stops it on every path.
pub async fn run(o: UpdatesOptions) -> anyhow::Result<UpdatesReport> {
    if o.tasks == 0 {
        bail!("--tasks must be at least 1");
    }
    let master_port = free_port(&[Ipv4Addr::LOCALHOST])?;
    let agent_port = free_port(&[agent_ip(0)])?;
    let local = LocalOptions {
        agents: 1,
        master_port,
        agent_port,
        work_dir: o.work_dir.clone(),
        agent_resources: Some(AGENT_RESOURCES.to_string()),
        marathon_port: None,
        dns_ports: None,
        program: o.program.clone(),
        agent_args: Vec::new(),
    };
    info!(work_dir = %o.work_dir.display(), master_port, agent_port, "starting bench cluster");
    let mut cluster = LocalCluster::start(&local)
        .await
        .with_context(|| format!("starting the cluster (logs in {})", o.work_dir.display()))?;
    let master = local.master_url();
    let result = tokio::select! {
        r = measure(&master, &o) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        d = cluster.died() => Err(anyhow::anyhow!("{d} during the benchmark")),
    };
    cluster.stop().await;
    let (received, elapsed) = result.with_context(|| {
        format!(
            "benchmark failed (cluster logs in {})",
            o.work_dir.display()
        )
    })?;
    Ok(UpdatesReport {
        tasks: o.tasks,
        updates: o.updates,
        received,
        elapsed,
        checkpoint: o.checkpoint,
    })
}

/// What the scheduler expects next of one task.
fn check_order(next: &mut usize, updates: usize, status: &TaskStatus) -> anyhow::Result<bool> {
    let task = &status.task_id;
    if *next == updates {
        if status.state != TaskState::Finished {
            bail!("{task}: expected TASK_FINISHED, got {:?}", status.state);
        }
        *next += 1;
        return Ok(true);
    }
    let n = status
        .message
        .as_deref()
        .and_then(|m| m.strip_prefix(MESSAGE_PREFIX))
        .and_then(|n| n.parse::<usize>().ok());
    if status.state != TaskState::Running || n != Some(*next) {
        bail!(
            "{task}: expected TASK_RUNNING number {next}, got {:?} {:?}",
            status.state,
            status.message
        );
    }
    *next += 1;
    Ok(false)
}

async fn measure(master: &str, o: &UpdatesOptions) -> anyhow::Result<(usize, Duration)> {
    let mut s = SchedulerClient::subscribe(master, o.checkpoint).await?;
    let per_task = Resources::parse(TASK_RESOURCES).map_err(|e| anyhow::anyhow!("{e}"))?;
    let executor_res = Resources::parse(EXECUTOR_RESOURCES).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut need = executor_res.clone();
    for _ in 0..o.tasks {
        need.add(&per_task);
    }
    let mut held = Vec::new();
    let offer = s.take_offer(&mut held, &need).await?;
    let executor = ExecutorInfo {
        kind: Some("CUSTOM".into()),
        executor_id: ExecutorId::new("bench-updates"),
        framework_id: Some(s.framework_id.clone()),
        command: Some(CommandInfo {
            value: Some(o.program.to_string_lossy().into_owned()),
            shell: Some(false),
            arguments: vec![
                o.program.to_string_lossy().into_owned(),
                "bench-executor".into(),
                "--updates".into(),
                o.updates.to_string(),
            ],
            ..CommandInfo::default()
        }),
        resources: resources_to_wire(&executor_res, None),
        name: Some("mantle bench-executor".into()),
        extra: Default::default(),
    };
    let tasks: Vec<TaskInfo> = (0..o.tasks)
        .map(|i| TaskInfo {
            name: format!("updates-{i}"),
            task_id: TaskId::new(format!("updates-{i}")),
            agent_id: offer.agent_id.clone(),
            resources: resources_to_wire(&per_task, None),
            executor: Some(executor.clone()),
            command: None,
            kill_policy: None,
            data: None,
            extra: Default::default(),
        })
        .collect();
    s.call(s.launch_call(&offer, tasks))
        .await
        .context("ACCEPT")?;
    let mut next: BTreeMap<TaskId, usize> = BTreeMap::new();
    let mut seen: HashSet<String> = HashSet::new();
    let (mut finished, mut received) = (0usize, 0usize);
    let (mut first, mut last) = (None::<Instant>, Instant::now());
    let (ack_err_tx, mut ack_err) = mpsc::unbounded_channel::<String>();
    while finished < o.tasks {
        if let Ok(e) = ack_err.try_recv() {
            bail!("ACKNOWLEDGE failed: {e}");
        }
        let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
        let (at, event) = s
            .next_event(deadline)
            .await
            .with_context(|| format!("{received} updates received, {finished} tasks finished"))?;
        let status = match (&event.kind, &event.update) {
            (EventType::Update, Some(u)) => u.status.clone(),
            _ => {
                s.absorb(event, &mut held).await?;
                continue;
            }
        };
        if status.state.is_terminal() && status.state != TaskState::Finished {
            bail!(
                "{} ended {:?}: {}",
                status.task_id,
                status.state,
                status.message.unwrap_or_default()
            );
        }
        let uuid = status.uuid.clone().unwrap_or_default();
        if !seen.insert(uuid.clone()) {
            bail!("{}: update {uuid} delivered twice", status.task_id);
        }
        s.ack_in_background(&status, &ack_err_tx);
        let n = next.entry(status.task_id.clone()).or_default();
        if check_order(n, o.updates, &status)? {
            finished += 1;
        }
        received += 1;
        first.get_or_insert(at);
        last = at;
    }
    let elapsed = first.map_or(Duration::ZERO, |f| last.saturating_duration_since(f));
    Ok((received, elapsed))
}

/// Entry point of the hidden `mantle bench-executor --updates N`: a v1 executor that, for
/// every task it is given, sends N numbered TASK_RUNNING updates and TASK_FINISHED, and
/// exits once every TASK_FINISHED is acknowledged.
pub async fn executor(updates: usize) -> anyhow::Result<()> {
    let var = |name: &str| {
        std::env::var(name)
            .map_err(|_| anyhow::anyhow!("{name} must be set (the agent sets it for executors)"))
    };
    let endpoint = var("MESOS_AGENT_ENDPOINT")?;
    let framework_id = FrameworkId::new(var("MESOS_FRAMEWORK_ID")?);
    let executor_id = ExecutorId::new(var("MESOS_EXECUTOR_ID")?);
    let url = format!("http://{endpoint}/api/v1/executor");
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()?;
    let call = |kind, update| ExecCall {
        executor_id: executor_id.clone(),
        framework_id: framework_id.clone(),
        kind,
        subscribe: None,
        update,
        message: None,
    };
    let mut sub = call(ExecCallType::Subscribe, None);
    sub.subscribe = Some(Default::default());
    let resp = http
        .post(&url)
        .header("Accept", "application/json")
        .json(&sub)
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("the agent refused SUBSCRIBE: {}", resp.status());
    }
    let mut body = resp.bytes_stream();
    let mut decoder = Decoder::new(64 * 1024 * 1024);
    // TASK_FINISHED uuids not yet acknowledged, and tasks started.
    let (finished_tx, mut finished_rx) = mpsc::unbounded_channel::<String>();
    let mut unacked: HashSet<String> = HashSet::new();
    let mut started = 0usize;
    let mut acked_finished = 0usize;
    loop {
        tokio::select! {
            chunk = body.next() => {
                let Some(Ok(chunk)) = chunk else { bail!("the agent closed the event stream") };
                // A TASK_FINISHED is noted before it is POSTed, so before its ACKNOWLEDGED.
                while let Ok(uuid) = finished_rx.try_recv() {
                    unacked.insert(uuid);
                }
                decoder.feed(&chunk);
                while let Some(record) = decoder.next_record()? {
                    let event: mantle_api::executor::Event = serde_json::from_slice(&record)?;
                    match event.kind {
                        ExecEventType::Launch => {
                            let Some(l) = event.launch else { continue };
                            started += 1;
                            let (http, url, done) = (http.clone(), url.clone(), finished_tx.clone());
                            let template = call(ExecCallType::Update, None);
                            tokio::spawn(async move {
                                for n in 0..=updates {
                                    let (state, message) = if n < updates {
                                        (TaskState::Running, Some(format!("{MESSAGE_PREFIX}{n}")))
                                    } else {
                                        (TaskState::Finished, None)
                                    };
                                    let mut status = TaskStatus::new(l.task.task_id.clone(), state);
                                    status.message = message;
                                    status.source = Some("SOURCE_EXECUTOR".into());
                                    let uuid = uuid::Uuid::new_v4();
                                    status.uuid = Some(base64::Engine::encode(
                                        &base64::engine::general_purpose::STANDARD,
                                        uuid.as_bytes(),
                                    ));
                                    if state == TaskState::Finished {
                                        let _ = done.send(status.uuid.clone().unwrap_or_default());
                                    }
                                    let mut c = template.clone();
                                    c.update = Some(CallUpdate { status });
                                    // Resent until the agent has made it durable (202).
                                    loop {
                                        match http.post(&url).json(&c).send().await {
                                            Ok(r) if r.status().is_success() => break,
                                            Ok(r) => warn!(status = %r.status(), "update not taken; again"),
                                            Err(e) => warn!(error = %e, "update not sent; again"),
                                        }
                                        tokio::time::sleep(Duration::from_millis(10)).await;
                                    }
                                }
                            });
                        }
                        ExecEventType::Acknowledged => {
                            if let Some(a) = event.acknowledged {
                                if unacked.remove(&a.uuid) {
                                    acked_finished += 1;
                                }
                            }
                        }
                        ExecEventType::Shutdown => return Ok(()),
                        _ => {}
                    }
                }
            }
            Some(uuid) = finished_rx.recv() => { unacked.insert(uuid); }
        }
        if started > 0 && acked_finished == started {
            info!(
                tasks = started,
                "every task finished and acknowledged; exiting"
            );
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(n: usize) -> TaskStatus {
        let mut s = TaskStatus::new(TaskId::new("t"), TaskState::Running);
        s.message = Some(format!("{MESSAGE_PREFIX}{n}"));
        s
    }

    #[test]
    fn the_order_check_takes_numbered_updates_then_finished_and_nothing_else() {
        let mut next = 0;
        assert!(!check_order(&mut next, 2, &running(0)).unwrap());
        assert!(check_order(&mut next, 2, &running(0)).is_err(), "a repeat");
        let mut next = 1;
        assert!(check_order(&mut next, 2, &running(2)).is_err(), "a gap");
        assert!(!check_order(&mut next, 2, &running(1)).unwrap());
        assert!(
            check_order(&mut next, 2, &running(2)).is_err(),
            "past the last"
        );
        let finished = TaskStatus::new(TaskId::new("t"), TaskState::Finished);
        assert!(check_order(&mut next, 2, &finished).unwrap());
        let mut early = 1;
        assert!(
            check_order(&mut early, 2, &finished).is_err(),
            "finished too soon"
        );
    }

    #[test]
    fn the_report_names_the_rate() {
        let r = UpdatesReport {
            tasks: 10,
            updates: 9,
            received: 100,
            elapsed: Duration::from_millis(50),
            checkpoint: true,
        };
        let text = r.render();
        assert!(
            text.contains("10 tasks x 10 updates, checkpointed"),
            "{text}"
        );
        assert!(
            text.ends_with("100 updates in order and each once: 2000 updates/s"),
            "{text}"
        );
    }
}
