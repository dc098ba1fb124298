//! Standby executors: the agent keeps a few `mantle-executor` processes started ahead of
//! need, so that a launch hands its container to one that is already loaded (exec, dynamic
//! linking and page faults done) instead of starting a process while the scheduler waits;
//! and one whose container is done with serves the next.
//!
//! A standby is the agent's child in a process group of its own, with the agent-wide part of
//! the executor environment (`MANTLE_EXECUTOR_STANDBY=1` marks it) and one end of a Unix
//! socket pair for stdin: its control line to the agent, one JSON object per line each way
//! ([`ToStandby`], [`FromStandby`]). It waits for its [`Assignment`] (the container's
//! settings, sandbox and cgroups), written by [`Pool::assign`], then moves into the sandbox
//! and the container's cgroups and runs as any built-in executor, with the container's
//! variables overlaid on its own environment (never set in it: see `executor::Vars`), for
//! itself and for the tasks it starts. It speaks the executor API over the same line (calls
//! and their answers, the SUBSCRIBE stream's events): no connection and no HTTP per launch.
//! Only after a lost agent (the line closed: a restarted agent has a new one for its own
//! standbys) does it fall back to HTTP, to subscribe again as any executor does.
//!
//! When every task has ended and its ending has been acknowledged (`Outcome::Finished`), it
//! moves back to the cgroups it started in, leaves the sandbox and says it is `released`:
//! the agent takes that as the executor's exit (status 0), ends its event stream (`ended`)
//! and puts it back in the pool. Any other ending (a signal, a lost agent, an error, or
//! [`MAX_RUNS`] served) is an exit as before, reported and cleaned up through the same paths
//! as any executor's. When the agent goes away (end of file on the line) an idle standby
//! exits quietly.
//!
//! Standbys serve only the built-in executor (`mantle-executor`) outside `namespaces/pid`:
//! anything else still starts a process per launch.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;

/// Set in a standby executor's environment.
pub const STANDBY_ENV: &str = "MANTLE_EXECUTOR_STANDBY";

/// How many containers one standby serves before it exits (and a fresh one takes its place),
/// so that whatever a long-lived process accumulates (memory charged to the cgroups of
/// containers long gone, among others) stays bounded.
pub const MAX_RUNS: usize = 64;

/// What a standby executor is given to become a container's executor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    /// The sandbox: its working directory.
    pub directory: PathBuf,
    /// Its per-container settings (`MESOS_FRAMEWORK_ID`, ..., and `MANTLE_CGROUP_PROCS`, the
    /// container's cgroups to join).
    pub env: Vec<(String, String)>,
    /// Open the sandbox's `stdout` and `stderr` as its own (when the agent did not ask it to
    /// rotate them, which sets up its output anyway).
    pub open_output: bool,
    /// The `cgroup.procs` files of the cgroups to go back to once the container is done with
    /// (those the standby started in): the container's cgroups are then removed.
    #[serde(default)]
    pub leave: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StandbyError {
    #[error("cannot take the control line: {0}")]
    Control(std::io::Error),
    #[error("cannot enter the sandbox {path}: {source}")]
    Sandbox {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("joined {joined} cgroups and knows the way back from {known}")]
    NoWayBack { joined: usize, known: usize },
    #[error("cannot move to cgroup {path}: {source}")]
    Cgroup {
        path: String,
        source: std::io::Error,
    },
}

/// What the agent writes on a standby's control line, one JSON object per line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToStandby {
    /// A container to serve.
    Assign(Assignment),
    /// An event of the executor API, as the SUBSCRIBE stream carries it.
    Event(mantle_api::executor::Event),
    /// The answer to a call, in the order of the calls: the HTTP status the executor API
    /// gives (202, 200 for SUBSCRIBE, 400, 403, 503) and its message.
    Answer { status: u16, message: String },
    /// The event stream ended: the agent has taken the executor's exit or release (always
    /// written before the next assignment).
    Ended,
}

/// What a standby writes on its control line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FromStandby {
    /// A call of the executor API, as it would POST it to `/api/v1/executor`.
    Call(mantle_api::executor::Call),
    /// Done with its container, free again.
    Released,
}

/// One line for the control line: `value` as JSON and a newline.
pub(crate) fn line_of<T: Serialize>(value: &T) -> serde_json::Result<Vec<u8>> {
    let mut line = serde_json::to_vec(value)?;
    line.push(b'\n');
    Ok(line)
}

/// The event line for a RecordIO frame of the SUBSCRIBE stream (`<length>\n<json>`), built
/// from its JSON as it is.
pub(crate) fn event_line(frame: &[u8]) -> Vec<u8> {
    let json = frame
        .iter()
        .position(|b| *b == b'\n')
        .map_or(frame, |i| &frame[i + 1..]);
    let mut line = Vec::with_capacity(json.len() + 11);
    line.extend_from_slice(b"{\"event\":");
    line.extend_from_slice(json);
    line.extend_from_slice(b"}\n");
    line
}

/// Takes the control line from stdin in a standby executor (`MANTLE_EXECUTOR_STANDBY` set;
/// otherwise `None`); stdin becomes `/dev/null` (what tasks inherit). Call it first thing.
pub fn take_line() -> Result<Option<UnixStream>, StandbyError> {
    use std::os::fd::{AsFd, AsRawFd};
    if std::env::var_os(STANDBY_ENV).is_none() {
        return Ok(None);
    }
    // A close-on-exec copy: no task inherits the line.
    let fd = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map_err(StandbyError::Control)?;
    let null = std::fs::File::open("/dev/null").map_err(StandbyError::Control)?;
    nix::unistd::dup2(null.as_raw_fd(), 0).map_err(|e| StandbyError::Control(e.into()))?;
    Ok(Some(UnixStream::from(fd)))
}

/// What the line's reader hands on, shared with the calls waiting for answers.
#[derive(Default)]
struct Demux {
    /// Where events go while the executor is subscribed.
    events: Option<tokio::sync::mpsc::UnboundedSender<mantle_api::executor::Event>>,
    /// Calls waiting for their answers, oldest first.
    answers: VecDeque<tokio::sync::oneshot::Sender<(u16, String)>>,
    /// The agent closed the line (it is gone).
    closed: bool,
}

/// A standby executor's control line to its agent: assignments, and the executor API (calls,
/// answers, events) while it serves a container, read by a task of its runtime.
pub struct Control {
    link: Link,
    assignments: tokio::sync::mpsc::UnboundedReceiver<Assignment>,
    /// The `cgroup.procs` files of the cgroups it goes back to, kept open from one container
    /// to the next.
    home: std::collections::HashMap<String, std::fs::File>,
}

/// The executor API over a standby's control line (instead of HTTP to the agent: no
/// connection, no HTTP, one line each way per call or event).
#[derive(Clone)]
pub struct Link {
    writer: Arc<tokio::sync::Mutex<tokio::net::unix::OwnedWriteHalf>>,
    demux: Arc<std::sync::Mutex<Demux>>,
}

/// Why a call over the control line got no answer.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("the agent closed the control line")]
    Closed,
    #[error("cannot write on the control line: {0}")]
    Write(std::io::Error),
    #[error("cannot encode the call: {0}")]
    Encode(serde_json::Error),
    #[error("the agent refused SUBSCRIBE: {0} {1}")]
    Refused(u16, String),
}

impl Control {
    /// Starts reading `line` (from [`take_line`]); must run inside the executor's runtime.
    pub fn start(line: UnixStream) -> std::io::Result<Control> {
        line.set_nonblocking(true)?;
        let (read, write) = tokio::net::UnixStream::from_std(line)?.into_split();
        let demux = Arc::new(std::sync::Mutex::new(Demux::default()));
        let (assign, assignments) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(read_line(read, assign, demux.clone()));
        Ok(Control {
            link: Link {
                writer: Arc::new(tokio::sync::Mutex::new(write)),
                demux,
            },
            assignments,
            home: Default::default(),
        })
    }

    /// Waits for the next assignment: `None` once the agent closed the line (it is gone, or
    /// no longer needs this standby).
    pub async fn next_assignment(&mut self) -> Option<Assignment> {
        self.assignments.recv().await
    }

    /// The executor API over this line, for the container it serves now.
    pub fn link(&self) -> Link {
        self.link.clone()
    }

    /// Tells the agent this executor is done with its container and free again.
    pub async fn released(&self) -> Result<(), LinkError> {
        let line = line_of(&FromStandby::Released).map_err(LinkError::Encode)?;
        self.link.write(&line).await
    }
}

/// Reads the control line until it closes, handing each line on.
async fn read_line(
    read: tokio::net::unix::OwnedReadHalf,
    assign: tokio::sync::mpsc::UnboundedSender<Assignment>,
    demux: Arc<std::sync::Mutex<Demux>>,
) {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let msg = match serde_json::from_str::<ToStandby>(&line) {
            Ok(m) => m,
            // A half-written line (the agent shut the line mid-write) is no message.
            Err(e) => {
                tracing::warn!(error = %e, "undecodable line from the agent");
                continue;
            }
        };
        let Ok(mut d) = demux.lock() else { return };
        match msg {
            ToStandby::Assign(a) => {
                let _ = assign.send(a);
            }
            ToStandby::Event(e) => {
                if let Some(events) = &d.events {
                    let _ = events.send(e);
                }
            }
            ToStandby::Answer { status, message } => {
                if let Some(waiter) = d.answers.pop_front() {
                    let _ = waiter.send((status, message));
                }
            }
            ToStandby::Ended => d.events = None,
        }
    }
    if let Ok(mut d) = demux.lock() {
        d.closed = true;
        d.events = None;
        d.answers.clear();
    }
}

impl Link {
    async fn write(&self, line: &[u8]) -> Result<(), LinkError> {
        use tokio::io::AsyncWriteExt;
        self.writer
            .lock()
            .await
            .write_all(line)
            .await
            .map_err(LinkError::Write)
    }

    /// Makes a call and waits for its answer: the HTTP status and message the executor API
    /// would give.
    pub async fn call(
        &self,
        call: &mantle_api::executor::Call,
    ) -> Result<(u16, String), LinkError> {
        use tokio::io::AsyncWriteExt;
        let mut line = b"{\"call\":".to_vec();
        serde_json::to_writer(&mut line, call).map_err(LinkError::Encode)?;
        line.extend_from_slice(b"}\n");
        let (waiter, answer) = tokio::sync::oneshot::channel();
        {
            // Answers come in the order of the calls: queue and write under one lock.
            let mut writer = self.writer.lock().await;
            match self.demux.lock() {
                Ok(mut d) if !d.closed => d.answers.push_back(waiter),
                _ => return Err(LinkError::Closed),
            }
            writer.write_all(&line).await.map_err(LinkError::Write)?;
        }
        answer.await.map_err(|_| LinkError::Closed)
    }

    /// SUBSCRIBE: the events that follow, until the agent ends the stream (the receiver then
    /// closes).
    pub async fn subscribe(
        &self,
        call: &mantle_api::executor::Call,
    ) -> Result<tokio::sync::mpsc::UnboundedReceiver<mantle_api::executor::Event>, LinkError> {
        let (events, received) = tokio::sync::mpsc::unbounded_channel();
        // In place before the answer: the agent's first event follows it at once.
        if let Ok(mut d) = self.demux.lock() {
            d.events = Some(events);
        }
        let (status, message) = self.call(call).await?;
        if !(200..300).contains(&status) {
            if let Ok(mut d) = self.demux.lock() {
                d.events = None;
            }
            return Err(LinkError::Refused(status, message));
        }
        Ok(received)
    }
}

/// Takes on an assignment: the sandbox as working directory and output, the container's
/// cgroups. Returns the container's settings for the executor (all but the cgroups).
pub fn enter(a: &Assignment) -> Result<Vec<(String, String)>, StandbyError> {
    use std::os::fd::AsRawFd;
    let sandbox = |source| StandbyError::Sandbox {
        path: a.directory.clone(),
        source,
    };
    std::env::set_current_dir(&a.directory).map_err(sandbox)?;
    if a.open_output {
        for (fd, name) in [(1, "stdout"), (2, "stderr")] {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(a.directory.join(name))
                .map_err(sandbox)?;
            nix::unistd::dup2(f.as_raw_fd(), fd).map_err(|e| sandbox(e.into()))?;
        }
    }
    let mut env = Vec::with_capacity(a.env.len());
    for (k, v) in &a.env {
        if k == "MANTLE_CGROUP_PROCS" {
            join_cgroups(v.as_ref())?;
        } else {
            env.push((k.clone(), v.clone()));
        }
    }
    Ok(env)
}

/// Leaves the container: back to the cgroups the standby started in, out of the sandbox,
/// output to `/dev/null`.
pub fn leave(control: &mut Control, a: &Assignment) -> Result<(), StandbyError> {
    use std::os::fd::AsRawFd;
    let joined = a
        .env
        .iter()
        .filter(|(k, _)| k == "MANTLE_CGROUP_PROCS")
        .map(|(_, v)| std::env::split_paths(v).count())
        .sum::<usize>();
    if joined != a.leave.len() {
        return Err(StandbyError::NoWayBack {
            joined,
            known: a.leave.len(),
        });
    }
    for path in &a.leave {
        let cgroup = |source| StandbyError::Cgroup {
            path: path.clone(),
            source,
        };
        let file = match control.home.entry(path.clone()) {
            std::collections::hash_map::Entry::Occupied(f) => f.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => v.insert(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(cgroup)?,
            ),
        };
        file.write_all(b"0").map_err(cgroup)?;
    }
    let root = |source| StandbyError::Sandbox {
        path: "/".into(),
        source,
    };
    std::env::set_current_dir("/").map_err(root)?;
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .map_err(root)?;
    for fd in [1, 2] {
        nix::unistd::dup2(null.as_raw_fd(), fd).map_err(|e| root(e.into()))?;
    }
    Ok(())
}

/// Moves this process into every cgroup whose `cgroup.procs` file `list` names (colon-
/// separated, as `MANTLE_CGROUP_PROCS`): writing `0` moves the writer.
pub fn join_cgroups(list: &std::ffi::OsStr) -> Result<(), StandbyError> {
    for file in std::env::split_paths(list) {
        std::fs::write(&file, "0").map_err(|source| StandbyError::Cgroup {
            path: file.to_string_lossy().into_owned(),
            source,
        })?;
    }
    Ok(())
}

/// One standby executor, as the agent holds it.
#[derive(Clone)]
pub(crate) struct Standby {
    pub(crate) pid: i32,
    /// The agent's end of its control line (non-blocking: the agent never waits on it).
    pub(crate) control: Arc<UnixStream>,
    /// Tells whoever waits for its exit or release which container it serves.
    pub(crate) assigned: tokio::sync::mpsc::UnboundedSender<String>,
}

/// After this many standbys in a row ended without being assigned, no more are started
/// (launches start their executors as before): something makes them fail.
pub(crate) const MAX_FAILURES: usize = 3;

/// The agent's standby executors, oldest first, and those being started.
#[derive(Default)]
pub(crate) struct Pool {
    ready: VecDeque<Standby>,
    starting: usize,
    /// Standbys that ended unassigned since the last assignment.
    failures: usize,
}

impl Pool {
    #[cfg(test)]
    fn len(&self) -> usize {
        self.ready.len()
    }

    /// One more to start, whatever is ready or starting (unless standbys have been ending
    /// unassigned); it counts as starting until `started` is called for it.
    pub(crate) fn reserve_one(&mut self) -> bool {
        // Not while standbys are ending unassigned: a launch's own standby would reset the
        // count before it could fail, and keep the direct launches from taking over.
        if self.failures > 0 {
            return false;
        }
        self.starting += 1;
        true
    }

    /// How many to start so that `size` are ready or starting (none after repeated
    /// failures); they count as starting until `started` is called for each.
    pub(crate) fn reserve(&mut self, size: usize) -> usize {
        if self.failures >= MAX_FAILURES {
            return 0;
        }
        let need = size.saturating_sub(self.ready.len() + self.starting);
        self.starting += need;
        need
    }

    /// One reserved start is done: `Some` standby when it started.
    pub(crate) fn started(&mut self, s: Option<Standby>) {
        self.starting = self.starting.saturating_sub(1);
        if let Some(s) = s {
            self.ready.push_back(s);
        }
    }

    /// The standby `pid` ended without ever being assigned: it leaves the pool. Returns how
    /// many did so in a row.
    pub(crate) fn ended_unassigned(&mut self, pid: i32) -> usize {
        self.ready.retain(|s| s.pid != pid);
        self.failures += 1;
        self.failures
    }

    /// The standby `pid`, which had served before, ended while it waited in the pool.
    pub(crate) fn ended_idle(&mut self, pid: i32) {
        self.ready.retain(|s| s.pid != pid);
    }

    /// A standby that served a container is free again: it goes first in line (its pages are the
    /// warmest) unless `cap` are ready already, when it is told to exit
    /// (its control line is shut). Returns whether it was kept.
    pub(crate) fn released(&mut self, s: Standby, cap: usize) -> bool {
        if self.ready.len() >= cap {
            let _ = s.control.shutdown(std::net::Shutdown::Both);
            return false;
        }
        self.ready.push_front(s);
        true
    }

    /// Hands `container_id` to the oldest standby still alive and returns its pid; `None`
    /// when none is. Before the standby can exit as that container's executor, `started`
    /// runs with its pid (the agent records it, so the exit that follows is matched).
    pub(crate) fn assign(
        &mut self,
        container_id: &str,
        assignment: &Assignment,
        started: impl FnOnce(i32),
    ) -> Option<i32> {
        let line = match line_of(&ToStandby::Assign(assignment.clone())) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode an executor assignment");
                return None;
            }
        };
        while let Some(s) = self.ready.pop_front() {
            // A write to a line whose reader exited fails (EPIPE): that standby is gone. One
            // that cannot take the whole line at once is not waited for: shutting its line
            // makes it exit rather than read half an assignment.
            if let Err(e) = (&*s.control).write_all(&line) {
                tracing::debug!(pid = s.pid, error = %e, "a standby executor is gone");
                let _ = s.control.shutdown(std::net::Shutdown::Both);
                continue;
            }
            started(s.pid);
            let _ = s.assigned.send(container_id.to_string());
            self.failures = 0;
            return Some(s.pid);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn assignment() -> Assignment {
        Assignment {
            directory: "/tmp".into(),
            env: Vec::new(),
            open_output: false,
            leave: Vec::new(),
        }
    }

    /// A standby for the pool, and the standby's end of its line and its waiter's channel.
    fn standby(
        pid: i32,
    ) -> (
        Standby,
        UnixStream,
        tokio::sync::mpsc::UnboundedReceiver<String>,
    ) {
        let (agent, theirs) = UnixStream::pair().unwrap();
        agent.set_nonblocking(true).unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let s = Standby {
            pid,
            control: Arc::new(agent),
            assigned: tx,
        };
        (s, theirs, rx)
    }

    #[test]
    fn an_assignment_round_trips_through_one_json_line() {
        let a = Assignment {
            directory: "/tmp/sand box/\u{e9}".into(),
            env: vec![
                ("MESOS_EXECUTOR_ID".into(), "web.1\nx".into()),
                (
                    "MANTLE_CGROUP_PROCS".into(),
                    "/a/cgroup.procs:/b/cgroup.procs".into(),
                ),
            ],
            open_output: true,
            leave: vec!["/sys/fs/cgroup/memory/cgroup.procs".into()],
        };
        let line = serde_json::to_string(&a).unwrap();
        assert!(!line.contains('\n'), "{line}");
        assert_eq!(serde_json::from_str::<Assignment>(&line).unwrap(), a);
    }

    #[test]
    fn a_dead_standby_is_skipped_and_the_next_one_assigned() {
        let a = assignment();
        let mut pool = Pool::default();
        // The first one's end is closed already: the write fails. Shut down, not only
        // dropped: a process another test forks at that moment holds a copy of the descriptor
        // until it execs, which would keep a merely dropped end open.
        let (s1, theirs1, mut rx1) = standby(11);
        theirs1.shutdown(std::net::Shutdown::Both).unwrap();
        drop(theirs1);
        pool.started(Some(s1));
        let (s2, theirs2, mut rx2) = standby(22);
        pool.started(Some(s2));
        let mut seen = None;
        assert_eq!(pool.assign("c1", &a, |pid| seen = Some(pid)), Some(22));
        assert_eq!(seen, Some(22));
        assert_eq!(pool.len(), 0);
        assert!(rx1.try_recv().is_err(), "the dead one was not assigned");
        assert_eq!(rx2.try_recv().unwrap(), "c1");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(theirs2), &mut line).unwrap();
        assert_eq!(
            serde_json::from_str::<ToStandby>(&line).unwrap(),
            ToStandby::Assign(a.clone())
        );
        // Nothing left to assign.
        assert_eq!(pool.assign("c2", &a, |_| {}), None);
    }

    #[test]
    fn a_released_standby_is_assigned_first_up_to_the_cap() {
        let a = assignment();
        let mut pool = Pool::default();
        let (fresh, _t1, _r1) = standby(1);
        pool.started(Some(fresh));
        let (used, _t2, mut rx2) = standby(2);
        assert!(pool.released(used, 2));
        // Over the cap: told to exit (its line reads end of file).
        let (extra, theirs3, _r3) = standby(3);
        assert!(!pool.released(extra, 2));
        let mut rest = Vec::new();
        std::io::BufReader::new(theirs3)
            .read_to_end(&mut rest)
            .unwrap();
        assert!(rest.is_empty());
        assert_eq!(pool.assign("c1", &a, |_| {}), Some(2));
        assert_eq!(rx2.try_recv().unwrap(), "c1");
        assert_eq!(pool.assign("c2", &a, |_| {}), Some(1));
    }

    #[tokio::test]
    async fn the_executor_api_runs_over_the_line_in_order_and_a_half_written_line_is_nothing() {
        use mantle_api::executor::{Call, CallType, Event, EventType};
        let (agent, theirs) = UnixStream::pair().unwrap();
        let mut control = Control::start(theirs).unwrap();
        let agent = tokio::net::UnixStream::from_std({
            agent.set_nonblocking(true).unwrap();
            agent
        })
        .unwrap();
        let (read, mut write) = agent.into_split();
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(read));
        let say = |m: ToStandby| line_of(&m).unwrap();
        use tokio::io::AsyncWriteExt;
        // An assignment, and a half-written one that is no assignment.
        write
            .write_all(&say(ToStandby::Assign(assignment())))
            .await
            .unwrap();
        assert_eq!(control.next_assignment().await, Some(assignment()));
        let link = control.link();
        let call = |kind| Call {
            executor_id: mantle_model::ExecutorId::new("e"),
            framework_id: mantle_model::FrameworkId::new("f"),
            kind,
            subscribe: None,
            update: None,
            message: None,
        };
        // SUBSCRIBE: answered, then events (as the agent frames them) until `ended`.
        let agent_side = async {
            let l = lines.next_line().await.unwrap().unwrap();
            assert_eq!(
                serde_json::from_str::<FromStandby>(&l).unwrap(),
                FromStandby::Call(call(CallType::Subscribe))
            );
            write
                .write_all(&say(ToStandby::Answer {
                    status: 200,
                    message: String::new(),
                }))
                .await
                .unwrap();
            let frame = crate::http::frame(&Event::bare(EventType::Subscribed));
            write.write_all(&event_line(&frame)).await.unwrap();
            write.write_all(&say(ToStandby::Ended)).await.unwrap();
            (lines, write)
        };
        let subscribe = call(CallType::Subscribe);
        let (events, (mut lines, mut write)) = tokio::join!(link.subscribe(&subscribe), agent_side);
        let mut events = events.unwrap();
        assert_eq!(events.recv().await.unwrap().kind, EventType::Subscribed);
        assert!(events.recv().await.is_none(), "the stream ended");
        // A refused call is answered with its status; answers come in order.
        let agent_side = async {
            for status in [202, 503] {
                lines.next_line().await.unwrap().unwrap();
                write
                    .write_all(&say(ToStandby::Answer {
                        status,
                        message: format!("s{status}"),
                    }))
                    .await
                    .unwrap();
            }
            (lines, write)
        };
        let (update, message) = (call(CallType::Update), call(CallType::Message));
        let (a1, a2, (mut lines, mut write)) =
            tokio::join!(link.call(&update), link.call(&message), agent_side);
        assert_eq!(a1.unwrap().0, 202);
        assert_eq!(a2.unwrap(), (503, "s503".to_string()));
        control.released().await.unwrap();
        let l = lines.next_line().await.unwrap().unwrap();
        assert_eq!(
            serde_json::from_str::<FromStandby>(&l).unwrap(),
            FromStandby::Released
        );
        // The agent shuts the line mid-assignment: nothing is assigned, calls fail.
        write
            .write_all(b"{\"assign\":{\"directory\":\"/tm")
            .await
            .unwrap();
        drop(write);
        drop(lines);
        assert_eq!(control.next_assignment().await, None);
        assert!(matches!(
            link.call(&call(CallType::Update)).await,
            Err(LinkError::Closed)
        ));
    }

    #[test]
    fn starts_are_reserved_up_to_the_size_and_stop_after_repeated_failures() {
        let mut pool = Pool::default();
        assert_eq!(pool.reserve(4), 4);
        // Still starting: nothing more to reserve.
        assert_eq!(pool.reserve(4), 0);
        let (s, _theirs, _rx) = standby(5);
        pool.started(Some(s));
        pool.started(None); // a start that failed
        assert_eq!((pool.len(), pool.reserve(4)), (1, 1));
        assert!(pool.reserve_one());
        pool.started(None);
        // Standbys that keep dying unassigned stop the refills, and the starts of a standby
        // for a launch from the first of them.
        for n in 1..=MAX_FAILURES {
            assert_eq!(pool.ended_unassigned(5), n);
            assert!(!pool.reserve_one());
        }
        assert_eq!(pool.len(), 0);
        assert_eq!(pool.reserve(4), 0);
    }
}
