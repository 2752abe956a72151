//! Seat count and the live compact guild index.
//!
//! A seat is a distinct non-bot member who can view at least one mapped target channel
//! (DESIGN.md "Seat semantics"). [`count_reference`] is the plain definition, member by member;
//! [`GuildIndex`] gives the same answer from one evaluation per distinct role set and keeps it
//! live under gateway events.

mod event;
mod fixture;
mod index;
mod members;
mod serenity_guild;

pub use event::GuildEvent;
pub use fixture::{parse_fixture, Fixture};
pub use index::GuildIndex;
pub use members::{MemberList, Members, TooManyRoles, MAX_DISTINCT_ROLES};
pub use serenity_guild::{guild_events, overwrites_from_serenity};

use serde::Serialize;

use crate::domain::permissions::{GuildView, Overwrite};
use std::collections::{HashMap, HashSet};

/// The server config's tier role ids (shown as bronze/silver/gold).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TierRoles {
    pub basic: Option<u64>,
    pub advanced: Option<u64>,
    pub pro: Option<u64>,
}

impl TierRoles {
    /// Bit 0 basic, bit 1 advanced, bit 2 pro: which tiers a member with `roles` holds.
    pub(crate) fn mask(&self, roles: &[u64]) -> u8 {
        let has = |tier: Option<u64>| tier.is_some_and(|id| roles.contains(&id));
        u8::from(has(self.basic)) | u8::from(has(self.advanced)) << 1 | u8::from(has(self.pro)) << 2
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TierCounts {
    pub basic: u64,
    pub advanced: u64,
    pub pro: u64,
}

impl TierCounts {
    pub(crate) fn add_mask(&mut self, mask: u8, n: u64) {
        if mask & 1 != 0 {
            self.basic += n;
        }
        if mask & 2 != 0 {
            self.advanced += n;
        }
        if mask & 4 != 0 {
            self.pro += n;
        }
    }

    pub(crate) fn sub_mask(&mut self, mask: u8, n: u64) {
        if mask & 1 != 0 {
            self.basic -= n;
        }
        if mask & 2 != 0 {
            self.advanced -= n;
        }
        if mask & 4 != 0 {
            self.pro -= n;
        }
    }
}

/// A server's seat count: how many members hold a seat, and how many of those hold each tier
/// role.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SeatCount {
    pub seats_used: u64,
    pub by_tier: TierCounts,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSnapshot {
    pub id: u64,
    pub permissions: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSnapshot {
    pub id: u64,
    pub overwrites: Vec<Overwrite>,
}

/// A thread of the guild: judged by its parent channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadSnapshot {
    pub id: u64,
    pub parent_id: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSnapshot {
    pub user_id: u64,
    pub roles: Vec<u64>,
    pub is_bot: bool,
}

/// A whole guild as far as seats are concerned (what GUILD_CREATE plus the member list say).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuildSnapshot {
    pub guild_id: u64,
    pub owner_id: u64,
    /// Includes the `@everyone` role (id = guild id) when the guild has it.
    pub roles: Vec<RoleSnapshot>,
    pub channels: Vec<ChannelSnapshot>,
    /// Threads whose parent must be known: the mapped targets that are threads, at least.
    pub threads: Vec<ThreadSnapshot>,
    pub members: Vec<MemberSnapshot>,
}

/// The seat count straight from the definition: every member against every mapped channel.
/// Slow on purpose (it is the yardstick for [`GuildIndex`]); returns the count and the sorted
/// ids of the counted members. A mapped channel the guild does not have is seen by nobody; a
/// member listed twice counts once, with the last entry winning as in the index.
pub fn count_reference(
    guild: &GuildSnapshot,
    mapped_channel_ids: &[u64],
    tiers: &TierRoles,
) -> (SeatCount, Vec<u64>) {
    let roles: HashMap<u64, u64> = guild.roles.iter().map(|r| (r.id, r.permissions)).collect();
    let view = GuildView {
        guild_id: guild.guild_id,
        owner_id: guild.owner_id,
        roles: &roles,
    };
    let mapped: HashSet<u64> = mapped_channel_ids.iter().copied().collect();
    let channels: Vec<&ChannelSnapshot> = guild
        .channels
        .iter()
        .filter(|c| mapped.contains(&c.id))
        .collect();
    let mut last: HashMap<u64, &MemberSnapshot> = HashMap::new();
    for m in &guild.members {
        last.insert(m.user_id, m);
    }
    let mut count = SeatCount::default();
    let mut ids = Vec::new();
    for m in last.values() {
        if m.is_bot {
            continue;
        }
        if channels
            .iter()
            .any(|c| view.can_view(m.user_id, &m.roles, &c.overwrites))
        {
            // A role the guild no longer has is no tier either.
            let held: Vec<u64> = m
                .roles
                .iter()
                .copied()
                .filter(|r| roles.contains_key(r))
                .collect();
            count.seats_used += 1;
            count.by_tier.add_mask(tiers.mask(&held), 1);
            ids.push(m.user_id);
        }
    }
    ids.sort_unstable();
    (count, ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::permissions::VIEW_CHANNEL;

    const GUILD: u64 = 100;
    const VIP: u64 = 201;
    const BASIC: u64 = 301;

    fn guild(members: Vec<MemberSnapshot>) -> GuildSnapshot {
        GuildSnapshot {
            guild_id: GUILD,
            owner_id: 1,
            roles: vec![
                RoleSnapshot {
                    id: GUILD,
                    permissions: VIEW_CHANNEL,
                },
                RoleSnapshot {
                    id: VIP,
                    permissions: 0,
                },
                RoleSnapshot {
                    id: BASIC,
                    permissions: 0,
                },
            ],
            channels: vec![
                ChannelSnapshot {
                    id: 10,
                    overwrites: vec![Overwrite::role(GUILD, 0, VIEW_CHANNEL)],
                },
                ChannelSnapshot {
                    id: 11,
                    overwrites: vec![
                        Overwrite::role(GUILD, 0, VIEW_CHANNEL),
                        Overwrite::role(VIP, VIEW_CHANNEL, 0),
                    ],
                },
                ChannelSnapshot {
                    id: 12,
                    overwrites: vec![],
                },
            ],
            threads: Vec::new(),
            members,
        }
    }

    fn member(user_id: u64, roles: &[u64], is_bot: bool) -> MemberSnapshot {
        MemberSnapshot {
            user_id,
            roles: roles.to_vec(),
            is_bot,
        }
    }

    fn both(g: &GuildSnapshot, mapped: &[u64], tiers: &TierRoles) -> (SeatCount, Vec<u64>) {
        let reference = count_reference(g, mapped, tiers);
        let index = GuildIndex::build(g, mapped, *tiers);
        assert_eq!(index.seat_count(), reference.0, "index vs reference");
        let fast = GuildIndex::count_snapshot(g, mapped, *tiers);
        assert_eq!(fast, reference.0, "count_snapshot vs reference");
        for threads in [1, 2, 4] {
            let fast = GuildIndex::count_snapshot_on(g, mapped, *tiers, threads);
            assert_eq!(fast, reference.0, "count_snapshot on {threads} threads");
        }
        assert_eq!(index.recount(), reference.0, "live recount vs reference");
        assert_eq!(
            index.counted_member_ids(),
            reference.1,
            "index vs reference"
        );
        reference
    }

    #[test]
    fn bots_never_counted_even_when_they_can_view() {
        let g = guild(vec![member(5, &[VIP], true), member(6, &[VIP], false)]);
        let (count, ids) = both(&g, &[11, 12], &TierRoles::default());
        assert_eq!(count.seats_used, 1);
        assert_eq!(ids, vec![6]);
    }

    #[test]
    fn bot_owner_is_not_counted() {
        let mut g = guild(vec![member(1, &[], true)]);
        g.owner_id = 1;
        let (count, _) = both(&g, &[10], &TierRoles::default());
        assert_eq!(count.seats_used, 0);
    }

    #[test]
    fn member_seeing_two_mapped_channels_counts_once() {
        let tiers = TierRoles {
            basic: Some(BASIC),
            ..TierRoles::default()
        };
        let g = guild(vec![member(5, &[VIP, BASIC], false)]);
        let (count, ids) = both(&g, &[11, 12], &tiers);
        assert_eq!(count.seats_used, 1);
        assert_eq!(count.by_tier.basic, 1);
        assert_eq!(ids, vec![5]);
    }

    #[test]
    fn unmapped_channel_does_not_count() {
        // Member 5 sees channel 12, which is not mapped; channel 10 is private.
        let g = guild(vec![member(5, &[], false)]);
        let (count, _) = both(&g, &[10], &TierRoles::default());
        assert_eq!(count.seats_used, 0);
        let (count, _) = both(&g, &[10, 12], &TierRoles::default());
        assert_eq!(count.seats_used, 1);
    }

    #[test]
    fn owner_and_administrators_count() {
        let mut g = guild(vec![member(1, &[], false), member(7, &[400], false)]);
        g.roles.push(RoleSnapshot {
            id: 400,
            permissions: crate::domain::permissions::ADMINISTRATOR,
        });
        let (count, ids) = both(&g, &[10], &TierRoles::default());
        assert_eq!(count.seats_used, 2);
        assert_eq!(ids, vec![1, 7]);
    }

    #[test]
    fn mapped_channel_missing_from_guild_is_seen_by_nobody() {
        let g = guild(vec![member(1, &[], false), member(5, &[], false)]);
        let (count, _) = both(&g, &[999], &TierRoles::default());
        assert_eq!(count.seats_used, 0);
    }

    #[test]
    fn tier_breakdown_counts_only_counted_members() {
        let tiers = TierRoles {
            basic: Some(BASIC),
            advanced: Some(VIP),
            pro: None,
        };
        let g = guild(vec![
            member(5, &[BASIC], false),
            member(6, &[BASIC, VIP], false),
            member(7, &[VIP], false),
        ]);
        let (count, ids) = both(&g, &[11], &tiers);
        assert_eq!(ids, vec![6, 7]);
        assert_eq!(
            count.by_tier,
            TierCounts {
                basic: 1,
                advanced: 2,
                pro: 0
            }
        );
    }
}
