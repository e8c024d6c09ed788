//! The seam between the client and time: reading "now" and sleeping until an instant.
//!
//! Devices use [`EmbassyClock`] (feature `embassy-time`). A host running thousands of clients
//! in one tokio runtime uses [`TokioClock`] (feature `tokio`), so tokio's timer wheel does the
//! waiting instead of embassy-time's bounded queue.

use crate::time::Instant;

/// A source of time for the client.
#[allow(
    async_fn_in_trait,
    reason = "implementations are concrete; see the Transport trait"
)]
pub trait Clock {
    /// The current instant, on the same scale as every other call.
    fn now(&self) -> Instant;

    /// Completes at (or soon after) `at`; at once if `at` has passed. Cancel-safe.
    async fn sleep_until(&self, at: Instant);
}

/// embassy-time's clock: milliseconds since boot.
#[cfg(feature = "embassy-time")]
#[derive(Debug, Clone, Copy, Default)]
pub struct EmbassyClock;

#[cfg(feature = "embassy-time")]
impl Clock for EmbassyClock {
    fn now(&self) -> Instant {
        Instant::from_millis(embassy_time::Instant::now().as_millis())
    }

    async fn sleep_until(&self, at: Instant) {
        embassy_time::Timer::at(embassy_time::Instant::from_millis(at.as_millis())).await;
    }
}

/// tokio's clock: milliseconds since the clock was made.
#[cfg(feature = "tokio")]
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    origin: tokio::time::Instant,
}

#[cfg(feature = "tokio")]
impl TokioClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        Self {
            origin: tokio::time::Instant::now(),
        }
    }
}

#[cfg(feature = "tokio")]
impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "tokio")]
impl Clock for TokioClock {
    fn now(&self) -> Instant {
        let elapsed = self.origin.elapsed().as_millis();
        Instant::from_millis(u64::try_from(elapsed).unwrap_or(u64::MAX))
    }

    async fn sleep_until(&self, at: Instant) {
        let at = self.origin + core::time::Duration::from_millis(at.as_millis());
        tokio::time::sleep_until(at).await;
    }
}
