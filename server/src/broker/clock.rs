//! Time, as an input of the broker.
//!
//! Two readings, for two jobs:
//! - [`Clock::now`] — *broker time*, in milliseconds since the Unix epoch,
//!   read from a monotonic clock anchored to the wall clock once, when the
//!   clock is made. Leases, retry backoff, delays, timers, dedupe windows
//!   and retention ages use it, so a step of the wall clock (NTP, an
//!   operator) neither expires every lease at once nor deletes backlog
//!   early. Its values are stored (retry due times, delays) and survive a
//!   restart, where the anchor is taken again from the wall clock.
//! - [`Clock::wall`] — the wall clock, for message timestamps only.
//!
//! The system clock reads Tokio's `Instant`, so `tokio::time::pause` drives
//! it in unit tests; [`Clock::manual`] is a clock tests move by hand
//! (including wall-clock steps).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The broker's clock; cheap to clone (clones share the source).
#[derive(Clone)]
pub struct Clock {
    source: Arc<Source>,
}

enum Source {
    System {
        /// Wall-clock milliseconds at `start`.
        anchor_ms: u64,
        start: tokio::time::Instant,
    },
    Manual {
        now_ms: AtomicU64,
        /// Wall clock minus broker time.
        wall_offset_ms: AtomicI64,
    },
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &*self.source {
            Source::System { .. } => f.write_str("Clock::System"),
            Source::Manual { .. } => write!(f, "Clock::Manual({})", self.now()),
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl Clock {
    /// The process's clock: monotonic broker time anchored to the wall
    /// clock now.
    pub fn system() -> Clock {
        Clock {
            source: Arc::new(Source::System {
                anchor_ms: wall_ms(),
                start: tokio::time::Instant::now(),
            }),
        }
    }

    /// A clock that moves only when told (tests), starting at `start_ms`
    /// with the wall clock equal to it.
    pub fn manual(start_ms: u64) -> Clock {
        Clock {
            source: Arc::new(Source::Manual {
                now_ms: AtomicU64::new(start_ms),
                wall_offset_ms: AtomicI64::new(0),
            }),
        }
    }

    /// Broker time in milliseconds since the Unix epoch (monotonic).
    pub fn now(&self) -> u64 {
        match &*self.source {
            Source::System { anchor_ms, start } => {
                anchor_ms.saturating_add(start.elapsed().as_millis() as u64)
            }
            Source::Manual { now_ms, .. } => now_ms.load(Ordering::SeqCst),
        }
    }

    /// The wall clock in milliseconds since the Unix epoch (timestamps).
    pub fn wall(&self) -> u64 {
        match &*self.source {
            Source::System { .. } => wall_ms(),
            Source::Manual {
                now_ms,
                wall_offset_ms,
            } => now_ms
                .load(Ordering::SeqCst)
                .saturating_add_signed(wall_offset_ms.load(Ordering::SeqCst)),
        }
    }

    /// The wall-clock reading that goes with broker time `at`: `at` moved
    /// by however far the wall clock is from broker time now (0 until the
    /// wall clock is stepped).
    pub fn wall_at(&self, at: u64) -> u64 {
        let offset = self.wall() as i128 - self.now() as i128;
        (at as i128 + offset).clamp(0, u64::MAX as i128) as u64
    }

    /// Moves a manual clock forward (both readings). No effect on the
    /// system clock.
    pub fn advance(&self, ms: u64) {
        if let Source::Manual { now_ms, .. } = &*self.source {
            now_ms.fetch_add(ms, Ordering::SeqCst);
        }
    }

    /// Steps a manual clock's wall reading by `delta_ms` (an NTP step);
    /// broker time does not move. No effect on the system clock.
    pub fn step_wall(&self, delta_ms: i64) {
        if let Source::Manual { wall_offset_ms, .. } = &*self.source {
            wall_offset_ms.fetch_add(delta_ms, Ordering::SeqCst);
        }
    }
}

/// Wall-clock milliseconds since the Unix epoch (for what is not a broker
/// decision: request ids, log fields).
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_steps_wall_only() {
        let c = Clock::manual(1_000);
        c.advance(500);
        assert_eq!(c.now(), 1_500);
        c.step_wall(3_600_000);
        assert_eq!(c.now(), 1_500);
        assert_eq!(c.wall(), 3_601_500);
        c.step_wall(-7_200_000);
        assert_eq!(c.wall(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn system_clock_follows_tokio_time() {
        let c = Clock::system();
        let before = c.now();
        tokio::time::advance(std::time::Duration::from_secs(3600)).await;
        let after = c.now();
        assert!(after - before >= 3_600_000, "{before} -> {after}");
    }
}
