//! Building and feeding a [`GuildIndex`] from serenity's model types (GUILD_CREATE as cached,
//! CHANNEL_UPDATE, GUILD_MEMBER_UPDATE), so the auditor needs no conversion code of its own.

use serenity::model::channel::{GuildChannel, PermissionOverwrite, PermissionOverwriteType};
use serenity::model::guild::{Guild, Member};

use super::{GuildIndex, SeatCount, TierRoles};
use crate::domain::permissions::Overwrite;

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
