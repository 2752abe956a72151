//! The mirror gate's decision for one job, from the cached snapshot only (DESIGN.md
//! "Enforcement", the gate table). Pure and allocation-free: it runs on the hot path.

use serde::{Deserialize, Serialize};

use super::freshness::{Freshness, FreshnessWindows};
use crate::error::ErrorCode;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnforcementMode {
    /// Default for a new server: count, never block.
    #[default]
    Off,
    /// Count and log what would be blocked; block nothing.
    Shadow,
    Enforce,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverrideMode {
    #[default]
    None,
    Allow,
    Block,
}

impl EnforcementMode {
    pub fn as_str(self) -> &'static str {
        match self {
            EnforcementMode::Off => "off",
            EnforcementMode::Shadow => "shadow",
            EnforcementMode::Enforce => "enforce",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "off" => Some(Self::Off),
            "shadow" => Some(Self::Shadow),
            "enforce" => Some(Self::Enforce),
            _ => None,
        }
    }
}

impl OverrideMode {
    pub fn as_str(self) -> &'static str {
        match self {
            OverrideMode::None => "none",
            OverrideMode::Allow => "allow",
            OverrideMode::Block => "block",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Self::None),
            "allow" => Some(Self::Allow),
            "block" => Some(Self::Block),
            _ => None,
        }
    }
}

/// A server's enforcement settings as the gate needs them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerPolicy {
    pub mode: EnforcementMode,
    pub override_mode: OverrideMode,
    /// Allow while stale (not expired) if the last count was under the limit.
    pub stale_grace: bool,
}

/// The cached snapshot as the gate needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotView {
    pub seats_used: u64,
    pub seat_limit: u64,
    pub checked_at_ms: i64,
    /// The last audit failed for good (`seat_audit_failed`).
    pub audit_failed: bool,
}

impl SnapshotView {
    pub fn is_over_limit(&self) -> bool {
        self.seats_used > self.seat_limit
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    Send,
    Edit,
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateDecision {
    Allow {
        /// An audit should be enqueued (snapshot stale but allowed by grace).
        enqueue_audit: bool,
    },
    /// Shadow mode: deliver, and log that enforcement would have blocked with `code`.
    AllowShadow {
        would_block: ErrorCode,
        enqueue_audit: bool,
    },
    Block {
        code: ErrorCode,
        enqueue_audit: bool,
    },
}

impl GateDecision {
    pub fn allows(&self) -> bool {
        !matches!(self, GateDecision::Block { .. })
    }

    pub fn enqueue_audit(&self) -> bool {
        match *self {
            GateDecision::Allow { enqueue_audit }
            | GateDecision::AllowShadow { enqueue_audit, .. }
            | GateDecision::Block { enqueue_audit, .. } => enqueue_audit,
        }
    }
}

const ALLOW: GateDecision = GateDecision::Allow {
    enqueue_audit: false,
};

/// Decides one job. `policy` is `None` for a server without a config (treated as `off`).
pub fn decide(
    kill_switch: bool,
    policy: Option<&ServerPolicy>,
    snapshot: Option<&SnapshotView>,
    kind: JobKind,
    now_ms: i64,
    windows: &FreshnessWindows,
) -> GateDecision {
    // Deletes only remove content that was mirrored earlier.
    if kind == JobKind::Delete || kill_switch {
        return ALLOW;
    }
    let policy = match policy {
        Some(p) if p.mode != EnforcementMode::Off => p,
        _ => return ALLOW,
    };
    match policy.override_mode {
        OverrideMode::Allow => return ALLOW,
        OverrideMode::Block => {
            return GateDecision::Block {
                code: ErrorCode::SeatOverrideBlock,
                enqueue_audit: false,
            }
        }
        OverrideMode::None => {}
    }
    let enforced = enforce(policy, snapshot, now_ms, windows);
    match (policy.mode, enforced) {
        (
            EnforcementMode::Shadow,
            GateDecision::Block {
                code,
                enqueue_audit,
            },
        ) => GateDecision::AllowShadow {
            would_block: code,
            enqueue_audit,
        },
        _ => enforced,
    }
}

fn enforce(
    policy: &ServerPolicy,
    snapshot: Option<&SnapshotView>,
    now_ms: i64,
    windows: &FreshnessWindows,
) -> GateDecision {
    let Some(snap) = snapshot else {
        return GateDecision::Block {
            code: ErrorCode::SeatCheckPending,
            enqueue_audit: true,
        };
    };
    if snap.audit_failed {
        return GateDecision::Block {
            code: ErrorCode::SeatAuditFailed,
            enqueue_audit: false,
        };
    }
    match windows.classify(snap.checked_at_ms, now_ms) {
        Freshness::Fresh if snap.is_over_limit() => GateDecision::Block {
            code: ErrorCode::SeatLimitExceeded,
            enqueue_audit: false,
        },
        Freshness::Fresh => ALLOW,
        Freshness::Stale if policy.stale_grace && !snap.is_over_limit() => GateDecision::Allow {
            enqueue_audit: true,
        },
        Freshness::Stale | Freshness::Expired => GateDecision::Block {
            code: ErrorCode::SeatCheckPending,
            enqueue_audit: true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 10_000_000;
    const W: FreshnessWindows = FreshnessWindows {
        fresh_ms: 90_000,
        stale_ms: 300_000,
    };

    fn enforce_policy() -> ServerPolicy {
        ServerPolicy {
            mode: EnforcementMode::Enforce,
            ..Default::default()
        }
    }

    fn snap(used: u64, limit: u64, age_ms: i64) -> SnapshotView {
        SnapshotView {
            seats_used: used,
            seat_limit: limit,
            checked_at_ms: NOW - age_ms,
            audit_failed: false,
        }
    }

    fn send(policy: ServerPolicy, s: Option<SnapshotView>) -> GateDecision {
        decide(false, Some(&policy), s.as_ref(), JobKind::Send, NOW, &W)
    }

    fn blocked_with(d: GateDecision) -> Option<ErrorCode> {
        match d {
            GateDecision::Block { code, .. } => Some(code),
            _ => None,
        }
    }

    #[test]
    fn kill_switch_allows_an_over_limit_server() {
        let d = decide(
            true,
            Some(&enforce_policy()),
            Some(&snap(11, 10, 0)),
            JobKind::Send,
            NOW,
            &W,
        );
        assert_eq!(d, ALLOW);
    }

    #[test]
    fn mode_off_and_missing_config_allow() {
        let off = ServerPolicy::default();
        assert_eq!(send(off, Some(snap(50, 1, 0))), ALLOW);
        assert_eq!(decide(false, None, None, JobKind::Send, NOW, &W), ALLOW);
    }

    #[test]
    fn override_allow_beats_over_limit_and_override_block_beats_under() {
        let allow = ServerPolicy {
            override_mode: OverrideMode::Allow,
            ..enforce_policy()
        };
        assert_eq!(send(allow, Some(snap(11, 10, 0))), ALLOW);
        let block = ServerPolicy {
            override_mode: OverrideMode::Block,
            ..enforce_policy()
        };
        assert_eq!(
            blocked_with(send(block, Some(snap(1, 10, 0)))),
            Some(ErrorCode::SeatOverrideBlock)
        );
    }

    #[test]
    fn no_snapshot_blocks_pending_and_asks_for_an_audit() {
        let d = send(enforce_policy(), None);
        assert_eq!(
            d,
            GateDecision::Block {
                code: ErrorCode::SeatCheckPending,
                enqueue_audit: true
            }
        );
    }

    #[test]
    fn stale_snapshot_blocks_strictly_by_default() {
        let d = send(enforce_policy(), Some(snap(1, 10, 120_000)));
        assert_eq!(
            d,
            GateDecision::Block {
                code: ErrorCode::SeatCheckPending,
                enqueue_audit: true
            }
        );
    }

    #[test]
    fn stale_grace_allows_under_limit_until_expired() {
        let grace = ServerPolicy {
            stale_grace: true,
            ..enforce_policy()
        };
        assert_eq!(
            send(grace, Some(snap(1, 10, 120_000))),
            GateDecision::Allow {
                enqueue_audit: true
            }
        );
        assert_eq!(
            blocked_with(send(grace, Some(snap(11, 10, 120_000)))),
            Some(ErrorCode::SeatCheckPending)
        );
        assert_eq!(
            blocked_with(send(grace, Some(snap(1, 10, 301_000)))),
            Some(ErrorCode::SeatCheckPending)
        );
    }

    #[test]
    fn fresh_over_limit_blocks_and_at_limit_allows() {
        assert_eq!(
            blocked_with(send(enforce_policy(), Some(snap(11, 10, 0)))),
            Some(ErrorCode::SeatLimitExceeded)
        );
        assert_eq!(send(enforce_policy(), Some(snap(10, 10, 0))), ALLOW);
        assert_eq!(send(enforce_policy(), Some(snap(0, 0, 0))), ALLOW);
    }

    #[test]
    fn failed_audit_blocks_even_when_the_last_count_was_under() {
        let mut s = snap(1, 10, 0);
        s.audit_failed = true;
        assert_eq!(
            blocked_with(send(enforce_policy(), Some(s))),
            Some(ErrorCode::SeatAuditFailed)
        );
    }

    #[test]
    fn shadow_mode_delivers_and_reports_what_it_would_block() {
        let shadow = ServerPolicy {
            mode: EnforcementMode::Shadow,
            ..Default::default()
        };
        assert_eq!(
            send(shadow, Some(snap(11, 10, 0))),
            GateDecision::AllowShadow {
                would_block: ErrorCode::SeatLimitExceeded,
                enqueue_audit: false
            }
        );
        assert_eq!(send(shadow, Some(snap(9, 10, 0))), ALLOW);
    }

    #[test]
    fn deletes_are_never_blocked() {
        let block = ServerPolicy {
            override_mode: OverrideMode::Block,
            ..enforce_policy()
        };
        let d = decide(
            false,
            Some(&block),
            Some(&snap(99, 1, 0)),
            JobKind::Delete,
            NOW,
            &W,
        );
        assert_eq!(d, ALLOW);
    }

    #[test]
    fn edits_are_gated_like_sends() {
        let d = decide(
            false,
            Some(&enforce_policy()),
            Some(&snap(11, 10, 0)),
            JobKind::Edit,
            NOW,
            &W,
        );
        assert_eq!(blocked_with(d), Some(ErrorCode::SeatLimitExceeded));
    }
}
