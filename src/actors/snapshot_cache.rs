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
        changes::stored_snapshot_applies,
        freshness::{Freshness, FreshnessWindows},
        gate::{ServerPolicy, SnapshotView},
    },
    store::mirror::HeldScope,
    store::now_ms,
};

/// Shared, lock-free-for-readers view used by the gate on its hot path.
#[derive(Clone, Default)]
pub struct SnapshotCache {
    snapshots: Arc<DashMap<ServerKey, SnapshotView>>,
    policies: Arc<DashMap<ServerKey, ServerPolicy>>,
    /// Connectors switched off (`enabled: false`) or deleted: nothing new goes out for them.
    stopped: Arc<DashMap<(String, String), ConnectorRun>>,
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

    /// Whether the connector runs, is switched off, or was deleted.
    pub fn connector_run(&self, tenant_key: &str, connector_id: &str) -> ConnectorRun {
        if self.stopped.is_empty() {
            return ConnectorRun::Live;
        }
        self.stopped
            .get(&(tenant_key.to_owned(), connector_id.to_owned()))
            .map_or(ConnectorRun::Live, |r| *r)
    }

    pub fn len(&self) -> usize {
        self.snapshots.len()
    }

    /// The servers a policy is held for.
    pub fn policy_keys(&self) -> Vec<ServerKey> {
        self.policies.iter().map(|e| e.key().clone()).collect()
    }

    /// The connectors held as switched off or deleted.
    pub fn stopped_connectors(&self) -> Vec<(String, String)> {
        self.stopped.iter().map(|e| e.key().clone()).collect()
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

/// A snapshot as the database holds it (another instance may have written it): it replaces
/// the one held only if it is not older ([`stored_snapshot_applies`]).
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct SnapshotStored {
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectorRun {
    Live,
    /// `enabled: false`: its jobs wait (`mirror_disabled`).
    Disabled,
    /// Deleted: sends and edits are cancelled; deletes of its copies still go.
    Deleted,
}

/// A connector was enabled, disabled or deleted. Enabled again, its held jobs may go.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct ConnectorState {
    pub tenant_key: String,
    pub connector_id: String,
    pub run: ConnectorRun,
}

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
        self.release(HeldScope::Server(key));
    }

    fn release(&self, scope: HeldScope) {
        match &self.resume {
            Some(resume) => resume.do_send(HeldJobsMayResume(scope)),
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

impl Handler<SnapshotStored> for SnapshotCacheActor {
    type Result = ();
    fn handle(&mut self, msg: SnapshotStored, _: &mut Self::Context) {
        let held = self.cache.snapshot(&msg.key);
        if stored_snapshot_applies(held.as_ref(), &msg.snapshot)
            && self
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

impl Handler<ConnectorState> for SnapshotCacheActor {
    type Result = ();
    fn handle(&mut self, msg: ConnectorState, _: &mut Self::Context) {
        let key = (msg.tenant_key.clone(), msg.connector_id.clone());
        if msg.run == ConnectorRun::Live {
            if self.cache.stopped.remove(&key).is_some() {
                self.release(HeldScope::Connector {
                    tenant_key: msg.tenant_key,
                    connector_id: msg.connector_id,
                });
            }
        } else {
            self.cache.stopped.insert(key, msg.run);
        }
    }
}

impl Handler<KillSwitchSet> for SnapshotCacheActor {
    type Result = ();
    fn handle(&mut self, msg: KillSwitchSet, _: &mut Self::Context) {
        let was = self.cache.kill_switch.swap(msg.0, Ordering::Relaxed);
        if msg.0 && !was {
            // Every server now behaves as `off`: whatever was held for one may go.
            self.release(HeldScope::All);
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
