//! Standby executors: the agent keeps a few `mantle-executor` processes started ahead of
//! need, so that a launch hands its container to one that is already loaded (exec, dynamic
//! linking, page faults and its connections to the agent done) instead of starting a
//! process while the scheduler waits; and one whose container is done with serves the next.
//!
//! A standby is the agent's child in a process group of its own, with the agent-wide part of
//! the executor environment (`MANTLE_EXECUTOR_STANDBY=1` marks it) and one end of a Unix
//! socket pair for stdin: its control line to the agent. It blocks reading one line, its
//! [`Assignment`] (the container's settings, sandbox and cgroups), written by
//! [`Pool::assign`]. It then moves into the sandbox and the container's cgroups and runs as
//! any built-in executor, with the container's variables overlaid on its own environment
//! (never set in it: see `executor::Vars`), for itself and for the tasks it starts.
//!
//! When every task has ended and its ending has been acknowledged (`Outcome::Finished`), it
//! moves back to the cgroups it started in, leaves the sandbox and writes `released` on the
//! control line: the agent takes that as the executor's exit (status 0) and puts it back in
//! the pool. Any other ending (a signal, a lost agent, an error, or [`MAX_RUNS`] served) is
//! an exit as before, reported and cleaned up through the same paths as any executor's.
//! When the agent goes away (end of file on the control line) it exits quietly.
//!
//! Standbys serve only the built-in executor (`mantle-executor`) outside `namespaces/pid`:
//! anything else still starts a process per launch.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;

/// Set in a standby executor's environment.
pub const STANDBY_ENV: &str = "MANTLE_EXECUTOR_STANDBY";

/// How many containers one standby serves before it exits (and a fresh one takes its place),
/// so that whatever a long-lived process accumulates (memory charged to the cgroups of
/// containers long gone, among others) stays bounded.
pub const MAX_RUNS: usize = 64;

/// The line a standby writes when it is free again.
pub const RELEASED: &str = "released";

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
    #[error("cannot read the assignment: {0}")]
    Read(std::io::Error),
    #[error("bad assignment: {0}")]
    Parse(serde_json::Error),
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

/// A standby executor's control line to its agent.
pub struct Control {
    line: std::io::BufReader<UnixStream>,
    /// The `cgroup.procs` files of the cgroups it goes back to, kept open from one container
    /// to the next.
    home: std::collections::HashMap<String, std::fs::File>,
}

impl Control {
    /// In a standby executor (`MANTLE_EXECUTOR_STANDBY` set; otherwise `None`): takes the
    /// control line from stdin, which becomes `/dev/null` (what tasks inherit).
    pub fn take() -> Result<Option<Control>, StandbyError> {
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
        Ok(Some(Control {
            line: std::io::BufReader::new(UnixStream::from(fd)),
            home: Default::default(),
        }))
    }

    /// Waits for the next assignment: `None` when the agent closed the line (it is gone, or
    /// no longer needs this standby).
    pub fn next_assignment(&mut self) -> Result<Option<Assignment>, StandbyError> {
        let mut line = String::new();
        let read = self.line.read_line(&mut line).map_err(StandbyError::Read)?;
        if read == 0 || !line.ends_with('\n') {
            return Ok(None);
        }
        serde_json::from_str(&line)
            .map(Some)
            .map_err(StandbyError::Parse)
    }

    /// Tells the agent this executor is done with its container and free again.
    pub fn released(&mut self) -> std::io::Result<()> {
        self.line
            .get_mut()
            .write_all(format!("{RELEASED}\n").as_bytes())
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
            join(std::env::split_paths(v).map(|p| p.to_string_lossy().into_owned()))?;
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

/// Moves this process into each cgroup whose `cgroup.procs` file is given (writing `0`
/// moves the writer).
fn join(files: impl Iterator<Item = String>) -> Result<(), StandbyError> {
    for path in files {
        std::fs::write(&path, "0").map_err(|source| StandbyError::Cgroup { path, source })?;
    }
    Ok(())
}

/// One standby executor, as the agent holds it.
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

    /// A standby that served a container is free again: it goes first in line (its pages and
    /// connections are the warmest) unless `cap` are ready already, when it is told to exit
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
        let mut line = match serde_json::to_vec(assignment) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode an executor assignment");
                return None;
            }
        };
        line.push(b'\n');
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
        // The first one's end is closed already: the write fails.
        let (s1, theirs1, mut rx1) = standby(11);
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
        let mut control = Control {
            line: std::io::BufReader::new(theirs2),
            home: Default::default(),
        };
        assert_eq!(control.next_assignment().unwrap(), Some(a.clone()));
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

    #[test]
    fn a_half_written_line_is_no_assignment() {
        let (mut agent, theirs) = UnixStream::pair().unwrap();
        agent.write_all(b"{\"directory\":\"/tm").unwrap();
        drop(agent);
        let mut control = Control {
            line: std::io::BufReader::new(theirs),
            home: Default::default(),
        };
        assert_eq!(control.next_assignment().unwrap(), None);
    }

    #[test]
    fn released_is_one_line_on_the_control_line() {
        let (agent, theirs) = UnixStream::pair().unwrap();
        let mut control = Control {
            line: std::io::BufReader::new(theirs),
            home: Default::default(),
        };
        control.released().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(agent).read_line(&mut line).unwrap();
        assert_eq!(line, format!("{RELEASED}\n"));
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
        // Standbys that keep dying unassigned stop the refills.
        for n in 1..=MAX_FAILURES {
            assert_eq!(pool.ended_unassigned(5), n);
        }
        assert_eq!(pool.len(), 0);
        assert_eq!(pool.reserve(4), 0);
    }
}
