//! The gateway shards this process runs and how each is doing, for `/readyz`, `/metrics` and
//! the admin page. Gateway ingest writes it (a shard's total at its READY, every shard's
//! connection stage as serenity's runners report it); the admin API reads it.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use serde::Serialize;

use crate::domain::shards::{Shard, ShardSessions};

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

/// A READY as [`ShardStates::ready`] counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    /// The shard had a session before: the events in between are lost.
    pub after_gap: bool,
    /// READYs on every shard together, this one included.
    pub session: u32,
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
    epochs: Arc<Mutex<BTreeMap<u32, (Shard, i64)>>>,
    /// READYs per shard, kept when a shard stops here (taken again later, it had a gap).
    sessions: Arc<Mutex<ShardSessions>>,
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

    /// A READY on `shard`: connected (before the next look at the runners), and counted.
    pub fn ready(&self, shard: Shard) -> Ready {
        let (after_gap, session, of_shard) = {
            let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            let after_gap = sessions.ready(shard.id);
            (after_gap, sessions.total(), sessions.of(shard.id))
        };
        let mut map = self.lock();
        let state = Self::entry(&mut map, shard.id);
        state.total = shard.total;
        state.sessions = of_shard;
        state.stage = "connected".into();
        Ready { after_gap, session }
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

    /// Reads every runner's stage from serenity's shard managers (one, or one per leased
    /// shard) into the list; whether there is a runner and every one is connected.
    pub async fn report(&self, managers: &[Arc<serenity::all::ShardManager>]) -> bool {
        let mut stages = Vec::new();
        for manager in managers {
            let runners = manager.runners.lock().await;
            stages.extend(runners.iter().map(|(id, r)| (id.0, r.stage)));
        }
        let connected = !stages.is_empty()
            && stages
                .iter()
                .all(|(_, stage)| *stage == serenity::gateway::ConnectionStage::Connected);
        self.stages(
            stages
                .into_iter()
                .map(|(id, stage)| (id, stage.to_string())),
        );
        connected
    }

    pub fn list(&self) -> Vec<ShardState> {
        self.lock().values().cloned().collect()
    }

    /// The lease on `shard` was taken under `epoch`.
    pub fn hold(&self, shard: Shard, epoch: i64) {
        self.epochs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(shard.id, (shard, epoch));
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
            .values()
            .find(|(shard, _)| shard.carries(guild_id))
            .map_or(Fence::NotHeld, |(shard, epoch)| Fence::Lease {
                shard: shard.id,
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
        if !self.is_leased() {
            return true;
        }
        self.lock().values().any(|s| {
            s.total > 0
                && Shard {
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
        let first = states.ready(Shard { id: 0, total: 2 });
        let again = states.ready(Shard { id: 0, total: 2 });
        assert!(!first.after_gap && again.after_gap);
        assert_eq!(again.session, 2);
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
