//! What every request handler shares: the state, the gateway hub, limits, faults, identity.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::error::DResult;
use super::faults::Faults;
use super::files::{self, DEFAULT_MAX_UPLOAD_BYTES};
use super::gateway::hub::{Dispatch, Hub};
use super::ratelimit::RateLimiter;
use super::state::State;

pub struct Core {
    state: Mutex<State>,
    pub hub: Hub,
    pub token: String,
    pub bot_id: u64,
    pub limits: RateLimiter,
    pub faults: Faults,
    pub heartbeat_interval_ms: u64,
    pub api_url: String,
    pub gateway_url: String,
    pub control_url: String,
    /// Largest file a message upload may carry (Discord: 10 MiB); settable at run time.
    max_upload_bytes: AtomicU64,
    /// The shards `GET /gateway/bot` recommends.
    shards: AtomicU64,
    /// Flips to true on shutdown; gateway connections close.
    pub shutdown: tokio::sync::watch::Sender<bool>,
    /// What the REST API served since start (or the last reset).
    pub stats: RequestStats,
}

/// Counts of REST answers: every request, the 429s, and the invalid ones Discord counts
/// towards its IP ban (401, 403, 429).
#[derive(Default)]
pub struct RequestStats {
    requests: AtomicU64,
    rate_limited: AtomicU64,
    invalid: AtomicU64,
    /// Attachment downloads the CDN path served (not counted in `requests`).
    cdn_downloads: AtomicU64,
}

impl RequestStats {
    pub fn record(&self, status: u16) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if status == 429 {
            self.rate_limited.fetch_add(1, Ordering::Relaxed);
        }
        if matches!(status, 401 | 403 | 429) {
            self.invalid.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn record_cdn_download(&self) {
        self.cdn_downloads.fetch_add(1, Ordering::Relaxed);
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "requests": self.requests.load(Ordering::Relaxed),
            "rate_limited": self.rate_limited.load(Ordering::Relaxed),
            "invalid": self.invalid.load(Ordering::Relaxed),
            "cdn_downloads": self.cdn_downloads.load(Ordering::Relaxed),
        })
    }

    pub fn reset(&self) {
        for c in [
            &self.requests,
            &self.rate_limited,
            &self.invalid,
            &self.cdn_downloads,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

impl Core {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        state: State,
        token: String,
        limits: RateLimiter,
        heartbeat_interval_ms: u64,
        api_url: String,
        gateway_url: String,
        control_url: String,
    ) -> Self {
        let bot_id = state.bot_id;
        Self {
            state: Mutex::new(state),
            hub: Hub::default(),
            token,
            bot_id,
            limits,
            faults: Faults::default(),
            heartbeat_interval_ms,
            api_url,
            gateway_url,
            control_url,
            max_upload_bytes: AtomicU64::new(DEFAULT_MAX_UPLOAD_BYTES),
            shards: AtomicU64::new(1),
            shutdown: tokio::sync::watch::channel(false).0,
            stats: RequestStats::default(),
        }
    }

    pub fn shards(&self) -> u64 {
        self.shards.load(Ordering::Relaxed)
    }

    pub fn set_shards(&self, shards: u64) {
        self.shards.store(shards.max(1), Ordering::Relaxed);
    }

    pub fn max_upload_bytes(&self) -> u64 {
        self.max_upload_bytes.load(Ordering::Relaxed)
    }

    pub fn set_max_upload_bytes(&self, bytes: u64) {
        self.max_upload_bytes.store(bytes, Ordering::Relaxed);
    }

    /// The largest request body the REST and control routes read under the current limit.
    pub fn body_limit(&self) -> u64 {
        files::body_limit(self.max_upload_bytes())
    }

    /// Where hosted attachments are served: this server, without the `/api/v10` prefix.
    pub fn cdn_base(&self) -> &str {
        files::cdn_base(&self.api_url)
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies a change and publishes its dispatches while still holding the state lock, so
    /// every gateway session sees changes in the order they happened.
    pub fn mutate<R>(
        &self,
        f: impl FnOnce(&mut State) -> DResult<(R, Vec<Dispatch>)>,
    ) -> DResult<R> {
        let mut st = self.lock();
        let (r, dispatches) = f(&mut st)?;
        self.hub.publish(&st, &dispatches);
        Ok(r)
    }

    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.lock())
    }

    /// Whether an `Authorization` header value carries the bot token.
    pub fn token_ok(&self, header: &str) -> bool {
        let t = header.strip_prefix("Bot ").unwrap_or(header);
        // Constant time: the token is a secret.
        use subtle::ConstantTimeEq;
        t.len() == self.token.len() && bool::from(t.as_bytes().ct_eq(self.token.as_bytes()))
    }
}
