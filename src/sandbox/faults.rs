//! Injected failures: "the next N requests matching METHOD + route pattern answer STATUS (after
//! DELAY_MS)". A 2xx status with a delay only slows the request down.

use std::sync::Mutex;

use serde::Deserialize;

use super::router::pattern_matches;

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Fault {
    /// HTTP method, or `*` for any.
    pub method: String,
    /// A route pattern such as `/channels/{id}/messages` (placeholders match any segment) or a
    /// concrete path; without the `/api/v10` prefix.
    pub path: String,
    pub status: u16,
    #[serde(default = "one")]
    pub count: u32,
    /// Seconds, for 429 bodies and `Retry-After`.
    #[serde(default)]
    pub retry_after: Option<f64>,
    /// Any JSON value sent as a 429's `retry_after` as it is (a string, a huge number, a
    /// negative one), overriding `retry_after`: for clients that must survive what a proxy or
    /// a bug in front of Discord might send. The `Retry-After` header carries its text.
    #[serde(default)]
    pub retry_after_raw: Option<serde_json::Value>,
    #[serde(default)]
    pub global: Option<bool>,
    /// A 429's `X-RateLimit-Scope` (`user`, `global` or `shared`); by default `global` for
    /// a global fault and `user` otherwise.
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub delay_ms: Option<u64>,
}

impl Fault {
    /// The next `count` requests matching `method` and `path` answer `status`, at once and
    /// without a retry-after.
    pub fn new(method: &str, path: &str, status: u16, count: u32) -> Self {
        Self {
            method: method.into(),
            path: path.into(),
            status,
            count,
            retry_after: None,
            retry_after_raw: None,
            global: None,
            scope: None,
            delay_ms: None,
        }
    }
}

fn one() -> u32 {
    1
}

#[derive(Default)]
pub struct Faults {
    list: Mutex<Vec<Fault>>,
}

impl Faults {
    pub fn add(&self, fault: Fault) {
        self.list
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(fault);
    }

    pub fn clear(&self) {
        self.list.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Takes one use of the first fault matching this request, if any.
    pub fn take(&self, method: &str, path: &str) -> Option<Fault> {
        let mut list = self.list.lock().unwrap_or_else(|p| p.into_inner());
        let idx = list.iter().position(|f| {
            (f.method == "*" || f.method.eq_ignore_ascii_case(method))
                && pattern_matches(&f.path, path)
                && f.count > 0
        })?;
        let fault = list[idx].clone();
        list[idx].count -= 1;
        if list[idx].count == 0 {
            list.remove(idx);
        }
        Some(fault)
    }
}
