//! The sandbox's own permission checks, computed with twilight-util's `PermissionCalculator`
//! so that they stay independent of the product's seat engine (`crate::domain::permissions`).

use twilight_model::channel::permission_overwrite::{
    PermissionOverwrite as TwOverwrite, PermissionOverwriteType,
};
use twilight_model::channel::ChannelType;
use twilight_model::guild::Permissions;
use twilight_model::id::Id;
use twilight_util::permission_calculator::PermissionCalculator;

use super::model::{Channel, Guild, OVERWRITE_MEMBER};

pub const ADMINISTRATOR: u64 = 1 << 3;
pub const MANAGE_CHANNELS: u64 = 1 << 4;
pub const VIEW_CHANNEL: u64 = 1 << 10;
pub const SEND_MESSAGES: u64 = 1 << 11;
pub const MANAGE_MESSAGES: u64 = 1 << 13;
pub const READ_MESSAGE_HISTORY: u64 = 1 << 16;
pub const MANAGE_ROLES: u64 = 1 << 28;
pub const MANAGE_WEBHOOKS: u64 = 1 << 29;

fn nz(id: u64) -> Option<u64> {
    (id != 0).then_some(id)
}

fn member_roles(
    guild: &Guild,
    user_id: u64,
) -> Vec<(Id<twilight_model::id::marker::RoleMarker>, Permissions)> {
    let Some(member) = guild.members.get(&user_id) else {
        return Vec::new();
    };
    member
        .roles
        .iter()
        .filter(|r| **r != guild.id)
        .filter_map(|r| {
            let role = guild.roles.get(r)?;
            Some((
                Id::new(nz(role.id)?),
                Permissions::from_bits_truncate(role.permissions),
            ))
        })
        .collect()
}

fn everyone(guild: &Guild) -> Permissions {
    Permissions::from_bits_truncate(guild.roles.get(&guild.id).map_or(0, |r| r.permissions))
}

/// Guild-level permissions of a member (0 when not a member).
pub fn guild_permissions(guild: &Guild, user_id: u64) -> u64 {
    let (Some(gid), Some(uid), Some(owner)) = (nz(guild.id), nz(user_id), nz(guild.owner_id))
    else {
        return 0;
    };
    if !guild.members.contains_key(&user_id) {
        return 0;
    }
    let roles = member_roles(guild, user_id);
    PermissionCalculator::new(Id::new(gid), Id::new(uid), everyone(guild), &roles)
        .owner_id(Id::new(owner))
        .root()
        .bits()
}

/// Channel-level permissions of a member (0 when not a member).
pub fn channel_permissions(guild: &Guild, channel: &Channel, user_id: u64) -> u64 {
    let (Some(gid), Some(uid), Some(owner)) = (nz(guild.id), nz(user_id), nz(guild.owner_id))
    else {
        return 0;
    };
    if !guild.members.contains_key(&user_id) {
        return 0;
    }
    let roles = member_roles(guild, user_id);
    let overwrites: Vec<TwOverwrite> = channel
        .overwrites
        .iter()
        .filter_map(|o| {
            Some(TwOverwrite {
                allow: Permissions::from_bits_truncate(o.allow),
                deny: Permissions::from_bits_truncate(o.deny),
                id: Id::new(nz(o.id)?),
                kind: if o.kind == OVERWRITE_MEMBER {
                    PermissionOverwriteType::Member
                } else {
                    PermissionOverwriteType::Role
                },
            })
        })
        .collect();
    PermissionCalculator::new(Id::new(gid), Id::new(uid), everyone(guild), &roles)
        .owner_id(Id::new(owner))
        .in_channel(ChannelType::from(channel.kind), &overwrites)
        .bits()
}

/// Highest role position of a member (the owner outranks everyone).
pub fn highest_position(guild: &Guild, user_id: u64) -> i64 {
    if guild.owner_id == user_id {
        return i64::MAX;
    }
    guild
        .members
        .get(&user_id)
        .map(|m| {
            m.roles
                .iter()
                .filter_map(|r| guild.roles.get(r).map(|r| r.position))
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(i64::MIN)
}
