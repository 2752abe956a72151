//! How old a seat snapshot may be before the gate stops trusting it.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Freshness {
    Fresh,
    Stale,
    Expired,
}

impl Freshness {
    pub fn as_str(self) -> &'static str {
        match self {
            Freshness::Fresh => "fresh",
            Freshness::Stale => "stale",
            Freshness::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Freshness> {
        match s {
            "fresh" => Some(Freshness::Fresh),
            "stale" => Some(Freshness::Stale),
            "expired" => Some(Freshness::Expired),
            _ => None,
        }
    }
}

/// Fresh up to `fresh_ms` after `checked_at`, stale up to `stale_ms`, expired after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreshnessWindows {
    pub fresh_ms: i64,
    pub stale_ms: i64,
}

impl Default for FreshnessWindows {
    /// DESIGN.md: 90 s fresh, 5 min stale.
    fn default() -> Self {
        Self {
            fresh_ms: 90_000,
            stale_ms: 300_000,
        }
    }
}

impl FreshnessWindows {
    pub fn from_secs(fresh: u64, stale: u64) -> Self {
        Self {
            fresh_ms: (fresh as i64).saturating_mul(1000),
            stale_ms: (stale as i64).saturating_mul(1000),
        }
    }

    /// A `checked_at` in the future (clock skew between instances) counts as fresh.
    pub fn classify(&self, checked_at_ms: i64, now_ms: i64) -> Freshness {
        let age = now_ms.saturating_sub(checked_at_ms);
        if age <= self.fresh_ms {
            Freshness::Fresh
        } else if age <= self.stale_ms {
            Freshness::Stale
        } else {
            Freshness::Expired
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_are_inclusive_of_the_window() {
        let w = FreshnessWindows::default();
        let t = 1_000_000;
        assert_eq!(w.classify(t, t), Freshness::Fresh);
        assert_eq!(w.classify(t, t + 90_000), Freshness::Fresh);
        assert_eq!(w.classify(t, t + 90_001), Freshness::Stale);
        assert_eq!(w.classify(t, t + 300_000), Freshness::Stale);
        assert_eq!(w.classify(t, t + 300_001), Freshness::Expired);
    }

    #[test]
    fn a_snapshot_from_the_future_is_fresh() {
        assert_eq!(
            FreshnessWindows::default().classify(10_000, 0),
            Freshness::Fresh
        );
    }

    #[test]
    fn windows_are_configurable() {
        let w = FreshnessWindows::from_secs(1, 2);
        assert_eq!(w.classify(0, 1_500), Freshness::Stale);
        assert_eq!(w.classify(0, 2_500), Freshness::Expired);
    }
}
