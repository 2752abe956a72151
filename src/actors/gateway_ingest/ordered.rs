//! Guild changes in gateway order.
//!
//! serenity 0.12 runs every event handler call in a task of its own, so two member events of
//! one guild can reach the handlers in the opposite order to Discord's, and a join applied
//! after its leave would leave the member counted. serenity calls its collectors, though,
//! synchronously in the shard's loop, in the order the events arrived: a collector registered
//! on each shard runner forwards every seat-relevant dispatch to the auditor from there (one
//! ordered consumer; actix keeps one sender's messages in order).
//!
//! The collector can only be registered from a handler, after the shard's READY went by: a
//! guild whose GUILD_CREATE passed before that is not known to have been followed in order.
//! Its `guild_create` handler (which runs after the collector saw, or missed, that event)
//! then reports [`GuildChange::OrderLost`], and the auditor recounts that guild over REST,
//! with the events the collector forwards from then on applied on top.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use actix::prelude::*;
use serenity::{
    all::{ShardMessenger, UnavailableGuild},
    gateway::CollectorCallback,
    model::event::Event,
};

use super::create_order::CreateOrder;
use crate::{
    actors::seat_auditor::GuildChange,
    discord::directory::GuildDirectory,
    domain::seats::{guild_events, GuildSnapshot},
};

/// The guilds whose GUILD_CREATE a shard's current collector saw.
#[derive(Default)]
struct Seen {
    guilds: Mutex<HashSet<u64>>,
}

impl Seen {
    fn insert(&self, guild_id: u64) {
        self.guilds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(guild_id);
    }

    fn contains(&self, guild_id: u64) -> bool {
        self.guilds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&guild_id)
    }
}

/// One collector per shard runner, and what each has seen.
#[derive(Clone)]
pub(super) struct OrderedChanges {
    auditor: Recipient<GuildChange>,
    directory: GuildDirectory,
    shards: Arc<Mutex<HashMap<u32, Arc<Seen>>>>,
    creates: Arc<CreateOrder>,
}

impl OrderedChanges {
    pub fn new(auditor: Recipient<GuildChange>, directory: GuildDirectory) -> Self {
        Self {
            auditor,
            directory,
            shards: Arc::default(),
            creates: Arc::default(),
        }
    }

    /// New messages per channel in gateway order, for the `message` handlers.
    pub fn creates(&self) -> &Arc<CreateOrder> {
        &self.creates
    }

    pub fn directory(&self) -> &GuildDirectory {
        &self.directory
    }

    /// Registers the ordered forwarder on the shard runner that dispatched READY (once per
    /// runner: a runner identifies once; RESUME keeps it, a new IDENTIFY is a new runner).
    pub fn attach(&self, shard_id: u32, messenger: &ShardMessenger) {
        let seen = Arc::new(Seen::default());
        self.shards
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(shard_id, seen.clone());
        let auditor = self.auditor.clone();
        let directory = self.directory.clone();
        let creates = self.creates.clone();
        messenger.add_collector(CollectorCallback(Box::new(move |event| {
            if let Event::MessageCreate(e) = event {
                creates.arrived(e.message.channel_id.get(), e.message.id.get());
            }
            directory.apply(event);
            forward(&auditor, &seen, event);
            true
        })));
    }

    /// From the `guild_create` handler: was this GUILD_CREATE seen in order? If not, the
    /// auditor recounts the guild.
    pub fn check_guild_create(&self, shard_id: u32, guild_id: u64) {
        let seen = self
            .shards
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&shard_id)
            .is_some_and(|s| s.contains(guild_id));
        if !seen {
            tracing::info!(
                guild_id,
                shard_id,
                "gateway: GUILD_CREATE went by before the ordered stream started; recounting"
            );
            self.auditor.do_send(GuildChange::OrderLost { guild_id });
        }
    }
}

fn guild_gone(guild: &UnavailableGuild) -> GuildChange {
    let guild_id = guild.id.get();
    if guild.unavailable {
        GuildChange::GuildUnavailable { guild_id }
    } else {
        GuildChange::GuildDeleted { guild_id }
    }
}

/// Runs in the shard's loop, before serenity dispatches the event to the handlers.
fn forward(auditor: &Recipient<GuildChange>, seen: &Seen, event: &Event) {
    match event {
        Event::GuildCreate(e) => {
            let guild_id = e.guild.id.get();
            seen.insert(guild_id);
            auditor.do_send(GuildChange::GuildAvailable {
                guild: Box::new(GuildSnapshot::from_serenity(&e.guild)),
                member_count: e.guild.member_count,
            });
        }
        Event::GuildDelete(e) => auditor.do_send(guild_gone(&e.guild)),
        other => {
            if let Some((guild_id, events)) = guild_events(other) {
                for event in events {
                    auditor.do_send(GuildChange::event(guild_id, event));
                }
            }
        }
    }
}
