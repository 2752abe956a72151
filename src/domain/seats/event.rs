//! A change to a target guild, carrying the absolute state Discord reported (a member's whole
//! role list, a channel's whole overwrite list), so that applying the same event twice, or
//! applying events on top of a member list read after some of them happened, gives the state
//! after the last one. Applied in gateway order, a sequence of them ends at Discord's state.

use super::{GuildIndex, SeatCount};
use crate::domain::permissions::Overwrite;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuildEvent {
    /// GUILD_MEMBER_ADD, GUILD_MEMBER_UPDATE: the member's whole role list.
    MemberUpsert {
        user_id: u64,
        roles: Vec<u64>,
        bot: bool,
    },
    /// GUILD_MEMBER_REMOVE.
    MemberRemove { user_id: u64 },
    /// GUILD_ROLE_CREATE, GUILD_ROLE_UPDATE.
    RoleUpsert { role_id: u64, permissions: u64 },
    /// GUILD_ROLE_DELETE.
    RoleRemove { role_id: u64 },
    /// CHANNEL_CREATE, CHANNEL_UPDATE: the channel's whole overwrite list.
    ChannelUpsert {
        channel_id: u64,
        overwrites: Vec<Overwrite>,
    },
    /// CHANNEL_DELETE.
    ChannelRemove { channel_id: u64 },
    /// THREAD_CREATE, THREAD_UPDATE, THREAD_LIST_SYNC: a thread and its parent.
    ThreadUpsert { thread_id: u64, parent_id: u64 },
    /// THREAD_DELETE.
    ThreadRemove { thread_id: u64 },
    /// GUILD_UPDATE: the guild's owner.
    OwnerChanged { owner_id: u64 },
}

impl GuildEvent {
    /// A member event (the others are guild-wide).
    pub fn user_id(&self) -> Option<u64> {
        match self {
            GuildEvent::MemberUpsert { user_id, .. } | GuildEvent::MemberRemove { user_id } => {
                Some(*user_id)
            }
            _ => None,
        }
    }
}

impl GuildIndex {
    /// Applies one event; returns the new count.
    pub fn apply(&mut self, event: &GuildEvent) -> SeatCount {
        match event {
            GuildEvent::MemberUpsert {
                user_id,
                roles,
                bot,
            } => self.member_upsert(*user_id, roles, *bot),
            GuildEvent::MemberRemove { user_id } => self.member_remove(*user_id),
            GuildEvent::RoleUpsert {
                role_id,
                permissions,
            } => self.role_upsert(*role_id, *permissions),
            GuildEvent::RoleRemove { role_id } => self.role_remove(*role_id),
            GuildEvent::ChannelUpsert {
                channel_id,
                overwrites,
            } => self.channel_overwrites_set(*channel_id, overwrites),
            GuildEvent::ChannelRemove { channel_id } => self.channel_remove(*channel_id),
            GuildEvent::ThreadUpsert {
                thread_id,
                parent_id,
            } => self.thread_upsert(*thread_id, *parent_id),
            GuildEvent::ThreadRemove { thread_id } => self.thread_remove(*thread_id),
            GuildEvent::OwnerChanged { owner_id } => {
                if *owner_id == self.owner_id() {
                    self.seat_count()
                } else {
                    self.set_owner(*owner_id)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::permissions::VIEW_CHANNEL;
    use crate::domain::seats::TierRoles;

    const GUILD: u64 = 100;
    const VIP: u64 = 201;
    const FEED: u64 = 10;
    const THREAD: u64 = 50;

    fn index() -> GuildIndex {
        let mut ix = GuildIndex::new(GUILD, 1, TierRoles::default());
        ix.apply(&GuildEvent::RoleUpsert {
            role_id: GUILD,
            permissions: VIEW_CHANNEL,
        });
        ix.apply(&GuildEvent::RoleUpsert {
            role_id: VIP,
            permissions: 0,
        });
        ix.apply(&GuildEvent::ChannelUpsert {
            channel_id: FEED,
            overwrites: vec![
                Overwrite::role(GUILD, 0, VIEW_CHANNEL),
                Overwrite::role(VIP, VIEW_CHANNEL, 0),
            ],
        });
        ix
    }

    fn join(user_id: u64) -> GuildEvent {
        GuildEvent::MemberUpsert {
            user_id,
            roles: vec![VIP],
            bot: false,
        }
    }

    #[test]
    fn events_carry_absolute_state_so_replaying_them_changes_nothing() {
        let mut ix = index();
        ix.map_channel(FEED);
        let events = [join(5), join(6), GuildEvent::MemberRemove { user_id: 5 }];
        for e in &events {
            ix.apply(e);
        }
        assert_eq!(ix.seat_count().seats_used, 1);
        for e in &events {
            ix.apply(e);
        }
        assert_eq!(ix.seat_count().seats_used, 1, "the same events again");
    }

    #[test]
    fn a_mapped_thread_is_judged_by_its_parent() {
        let mut ix = index();
        ix.apply(&join(5));
        ix.apply(&GuildEvent::MemberUpsert {
            user_id: 6,
            roles: vec![],
            bot: false,
        });
        ix.map_channel(THREAD);
        assert_eq!(ix.unresolved_targets(), vec![THREAD]);
        assert_eq!(ix.seat_count().seats_used, 0, "parent not known yet");
        let count = ix.apply(&GuildEvent::ThreadUpsert {
            thread_id: THREAD,
            parent_id: FEED,
        });
        assert_eq!(
            count.seats_used, 1,
            "5 sees the thread through VIP on its parent; 6 does not"
        );
        assert!(ix.unresolved_targets().is_empty());
        assert_eq!(ix.mapped_channel_ids(), vec![FEED]);
        let count = ix.apply(&GuildEvent::ThreadRemove { thread_id: THREAD });
        assert_eq!(count.seats_used, 0, "a deleted thread is seen by nobody");
    }

    #[test]
    fn owner_change_moves_the_seat() {
        let mut ix = index();
        ix.map_channel(FEED);
        for user in [1, 7] {
            ix.apply(&GuildEvent::MemberUpsert {
                user_id: user,
                roles: vec![],
                bot: false,
            });
        }
        assert_eq!(ix.counted_member_ids(), vec![1]);
        ix.apply(&GuildEvent::OwnerChanged { owner_id: 7 });
        assert_eq!(ix.counted_member_ids(), vec![7]);
    }
}
