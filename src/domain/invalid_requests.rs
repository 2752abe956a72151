//! Discord's ban guard: "IP addresses that make too many invalid HTTP requests are
//! automatically and temporarily restricted from accessing the Discord API. Currently, this
//! limit is 10,000 per 10 minutes. An invalid request is one that results in 401, 403, or 429
//! statuses." (https://discord.com/developers/docs/topics/rate-limits#invalid-request-limit-aka-cloudflare-bans)
//!
//! The service counts its own invalid answers over a sliding 10 minutes. Past a fraction of
//! the limit it sends at most [`SLOW_REQUESTS_PER_SEC`] requests a second in all: even if
//! every one of them were invalid, `fraction * 10,000 + 600 s * 5/s` stays under 10,000 for
//! any fraction up to 0.7.

use std::collections::VecDeque;

/// Discord's limit and its window.
pub const DISCORD_INVALID_LIMIT: u32 = 10_000;
pub const WINDOW_SECS: u64 = 600;
/// Requests per second, all routes together, while slowed down.
pub const SLOW_REQUESTS_PER_SEC: u32 = 5;
/// Default share of Discord's limit at which the service slows down.
pub const DEFAULT_FRACTION: f64 = 0.5;

/// Whether a status counts towards Discord's invalid-request limit.
pub fn is_invalid(status: u16) -> bool {
    matches!(status, 401 | 403 | 429)
}

/// Invalid answers per second over the last [`WINDOW_SECS`].
#[derive(Debug, Default)]
pub struct InvalidWindow {
    /// (second, count), oldest first, at most one entry per second.
    seconds: VecDeque<(u64, u32)>,
    total: u32,
}

impl InvalidWindow {
    pub fn record(&mut self, now_secs: u64) {
        self.expire(now_secs);
        match self.seconds.back_mut() {
            Some((s, n)) if *s == now_secs => *n += 1,
            _ => self.seconds.push_back((now_secs, 1)),
        }
        self.total += 1;
    }

    /// Invalid answers in the ten minutes up to `now_secs`.
    pub fn count(&mut self, now_secs: u64) -> u32 {
        self.expire(now_secs);
        self.total
    }

    fn expire(&mut self, now_secs: u64) {
        while let Some(&(s, n)) = self.seconds.front() {
            if s + WINDOW_SECS > now_secs {
                break;
            }
            self.total -= n;
            self.seconds.pop_front();
        }
    }
}

/// The count at which the service slows down: `fraction` of Discord's limit, the fraction
/// kept within (0, 1].
pub fn threshold(fraction: f64) -> u32 {
    let f = if fraction.is_finite() && fraction > 0.0 {
        fraction.min(1.0)
    } else {
        DEFAULT_FRACTION
    };
    ((DISCORD_INVALID_LIMIT as f64 * f).floor() as u32).max(1)
}

/// Whether requests are slowed down with `count` invalid answers in the window.
pub fn slowed(count: u32, threshold: u32) -> bool {
    count >= threshold
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_401_403_and_429_are_invalid() {
        for s in [401, 403, 429] {
            assert!(is_invalid(s));
        }
        for s in [200, 204, 400, 404, 413, 500, 502] {
            assert!(!is_invalid(s), "{s}");
        }
    }

    #[test]
    fn the_window_forgets_answers_older_than_ten_minutes() {
        let mut w = InvalidWindow::default();
        for t in 0..100 {
            w.record(1_000 + t);
            w.record(1_000 + t);
        }
        assert_eq!(w.count(1_099), 200);
        // At 1,600 the answers of second 1,000 are ten minutes old.
        assert_eq!(w.count(1_600), 198);
        assert_eq!(w.count(1_698), 2);
        assert_eq!(w.count(1_699), 0);
        w.record(1_700);
        assert_eq!(w.count(1_700), 1);
    }

    #[test]
    fn slowing_down_at_the_threshold_keeps_a_worst_case_under_discords_limit() {
        assert_eq!(threshold(0.5), 5_000);
        assert_eq!(threshold(f64::NAN), 5_000);
        assert_eq!(threshold(-1.0), 5_000);
        assert_eq!(threshold(3.0), 10_000);
        assert_eq!(threshold(0.000_01), 1);
        assert!(!slowed(4_999, 5_000));
        assert!(slowed(5_000, 5_000));
        // Every request invalid from the threshold on, for a whole window.
        let worst = threshold(DEFAULT_FRACTION) + WINDOW_SECS as u32 * SLOW_REQUESTS_PER_SEC;
        assert!(worst < DISCORD_INVALID_LIMIT, "{worst}");
    }
}
