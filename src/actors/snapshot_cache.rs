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
use crate::domain::gate::{ServerPolicy, SnapshotView};

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

    fn put_snapshot(&self, key: ServerKey, snapshot: SnapshotView) -> bool {
        let previous = self.snapshots.insert(key, snapshot);
        previous
            .map(|p| gate_relevant_change(&p, &snapshot))
            .unwrap_or(true)
    }
}

/// Whether a new snapshot could change a gate decision (a re-stamp alone cannot).
fn gate_relevant_change(old: &SnapshotView, new: &SnapshotView) -> bool {
    old.is_over_limit() != new.is_over_limit() || old.audit_failed != new.audit_failed
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
}

impl SnapshotCacheActor {
    pub fn new(cache: SnapshotCache, gate: Recipient<Wake>) -> Self {
        Self {
            cache,
            gate,
            resume: None,
        }
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
        if self.cache.put_snapshot(msg.key.clone(), msg.snapshot) {
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
        self.cache.kill_switch.store(msg.0, Ordering::Relaxed);
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
        assert!(
            cache.put_snapshot(key.clone(), view(1, 5, 0)),
            "first snapshot wakes"
        );
        assert!(
            !cache.put_snapshot(key.clone(), view(2, 5, 10)),
            "still under"
        );
        assert!(
            cache.put_snapshot(key.clone(), view(6, 5, 20)),
            "crossed the limit"
        );
        assert_eq!(cache.snapshot(&key).map(|s| s.seats_used), Some(6));
    }
}
