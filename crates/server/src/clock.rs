//! The shells' clock: turns `Instant`/`SystemTime` into the cores' `Now`.

use mantle_model::Now;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A monotonic origin plus the wall clock.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    /// A clock whose monotonic zero is now.
    pub fn new() -> Self {
        Clock {
            origin: Instant::now(),
        }
    }

    /// The current time.
    pub fn now(&self) -> Now {
        let wall_secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        Now {
            mono: self.origin.elapsed(),
            wall_secs,
        }
    }

    /// The `Instant` of a monotonic offset, for sleeping until a core's deadline.
    pub fn instant(&self, mono: Duration) -> Instant {
        self.origin + mono
    }
}
