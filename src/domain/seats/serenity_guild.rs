//! serenity's model types in the seat engine's terms: GUILD_CREATE as a [`GuildSnapshot`],
//! gateway dispatches as [`GuildEvent`]s, so the auditor needs no conversion code of its own.

use serenity::model::channel::{
    ChannelType, GuildChannel, PermissionOverwrite, PermissionOverwriteType,
};
use serenity::model::event::Event;
use serenity::model::guild::{Guild, Member};

use super::{
    ChannelSnapshot, GuildEvent, GuildIndex, GuildSnapshot, MemberSnapshot, RoleSnapshot,
    SeatCount, ThreadSnapshot, TierRoles,
};
use crate::domain::permissions::Overwrite;

fn is_thread(kind: ChannelType) -> bool {
    matches!(
        kind,
        ChannelType::PublicThread | ChannelType::PrivateThread | ChannelType::NewsThread
    )
}

impl GuildSnapshot {
    /// A GUILD_CREATE's guild: roles, channels, active threads, and the members it lists
    /// (all of them only for a guild under `large_threshold`).
    pub fn from_serenity(guild: &Guild) -> Self {
        GuildSnapshot {
            guild_id: guild.id.get(),
            owner_id: guild.owner_id.get(),
            roles: guild
                .roles
                .values()
                .map(|r| RoleSnapshot {
                    id: r.id.get(),
                    permissions: r.permissions.bits(),
                })
                .collect(),
            channels: guild
                .channels
                .values()
                .filter(|c| !is_thread(c.kind))
                .map(|c| ChannelSnapshot {
                    id: c.id.get(),
                    overwrites: overwrites_from_serenity(&c.permission_overwrites),
                })
                .collect(),
            threads: guild
                .threads
                .iter()
                .chain(guild.channels.values().filter(|c| is_thread(c.kind)))
                .filter_map(|t| {
                    Some(ThreadSnapshot {
                        id: t.id.get(),
                        parent_id: t.parent_id?.get(),
                    })
                })
                .collect(),
            members: guild
                .members
                .values()
                .map(|m| MemberSnapshot {
                    user_id: m.user.id.get(),
                    roles: m.roles.iter().map(|r| r.get()).collect(),
                    is_bot: m.user.bot,
                })
                .collect(),
        }
    }
}

/// A channel or thread create/update as the event it is for seats.
fn channel_event(channel: &GuildChannel) -> Option<GuildEvent> {
    if is_thread(channel.kind) || channel.thread_metadata.is_some() {
        return Some(GuildEvent::ThreadUpsert {
            thread_id: channel.id.get(),
            parent_id: channel.parent_id?.get(),
        });
    }
    Some(GuildEvent::ChannelUpsert {
        channel_id: channel.id.get(),
        overwrites: overwrites_from_serenity(&channel.permission_overwrites),
    })
}

/// The dispatches that can move a seat count, as `(guild id, events)`; `None` for the rest
/// (GUILD_CREATE and GUILD_DELETE are not events of a known guild: the caller handles them).
pub fn guild_events(event: &Event) -> Option<(u64, Vec<GuildEvent>)> {
    let one = |guild_id: u64, e: Option<GuildEvent>| e.map(|e| (guild_id, vec![e]));
    match event {
        Event::GuildMemberAdd(e) => one(
            e.member.guild_id.get(),
            Some(GuildEvent::MemberUpsert {
                user_id: e.member.user.id.get(),
                roles: e.member.roles.iter().map(|r| r.get()).collect(),
                bot: e.member.user.bot,
            }),
        ),
        Event::GuildMemberUpdate(e) => one(
            e.guild_id.get(),
            Some(GuildEvent::MemberUpsert {
                user_id: e.user.id.get(),
                roles: e.roles.iter().map(|r| r.get()).collect(),
                bot: e.user.bot,
            }),
        ),
        Event::GuildMemberRemove(e) => one(
            e.guild_id.get(),
            Some(GuildEvent::MemberRemove {
                user_id: e.user.id.get(),
            }),
        ),
        Event::GuildRoleCreate(e) => one(
            e.role.guild_id.get(),
            Some(GuildEvent::RoleUpsert {
                role_id: e.role.id.get(),
                permissions: e.role.permissions.bits(),
            }),
        ),
        Event::GuildRoleUpdate(e) => one(
            e.role.guild_id.get(),
            Some(GuildEvent::RoleUpsert {
                role_id: e.role.id.get(),
                permissions: e.role.permissions.bits(),
            }),
        ),
        Event::GuildRoleDelete(e) => one(
            e.guild_id.get(),
            Some(GuildEvent::RoleRemove {
                role_id: e.role_id.get(),
            }),
        ),
        Event::ChannelCreate(e) => one(e.channel.guild_id.get(), channel_event(&e.channel)),
        Event::ChannelUpdate(e) => one(e.channel.guild_id.get(), channel_event(&e.channel)),
        Event::ChannelDelete(e) => one(
            e.channel.guild_id.get(),
            Some(if is_thread(e.channel.kind) {
                GuildEvent::ThreadRemove {
                    thread_id: e.channel.id.get(),
                }
            } else {
                GuildEvent::ChannelRemove {
                    channel_id: e.channel.id.get(),
                }
            }),
        ),
        Event::ThreadCreate(e) => one(e.thread.guild_id.get(), channel_event(&e.thread)),
        Event::ThreadUpdate(e) => one(e.thread.guild_id.get(), channel_event(&e.thread)),
        Event::ThreadDelete(e) => one(
            e.thread.guild_id.get(),
            Some(GuildEvent::ThreadRemove {
                thread_id: e.thread.id.get(),
            }),
        ),
        Event::ThreadListSync(e) => Some((
            e.guild_id.get(),
            e.threads.iter().filter_map(channel_event).collect(),
        )),
        Event::GuildUpdate(e) => one(
            e.guild.id.get(),
            Some(GuildEvent::OwnerChanged {
                owner_id: e.guild.owner_id.get(),
            }),
        ),
        _ => None,
    }
}

/// serenity's overwrites in the index's form. serenity's type is non-exhaustive; a kind it
/// may add later is neither a role nor a member and is skipped.
pub fn overwrites_from_serenity(overwrites: &[PermissionOverwrite]) -> Vec<Overwrite> {
    overwrites
        .iter()
        .filter_map(|ow| {
            let (allow, deny) = (ow.allow.bits(), ow.deny.bits());
            match ow.kind {
                PermissionOverwriteType::Role(id) => Some(Overwrite::role(id.get(), allow, deny)),
                PermissionOverwriteType::Member(id) => {
                    Some(Overwrite::member(id.get(), allow, deny))
                }
                _ => None,
            }
        })
        .collect()
}

impl GuildIndex {
    /// The index of a cached guild. Threads (`guild.threads`) are not channels here: map a
    /// thread's parent instead.
    pub fn from_serenity_guild(
        guild: &Guild,
        mapped_channel_ids: &[u64],
        tiers: TierRoles,
    ) -> Self {
        let mut index = GuildIndex::new(guild.id.get(), guild.owner_id.get(), tiers);
        for (id, role) in &guild.roles {
            index.role_upsert(id.get(), role.permissions.bits());
        }
        for channel in guild.channels.values() {
            index.channel_upsert_serenity(channel);
        }
        index.set_mapped_channels(mapped_channel_ids);
        index.reserve_members(guild.members.len());
        for member in guild.members.values() {
            index.member_upsert_serenity(member);
        }
        index.shrink_to_fit();
        index
    }

    /// CHANNEL_CREATE / CHANNEL_UPDATE from serenity.
    pub fn channel_upsert_serenity(&mut self, channel: &GuildChannel) -> SeatCount {
        let overwrites = overwrites_from_serenity(&channel.permission_overwrites);
        self.channel_overwrites_set(channel.id.get(), &overwrites)
    }

    /// GUILD_MEMBER_ADD / GUILD_MEMBER_UPDATE / a chunk member from serenity.
    pub fn member_upsert_serenity(&mut self, member: &Member) -> SeatCount {
        let roles: smallvec::SmallVec<[u64; 8]> = member.roles.iter().map(|r| r.get()).collect();
        self.member_upsert(member.user.id.get(), &roles, member.user.bot)
    }
}
