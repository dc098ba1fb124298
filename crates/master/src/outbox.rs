//! Reliable delivery of the updates the master generates itself about tasks it took on
//! (beyond Mesos, issue #5).
//!
//! Mesos sends `TASK_LOST`, `TASK_UNREACHABLE`, `TASK_GONE` and `TASK_DROPPED` from the master
//! once, without a uuid: a framework that is disconnected at that moment, or a master killed
//! before the event left, loses the update, and the framework learns the state only by
//! reconciling. Mantle gives such an update a uuid, so the framework acknowledges it as it
//! acknowledges an agent's, and keeps it in a per-framework outbox (`Master::outbox`, keyed by
//! framework and task) until then:
//!
//! - it is sent at once when the framework is connected, again to every (re-)subscription,
//!   and, while unacknowledged, again after 10 s, then at intervals doubling up to 10 min (the
//!   retry of an agent's status update manager);
//! - an ACKNOWLEDGE whose uuid matches is consumed here and not forwarded to an agent (which
//!   may be gone);
//! - the outbox is a registry table, written in the step that changed it (so before the
//!   update goes out), and `Master::recover` restores it, so a restarted master re-sends what
//!   was not acknowledged when the framework re-subscribes.
//!
//! **At most one update per task, the latest.** A newer word on a task replaces the pending
//! one rather than queueing behind it: a newer master update (`TASK_UNREACHABLE`, then the
//! state the agent reports when it returns), an update forwarded from the agent (which the
//! agent itself retries until acknowledged), or a new launch with the task's ID. A framework
//! therefore never gets a stale state after a newer one from a resend, and there is only ever
//! one master update in flight per task; what it may miss is an intermediate state it can no
//! longer act on.
//!
//! Covered: what the master decides about tasks it launched or adopted when their agent is
//! marked unreachable, removed, replaced, or re-registers without them, and the state an
//! unreachable agent reports when it returns (`REASON_AGENT_REREGISTERED`). Not covered, and
//! still sent once without a uuid as in Mesos: reconciliation answers, the answer to a KILL
//! of an unknown task, the answers to an ACCEPT (`TASK_ERROR`, and `TASK_LOST`/`TASK_DROPPED`
//! for invalid offers: the task was never taken on, and reconciliation gives the same answer),
//! and `TASK_KILLED` on framework removal (the framework is gone).

use crate::registry::UpdateRecord;
use crate::Master;
use base64::Engine;
use mantle_api::mesos::TaskStatus;
use mantle_api::scheduler::Event;
use mantle_model::{FrameworkId, Now, TaskId};
use rand::RngCore;
use std::time::Duration;

/// First resend interval of an unacknowledged master update (Mesos
/// `STATUS_UPDATE_RETRY_INTERVAL_MIN`).
pub const UPDATE_RETRY_MIN: Duration = Duration::from_secs(10);
/// Longest resend interval (Mesos `STATUS_UPDATE_RETRY_INTERVAL_MAX`).
pub const UPDATE_RETRY_MAX: Duration = Duration::from_secs(600);

/// One master-generated update awaiting its acknowledgement.
#[derive(Debug, Clone)]
pub(crate) struct PendingUpdate {
    /// With `uuid` set.
    pub(crate) status: TaskStatus,
    /// Creation order across the master (resends keep it).
    pub(crate) seq: u64,
    /// When to send it again; `None` while the framework is not connected (it goes out when
    /// the framework subscribes).
    pub(crate) next_retry: Option<Duration>,
    /// The interval after the next resend.
    pub(crate) backoff: Duration,
}

impl PendingUpdate {
    fn record(&self, framework_id: &FrameworkId) -> UpdateRecord {
        UpdateRecord {
            framework_id: framework_id.clone(),
            seq: self.seq,
            status: self.status.clone(),
        }
    }
}

impl Master {
    /// Sends `status`, an update the master generated about a task it took on, reliably: it
    /// gets a uuid and stays in the framework's outbox, replacing any pending update about the
    /// same task, until acknowledged. Nothing is kept for a framework the master does not have.
    pub(crate) fn send_master_update(
        &mut self,
        now: Now,
        framework_id: &FrameworkId,
        mut status: TaskStatus,
    ) {
        let Some(conn) = self.frameworks.get(framework_id).map(|f| f.conn) else {
            return;
        };
        let mut b = [0u8; 16];
        self.update_rng.fill_bytes(&mut b);
        // A version-4 UUID, as the agent's (and Mesos's `id::UUID::random()`).
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        status.uuid = Some(base64::engine::general_purpose::STANDARD.encode(b));
        let key = (framework_id.clone(), status.task_id.clone());
        let seq = self.next_update_seq;
        self.next_update_seq += 1;
        let next_retry = conn.map(|_| now.mono.saturating_add(UPDATE_RETRY_MIN));
        self.outbox.insert(
            key.clone(),
            PendingUpdate {
                status: status.clone(),
                seq,
                next_retry,
                backoff: UPDATE_RETRY_MIN,
            },
        );
        self.dirty.updates.insert(key);
        self.send_event(framework_id, Event::update(status));
    }

    /// Drops the pending master update about a task, if any, because something newer about
    /// it happened (see the module comment).
    pub(crate) fn supersede_master_update(&mut self, framework_id: &FrameworkId, task_id: &TaskId) {
        let key = (framework_id.clone(), task_id.clone());
        if self.outbox.remove(&key).is_some() {
            self.dirty.updates.insert(key);
        }
    }

    /// An ACKNOWLEDGE: whether it acknowledges a pending master update (then consumed).
    pub(crate) fn acknowledge_master_update(
        &mut self,
        framework_id: &FrameworkId,
        task_id: &TaskId,
        uuid: &str,
    ) -> bool {
        let key = (framework_id.clone(), task_id.clone());
        let matches = self
            .outbox
            .get(&key)
            .is_some_and(|p| p.status.uuid.as_deref() == Some(uuid));
        if matches {
            self.outbox.remove(&key);
            self.dirty.updates.insert(key);
        }
        matches
    }

    /// A framework (re-)subscribed: every pending update of it goes out again, in the order
    /// they were made, with the backoff started afresh.
    pub(crate) fn resend_master_updates(&mut self, now: Now, framework_id: &FrameworkId) {
        let mut due: Vec<(u64, TaskStatus)> = Vec::new();
        let from = (framework_id.clone(), TaskId::new(""));
        for ((f, _), p) in self.outbox.range_mut(from..) {
            if f != framework_id {
                break;
            }
            p.next_retry = Some(now.mono.saturating_add(UPDATE_RETRY_MIN));
            p.backoff = UPDATE_RETRY_MIN;
            due.push((p.seq, p.status.clone()));
        }
        due.sort_by_key(|(seq, _)| *seq);
        for (_, status) in due {
            self.send_event(framework_id, Event::update(status));
        }
    }

    /// Resends the unacknowledged updates whose retry time has come, to connected frameworks.
    pub(crate) fn retry_master_updates(&mut self, now: Now) {
        let mut due: Vec<(u64, FrameworkId, TaskStatus)> = Vec::new();
        for ((f, _), p) in &mut self.outbox {
            if p.next_retry.is_none_or(|t| t > now.mono) {
                continue;
            }
            let connected = self.frameworks.get(f).is_some_and(|f| f.conn.is_some());
            if !connected {
                p.next_retry = None;
                continue;
            }
            p.backoff = p.backoff.saturating_mul(2).min(UPDATE_RETRY_MAX);
            p.next_retry = Some(now.mono.saturating_add(p.backoff));
            due.push((p.seq, f.clone(), p.status.clone()));
        }
        due.sort_by_key(|(seq, _, _)| *seq);
        for (_, framework_id, status) in due {
            self.send_event(&framework_id, Event::update(status));
        }
    }

    /// When `tick` next has an update to resend.
    pub(crate) fn next_update_retry(&self) -> Option<Duration> {
        self.outbox.values().filter_map(|p| p.next_retry).min()
    }

    /// A framework was removed: its pending updates go with it.
    pub(crate) fn drop_master_updates(&mut self, framework_id: &FrameworkId) {
        let keys: Vec<(FrameworkId, TaskId)> = self
            .outbox
            .range((framework_id.clone(), TaskId::new(""))..)
            .take_while(|((f, _), _)| f == framework_id)
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            self.outbox.remove(&key);
            self.dirty.updates.insert(key);
        }
    }

    /// The outbox as registry records, in key order.
    pub(crate) fn update_records(&self) -> Vec<UpdateRecord> {
        self.outbox.iter().map(|((f, _), p)| p.record(f)).collect()
    }

    /// The registry record of one outbox key, or `None` when it has none (any more).
    pub(crate) fn update_record(&self, key: &(FrameworkId, TaskId)) -> Option<UpdateRecord> {
        self.outbox.get(key).map(|p| p.record(&key.0))
    }

    /// Restores a pending update from the registry (the framework is disconnected: it goes
    /// out when the framework subscribes).
    pub(crate) fn restore_master_update(&mut self, r: UpdateRecord) {
        let key = (r.framework_id.clone(), r.status.task_id.clone());
        if !self.frameworks.contains_key(&r.framework_id) || r.status.uuid.is_none() {
            self.dirty.updates.insert(key);
            return;
        }
        self.next_update_seq = self.next_update_seq.max(r.seq.saturating_add(1));
        self.outbox.insert(
            key,
            PendingUpdate {
                status: r.status,
                seq: r.seq,
                next_retry: None,
                backoff: UPDATE_RETRY_MIN,
            },
        );
    }
}
