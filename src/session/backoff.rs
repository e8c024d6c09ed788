//! Reconnect backoff: exponential growth with full jitter, as a pure function of the attempt
//! number, the configuration and a random number.

use rand_core::RngCore;

use crate::time::Duration;

/// How long to wait between connection attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct BackoffConfig {
    /// The shortest delay, and the unit the ceiling doubles from (default 1 s).
    pub min: Duration,
    /// The ceiling never grows past this (default 60 s).
    pub max: Duration,
    /// Give up after this many consecutive failed attempts; `None` (the default) retries forever.
    pub max_attempts: Option<u32>,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            min: Duration::from_secs(1),
            max: Duration::from_secs(60),
            max_attempts: None,
        }
    }
}

impl BackoffConfig {
    /// The upper bound of the delay after `failures` consecutive failures (1 for the first):
    /// `min · 2^failures`, capped at `max`.
    pub fn ceiling(&self, failures: u32) -> Duration {
        // Doubling until the cap, at most 64 times: on a 32-bit core a 64-bit saturating
        // multiply by a shifted factor is several times this loop's code.
        let (min, max) = (self.min.as_millis(), self.max.as_millis());
        let mut ceiling = min;
        for _ in 0..failures.min(64) {
            if ceiling >= max {
                break;
            }
            ceiling = ceiling.saturating_add(ceiling);
        }
        Duration::from_millis(ceiling.min(max).max(min))
    }

    /// The delay after `failures` consecutive failures, drawn uniformly from `[min, ceiling]`
    /// ("full jitter" above a floor): a fleet that lost its broker at one instant spreads its
    /// reconnects over the whole window instead of coming back at the same instant.
    pub fn delay(&self, failures: u32, rng: &mut impl RngCore) -> Duration {
        let low = self.min.as_millis();
        let high = self.ceiling(failures).as_millis();
        let span = high.saturating_sub(low).saturating_add(1);
        // A uniform 64-bit draw scaled into `[0, span)` by a widening multiply: its bias is
        // below 2^-40 for any span under a day, like a modulo's, and on a 32-bit MCU it costs a
        // few multiply instructions where `%` would link the ~900-byte 64-bit division routine.
        let offset = (u128::from(rng.next_u64()) * u128::from(span)) >> 64;
        Duration::from_millis(low + u64::try_from(offset).unwrap_or(0))
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::rand::SplitMix64;

    #[test]
    fn test_ceiling_doubles_to_the_cap() {
        let c = BackoffConfig::default();
        let secs: Vec<u64> = (1..=8).map(|n| c.ceiling(n).as_secs()).collect();
        assert_eq!(secs, vec![2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(c.ceiling(0).as_secs(), 1);
        assert_eq!(c.ceiling(u32::MAX).as_secs(), 60);
    }

    #[test]
    fn test_delays_stay_in_bounds_and_spread() {
        let c = BackoffConfig::default();
        let mut rng = SplitMix64::new(7);
        for failures in 1..12 {
            let ceiling = c.ceiling(failures);
            let delays: Vec<Duration> = (0..1000).map(|_| c.delay(failures, &mut rng)).collect();
            assert!(delays.iter().all(|d| *d >= c.min && *d <= ceiling));
            let min = delays.iter().min().unwrap().as_millis();
            let max = delays.iter().max().unwrap().as_millis();
            let span = ceiling.as_millis() - c.min.as_millis();
            // Spread: the draws cover most of the window, and the mean sits near its middle.
            assert!(
                max - min > span * 9 / 10,
                "failures {failures}: {min}..{max}"
            );
            let mean = delays.iter().map(|d| d.as_millis()).sum::<u64>() / 1000;
            let mid = (ceiling.as_millis() + c.min.as_millis()) / 2;
            assert!(mean.abs_diff(mid) < span / 10 + 1, "mean {mean} vs {mid}");
        }
    }
}
