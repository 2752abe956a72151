//! Counts the 401/403/429 answers every REST call of the service receives and, past the
//! configured share of Discord's 10,000 per 10 minutes, spaces new requests out (see
//! [`crate::domain::invalid_requests`] for the numbers). One per process, shared by every
//! caller of the REST adapter: mirror lanes, notices, member paging, webhooks, admin checks.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::invalid_requests::{
    is_invalid, slowed, threshold, InvalidWindow, DISCORD_INVALID_LIMIT, SLOW_REQUESTS_PER_SEC,
};

/// Gauge: invalid answers (401, 403, 429) in the last 10 minutes.
pub const INVALID_REQUESTS: &str = "seatgate_discord_invalid_requests";
/// Gauge: 1 while new Discord requests are slowed down by the ban guard.
pub const SLOWED: &str = "seatgate_discord_slowed";

#[derive(Debug, Clone, Copy, Serialize, ToSchema, PartialEq, Eq)]
pub struct InvalidRequestStatus {
    /// Invalid answers (401, 403, 429) in the last 10 minutes.
    pub last_10_min: u32,
    /// At this many the service slows down (`SEATGATE_DISCORD_INVALID_FRACTION` of 10,000).
    pub slow_down_at: u32,
    /// Discord's limit, at which it bans the IP for an hour.
    pub discord_limit: u32,
    /// New requests are spaced out to 5 a second in all.
    pub slowed: bool,
}

pub struct InvalidRequestGuard {
    window: Mutex<InvalidWindow>,
    threshold: u32,
    started: Instant,
    slowed: AtomicBool,
    next_slot: Mutex<Instant>,
}

impl InvalidRequestGuard {
    pub fn new(fraction: f64) -> Self {
        let now = Instant::now();
        Self {
            window: Mutex::new(InvalidWindow::default()),
            threshold: threshold(fraction),
            started: now,
            slowed: AtomicBool::new(false),
            next_slot: Mutex::new(now),
        }
    }

    fn now_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Waits for this request's turn while slowed down; returns at once otherwise. Slowing
    /// down starts only on an invalid answer ([`Self::after_answer`]), so the way in for the
    /// mirror's every request is one atomic load; while slowed, the count is looked at again
    /// to see whether old answers left the window.
    pub async fn before_request(&self) {
        if !self.slowed.load(Ordering::Relaxed) || !self.status().slowed {
            return;
        }
        let wait = {
            let mut next = self.next_slot.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let at = (*next).max(now);
            *next = at + Duration::from_secs(1) / SLOW_REQUESTS_PER_SEC;
            at - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Records the status of an answer.
    pub fn after_answer(&self, status: u16) {
        if is_invalid(status) {
            let now = self.now_secs();
            self.window
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .record(now);
            self.status();
        }
    }

    /// The current count, updating the gauges and logging a change of mode.
    pub fn status(&self) -> InvalidRequestStatus {
        let count = self
            .window
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .count(self.now_secs());
        let now_slowed = slowed(count, self.threshold);
        let was = self.slowed.swap(now_slowed, Ordering::SeqCst);
        if now_slowed != was {
            ::metrics::gauge!(SLOWED).set(if now_slowed { 1.0 } else { 0.0 });
            if now_slowed {
                tracing::warn!(
                    invalid_last_10_min = count,
                    slow_down_at = self.threshold,
                    discord_limit = DISCORD_INVALID_LIMIT,
                    "[discord] many 401/403/429 answers: new requests slowed to {SLOW_REQUESTS_PER_SEC}/s until the count falls"
                );
            } else {
                tracing::info!(
                    invalid_last_10_min = count,
                    "[discord] invalid answers back under the threshold: requests at full speed"
                );
            }
        }
        ::metrics::gauge!(INVALID_REQUESTS).set(count as f64);
        InvalidRequestStatus {
            last_10_min: count,
            slow_down_at: self.threshold,
            discord_limit: DISCORD_INVALID_LIMIT,
            slowed: now_slowed,
        }
    }
}
