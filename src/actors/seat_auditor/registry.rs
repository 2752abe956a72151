//! The configured servers as the auditor holds them: each one's live index, whether that
//! index is complete, the recount under way and the events kept for it, and what was last
//! published. Servers are found by key and by guild (every event fans out to the servers of
//! its guild).

use std::collections::HashMap;

use crate::{
    domain::{
        audit::{LimitState, Written},
        seats::{GuildEvent, GuildIndex},
        server_key::ServerKey,
    },
    store::seat_audit::ServerSpec,
};

/// Events kept for one recount before it gives up and asks to be redone (a guild this busy
/// during a recount is recounted again rather than held in memory without bound).
pub(super) const RECOUNT_EVENTS_CAP: usize = 200_000;

/// A recount under way: the events of the guild since it started reading Discord, in gateway
/// order, to apply on top of what it read.
#[derive(Debug)]
pub(super) struct Recount {
    pub job_id: i64,
    pub events: Vec<GuildEvent>,
    /// What it reads can no longer be made exact (events were lost in a gateway gap, or too
    /// many to keep): its result is dropped and the server recounted again.
    pub redo: bool,
}

impl Recount {
    pub fn new(job_id: i64) -> Self {
        Self {
            job_id,
            events: Vec::new(),
            redo: false,
        }
    }

    pub fn keep(&mut self, event: &GuildEvent) {
        if self.redo {
            return;
        }
        if self.events.len() >= RECOUNT_EVENTS_CAP {
            self.redo = true;
            self.events = Vec::new();
        } else {
            self.events.push(event.clone());
        }
    }
}

/// How far a member list has got while it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub members: u64,
    pub member_count: Option<u64>,
}

#[derive(Debug)]
pub(super) struct ServerState {
    pub spec: ServerSpec,
    pub index: Option<GuildIndex>,
    /// The index holds every member and every event since it was built: only then is its
    /// count published (as a fresh snapshot, an enforcement event, a notice).
    pub complete: bool,
    pub progress: Option<Progress>,
    pub recount: Option<Recount>,
    pub written: Option<Written>,
    /// Last state written to the pause/resume history.
    pub state: LimitState,
    /// Last state the owner was told about (`Unknown`: never told).
    pub told: LimitState,
    pub pending_write_at: Option<i64>,
    /// The last audit failed for good and no complete count has come since.
    pub failed: bool,
    /// When to ask for a recount if the count is still not complete by then.
    pub recheck_at: Option<i64>,
}

impl ServerState {
    pub fn new(spec: ServerSpec) -> Self {
        Self {
            spec,
            index: None,
            complete: false,
            progress: None,
            recount: None,
            written: None,
            state: LimitState::Unknown,
            told: LimitState::Unknown,
            pending_write_at: None,
            failed: false,
            recheck_at: None,
        }
    }

    /// Stops vouching for the count until a recount: it ages in the snapshot meanwhile, and
    /// a recount already reading Discord cannot be made exact.
    pub fn lose_track(&mut self) {
        self.complete = false;
        self.pending_write_at = None;
        if let Some(r) = &mut self.recount {
            r.redo = true;
            r.events = Vec::new();
        }
    }

    /// Applies a guild event to the live index, and keeps it for a recount under way.
    pub fn apply(&mut self, event: &GuildEvent) {
        if let Some(index) = &mut self.index {
            index.apply(event);
        }
        if let Some(r) = &mut self.recount {
            r.keep(event);
        }
    }
}

#[derive(Default)]
pub(super) struct Registry {
    servers: HashMap<ServerKey, ServerState>,
    by_guild: HashMap<u64, Vec<ServerKey>>,
}

impl Registry {
    pub fn get(&self, key: &ServerKey) -> Option<&ServerState> {
        self.servers.get(key)
    }

    pub fn get_mut(&mut self, key: &ServerKey) -> Option<&mut ServerState> {
        self.servers.get_mut(key)
    }

    pub fn contains(&self, key: &ServerKey) -> bool {
        self.servers.contains_key(key)
    }

    pub fn keys(&self) -> Vec<ServerKey> {
        self.servers.keys().cloned().collect()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&ServerKey, &mut ServerState)> {
        self.servers.iter_mut()
    }

    /// The servers whose target guild is `guild_id`.
    pub fn of_guild(&self, guild_id: u64) -> Vec<ServerKey> {
        self.by_guild.get(&guild_id).cloned().unwrap_or_default()
    }

    pub fn insert(&mut self, key: ServerKey, state: ServerState) {
        let keys = self.by_guild.entry(key.guild_id).or_default();
        if !keys.contains(&key) {
            keys.push(key.clone());
        }
        self.servers.insert(key, state);
    }

    /// Drops every server not in `keep`; returns the dropped keys.
    pub fn retain(&mut self, keep: &[ServerKey]) -> Vec<ServerKey> {
        let gone: Vec<ServerKey> = self
            .servers
            .keys()
            .filter(|k| !keep.contains(k))
            .cloned()
            .collect();
        for key in &gone {
            self.servers.remove(key);
            if let Some(keys) = self.by_guild.get_mut(&key.guild_id) {
                keys.retain(|k| k != key);
                if keys.is_empty() {
                    self.by_guild.remove(&key.guild_id);
                }
            }
        }
        gone
    }
}
