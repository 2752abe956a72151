//! Discord's REST rate limits as a book the client keeps before it sends: what the last
//! answers said about each bucket, and the global budget per bot token. Pure: every function
//! is given the time. The async side (waiting, one book per process) is
//! [`crate::discord::limiter`].
//!
//! Discord, <https://discord.com/developers/docs/topics/rate-limits>:
//! - "Per-route rate limits exist for many individual endpoints, and may include the HTTP
//!   method"; a route's bucket is announced in `X-RateLimit-Bucket`, and routes with the same
//!   bucket "share the same limit"; a limit applies per bucket *and* per top-level (major)
//!   parameter: `channel_id`, `guild_id`, `webhook_id` (+ token).
//! - `X-RateLimit-Remaining` and `X-RateLimit-Reset-After` tell how many requests are left and
//!   when the bucket resets; clients should read them "rather than hard coding".
//! - "All bots can make up to 50 requests per second to our API" (global, per bot token); a
//!   global 429 carries `global: true` / `X-RateLimit-Global`, and `X-RateLimit-Scope`
//!   says `user`, `global` or `shared`.
//!
//! A request the book says would be limited is not sent: [`RateLimitBook::reserve`] answers
//! when to ask again.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Discord's global limit: requests per second per bot token.
pub const DISCORD_GLOBAL_PER_SEC: u32 = 50;

/// Kept between the first and the 51st request of any stretch: Discord (and the sandbox)
/// count in windows that start at a request's arrival, which can lag our send by the
/// network's jitter; a window of exactly one second would now and then hold 51.
pub const GLOBAL_MARGIN: Duration = Duration::from_millis(25);

/// One REST route as the limits see it: the method and route template, and the major
/// parameter (0 for a route without one).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteKey {
    pub route: &'static str,
    pub major: u64,
}

impl RouteKey {
    pub fn new(route: &'static str, major: u64) -> Self {
        Self { route, major }
    }
}

/// Who is asking: background work (member paging, catch-up) waits while a delivery waits for
/// the same global budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    Delivery,
    Background,
}

/// One caller's standing with the book while it waits.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    priority: Priority,
    /// Counted among the deliveries waiting for the global budget.
    counted: bool,
}

impl Ticket {
    pub fn new(priority: Priority) -> Self {
        Self {
            priority,
            counted: false,
        }
    }
}

/// What an answer said about the limits.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LimitHeaders {
    pub bucket: Option<String>,
    pub limit: Option<u32>,
    pub remaining: Option<u32>,
    /// Seconds until the bucket resets.
    pub reset_after: Option<f64>,
    /// The answer was a 429.
    pub limited: Option<Limited>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Limited {
    /// Already made safe ([`crate::domain::backoff::rate_limit_wait`]).
    pub retry_after: Duration,
    pub global: bool,
    /// `X-RateLimit-Scope: shared`: the bucket is shared by other clients; it still holds
    /// for us until `retry_after`.
    pub shared: bool,
}

#[derive(Debug, Clone)]
struct Bucket {
    limit: u32,
    remaining: u32,
    reset_at: Instant,
    /// Sent under this bucket and not answered yet.
    in_flight: u32,
    /// `reset_at` is what an answer said, not a guess made when a window was opened.
    reset_told: bool,
}

/// A bucket (or the global limit) that one process's answer showed used up, as it tells the
/// other processes on the database: Discord counts a bot token's buckets and its global limit
/// wherever its requests come from, so a process that never sent on a route must not find out
/// by a 429.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedHold {
    /// The route template, as the sender's [`RouteKey`] named it.
    pub route: String,
    pub major: u64,
    /// `X-RateLimit-Bucket`, when the answer named it.
    pub bucket: Option<String>,
    /// How long from the answer the bucket stays used up.
    pub hold_ms: u64,
    /// A global 429: every request waits.
    pub global: bool,
}

#[derive(Debug)]
pub struct RateLimitBook {
    global_per_sec: u32,
    margin: Duration,
    /// When each of the last `global_per_sec` requests was sent.
    sent: VecDeque<Instant>,
    /// A global 429 holds every request until then.
    global_until: Option<Instant>,
    /// Routes whose bucket Discord has named: routes with one name share their state.
    names: HashMap<&'static str, String>,
    /// By (bucket name, or the route while none is known; major parameter).
    buckets: HashMap<(String, u64), Bucket>,
    /// Deliveries told to wait for the global budget and not yet sent.
    deliveries_waiting: u32,
}

/// Why a request may not go yet, and until when at the latest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The global budget: 50 requests in the last second, or a global 429.
    Global(Instant),
    /// The route's bucket is used up until then, or its first request is still unanswered
    /// (then: until an answer arrives, at the latest the given instant).
    Bucket(Instant),
    /// Background work waits while deliveries wait.
    Yield(Instant),
}

impl Wait {
    pub fn until(&self) -> Instant {
        match *self {
            Wait::Global(t) | Wait::Bucket(t) | Wait::Yield(t) => t,
        }
    }
}

/// How long an unanswered first request to a bucket keeps others of that bucket waiting.
const FIRST_ANSWER_WAIT: Duration = Duration::from_millis(250);
/// The longest hold another process's word applies (Discord's waits are clamped the same).
const MAX_SHARED_HOLD_MS: u64 = 60_000;
/// How often background work looks again while deliveries wait.
const YIELD_STEP: Duration = Duration::from_millis(20);

impl RateLimitBook {
    pub fn new(global_per_sec: u32) -> Self {
        Self {
            global_per_sec: global_per_sec.max(1),
            margin: GLOBAL_MARGIN,
            sent: VecDeque::new(),
            global_until: None,
            names: HashMap::new(),
            buckets: HashMap::new(),
            deliveries_waiting: 0,
        }
    }

    /// Changes the global budget (this process's share of it) from now on.
    pub fn set_global_per_sec(&mut self, per_sec: u32) {
        self.global_per_sec = per_sec.max(1);
    }

    pub fn global_per_sec(&self) -> u32 {
        self.global_per_sec
    }

    fn bucket_key(&self, key: &RouteKey) -> (String, u64) {
        let name = self
            .names
            .get(key.route)
            .cloned()
            .unwrap_or_else(|| key.route.to_owned());
        (name, key.major)
    }

    /// Takes a place for one request of `key` now, or says how long to wait. The same
    /// `ticket` is passed again after a wait, so that a waiting delivery is counted once.
    pub fn reserve(
        &mut self,
        key: &RouteKey,
        ticket: &mut Ticket,
        now: Instant,
    ) -> Result<(), Wait> {
        let others = self
            .deliveries_waiting
            .saturating_sub(u32::from(ticket.counted));
        let result = self.try_reserve(key, ticket.priority, others, now);
        let waits_globally = matches!(result, Err(Wait::Global(_)));
        if ticket.priority == Priority::Delivery && waits_globally != ticket.counted {
            if waits_globally {
                self.deliveries_waiting += 1;
            } else {
                self.deliveries_waiting = self.deliveries_waiting.saturating_sub(1);
            }
            ticket.counted = waits_globally;
        }
        result
    }

    /// A caller that was told to wait gave up (its request timed out or was dropped).
    pub fn abandon(&mut self, ticket: &mut Ticket) {
        if ticket.counted {
            self.deliveries_waiting = self.deliveries_waiting.saturating_sub(1);
            ticket.counted = false;
        }
    }

    fn try_reserve(
        &mut self,
        key: &RouteKey,
        priority: Priority,
        others_waiting: u32,
        now: Instant,
    ) -> Result<(), Wait> {
        if let Some(until) = self.global_until.filter(|t| *t > now) {
            return Err(Wait::Global(until));
        }
        let window = Duration::from_secs(1) + self.margin;
        while self
            .sent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= window)
        {
            self.sent.pop_front();
        }
        if self.sent.len() as u32 >= self.global_per_sec {
            let oldest = self.sent.front().copied().unwrap_or(now);
            return Err(Wait::Global(oldest + window));
        }
        if priority == Priority::Background && others_waiting > 0 {
            return Err(Wait::Yield(now + YIELD_STEP));
        }
        let bkey = self.bucket_key(key);
        if let Some(b) = self.buckets.get_mut(&bkey) {
            if b.reset_at <= now {
                // A new window; the next answer says when it ends.
                b.remaining = b.limit.saturating_sub(b.in_flight);
                b.reset_at = now + Duration::from_secs(3600);
                b.reset_told = false;
            }
            if b.remaining == 0 {
                return Err(Wait::Bucket(b.reset_at.min(now + FIRST_ANSWER_WAIT * 4)));
            }
            b.remaining -= 1;
            b.in_flight += 1;
        } else {
            // Nothing known: one request finds out; the others wait for its answer.
            self.buckets.insert(
                bkey,
                Bucket {
                    limit: 1,
                    remaining: 0,
                    reset_at: now + FIRST_ANSWER_WAIT,
                    in_flight: 1,
                    reset_told: false,
                },
            );
        }
        self.sent.push_back(now);
        Ok(())
    }

    /// What the answer to a request of `key` (reserved before) said. `None`: no answer came
    /// (a transport error): the place is given back to the bucket, not to the global budget.
    pub fn learn(&mut self, key: &RouteKey, answer: Option<&LimitHeaders>, now: Instant) {
        let Some(answer) = answer else {
            let bkey = self.bucket_key(key);
            if let Some(b) = self.buckets.get_mut(&bkey) {
                b.in_flight = b.in_flight.saturating_sub(1);
                if b.limit == 1 && b.remaining == 0 {
                    // The first request never came back: let the next one find out.
                    b.reset_at = now;
                }
            }
            return;
        };
        let old_key = self.bucket_key(key);
        let mut state = self.buckets.remove(&old_key);
        if let Some(name) = &answer.bucket {
            if self.names.get(key.route) != Some(name) {
                self.names.insert(key.route, name.clone());
            }
        }
        let new_key = self.bucket_key(key);
        if new_key != old_key {
            // The route turned out to share a named bucket: its state is that bucket's.
            if let Some(shared) = self.buckets.remove(&new_key) {
                let in_flight = state.as_ref().map_or(0, |s| s.in_flight);
                state = Some(Bucket {
                    in_flight: shared.in_flight + in_flight,
                    ..shared
                });
            }
        }
        let mut b = state.unwrap_or(Bucket {
            limit: 1,
            remaining: 0,
            reset_at: now,
            in_flight: 1,
            reset_told: false,
        });
        b.in_flight = b.in_flight.saturating_sub(1);
        if let Some(limit) = answer.limit {
            b.limit = limit.max(1);
        }
        let told_reset = answer.remaining.is_some() && answer.reset_after.is_some();
        if let (Some(remaining), Some(reset_after)) = (answer.remaining, answer.reset_after) {
            let reset_after = if reset_after.is_finite() && reset_after >= 0.0 {
                Duration::from_secs_f64(reset_after.min(3600.0))
            } else {
                Duration::from_secs(1)
            };
            // The answer counted every request that reached Discord before it; those still
            // in flight count against what it says is left.
            b.remaining = remaining.saturating_sub(b.in_flight);
            b.reset_at = now + reset_after;
            b.reset_told = true;
        } else if answer.limited.is_none() && !self.names.contains_key(key.route) {
            // A route without limits (none was ever named for it): never in the way.
            b.limit = u32::MAX;
            b.remaining = u32::MAX;
            b.reset_at = now + Duration::from_secs(3600);
            b.reset_told = true;
        } else if !b.reset_told {
            // An answer that says nothing of the window (a global 429, a 5xx) must not leave
            // the guess of a window opened blind in place: the next request finds out.
            b.reset_at = b.reset_at.min(now + FIRST_ANSWER_WAIT);
        }
        if let Some(limited) = &answer.limited {
            if limited.global {
                let until = now + limited.retry_after;
                self.global_until = Some(self.global_until.map_or(until, |g| g.max(until)));
            } else {
                b.remaining = 0;
                let until = now + limited.retry_after;
                // Without the bucket's own headers the 429's wait is all there is to go by (the
                // window opened by the last reset is only a guess).
                b.reset_at = if told_reset {
                    b.reset_at.max(until)
                } else {
                    until
                };
            }
        }
        self.buckets.insert(new_key, b);
    }

    /// What the other processes should hold after `answer` to a request of `key` (given to
    /// [`RateLimitBook::learn`] just before): a global 429, or a bucket Discord says is used
    /// up (`X-RateLimit-Remaining: 0`, or a 429) until its reset. `None` when the answer left
    /// requests, as Discord counts them.
    pub fn hold_to_share(
        &self,
        key: &RouteKey,
        answer: &LimitHeaders,
        now: Instant,
    ) -> Option<SharedHold> {
        let shared = |hold: Duration, global: bool| SharedHold {
            route: key.route.to_owned(),
            major: key.major,
            bucket: answer.bucket.clone(),
            hold_ms: hold.as_millis().min(u128::from(u64::MAX)) as u64,
            global,
        };
        if let Some(limited) = answer.limited.as_ref().filter(|l| l.global) {
            return Some(shared(limited.retry_after, true));
        }
        if answer.remaining != Some(0) && answer.limited.is_none() {
            return None;
        }
        let b = self.buckets.get(&self.bucket_key(key))?;
        let hold = b.reset_at.saturating_duration_since(now);
        (b.remaining == 0 && !hold.is_zero()).then(|| shared(hold, false))
    }

    /// Holds what another process found used up, from `now` for its `hold_ms` (the
    /// notification's own delay only makes the hold longer, never shorter than Discord's).
    pub fn hold(&mut self, hold: &SharedHold, now: Instant) {
        let until = now + Duration::from_millis(hold.hold_ms.min(MAX_SHARED_HOLD_MS));
        if hold.global {
            self.global_until = Some(self.global_until.map_or(until, |g| g.max(until)));
            return;
        }
        // Under the name, if one came, and under the route: this process may not have
        // learnt yet that the route belongs to that named bucket.
        let mut keys = vec![(hold.route.clone(), hold.major)];
        if let Some(name) = &hold.bucket {
            keys.push((name.clone(), hold.major));
        }
        for k in keys {
            let b = self.buckets.entry(k).or_insert(Bucket {
                limit: 1,
                remaining: 0,
                reset_at: until,
                in_flight: 0,
                reset_told: true,
            });
            b.remaining = 0;
            b.reset_at = b.reset_at.max(until);
            b.reset_told = true;
        }
    }

    /// Forgets buckets that reset long ago (a fan-out to 1,000 channels leaves 1,000).
    pub fn prune(&mut self, now: Instant) {
        self.buckets.retain(|_, b| {
            b.in_flight > 0 || b.reset_at + Duration::from_secs(60) > now || b.limit == u32::MAX
        });
    }

    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }
}

/// The fewest seconds `n` requests need under a global limit of `per_sec` counted in
/// one-second windows that open at a window's first request: the last one goes at the start of
/// window `(n - 1) / per_sec`. What the fan-out bench compares with.
pub fn global_floor(n: u32, per_sec: u32) -> Duration {
    if n == 0 {
        return Duration::ZERO;
    }
    Duration::from_secs(u64::from((n - 1) / per_sec.max(1)))
}

/// One process's part of the bot token's global limit when `live` processes send with it and
/// it is the `rank`-th of them by worker id (0 first): Discord counts the limit per token, not
/// per process, so together they never exceed it, and the division's remainder goes to the
/// first ones so that together they use all of it (50 over three: 17, 17, 16). At least 1
/// each, so that none stops.
pub fn global_share(global_per_sec: u32, live: u32, rank: u32) -> u32 {
    let live = live.max(1);
    let extra = u32::from(rank < global_per_sec % live);
    (global_per_sec / live + extra).max(1)
}

/// Seconds of its share of the global limit a process claims ahead of its sends while other
/// processes claim from the same queue.
pub const CLAIM_AHEAD_SECS: usize = 2;

/// Most mirror jobs a process holds claimed and unsettled. Alone (`shared_sends_per_sec`
/// `None`) up to `max_in_flight`. Beside other processes no more than it can send in
/// [`CLAIM_AHEAD_SECS`] of its share: a job it holds waits for it alone, and a channel's later
/// jobs wait behind it on every process, so one that claimed 400 of a fan-out at 16 requests a
/// second would still be sending 25 s in while the others, done, stood idle.
pub fn claim_cap(max_in_flight: usize, shared_sends_per_sec: Option<u32>) -> usize {
    match shared_sends_per_sec {
        Some(per_sec) => {
            max_in_flight.min((per_sec as usize).saturating_mul(CLAIM_AHEAD_SECS).max(1))
        }
        None => max_in_flight,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beside_other_processes_a_process_claims_two_seconds_of_its_share() {
        assert_eq!(claim_cap(400, None), 400, "alone: the whole window");
        assert_eq!(claim_cap(400, Some(16)), 32, "one of three at 50/s");
        assert_eq!(claim_cap(400, Some(100_000)), 400, "never over the window");
        assert_eq!(claim_cap(400, Some(0)), 1, "never none");
    }

    #[test]
    fn live_processes_split_the_global_limit_and_never_exceed_it_together() {
        assert_eq!(global_share(50, 1, 0), 50);
        assert_eq!(global_share(50, 2, 0), 25);
        assert_eq!(global_share(50, 2, 1), 25);
        let three: Vec<u32> = (0..3).map(|rank| global_share(50, 3, rank)).collect();
        assert_eq!(three, vec![17, 17, 16], "all of the 50, never over");
        for live in 1..=60 {
            let total: u32 = (0..live).map(|rank| global_share(50, live, rank)).sum();
            assert_eq!(total, 50.max(live), "{live} processes");
        }
        assert_eq!(
            global_share(50, 0, 0),
            50,
            "this process, before its first heartbeat"
        );
        assert_eq!(global_share(50, 80, 79), 1, "at least one each");
    }

    fn key(major: u64) -> RouteKey {
        RouteKey::new("POST /channels/{channel_id}/messages", major)
    }

    fn headers(bucket: &str, limit: u32, remaining: u32, reset_after: f64) -> LimitHeaders {
        LimitHeaders {
            bucket: Some(bucket.into()),
            limit: Some(limit),
            remaining: Some(remaining),
            reset_after: Some(reset_after),
            limited: None,
        }
    }

    /// One request of `key` on `book` at `now` and its answer.
    fn sent(book: &mut RateLimitBook, key: &RouteKey, answer: &LimitHeaders, now: Instant) {
        assert_eq!(
            book.reserve(key, &mut Ticket::new(Priority::Delivery), now),
            Ok(())
        );
        book.learn(key, Some(answer), now);
    }

    #[test]
    fn a_bucket_used_up_in_one_process_holds_the_others_until_its_reset() {
        let t0 = Instant::now();
        let mut a = RateLimitBook::new(50);
        sent(&mut a, &key(7), &headers("msgs", 5, 3, 4.0), t0);
        assert_eq!(
            a.hold_to_share(&key(7), &headers("msgs", 5, 3, 4.0), t0),
            None,
            "requests left: nothing to tell"
        );
        let used_up = headers("msgs", 5, 0, 2.5);
        sent(&mut a, &key(7), &used_up, t0);
        let hold = a.hold_to_share(&key(7), &used_up, t0).expect("used up");
        assert_eq!(hold.hold_ms, 2_500);
        assert_eq!(hold.bucket.as_deref(), Some("msgs"));
        assert!(!hold.global);

        // B never sent on the route, and B knows it under its bucket's name: both wait.
        let mut fresh = RateLimitBook::new(50);
        let mut named = RateLimitBook::new(50);
        sent(&mut named, &key(8), &headers("msgs", 5, 4, 5.0), t0);
        for b in [&mut fresh, &mut named] {
            b.hold(&hold, t0);
            let mut ticket = Ticket::new(Priority::Delivery);
            assert!(
                matches!(b.reserve(&key(7), &mut ticket, t0), Err(Wait::Bucket(_))),
                "a request into the used-up channel was not held"
            );
            assert_eq!(
                b.reserve(&key(9), &mut Ticket::new(Priority::Delivery), t0),
                Ok(()),
                "another channel is not held"
            );
            let after = t0 + Duration::from_millis(2_501);
            assert_eq!(b.reserve(&key(7), &mut ticket, after), Ok(()));
        }
    }

    #[test]
    fn a_global_429_in_one_process_holds_every_route_of_the_others() {
        let t0 = Instant::now();
        let mut a = RateLimitBook::new(50);
        let answer = LimitHeaders {
            limited: Some(Limited {
                retry_after: Duration::from_millis(1_200),
                global: true,
                shared: false,
            }),
            ..LimitHeaders::default()
        };
        sent(&mut a, &key(1), &answer, t0);
        let hold = a.hold_to_share(&key(1), &answer, t0).expect("global");
        assert!(hold.global);
        assert_eq!(hold.hold_ms, 1_200);
        let mut b = RateLimitBook::new(50);
        b.hold(&hold, t0);
        let wait = b
            .reserve(&key(99), &mut Ticket::new(Priority::Delivery), t0)
            .unwrap_err();
        assert_eq!(wait, Wait::Global(t0 + Duration::from_millis(1_200)));
        let huge = SharedHold {
            hold_ms: u64::MAX,
            ..hold
        };
        let mut c = RateLimitBook::new(50);
        c.hold(&huge, t0);
        assert_eq!(
            c.reserve(&key(99), &mut Ticket::new(Priority::Delivery), t0)
                .unwrap_err(),
            Wait::Global(t0 + Duration::from_secs(60)),
            "another process's word holds no longer than Discord's clamped waits"
        );
    }

    #[test]
    fn fifty_requests_go_at_once_and_the_fifty_first_waits_a_second_and_the_margin() {
        let mut book = RateLimitBook::new(50);
        let t0 = Instant::now();
        for major in 0..50 {
            assert_eq!(
                book.reserve(&key(major), &mut Ticket::new(Priority::Delivery), t0),
                Ok(())
            );
        }
        let wait = book
            .reserve(&key(50), &mut Ticket::new(Priority::Delivery), t0)
            .unwrap_err();
        assert_eq!(
            wait,
            Wait::Global(t0 + Duration::from_secs(1) + GLOBAL_MARGIN)
        );
        let later = t0 + Duration::from_secs(1) + GLOBAL_MARGIN;
        assert_eq!(
            book.reserve(&key(50), &mut Ticket::new(Priority::Delivery), later),
            Ok(())
        );
    }

    #[test]
    fn no_one_second_stretch_ever_holds_more_than_the_global_limit() {
        let mut book = RateLimitBook::new(50);
        let t0 = Instant::now();
        let mut sent = Vec::new();
        let mut now = t0;
        let mut major = 0;
        while sent.len() < 400 {
            match book.reserve(&key(major), &mut Ticket::new(Priority::Delivery), now) {
                Ok(()) => {
                    sent.push(now);
                    major += 1;
                }
                Err(w) => now = w.until().max(now + Duration::from_millis(1)),
            }
        }
        for (i, t) in sent.iter().enumerate() {
            let in_window = sent[i..]
                .iter()
                .take_while(|u| u.duration_since(*t) < Duration::from_secs(1))
                .count();
            assert!(in_window <= 50, "{in_window} requests within one second");
        }
        // And no slower than the limit: 400 requests in 7 windows (+ margins).
        let took = sent[399].duration_since(t0);
        assert!(took < Duration::from_millis(7 * 1025 + 1), "{took:?}");
    }

    #[test]
    fn a_bucket_used_up_waits_for_its_reset_and_the_first_request_learns_it() {
        let mut book = RateLimitBook::new(50);
        let t0 = Instant::now();
        assert_eq!(
            book.reserve(&key(1), &mut Ticket::new(Priority::Delivery), t0),
            Ok(())
        );
        // A second request before the first is answered waits for that answer.
        assert!(matches!(
            book.reserve(&key(1), &mut Ticket::new(Priority::Delivery), t0),
            Err(Wait::Bucket(_))
        ));
        book.learn(&key(1), Some(&headers("abc", 5, 4, 5.0)), t0);
        for _ in 0..4 {
            assert_eq!(
                book.reserve(&key(1), &mut Ticket::new(Priority::Delivery), t0),
                Ok(())
            );
        }
        let wait = book
            .reserve(&key(1), &mut Ticket::new(Priority::Delivery), t0)
            .unwrap_err();
        assert_eq!(wait, Wait::Bucket(t0 + Duration::from_secs(1)));
        // Another channel has a bucket of its own (another major parameter).
        assert_eq!(
            book.reserve(&key(2), &mut Ticket::new(Priority::Delivery), t0),
            Ok(())
        );
        let after_reset = t0 + Duration::from_secs(5);
        assert_eq!(
            book.reserve(&key(1), &mut Ticket::new(Priority::Delivery), after_reset),
            Ok(())
        );
    }

    #[test]
    fn what_is_in_flight_counts_against_what_an_answer_says_is_left() {
        let mut book = RateLimitBook::new(50);
        let t0 = Instant::now();
        book.reserve(&key(1), &mut Ticket::new(Priority::Delivery), t0)
            .unwrap();
        book.learn(&key(1), Some(&headers("abc", 5, 4, 5.0)), t0);
        // Three more go out; the answer to the first of them says 3 left, but two are still
        // on their way: one is left.
        for _ in 0..3 {
            book.reserve(&key(1), &mut Ticket::new(Priority::Delivery), t0)
                .unwrap();
        }
        book.learn(&key(1), Some(&headers("abc", 5, 3, 5.0)), t0);
        assert_eq!(
            book.reserve(&key(1), &mut Ticket::new(Priority::Delivery), t0),
            Ok(())
        );
        assert!(book
            .reserve(&key(1), &mut Ticket::new(Priority::Delivery), t0)
            .is_err());
    }

    #[test]
    fn routes_named_into_one_bucket_share_it() {
        let mut book = RateLimitBook::new(50);
        let t0 = Instant::now();
        let edit = RouteKey::new("PATCH /channels/{channel_id}/messages/{message_id}", 7);
        let delete = RouteKey::new("DELETE /channels/{channel_id}/messages/{message_id}", 7);
        book.reserve(&edit, &mut Ticket::new(Priority::Delivery), t0)
            .unwrap();
        book.learn(&edit, Some(&headers("shared", 2, 1, 3.0)), t0);
        book.reserve(&delete, &mut Ticket::new(Priority::Delivery), t0)
            .unwrap();
        book.learn(&delete, Some(&headers("shared", 2, 0, 3.0)), t0);
        assert!(matches!(
            book.reserve(&edit, &mut Ticket::new(Priority::Delivery), t0),
            Err(Wait::Bucket(_))
        ));
        assert!(book
            .reserve(&delete, &mut Ticket::new(Priority::Delivery), t0)
            .is_err());
    }

    #[test]
    fn a_global_429_holds_every_route_and_a_bucket_429_only_its_own() {
        let mut book = RateLimitBook::new(50);
        let t0 = Instant::now();
        book.reserve(&key(1), &mut Ticket::new(Priority::Delivery), t0)
            .unwrap();
        let limited = |global| LimitHeaders {
            limited: Some(Limited {
                retry_after: Duration::from_secs(2),
                global,
                shared: false,
            }),
            ..LimitHeaders::default()
        };
        book.learn(&key(1), Some(&limited(false)), t0);
        assert!(book
            .reserve(&key(1), &mut Ticket::new(Priority::Delivery), t0)
            .is_err());
        assert_eq!(
            book.reserve(&key(2), &mut Ticket::new(Priority::Delivery), t0),
            Ok(())
        );
        book.learn(&key(2), Some(&limited(true)), t0);
        assert_eq!(
            book.reserve(&key(3), &mut Ticket::new(Priority::Delivery), t0),
            Err(Wait::Global(t0 + Duration::from_secs(2)))
        );
        let later = t0 + Duration::from_secs(2);
        assert_eq!(
            book.reserve(&key(3), &mut Ticket::new(Priority::Delivery), later),
            Ok(())
        );
    }

    #[test]
    fn background_work_yields_while_a_delivery_waits_for_the_global_budget() {
        let mut book = RateLimitBook::new(2);
        let t0 = Instant::now();
        let members = RouteKey::new("GET /guilds/{guild_id}/members", 9);
        book.reserve(&key(1), &mut Ticket::new(Priority::Delivery), t0)
            .unwrap();
        book.reserve(&key(2), &mut Ticket::new(Priority::Delivery), t0)
            .unwrap();
        // The budget is spent; a delivery waits.
        let mut waiting = Ticket::new(Priority::Delivery);
        assert!(matches!(
            book.reserve(&key(3), &mut waiting, t0),
            Err(Wait::Global(_))
        ));
        let later = t0 + Duration::from_secs(2);
        assert!(matches!(
            book.reserve(&members, &mut Ticket::new(Priority::Background), later),
            Err(Wait::Yield(_))
        ));
        assert_eq!(book.reserve(&key(3), &mut waiting, later), Ok(()));
        assert_eq!(
            book.reserve(&members, &mut Ticket::new(Priority::Background), later),
            Ok(())
        );
    }

    #[test]
    fn a_429_without_bucket_headers_holds_the_route_for_its_retry_after_only() {
        let mut book = RateLimitBook::new(50);
        let t0 = Instant::now();
        book.reserve(&key(1), &mut Ticket::new(Priority::Delivery), t0)
            .unwrap();
        book.learn(&key(1), Some(&headers("abc", 5, 4, 5.0)), t0);
        // Past the reset a new window opens; its first request meets a bare 429.
        let t1 = t0 + Duration::from_secs(6);
        book.reserve(&key(1), &mut Ticket::new(Priority::Delivery), t1)
            .unwrap();
        let bare = LimitHeaders {
            limited: Some(Limited {
                retry_after: Duration::from_millis(50),
                global: false,
                shared: true,
            }),
            ..LimitHeaders::default()
        };
        book.learn(&key(1), Some(&bare), t1);
        assert!(book
            .reserve(&key(1), &mut Ticket::new(Priority::Delivery), t1)
            .is_err());
        let t2 = t1 + Duration::from_millis(50);
        assert_eq!(
            book.reserve(&key(1), &mut Ticket::new(Priority::Delivery), t2),
            Ok(())
        );
    }

    #[test]
    fn a_global_429_on_a_window_opened_blind_does_not_hold_the_bucket() {
        let mut book = RateLimitBook::new(50);
        let t0 = Instant::now();
        let bare = |retry_ms, global| LimitHeaders {
            limited: Some(Limited {
                retry_after: Duration::from_millis(retry_ms),
                global,
                shared: false,
            }),
            ..LimitHeaders::default()
        };
        book.reserve(&key(1), &mut Ticket::new(Priority::Delivery), t0)
            .unwrap();
        book.learn(&key(1), Some(&bare(300, false)), t0);
        let t1 = t0 + Duration::from_millis(300);
        book.reserve(&key(1), &mut Ticket::new(Priority::Delivery), t1)
            .unwrap();
        book.learn(&key(1), Some(&bare(500, true)), t1);
        // Held by the global 429 for 500 ms, then free: not for the hour a blind window
        // was guessed at.
        let t2 = t1 + Duration::from_millis(500);
        assert_eq!(
            book.reserve(&key(1), &mut Ticket::new(Priority::Delivery), t2),
            Ok(())
        );
    }

    #[test]
    fn a_route_answered_without_limits_never_waits() {
        let mut book = RateLimitBook::new(50);
        let t0 = Instant::now();
        book.reserve(&key(1), &mut Ticket::new(Priority::Delivery), t0)
            .unwrap();
        book.learn(&key(1), Some(&LimitHeaders::default()), t0);
        for _ in 0..20 {
            assert_eq!(
                book.reserve(&key(1), &mut Ticket::new(Priority::Delivery), t0),
                Ok(())
            );
        }
    }

    #[test]
    fn an_unanswered_first_request_lets_the_next_one_find_out() {
        let mut book = RateLimitBook::new(50);
        let t0 = Instant::now();
        book.reserve(&key(1), &mut Ticket::new(Priority::Delivery), t0)
            .unwrap();
        book.learn(&key(1), None, t0);
        assert_eq!(
            book.reserve(&key(1), &mut Ticket::new(Priority::Delivery), t0),
            Ok(())
        );
    }

    #[test]
    fn the_floor_of_a_fan_out_is_one_second_per_full_window_after_the_first() {
        assert_eq!(global_floor(1, 50), Duration::ZERO);
        assert_eq!(global_floor(50, 50), Duration::ZERO);
        assert_eq!(global_floor(51, 50), Duration::from_secs(1));
        assert_eq!(global_floor(1000, 50), Duration::from_secs(19));
        assert_eq!(global_floor(2000, 50), Duration::from_secs(39));
    }
}
