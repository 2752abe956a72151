//! Snapshot cache: the last seat snapshot and the enforcement policy of every server, in a
//! `DashMap` the mirror gate reads through a shared handle without a message round trip.
//! The actor applies updates and wakes the gate when a server's state changes.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use actix::prelude::*;
use dashmap::DashMap;

use super::{
    mirror_gate::{HeldJobsMayResume, Wake},
    ServerKey,
};
use crate::{
    domain::{
        freshness::{Freshness, FreshnessWindows},
        gate::{ServerPolicy, SnapshotView},
    },
    store::now_ms,
};

/// Shared, lock-free-for-readers view used by the gate on its hot path.
#[derive(Clone, Default)]
pub struct SnapshotCache {
    snapshots: Arc<DashMap<ServerKey, SnapshotView>>,
    policies: Arc<DashMap<ServerKey, ServerPolicy>>,
    kill_switch: Arc<AtomicBool>,
}

impl SnapshotCache {
    pub fn new(kill_switch: bool) -> Self {
        let cache = Self::default();
        cache.kill_switch.store(kill_switch, Ordering::Relaxed);
        cache
    }

    pub fn snapshot(&self, key: &ServerKey) -> Option<SnapshotView> {
        self.snapshots.get(key).map(|s| *s)
    }

    pub fn policy(&self, key: &ServerKey) -> Option<ServerPolicy> {
        self.policies.get(key).map(|p| *p)
    }

    pub fn kill_switch(&self) -> bool {
        self.kill_switch.load(Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        self.snapshots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.snapshots.is_empty()
    }

    fn put_snapshot(
        &self,
        key: ServerKey,
        snapshot: SnapshotView,
        windows: &FreshnessWindows,
        now: i64,
    ) -> bool {
        let previous = self.snapshots.insert(key, snapshot);
        previous
            .map(|p| gate_relevant_change(&p, &snapshot, windows, now))
            .unwrap_or(true)
    }
}

/// Whether a new snapshot could change a gate decision: the limit crossed either way, an
/// audit failed or recovered, or a snapshot that had aged past the fresh window is fresh
/// again. A re-stamp of a fresh count alone cannot.
fn gate_relevant_change(
    old: &SnapshotView,
    new: &SnapshotView,
    windows: &FreshnessWindows,
    now: i64,
) -> bool {
    let fresh = |s: &SnapshotView| windows.classify(s.checked_at_ms, now) == Freshness::Fresh;
    old.is_over_limit() != new.is_over_limit()
        || old.audit_failed != new.audit_failed
        || (!fresh(old) && fresh(new))
}

#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct SnapshotUpdated {
    pub key: ServerKey,
    pub snapshot: SnapshotView,
}

#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct PolicyUpdated {
    pub key: ServerKey,
    /// `None` when the server config was deleted.
    pub policy: Option<ServerPolicy>,
}

#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct KillSwitchSet(pub bool);

pub struct SnapshotCacheActor {
    cache: SnapshotCache,
    gate: Recipient<Wake>,
    resume: Option<Recipient<HeldJobsMayResume>>,
    windows: FreshnessWindows,
}

impl SnapshotCacheActor {
    pub fn new(cache: SnapshotCache, gate: Recipient<Wake>) -> Self {
        Self {
            cache,
            gate,
            resume: None,
            windows: FreshnessWindows::default(),
        }
    }

    /// The gate's freshness windows: a snapshot fresh again releases held jobs.
    pub fn with_windows(mut self, windows: FreshnessWindows) -> Self {
        self.windows = windows;
        self
    }

    /// Also tell the gate which server changed, so that jobs held for it run now.
    pub fn with_resume(mut self, resume: Recipient<HeldJobsMayResume>) -> Self {
        self.resume = Some(resume);
        self
    }

    fn server_changed(&self, key: ServerKey) {
        match &self.resume {
            Some(resume) => resume.do_send(HeldJobsMayResume(key)),
            None => self.gate.do_send(Wake),
        }
    }
}

impl Actor for SnapshotCacheActor {
    type Context = Context<Self>;
}

impl Handler<SnapshotUpdated> for SnapshotCacheActor {
    type Result = ();
    fn handle(&mut self, msg: SnapshotUpdated, _: &mut Self::Context) {
        if self
            .cache
            .put_snapshot(msg.key.clone(), msg.snapshot, &self.windows, now_ms())
        {
            self.server_changed(msg.key);
        }
    }
}

impl Handler<PolicyUpdated> for SnapshotCacheActor {
    type Result = ();
    fn handle(&mut self, msg: PolicyUpdated, _: &mut Self::Context) {
        match msg.policy {
            Some(p) => {
                self.cache.policies.insert(msg.key.clone(), p);
            }
            None => {
                self.cache.policies.remove(&msg.key);
            }
        }
        self.server_changed(msg.key);
    }
}

impl Handler<KillSwitchSet> for SnapshotCacheActor {
    type Result = ();
    fn handle(&mut self, msg: KillSwitchSet, _: &mut Self::Context) {
        let was = self.cache.kill_switch.swap(msg.0, Ordering::Relaxed);
        if msg.0 && !was {
            // Every server now behaves as `off`: whatever was held for one may go.
            let keys: Vec<ServerKey> = self
                .cache
                .policies
                .iter()
                .map(|p| p.key().clone())
                .collect();
            for key in keys {
                self.server_changed(key);
            }
        }
        self.gate.do_send(Wake);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(used: u64, limit: u64, checked: i64) -> SnapshotView {
        SnapshotView {
            seats_used: used,
            seat_limit: limit,
            checked_at_ms: checked,
            audit_failed: false,
        }
    }

    #[test]
    fn restamping_does_not_count_as_a_gate_relevant_change() {
        let cache = SnapshotCache::new(false);
        let key = ServerKey {
            tenant_key: "t".into(),
            connector_id: "c".into(),
            guild_id: 1,
        };
        let w = FreshnessWindows::default();
        assert!(
            cache.put_snapshot(key.clone(), view(1, 5, 0), &w, 0),
            "first snapshot wakes"
        );
        assert!(
            !cache.put_snapshot(key.clone(), view(2, 5, 10), &w, 10),
            "still under"
        );
        assert!(
            cache.put_snapshot(key.clone(), view(6, 5, 20), &w, 20),
            "crossed the limit"
        );
        assert_eq!(cache.snapshot(&key).map(|s| s.seats_used), Some(6));
        // Aged past the fresh window, then counted again: held jobs may go.
        let later = 20 + w.fresh_ms + 1;
        assert!(
            cache.put_snapshot(key.clone(), view(6, 5, later), &w, later),
            "fresh again"
        );
        assert!(
            !cache.put_snapshot(key.clone(), view(6, 5, later + 10), &w, later + 10),
            "a re-stamp of a fresh count"
        );
    }
}
