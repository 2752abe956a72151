//! Discord-style rate limits: per-route buckets announced by `X-RateLimit-*` headers, a
//! per-channel message bucket, and a global per-token limit. Fixed windows, like Discord's
//! buckets: a request rejected with 429 does not reset the window, so a client that ignores
//! `retry_after` keeps getting 429 until the window ends.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub requests: u32,
    pub per: Duration,
}

impl Limit {
    pub const fn new(requests: u32, per: Duration) -> Self {
        Self { requests, per }
    }
}

/// Rate limit settings; `Default` is Discord's published numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitConfig {
    pub enabled: bool,
    /// Per bot token, across all routes.
    pub global: Limit,
    /// `POST /channels/{id}/messages`, per channel.
    pub message_create: Limit,
    /// `POST /webhooks/{id}/{token}`, per webhook.
    pub webhook_execute: Limit,
    /// Every other route, per route and major parameter.
    pub default_route: Limit,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            global: Limit::new(50, Duration::from_secs(1)),
            message_create: Limit::new(5, Duration::from_secs(5)),
            webhook_execute: Limit::new(5, Duration::from_secs(2)),
            default_route: Limit::new(50, Duration::from_secs(1)),
        }
    }
}

impl RateLimitConfig {
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }
}

#[derive(Debug)]
struct Window {
    limit: u32,
    used: u32,
    reset_at: Instant,
}

impl Window {
    fn fresh(limit: Limit, now: Instant) -> Self {
        Self {
            limit: limit.requests,
            used: 0,
            reset_at: now + limit.per,
        }
    }
}

/// Headers of a route bucket, sent on every response of a limited route.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketInfo {
    pub bucket: String,
    pub limit: u32,
    pub remaining: u32,
    pub reset_after: f64,
}

impl BucketInfo {
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let reset = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
            + self.reset_after;
        vec![
            ("X-RateLimit-Limit", self.limit.to_string()),
            ("X-RateLimit-Remaining", self.remaining.to_string()),
            ("X-RateLimit-Reset", format!("{reset:.3}")),
            (
                "X-RateLimit-Reset-After",
                format!("{:.3}", self.reset_after),
            ),
            ("X-RateLimit-Bucket", self.bucket.clone()),
        ]
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Allowed(Option<BucketInfo>),
    Limited {
        retry_after: f64,
        global: bool,
        bucket: Option<BucketInfo>,
    },
}

pub struct RateLimiter {
    config: Mutex<RateLimitConfig>,
    windows: Mutex<HashMap<String, Window>>,
}

fn secs_until(t: Instant, now: Instant) -> f64 {
    // Rounded up to the millisecond so `retry_after` is never 0 while still limited.
    let ms = t.saturating_duration_since(now).as_millis().max(1) as f64;
    ms / 1000.0
}

impl RateLimiter {
    pub fn new(config: RateLimitConfig) -> Self {
        Self {
            config: Mutex::new(config),
            windows: Mutex::new(HashMap::new()),
        }
    }

    pub fn set_config(&self, config: RateLimitConfig) {
        *self.config.lock().unwrap_or_else(|p| p.into_inner()) = config;
        self.windows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    pub fn config(&self) -> RateLimitConfig {
        self.config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Checks and counts one request. `route` is the route template (`/channels/{id}/messages`),
    /// `major` its major parameter (channel, guild or webhook id).
    pub fn check(&self, method: &str, route: &str, major: &str) -> Decision {
        let config = self.config();
        if !config.enabled {
            return Decision::Allowed(None);
        }
        let (limit, bucket_name) = if method == "POST" && route == "/channels/{channel_id}/messages"
        {
            (config.message_create, "message-create")
        } else if method == "POST" && route == "/webhooks/{webhook_id}/{token}" {
            (config.webhook_execute, "webhook-execute")
        } else {
            (config.default_route, route)
        };
        let bucket_hash = format!("{:016x}", fnv1a(&format!("{method} {bucket_name}")));
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());

        let global = windows
            .entry("global".into())
            .or_insert_with(|| Window::fresh(config.global, now));
        if now >= global.reset_at {
            *global = Window::fresh(config.global, now);
        }
        if global.used >= global.limit {
            return Decision::Limited {
                retry_after: secs_until(global.reset_at, now),
                global: true,
                bucket: None,
            };
        }

        let key = format!("{method} {bucket_name} {major}");
        let w = windows
            .entry(key)
            .or_insert_with(|| Window::fresh(limit, now));
        if now >= w.reset_at {
            *w = Window::fresh(limit, now);
        }
        if w.used >= w.limit {
            let info = BucketInfo {
                bucket: bucket_hash,
                limit: w.limit,
                remaining: 0,
                reset_after: secs_until(w.reset_at, now),
            };
            return Decision::Limited {
                retry_after: info.reset_after,
                global: false,
                bucket: Some(info),
            };
        }
        w.used += 1;
        let info = BucketInfo {
            bucket: bucket_hash,
            limit: w.limit,
            remaining: w.limit - w.used,
            reset_after: secs_until(w.reset_at, now),
        };
        if let Some(g) = windows.get_mut("global") {
            g.used += 1;
        }
        Decision::Allowed(Some(info))
    }
}

fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixth_message_in_a_channel_within_five_seconds_is_limited_and_stays_limited() {
        let rl = RateLimiter::new(RateLimitConfig::default());
        for i in 0..5 {
            match rl.check("POST", "/channels/{channel_id}/messages", "1") {
                Decision::Allowed(Some(info)) => assert_eq!(info.remaining, 4 - i),
                other => panic!("request {i}: {other:?}"),
            }
        }
        for _ in 0..3 {
            match rl.check("POST", "/channels/{channel_id}/messages", "1") {
                Decision::Limited {
                    retry_after,
                    global,
                    bucket,
                } => {
                    assert!(!global);
                    assert!(retry_after > 0.0 && retry_after <= 5.0);
                    assert_eq!(bucket.map(|b| b.remaining), Some(0));
                }
                other => panic!("{other:?}"),
            }
        }
        // Another channel has its own bucket.
        assert!(matches!(
            rl.check("POST", "/channels/{channel_id}/messages", "2"),
            Decision::Allowed(_)
        ));
    }

    #[test]
    fn global_limit_spans_routes() {
        let rl = RateLimiter::new(RateLimitConfig {
            global: Limit::new(3, Duration::from_secs(10)),
            ..RateLimitConfig::default()
        });
        for route in ["/a", "/b", "/c"] {
            assert!(matches!(rl.check("GET", route, ""), Decision::Allowed(_)));
        }
        assert!(matches!(
            rl.check("GET", "/d", ""),
            Decision::Limited { global: true, .. }
        ));
    }

    #[test]
    fn disabled_limits_allow_everything() {
        let rl = RateLimiter::new(RateLimitConfig::disabled());
        for _ in 0..100 {
            assert_eq!(
                rl.check("POST", "/channels/{channel_id}/messages", "1"),
                Decision::Allowed(None)
            );
        }
    }
}
