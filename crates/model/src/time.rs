//! `Now`: the current time as handed to a core by its shell (cores never read a clock).

use std::time::Duration;

/// A point in time. `mono` is a monotonic offset from an arbitrary origin, used for all
/// timeouts and deadlines; `wall_secs` is Unix time in seconds, used only for protocol
/// timestamps (`TaskStatus.timestamp`, `registered_time`).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Now {
    pub mono: Duration,
    pub wall_secs: f64,
}

impl Now {
    /// A time at monotonic offset `mono`, with a wall clock derived from a fixed epoch.
    /// Used by tests and the simulator.
    pub fn at(mono: Duration) -> Self {
        Now {
            mono,
            wall_secs: 1_700_000_000.0 + mono.as_secs_f64(),
        }
    }

    /// This time moved forward by `d`.
    pub fn plus(self, d: Duration) -> Self {
        Now {
            mono: self.mono + d,
            wall_secs: self.wall_secs + d.as_secs_f64(),
        }
    }
}
