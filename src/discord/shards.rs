//! The gateway shards this process runs and how each is doing, for `/readyz`, `/metrics` and
//! the admin page. Gateway ingest writes it (a shard's total at its READY, every shard's
//! connection stage as serenity's runners report it); the admin API reads it.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use serde::Serialize;

/// One shard this process runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShardState {
    pub id: u32,
    /// Shards in all (0 until the shard's first READY).
    pub total: u32,
    /// serenity's connection stage: `connected`, `connecting`, `identifying`, `resuming`,
    /// `handshaking` or `disconnected`.
    pub stage: String,
    /// READYs on this shard since the process started (more than one: sessions after gaps).
    pub sessions: u32,
}

impl ShardState {
    pub fn connected(&self) -> bool {
        self.stage == "connected"
    }
}

#[derive(Clone, Default)]
pub struct ShardStates {
    shards: Arc<Mutex<BTreeMap<u32, ShardState>>>,
    /// Shards are leased: other processes run the rest, and what the gateway told this one
    /// covers only the guilds of its own.
    leased: Arc<std::sync::atomic::AtomicBool>,
    /// The epoch of each shard lease this process holds.
    epochs: Arc<Mutex<BTreeMap<u32, (u32, i64)>>>,
}

/// What a write about a guild must prove before the database takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fence {
    /// Shards are not leased: one process owns every guild.
    Open,
    /// The lease on `shard` under `epoch`.
    Lease { shard: u32, epoch: i64 },
    /// Another process runs the guild's shard: nothing to write here.
    NotHeld,
}

impl ShardStates {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, ShardState>> {
        self.shards.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn entry(map: &mut BTreeMap<u32, ShardState>, id: u32) -> &mut ShardState {
        map.entry(id).or_insert_with(|| ShardState {
            id,
            total: 0,
            stage: "connecting".into(),
            sessions: 0,
        })
    }

    /// A READY on shard `id` of `total`: connected (before the next look at the runners).
    pub fn ready(&self, id: u32, total: u32) {
        let mut map = self.lock();
        let shard = Self::entry(&mut map, id);
        shard.total = total;
        shard.sessions += 1;
        shard.stage = "connected".into();
    }

    /// Every runner's stage, as serenity's shard manager lists them; shards no longer run
    /// are dropped.
    pub fn stages(&self, stages: impl IntoIterator<Item = (u32, String)>) {
        let mut map = self.lock();
        let mut seen = Vec::new();
        for (id, stage) in stages {
            Self::entry(&mut map, id).stage = stage;
            seen.push(id);
        }
        map.retain(|id, _| seen.contains(id));
    }

    pub fn list(&self) -> Vec<ShardState> {
        self.lock().values().cloned().collect()
    }

    /// The lease on `shard` of `total` was taken under `epoch`.
    pub fn hold(&self, shard: u32, total: u32, epoch: i64) {
        self.epochs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(shard, (total, epoch));
    }

    /// The shard stopped here.
    pub fn unhold(&self, shard: u32) {
        self.epochs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&shard);
    }

    /// What a write about `guild_id` must hold.
    pub fn fence(&self, guild_id: u64) -> Fence {
        if !self.is_leased() {
            return Fence::Open;
        }
        let epochs = self.epochs.lock().unwrap_or_else(|p| p.into_inner());
        epochs
            .iter()
            .find(|(shard, (total, _))| {
                crate::domain::shards::Shard {
                    id: **shard,
                    total: *total,
                }
                .carries(guild_id)
            })
            .map_or(Fence::NotHeld, |(shard, (_, epoch))| Fence::Lease {
                shard: *shard,
                epoch: *epoch,
            })
    }

    pub fn is_leased(&self) -> bool {
        self.leased.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn set_leased(&self) {
        self.leased
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether this process's gateway carries `guild_id`'s events: always, unless shards are
    /// leased and the guild's shard runs elsewhere.
    pub fn carries(&self, guild_id: u64) -> bool {
        if !self.leased.load(std::sync::atomic::Ordering::Relaxed) {
            return true;
        }
        self.lock().values().any(|s| {
            s.total > 0
                && crate::domain::shards::Shard {
                    id: s.id,
                    total: s.total,
                }
                .carries(guild_id)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_is_listed_with_its_total_stage_and_sessions_until_its_runner_goes() {
        let states = ShardStates::default();
        states.stages([(0, "identifying".into()), (1, "identifying".into())]);
        states.ready(0, 2);
        states.ready(0, 2);
        let list = states.list();
        assert_eq!(list.len(), 2);
        assert_eq!((list[0].total, list[0].sessions), (2, 2));
        assert!(list[0].connected());
        assert_eq!((list[1].total, list[1].stage.as_str()), (0, "identifying"));
        assert!(!list[1].connected());
        states.stages([(1, "connected".into())]);
        assert_eq!(states.list().iter().map(|s| s.id).collect::<Vec<_>>(), [1]);
    }
}
