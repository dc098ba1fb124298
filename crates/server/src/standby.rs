//! Standby executors: the agent keeps a few `mantle-executor` processes started ahead of
//! need, so that a launch hands its container to one that is already loaded (exec, dynamic
//! linking and page faults done) instead of starting a process while the scheduler waits.
//!
//! A standby is the agent's child in a process group of its own, with the agent-wide part of
//! the executor environment (`MANTLE_EXECUTOR_STANDBY=1` marks it) and a pipe for stdin. It
//! blocks reading one line: its [`Assignment`] (the container's environment and sandbox),
//! written by [`Pool::assign`]. It then takes that environment, moves into the sandbox and
//! its cgroups, and runs as any built-in executor. When the agent goes away unassigned (EOF
//! on stdin) it exits quietly.
//!
//! What is left is the executor as the agent started it, so exits are reported, and
//! processes killed, through the same paths as for any executor. Standbys serve only the
//! built-in executor (`mantle-executor`) outside `namespaces/pid`: anything else still
//! starts a process per launch.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::path::PathBuf;

/// Set in a standby executor's environment.
pub const STANDBY_ENV: &str = "MANTLE_EXECUTOR_STANDBY";

/// What a standby executor is given to become a container's executor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    /// The sandbox: its working directory.
    pub directory: PathBuf,
    /// Its per-container environment (`MESOS_FRAMEWORK_ID`, ..., `MANTLE_CGROUP_PROCS`).
    pub env: Vec<(String, String)>,
    /// Open the sandbox's `stdout` and `stderr` as its own (when the agent did not ask it to
    /// rotate them, which sets up its output anyway).
    pub open_output: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StandbyError {
    #[error("cannot read the assignment: {0}")]
    Read(std::io::Error),
    #[error("bad assignment: {0}")]
    Parse(serde_json::Error),
    #[error("cannot enter the sandbox {path}: {source}")]
    Sandbox {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// In a standby executor (`MANTLE_EXECUTOR_STANDBY` set; otherwise returns `Ok(true)` at
/// once): waits for the assignment on stdin and takes it on. `Ok(false)` when stdin closed
/// without one (the agent is gone or no longer needs it).
///
/// Sets environment variables, so it must run while the process has a single thread.
pub fn await_assignment() -> Result<bool, StandbyError> {
    if std::env::var_os(STANDBY_ENV).is_none() {
        return Ok(true);
    }
    std::env::remove_var(STANDBY_ENV);
    let mut line = String::new();
    let read = std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(StandbyError::Read)?;
    if read == 0 {
        return Ok(false);
    }
    let a: Assignment = serde_json::from_str(&line).map_err(StandbyError::Parse)?;
    let threads = std::fs::read_dir("/proc/self/task").map_or(1, |d| d.count());
    if threads > 1 {
        tracing::warn!(
            threads,
            "a standby executor sets its environment with other threads running"
        );
    }
    take_on(&a)?;
    Ok(true)
}

fn take_on(a: &Assignment) -> Result<(), StandbyError> {
    use std::os::fd::AsRawFd;
    let sandbox = |source| StandbyError::Sandbox {
        path: a.directory.clone(),
        source,
    };
    for (k, v) in &a.env {
        std::env::set_var(k, v);
    }
    std::env::set_current_dir(&a.directory).map_err(sandbox)?;
    // As a freshly started executor: stdin from /dev/null, output into the sandbox.
    let null = std::fs::File::open("/dev/null").map_err(sandbox)?;
    nix::unistd::dup2(null.as_raw_fd(), 0).map_err(|e| sandbox(e.into()))?;
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
    Ok(())
}

/// One standby executor, as the agent holds it.
pub(crate) struct Standby {
    pub(crate) pid: i32,
    /// The write end of its stdin.
    pub(crate) stdin: std::fs::File,
    /// Tells whoever waits for its exit which container it became.
    pub(crate) assigned: tokio::sync::oneshot::Sender<String>,
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

    /// The standby `pid` ended without being assigned: it leaves the pool. Returns how many
    /// did so in a row.
    pub(crate) fn ended_unassigned(&mut self, pid: i32) -> usize {
        self.ready.retain(|s| s.pid != pid);
        self.failures += 1;
        self.failures
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
        while let Some(mut s) = self.ready.pop_front() {
            // A write to a pipe whose reader exited fails (EPIPE): that standby is gone, and
            // dropping it lets its waiter end.
            if let Err(e) = s.stdin.write_all(&line) {
                tracing::debug!(pid = s.pid, error = %e, "a standby executor is gone");
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
        };
        let line = serde_json::to_string(&a).unwrap();
        assert!(!line.contains('\n'), "{line}");
        assert_eq!(serde_json::from_str::<Assignment>(&line).unwrap(), a);
    }

    #[test]
    fn a_dead_standby_is_skipped_and_the_next_one_assigned() {
        let a = Assignment {
            directory: "/tmp".into(),
            env: Vec::new(),
            open_output: false,
        };
        let mut pool = Pool::default();
        // The first one's reader is closed already: the write fails.
        let (r1, w1) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        drop(r1);
        let (t1, mut rx1) = tokio::sync::oneshot::channel();
        pool.started(Some(Standby {
            pid: 11,
            stdin: std::fs::File::from(w1),
            assigned: t1,
        }));
        let (r2, w2) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let (t2, mut rx2) = tokio::sync::oneshot::channel();
        pool.started(Some(Standby {
            pid: 22,
            stdin: std::fs::File::from(w2),
            assigned: t2,
        }));
        let mut seen = None;
        assert_eq!(pool.assign("c1", &a, |pid| seen = Some(pid)), Some(22));
        assert_eq!(seen, Some(22));
        assert_eq!(pool.len(), 0);
        assert!(rx1.try_recv().is_err(), "the dead one was not assigned");
        assert_eq!(rx2.try_recv().unwrap(), "c1");
        let mut line = String::new();
        std::io::BufReader::new(std::fs::File::from(r2))
            .read_line(&mut line)
            .unwrap();
        assert_eq!(serde_json::from_str::<Assignment>(&line).unwrap(), a);
        // Nothing left to assign.
        assert_eq!(pool.assign("c2", &a, |_| {}), None);
    }

    #[test]
    fn starts_are_reserved_up_to_the_size_and_stop_after_repeated_failures() {
        let mut pool = Pool::default();
        assert_eq!(pool.reserve(4), 4);
        // Still starting: nothing more to reserve.
        assert_eq!(pool.reserve(4), 0);
        let (_r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let (t, _rx) = tokio::sync::oneshot::channel();
        pool.started(Some(Standby {
            pid: 5,
            stdin: std::fs::File::from(w),
            assigned: t,
        }));
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
