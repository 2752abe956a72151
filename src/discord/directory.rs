//! What the bot knows of the guilds it is in, from the gateway: names, icons, channels (with
//! their overwrites, for the bot's own permissions), threads and roles. No members. Filled in
//! gateway order by the ordered stream (`gateway_ingest::ordered`), read by the admin API to
//! check the Discord ids it is given and to offer names and pickers.
//!
//! With shard leases a process's gateway tells it only the guilds of its own shards. The
//! others come from the processes that run their shards, through `guild_directory` and the
//! change feed ([`GuildDirectory::set_remote`]): reads take what this process's gateway told
//! first, then what another process published, so every process answers the same. Which of
//! its own guilds changed is kept for the publisher ([`GuildDirectory::take_changed`]).

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use dashmap::{DashMap, DashSet};
use serenity::model::{
    channel::GuildChannel,
    event::Event,
    guild::{Guild, Role},
};

use crate::domain::{
    permissions::{GuildView, Overwrite, ADMINISTRATOR, VIEW_CHANNEL},
    seats::overwrites_from_serenity,
    shards::Shard,
};

pub const SEND_MESSAGES: u64 = 1 << 11;
pub const MANAGE_WEBHOOKS: u64 = 1 << 29;
pub const SEND_MESSAGES_IN_THREADS: u64 = 1 << 38;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChannelInfo {
    pub id: u64,
    pub name: String,
    /// Discord's channel type (0 text, 2 voice, 4 category, 5 announcement, 10-12 threads, ...).
    pub kind: u8,
    pub parent_id: Option<u64>,
    pub position: i64,
    pub overwrites: Vec<Overwrite>,
}

impl ChannelInfo {
    pub fn is_thread(&self) -> bool {
        matches!(self.kind, 10..=12)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RoleInfo {
    pub id: u64,
    pub name: String,
    pub color: u32,
    pub position: i64,
    pub permissions: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GuildInfo {
    pub id: u64,
    pub name: String,
    pub icon: Option<String>,
    pub owner_id: u64,
    pub channels: BTreeMap<u64, ChannelInfo>,
    pub roles: BTreeMap<u64, RoleInfo>,
    /// The bot's roles in this guild.
    pub bot_roles: Vec<u64>,
    /// In an outage (GUILD_DELETE `unavailable`): what is known may be out of date.
    pub unavailable: bool,
}

/// Whether the bot can post in a channel, for the delivery mode given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostMode {
    Bot,
    Webhook,
}

impl GuildInfo {
    /// The bot's permissions in `channel` (a thread by its parent), Discord's algorithm.
    pub fn bot_permissions_in(&self, bot_id: u64, channel: &ChannelInfo) -> u64 {
        let judged = match channel.parent_id {
            Some(parent) if channel.is_thread() => self.channels.get(&parent).unwrap_or(channel),
            _ => channel,
        };
        let roles: std::collections::HashMap<u64, u64> =
            self.roles.values().map(|r| (r.id, r.permissions)).collect();
        GuildView {
            guild_id: self.id,
            owner_id: self.owner_id,
            roles: &roles,
        }
        .permissions_in(bot_id, &self.bot_roles, &judged.overwrites)
    }

    /// Can the bot post in `channel` the way `mode` needs: view and send (in a thread, send
    /// in threads) as itself, or view and manage webhooks for a webhook.
    pub fn bot_can_post(&self, bot_id: u64, channel: &ChannelInfo, mode: PostMode) -> bool {
        let p = self.bot_permissions_in(bot_id, channel);
        if p & ADMINISTRATOR != 0 {
            return true;
        }
        let send = if channel.is_thread() {
            SEND_MESSAGES_IN_THREADS
        } else {
            SEND_MESSAGES
        };
        let needed = match mode {
            PostMode::Bot => VIEW_CHANNEL | send,
            PostMode::Webhook => VIEW_CHANNEL | MANAGE_WEBHOOKS,
        };
        p & needed == needed
    }
}

fn channel_info(c: &GuildChannel) -> ChannelInfo {
    ChannelInfo {
        id: c.id.get(),
        name: c.name.clone(),
        kind: u8::from(c.kind),
        parent_id: c.parent_id.map(|p| p.get()),
        position: i64::from(c.position),
        overwrites: overwrites_from_serenity(&c.permission_overwrites),
    }
}

fn role_info(r: &Role) -> RoleInfo {
    RoleInfo {
        id: r.id.get(),
        name: r.name.clone(),
        color: r.colour.0,
        position: i64::from(r.position),
        permissions: r.permissions.bits(),
    }
}

/// Guilds by id, and where each channel is.
#[derive(Clone, Default)]
struct Layer {
    guilds: Arc<DashMap<u64, GuildInfo>>,
    channel_guild: Arc<DashMap<u64, u64>>,
}

impl Layer {
    fn insert(&self, info: GuildInfo) {
        for id in info.channels.keys() {
            self.channel_guild.insert(*id, info.id);
        }
        self.guilds.insert(info.id, info);
    }

    fn remove(&self, guild_id: u64) -> Option<GuildInfo> {
        let (_, g) = self.guilds.remove(&guild_id)?;
        for c in g.channels.keys() {
            self.channel_guild
                .remove_if(c, |_, owner| *owner == guild_id);
        }
        Some(g)
    }

    fn channel(&self, channel_id: u64) -> Option<(u64, ChannelInfo)> {
        let guild_id = *self.channel_guild.get(&channel_id)?;
        let g = self.guilds.get(&guild_id)?;
        g.channels.get(&channel_id).map(|c| (guild_id, c.clone()))
    }
}

/// The guilds the bot is in, by id, and where each channel is.
#[derive(Clone, Default)]
pub struct GuildDirectory {
    /// What this process's gateway told.
    local: Layer,
    /// What the processes running the other shards published.
    remote: Layer,
    /// Local guilds changed since the publisher last looked.
    changed: Arc<DashSet<u64>>,
    bot_id: Arc<AtomicU64>,
}

impl GuildDirectory {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn bot_id(&self) -> u64 {
        self.bot_id.load(Ordering::Relaxed)
    }

    pub fn set_bot_id(&self, id: u64) {
        self.bot_id.store(id, Ordering::Relaxed);
    }

    /// What this process's gateway told of the guild, else what another process published.
    pub fn guild(&self, guild_id: u64) -> Option<GuildInfo> {
        self.local
            .guilds
            .get(&guild_id)
            .or_else(|| self.remote.guilds.get(&guild_id))
            .map(|g| g.clone())
    }

    /// This process's gateway delivered the guild (what another process published aside).
    pub fn has_guild(&self, guild_id: u64) -> bool {
        self.local.guilds.contains_key(&guild_id)
    }

    /// Every guild known, here or through another process.
    pub fn guild_ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .local
            .guilds
            .iter()
            .chain(self.remote.guilds.iter())
            .map(|g| *g.key())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    pub fn guild_name(&self, guild_id: u64) -> Option<String> {
        self.guild(guild_id).map(|g| g.name)
    }

    pub fn channel_name(&self, channel_id: u64) -> Option<String> {
        self.channel(channel_id).map(|(_, c)| c.name)
    }

    /// A channel (or thread) the gateway told of, with its guild.
    pub fn channel(&self, channel_id: u64) -> Option<(u64, ChannelInfo)> {
        self.local
            .channel(channel_id)
            .or_else(|| self.remote.channel(channel_id))
    }

    /// A guild as the process running its shard published it.
    pub fn set_remote(&self, info: GuildInfo) {
        self.remote.remove(info.id);
        self.remote.insert(info);
    }

    /// The process running the guild's shard no longer knows it (the bot left).
    pub fn drop_remote(&self, guild_id: u64) {
        self.remote.remove(guild_id);
    }

    /// Everything the other processes published, replacing what was held (a reload).
    pub fn replace_remote(&self, all: Vec<GuildInfo>) {
        let keep: std::collections::HashSet<u64> = all.iter().map(|g| g.id).collect();
        let gone: Vec<u64> = self
            .remote
            .guilds
            .iter()
            .map(|g| *g.key())
            .filter(|id| !keep.contains(id))
            .collect();
        for id in gone {
            self.remote.remove(id);
        }
        for info in all {
            self.set_remote(info);
        }
    }

    /// This process stopped running `shard`: its guilds are now the new holder's to tell.
    pub fn forget_shard(&self, shard: Shard) {
        let gone: Vec<u64> = self
            .local
            .guilds
            .iter()
            .map(|g| *g.key())
            .filter(|id| shard.carries(*id))
            .collect();
        for id in gone {
            self.local.remove(id);
        }
    }

    /// The local guilds changed since the last call (added, changed or gone).
    pub fn take_changed(&self) -> Vec<u64> {
        let ids: Vec<u64> = self.changed.iter().map(|id| *id).collect();
        for id in &ids {
            self.changed.remove(id);
        }
        ids
    }

    /// A guild to look at again (its publication failed).
    pub fn mark_changed(&self, guild_id: u64) {
        self.changed.insert(guild_id);
    }

    /// What this process's gateway told of the guild (for the publisher).
    pub fn local_guild(&self, guild_id: u64) -> Option<GuildInfo> {
        self.local.guilds.get(&guild_id).map(|g| g.clone())
    }

    /// Whether the bot can post in a known channel; `None` when the channel is not known.
    pub fn bot_can_post(&self, channel_id: u64, mode: PostMode) -> Option<bool> {
        let (guild_id, c) = self.channel(channel_id)?;
        let g = self.guild(guild_id)?;
        Some(g.bot_can_post(self.bot_id(), &c, mode))
    }

    /// GUILD_CREATE: the whole guild as it arrived.
    pub fn guild_available(&self, guild: &Guild) {
        let bot = self.bot_id();
        let info = GuildInfo {
            id: guild.id.get(),
            name: guild.name.clone(),
            icon: guild.icon.map(|h| h.to_string()),
            owner_id: guild.owner_id.get(),
            channels: guild
                .channels
                .values()
                .chain(guild.threads.iter())
                .map(|c| (c.id.get(), channel_info(c)))
                .collect(),
            roles: guild
                .roles
                .values()
                .map(|r| (r.id.get(), role_info(r)))
                .collect(),
            bot_roles: guild
                .members
                .values()
                .find(|m| m.user.id.get() == bot)
                .map(|m| m.roles.iter().map(|r| r.get()).collect())
                .unwrap_or_default(),
            unavailable: false,
        };
        self.changed.insert(info.id);
        self.local.remove(info.id);
        self.local.insert(info);
    }

    fn with_guild(&self, guild_id: u64, f: impl FnOnce(&mut GuildInfo)) {
        if let Some(mut g) = self.local.guilds.get_mut(&guild_id) {
            f(&mut g);
            self.changed.insert(guild_id);
        }
    }

    fn channel_upsert(&self, guild_id: u64, c: &GuildChannel) {
        self.local.channel_guild.insert(c.id.get(), guild_id);
        self.with_guild(guild_id, |g| {
            g.channels.insert(c.id.get(), channel_info(c));
        });
    }

    fn channel_remove(&self, guild_id: u64, channel_id: u64) {
        self.local.channel_guild.remove(&channel_id);
        self.with_guild(guild_id, |g| {
            g.channels.remove(&channel_id);
        });
    }

    /// A gateway dispatch, in gateway order.
    pub fn apply(&self, event: &Event) {
        match event {
            Event::Ready(e) => self.set_bot_id(e.ready.user.id.get()),
            Event::GuildCreate(e) => self.guild_available(&e.guild),
            Event::GuildUpdate(e) => self.with_guild(e.guild.id.get(), |g| {
                g.name = e.guild.name.clone();
                g.icon = e.guild.icon.map(|h| h.to_string());
                g.owner_id = e.guild.owner_id.get();
                g.roles = e
                    .guild
                    .roles
                    .values()
                    .map(|r| (r.id.get(), role_info(r)))
                    .collect();
            }),
            Event::GuildDelete(e) => {
                let id = e.guild.id.get();
                if e.guild.unavailable {
                    self.with_guild(id, |g| g.unavailable = true);
                } else if self.local.remove(id).is_some() {
                    self.changed.insert(id);
                }
            }
            Event::GuildRoleCreate(e) => self.with_guild(e.role.guild_id.get(), |g| {
                g.roles.insert(e.role.id.get(), role_info(&e.role));
            }),
            Event::GuildRoleUpdate(e) => self.with_guild(e.role.guild_id.get(), |g| {
                g.roles.insert(e.role.id.get(), role_info(&e.role));
            }),
            Event::GuildRoleDelete(e) => self.with_guild(e.guild_id.get(), |g| {
                g.roles.remove(&e.role_id.get());
                g.bot_roles.retain(|r| *r != e.role_id.get());
            }),
            Event::GuildMemberUpdate(e) if e.user.id.get() == self.bot_id() => {
                self.with_guild(e.guild_id.get(), |g| {
                    g.bot_roles = e.roles.iter().map(|r| r.get()).collect();
                })
            }
            Event::ChannelCreate(e) => self.channel_upsert(e.channel.guild_id.get(), &e.channel),
            Event::ChannelUpdate(e) => self.channel_upsert(e.channel.guild_id.get(), &e.channel),
            Event::ChannelDelete(e) => {
                self.channel_remove(e.channel.guild_id.get(), e.channel.id.get())
            }
            Event::ThreadCreate(e) => self.channel_upsert(e.thread.guild_id.get(), &e.thread),
            Event::ThreadUpdate(e) => self.channel_upsert(e.thread.guild_id.get(), &e.thread),
            Event::ThreadDelete(e) => {
                self.channel_remove(e.thread.guild_id.get(), e.thread.id.get())
            }
            Event::ThreadListSync(e) => {
                for t in &e.threads {
                    self.channel_upsert(e.guild_id.get(), t);
                }
            }
            _ => {}
        }
    }
}
