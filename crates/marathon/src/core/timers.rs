//! The core's timed work that Marathon runs as separate actors: periodic reconciliation
//! (`--reconciliation_interval`) and the killing of overdue launches (`--task_launch_timeout`,
//! Marathon's `KillOverdueTasksActor`). Both are called from [`Core::tick`].

use super::{mono_ms, wall_ms, Core};
use mantle_model::{Now, TaskState};

/// How long the core must have been subscribed before it judges a launch overdue: after a
/// (re)subscription the stored states may be stale until the reconciliation answers arrive,
/// and a task that started while the scheduler was away must not be killed as overdue.
pub(super) const OVERDUE_SETTLE_MS: u64 = 10_000;

impl Core {
    /// Reconciles every known task (explicitly) and the unknown ones (implicitly) when the
    /// configured interval has passed since the last reconciliation, which also runs on every
    /// SUBSCRIBED. This repairs calls and updates lost while the scheduler stayed subscribed.
    pub(super) fn reconcile_if_due(&mut self, now: Now) {
        let interval = self.config.reconciliation_interval_ms;
        let now_ms = mono_ms(now);
        if interval == 0 || !self.connected {
            return;
        }
        if now_ms.saturating_sub(self.last_reconcile_ms) >= interval {
            self.last_tick_ms = self.last_tick_ms.max(now_ms);
            self.reconcile_all();
        }
    }

    /// Kills instances still STAGING longer than the launch timeout after they were staged
    /// (a launch the agent never reported on); the kill makes them not live, so convergence
    /// launches replacements at once, and a kill sent on purpose sets off no backoff. Only
    /// while subscribed and settled: until the first reconciliation answers arrive, a stored
    /// STAGING may be a task that runs by now.
    ///
    /// STARTING is left alone although Marathon counts it: the agent forwards a task's next
    /// update only once the previous one is acknowledged, so while the scheduler is away the
    /// master's view of a task that runs stays at its first update, TASK_STARTING, until the
    /// agent's retry (10 s, doubling to 10 min) — after a long outage, killing on that view
    /// would kill running tasks.
    pub(super) fn kill_overdue(&mut self, now: Now) {
        let timeout = self.config.task_launch_timeout_ms;
        if timeout == 0
            || !self.connected
            || mono_ms(now).saturating_sub(self.subscribed_ms) < OVERDUE_SETTLE_MS
        {
            return;
        }
        let now_wall = wall_ms(now);
        let limit = i64::try_from(timeout).unwrap_or(i64::MAX);
        let overdue: Vec<String> = self
            .instances
            .values()
            .filter(|i| !i.kill_requested)
            .filter(|i| i.state == TaskState::Staging)
            .filter(|i| {
                crate::time::parse_iso(&i.staged_at)
                    .is_some_and(|at| now_wall.saturating_sub(at) >= limit)
            })
            .map(|i| i.task_id.clone())
            .collect();
        self.last_tick_ms = self.last_tick_ms.max(mono_ms(now));
        for task_id in overdue {
            self.kill(&task_id);
        }
    }
}
