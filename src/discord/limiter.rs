//! One rate-limit book per process, shared by every REST call the service makes (mirror
//! lanes, notices, member paging, catch-up, webhooks, the admin API's checks): a request waits
//! here until the book says Discord would take it, and its answer's headers are written back.
//!
//! Why not serenity's own `Ratelimiter`: its `perform` builds every request without the
//! proxy (so against the sandbox it would go to discord.com), it keys buckets by route and
//! never merges routes Discord names as one `X-RateLimit-Bucket`, it has no budget for the
//! global limit before the first global 429, and it sleeps and resends on a 429 itself,
//! out of sight of the ban guard. The numbers are in [`crate::domain::rate_limits`].

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, Notify};

use crate::domain::rate_limits::{LimitHeaders, RateLimitBook, RouteKey, SharedHold, Ticket, Wait};
pub use crate::domain::rate_limits::{Priority, DISCORD_GLOBAL_PER_SEC};

/// Counter: requests that waited for the limiter before being sent.
pub const WAITED: &str = "seatgate_discord_requests_waited_total";

pub struct RestLimiter {
    book: Mutex<RateLimitBook>,
    /// Woken by every answer: a request waiting for a bucket's first answer goes on.
    answered: Notify,
    sends: std::sync::atomic::AtomicU64,
    /// The book's global budget, readable without its lock (the mirror gate asks per job).
    global_per_sec: std::sync::atomic::AtomicU32,
    /// With other processes on the database: where a used-up bucket is told to them.
    share: std::sync::OnceLock<mpsc::UnboundedSender<SharedHold>>,
}

/// A place taken for one request; [`RestLimiter::answered`] gives it back with what the
/// answer said. Dropped without an answer (a timeout, a cancelled task), it is given back as
/// if no answer came.
pub struct Permit<'a> {
    limiter: &'a RestLimiter,
    key: RouteKey,
    answered: bool,
}

impl RestLimiter {
    pub fn new(global_per_sec: u32) -> Self {
        Self {
            book: Mutex::new(RateLimitBook::new(global_per_sec)),
            answered: Notify::new(),
            sends: std::sync::atomic::AtomicU64::new(0),
            global_per_sec: std::sync::atomic::AtomicU32::new(global_per_sec.max(1)),
            share: std::sync::OnceLock::new(),
        }
    }

    /// From now on every bucket an answer shows used up (and every global 429) is sent to
    /// `to`, for the other processes; false if this limiter already shares.
    pub fn share_holds(&self, to: mpsc::UnboundedSender<SharedHold>) -> bool {
        self.share.set(to).is_ok()
    }

    /// Holds what another process found used up.
    pub fn hold(&self, hold: &SharedHold) {
        self.book().hold(hold, Instant::now());
    }

    /// This process's share of the global limit (it splits it with the other live ones).
    pub fn set_global_per_sec(&self, per_sec: u32) {
        let mut book = self.book();
        book.set_global_per_sec(per_sec);
        self.global_per_sec
            .store(book.global_per_sec(), std::sync::atomic::Ordering::Relaxed);
    }

    pub fn global_per_sec(&self) -> u32 {
        self.global_per_sec
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn book(&self) -> std::sync::MutexGuard<'_, RateLimitBook> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until a request of `key` may go, and takes its place.
    pub async fn acquire(&self, key: RouteKey, priority: Priority) -> Permit<'_> {
        let mut ticket = Ticket::new(priority);
        let mut waited = false;
        let mut guard = AbandonOnDrop {
            limiter: self,
            ticket: &mut ticket,
            done: false,
        };
        loop {
            let now = Instant::now();
            let answer = self.book().reserve(&key, guard.ticket, now);
            match answer {
                Ok(()) => {
                    guard.done = true;
                    if waited {
                        metrics::counter!(WAITED).increment(1);
                    }
                    self.count_send();
                    return Permit {
                        limiter: self,
                        key,
                        answered: false,
                    };
                }
                Err(wait) => {
                    tracing::trace!(route = key.route, major = key.major, wait = ?wait.until().saturating_duration_since(now), "[discord] request waits for the rate limits");
                    waited = true;
                    let until = wait.until().max(now + Duration::from_millis(1));
                    match wait {
                        // A first answer, a bucket's reset or a 429 may all come sooner.
                        Wait::Bucket(_) => {
                            tokio::select! {
                                _ = self.answered.notified() => {}
                                _ = tokio::time::sleep_until(until.into()) => {}
                            }
                        }
                        Wait::Global(_) | Wait::Yield(_) => {
                            tokio::time::sleep_until(until.into()).await
                        }
                    }
                }
            }
        }
    }

    fn count_send(&self) {
        let sends = self
            .sends
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        if sends.is_multiple_of(4096) {
            self.book().prune(Instant::now());
        }
    }

    fn learn(&self, key: &RouteKey, answer: Option<&LimitHeaders>) {
        let now = Instant::now();
        let share = self.share.get();
        let hold = {
            let mut book = self.book();
            book.learn(key, answer, now);
            answer
                .filter(|_| share.is_some())
                .and_then(|answer| book.hold_to_share(key, answer, now))
        };
        if let (Some(hold), Some(to)) = (hold, share) {
            let _ = to.send(hold);
        }
        self.answered.notify_waiters();
    }
}

impl Permit<'_> {
    /// The answer came; `headers` is what it said about the limits.
    pub fn answered(mut self, headers: &LimitHeaders) {
        self.answered = true;
        self.limiter.learn(&self.key, Some(headers));
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.limiter.learn(&self.key, None);
        }
    }
}

/// Takes a waiting delivery off the count if its wait is cancelled.
struct AbandonOnDrop<'a, 'b> {
    limiter: &'a RestLimiter,
    ticket: &'b mut Ticket,
    done: bool,
}

impl Drop for AbandonOnDrop<'_, '_> {
    fn drop(&mut self) {
        if !self.done {
            self.limiter.book().abandon(self.ticket);
        }
    }
}

/// What a response's headers (and, for a 429, its body) say about the limits.
pub fn headers_of(
    headers: &reqwest::header::HeaderMap,
    limited: Option<crate::domain::rate_limits::Limited>,
) -> LimitHeaders {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    LimitHeaders {
        bucket: text("x-ratelimit-bucket").map(str::to_owned),
        limit: text("x-ratelimit-limit").and_then(|v| v.parse().ok()),
        remaining: text("x-ratelimit-remaining").and_then(|v| v.parse().ok()),
        reset_after: text("x-ratelimit-reset-after").and_then(|v| v.parse().ok()),
        limited,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_past_the_global_budget_waits_instead_of_being_sent() {
        let limiter = RestLimiter::new(2);
        let key = |major| RouteKey::new("POST /channels/{channel_id}/messages", major);
        let start = Instant::now();
        drop(limiter.acquire(key(1), Priority::Delivery).await);
        drop(limiter.acquire(key(2), Priority::Delivery).await);
        drop(limiter.acquire(key(3), Priority::Delivery).await);
        assert!(
            start.elapsed() >= Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
    }
}
