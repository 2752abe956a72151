//! Retry schedule shared by the audit and mirror queues: exponential from a base delay,
//! doubling per attempt, capped, with a little jitter so that retries of many jobs that
//! failed together do not land together.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub base: Duration,
    pub cap: Duration,
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    /// DESIGN.md: from 5 s, capped at 15 min, 8 attempts.
    fn default() -> Self {
        Self {
            base: Duration::from_secs(5),
            cap: Duration::from_secs(15 * 60),
            max_attempts: 8,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    RetryAfter(Duration),
    GiveUp,
}

/// Share of the delay that jitter may take away (never adds: the cap stays a cap).
const JITTER_SHARE: f64 = 0.2;

impl RetryPolicy {
    /// Delay before the next attempt after `attempts_made` attempts (1 = the first one
    /// failed): `base * 2^(attempts_made - 1)`, capped. `jitter` in `[0, 1)` shortens it by
    /// up to 20%.
    pub fn delay(&self, attempts_made: u32, jitter: f64) -> Duration {
        let exponent = attempts_made.saturating_sub(1).min(32);
        let raw = self.base.saturating_mul(1u32 << exponent.min(31));
        let capped = raw.min(self.cap);
        let jitter = jitter.clamp(0.0, 1.0);
        capped.mul_f64(1.0 - JITTER_SHARE * jitter)
    }

    /// What to do after a failed attempt.
    pub fn decide(&self, attempts_made: u32, jitter: f64) -> RetryDecision {
        if attempts_made >= self.max_attempts {
            RetryDecision::GiveUp
        } else {
            RetryDecision::RetryAfter(self.delay(attempts_made, jitter))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_from_five_seconds() {
        let p = RetryPolicy::default();
        let secs: Vec<u64> = (1..=6).map(|a| p.delay(a, 0.0).as_secs()).collect();
        assert_eq!(secs, vec![5, 10, 20, 40, 80, 160]);
    }

    #[test]
    fn delay_is_capped_at_fifteen_minutes() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(9, 0.0), Duration::from_secs(900));
        assert_eq!(p.delay(u32::MAX, 0.0), Duration::from_secs(900));
    }

    #[test]
    fn jitter_only_shortens_and_by_at_most_a_fifth() {
        let p = RetryPolicy::default();
        for a in 1..12 {
            let full = p.delay(a, 0.0);
            let jittered = p.delay(a, 0.999);
            assert!(jittered <= full);
            assert!(jittered >= full.mul_f64(0.8));
        }
    }

    #[test]
    fn gives_up_after_max_attempts() {
        let p = RetryPolicy::default();
        assert!(matches!(p.decide(7, 0.0), RetryDecision::RetryAfter(_)));
        assert_eq!(p.decide(8, 0.0), RetryDecision::GiveUp);
    }
}

/// The wait a 429 asks for, made safe: Discord sends seconds as a float (`retry_after`,
/// <https://discord.com/developers/docs/topics/rate-limits#exceeding-a-rate-limit>). A value
/// that is missing, not a number, infinite or negative waits 1 s (a negative one would
/// retry at once, thousands of invalid requests towards a ban); the wait is kept between
/// 50 ms and 60 s, so a nonsense value cannot hold a channel for an hour: if the limit still
/// holds after 60 s, Discord answers another 429 with the true rest.
pub fn rate_limit_wait(retry_after: Option<f64>) -> Duration {
    const DEFAULT: f64 = 1.0;
    let secs = retry_after
        .filter(|s| s.is_finite() && *s >= 0.0)
        .unwrap_or(DEFAULT)
        .clamp(0.05, 60.0);
    Duration::from_secs_f64(secs)
}

#[cfg(test)]
mod rate_limit_wait_tests {
    use super::*;

    #[test]
    fn nonsense_retry_after_values_wait_a_sane_time_and_never_panic() {
        assert_eq!(rate_limit_wait(Some(f64::NAN)), Duration::from_secs(1));
        assert_eq!(rate_limit_wait(Some(-1.0)), Duration::from_secs(1));
        assert_eq!(rate_limit_wait(Some(f64::INFINITY)), Duration::from_secs(1));
        assert_eq!(rate_limit_wait(None), Duration::from_secs(1));
        assert_eq!(rate_limit_wait(Some(1e308)), Duration::from_secs(60));
        assert_eq!(rate_limit_wait(Some(0.0)), Duration::from_millis(50));
        assert_eq!(rate_limit_wait(Some(2.5)), Duration::from_millis(2500));
    }
}
