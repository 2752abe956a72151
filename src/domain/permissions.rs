//! Discord's permission algorithm for the VIEW_CHANNEL decision (DESIGN.md "Seat semantics").
//!
//! Plain ids (`u64`) and permission bits (`u64`). The algorithm is split into its steps
//! (`base_permissions`, `OverwriteLayers::for_member`, `apply_layers`) so the seat index can
//! compute the role-dependent part once per distinct role set and reuse it for every member
//! holding that set.

use std::collections::HashMap;

pub const ADMINISTRATOR: u64 = 1 << 3;
pub const VIEW_CHANNEL: u64 = 1 << 10;
/// "Every permission": what the owner and administrators get.
pub const ALL: u64 = u64::MAX;

/// Whom a channel overwrite targets. The `@everyone` overwrite is `Role(guild_id)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OverwriteTarget {
    Role(u64),
    Member(u64),
}

/// One entry of a channel's `permission_overwrites`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overwrite {
    pub target: OverwriteTarget,
    pub allow: u64,
    pub deny: u64,
}

impl Overwrite {
    pub fn role(role_id: u64, allow: u64, deny: u64) -> Self {
        Self {
            target: OverwriteTarget::Role(role_id),
            allow,
            deny,
        }
    }

    pub fn member(user_id: u64, allow: u64, deny: u64) -> Self {
        Self {
            target: OverwriteTarget::Member(user_id),
            allow,
            deny,
        }
    }
}

/// An allow/deny pair: applying it clears `deny`, then sets `allow`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Layer {
    pub allow: u64,
    pub deny: u64,
}

impl Layer {
    pub fn apply(self, permissions: u64) -> u64 {
        (permissions & !self.deny) | self.allow
    }

    /// Several overwrites of one layer act together: their denies and allows are OR'd.
    pub fn merge(self, other: Layer) -> Layer {
        Layer {
            allow: self.allow | other.allow,
            deny: self.deny | other.deny,
        }
    }
}

/// The three overwrite layers of one channel as they apply to one member.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OverwriteLayers {
    pub everyone: Layer,
    pub roles: Layer,
    pub member: Layer,
}

impl OverwriteLayers {
    /// Picks the overwrites of `overwrites` that concern a member with `user_id` holding
    /// `member_roles` (only roles the guild has: see [`GuildView::permissions_in`]). Discord
    /// never sends two overwrites for one target; if it did, they would be OR'd within their
    /// layer (so the result does not depend on their order).
    pub fn for_member(
        guild_id: u64,
        user_id: u64,
        member_roles: &[u64],
        overwrites: &[Overwrite],
    ) -> Self {
        let mut layers = OverwriteLayers::default();
        for ow in overwrites {
            let layer = Layer {
                allow: ow.allow,
                deny: ow.deny,
            };
            match ow.target {
                OverwriteTarget::Role(id) if id == guild_id => {
                    layers.everyone = layers.everyone.merge(layer)
                }
                OverwriteTarget::Role(id) if member_roles.contains(&id) => {
                    layers.roles = layers.roles.merge(layer)
                }
                OverwriteTarget::Member(id) if id == user_id => {
                    layers.member = layers.member.merge(layer)
                }
                _ => {}
            }
        }
        layers
    }
}

/// Step 2: `@everyone` OR every role the member has; ADMINISTRATOR means every permission.
/// A role id the guild does not know (a deleted role) contributes nothing.
pub fn base_permissions(
    everyone: u64,
    member_roles: &[u64],
    role_permissions: impl Fn(u64) -> Option<u64>,
) -> u64 {
    let base = member_roles
        .iter()
        .fold(everyone, |acc, id| acc | role_permissions(*id).unwrap_or(0));
    if base & ADMINISTRATOR != 0 {
        ALL
    } else {
        base
    }
}

/// Step 3 on a base computed by [`base_permissions`]: `@everyone`, then roles, then member.
pub fn apply_layers(base: u64, layers: &OverwriteLayers) -> u64 {
    if base & ADMINISTRATOR != 0 {
        return ALL;
    }
    layers
        .member
        .apply(layers.roles.apply(layers.everyone.apply(base)))
}

/// What the algorithm needs to know about a guild.
#[derive(Debug, Clone, Copy)]
pub struct GuildView<'a> {
    pub guild_id: u64,
    pub owner_id: u64,
    /// Role id -> permissions, including the `@everyone` role (id = guild id). A missing
    /// `@everyone` role counts as no permissions.
    pub roles: &'a HashMap<u64, u64>,
}

impl GuildView<'_> {
    /// The member's permissions in a channel with `overwrites` (steps 1 to 3).
    ///
    /// Only the roles the guild has count as the member's: a role id the member still lists
    /// after the role was deleted grants nothing, at guild level or through an overwrite that
    /// still names it. Discord removes a deleted role from every member, and discord.js (the
    /// original system's engine) keeps only the guild's roles; serenity's
    /// `user_permissions_in` still applies such an overwrite (DESIGN.md "Seat semantics").
    pub fn permissions_in(
        &self,
        user_id: u64,
        member_roles: &[u64],
        overwrites: &[Overwrite],
    ) -> u64 {
        if user_id == self.owner_id {
            return ALL;
        }
        let roles: smallvec::SmallVec<[u64; 8]> = member_roles
            .iter()
            .copied()
            .filter(|id| self.roles.contains_key(id))
            .collect();
        let everyone = self.roles.get(&self.guild_id).copied().unwrap_or(0);
        let base = base_permissions(everyone, &roles, |id| self.roles.get(&id).copied());
        let layers = OverwriteLayers::for_member(self.guild_id, user_id, &roles, overwrites);
        apply_layers(base, &layers)
    }

    /// Step 4: can the member see the channel?
    pub fn can_view(&self, user_id: u64, member_roles: &[u64], overwrites: &[Overwrite]) -> bool {
        self.permissions_in(user_id, member_roles, overwrites) & VIEW_CHANNEL != 0
    }

    /// A thread has no overwrites of its own that matter: pass its parent channel's.
    pub fn can_view_thread(
        &self,
        user_id: u64,
        member_roles: &[u64],
        parent_overwrites: &[Overwrite],
    ) -> bool {
        self.can_view(user_id, member_roles, parent_overwrites)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUILD: u64 = 100;
    const OWNER: u64 = 1;
    const ALICE: u64 = 2;
    const MOD: u64 = 200;
    const VIP: u64 = 201;
    const ADMIN_ROLE: u64 = 202;
    const SEND: u64 = 1 << 11;

    fn roles(everyone: u64) -> HashMap<u64, u64> {
        HashMap::from([
            (GUILD, everyone),
            (MOD, SEND),
            (VIP, 0),
            (ADMIN_ROLE, ADMINISTRATOR),
        ])
    }

    fn view(roles: &HashMap<u64, u64>) -> GuildView<'_> {
        GuildView {
            guild_id: GUILD,
            owner_id: OWNER,
            roles,
        }
    }

    fn private() -> Overwrite {
        Overwrite::role(GUILD, 0, VIEW_CHANNEL)
    }

    #[test]
    fn owner_sees_all() {
        let r = roles(0);
        let g = view(&r);
        let ows = [private(), Overwrite::member(OWNER, 0, VIEW_CHANNEL)];
        assert!(g.can_view(OWNER, &[], &ows));
        assert_eq!(g.permissions_in(OWNER, &[], &ows), ALL);
        assert!(!g.can_view(ALICE, &[], &ows));
    }

    #[test]
    fn administrator_role_sees_all_despite_deny() {
        let r = roles(VIEW_CHANNEL);
        let g = view(&r);
        let ows = [
            private(),
            Overwrite::role(ADMIN_ROLE, 0, VIEW_CHANNEL),
            Overwrite::member(ALICE, 0, VIEW_CHANNEL),
        ];
        assert!(g.can_view(ALICE, &[ADMIN_ROLE], &ows));
        assert!(!g.can_view(ALICE, &[], &ows));
    }

    #[test]
    fn administrator_on_everyone_role_sees_all() {
        let r = roles(ADMINISTRATOR);
        let g = view(&r);
        assert!(g.can_view(ALICE, &[], &[private()]));
    }

    #[test]
    fn everyone_deny_plus_role_allow() {
        let r = roles(VIEW_CHANNEL);
        let g = view(&r);
        let ows = [private(), Overwrite::role(VIP, VIEW_CHANNEL, 0)];
        assert!(g.can_view(ALICE, &[VIP], &ows));
        assert!(!g.can_view(ALICE, &[MOD], &ows));
    }

    #[test]
    fn role_deny_plus_member_allow() {
        let r = roles(VIEW_CHANNEL);
        let g = view(&r);
        let ows = [
            Overwrite::role(MOD, 0, VIEW_CHANNEL),
            Overwrite::member(ALICE, VIEW_CHANNEL, 0),
        ];
        assert!(g.can_view(ALICE, &[MOD], &ows));
        assert!(!g.can_view(ALICE + 1, &[MOD], &ows));
    }

    #[test]
    fn member_deny_beats_role_allow() {
        let r = roles(0);
        let g = view(&r);
        let ows = [
            Overwrite::role(VIP, VIEW_CHANNEL, 0),
            Overwrite::member(ALICE, 0, VIEW_CHANNEL),
        ];
        assert!(!g.can_view(ALICE, &[VIP], &ows));
        assert!(g.can_view(ALICE + 1, &[VIP], &ows));
    }

    #[test]
    fn conflicting_role_overwrites_allow_wins() {
        let r = roles(VIEW_CHANNEL);
        let g = view(&r);
        let ows = [
            Overwrite::role(MOD, 0, VIEW_CHANNEL),
            Overwrite::role(VIP, VIEW_CHANNEL, 0),
        ];
        // Both orders of the overwrites and of the member's roles give the same answer.
        assert!(g.can_view(ALICE, &[MOD, VIP], &ows));
        assert!(g.can_view(ALICE, &[VIP, MOD], &[ows[1], ows[0]]));
        assert!(!g.can_view(ALICE, &[MOD], &ows));
    }

    #[test]
    fn role_allow_beats_everyone_deny_but_everyone_allow_loses_to_role_deny() {
        let r = roles(0);
        let g = view(&r);
        let ows = [
            Overwrite::role(GUILD, VIEW_CHANNEL, 0),
            Overwrite::role(MOD, 0, VIEW_CHANNEL),
        ];
        assert!(g.can_view(ALICE, &[], &ows));
        assert!(!g.can_view(ALICE, &[MOD], &ows));
    }

    #[test]
    fn deleted_role_grants_nothing_even_through_an_overwrite_still_naming_it() {
        let r = roles(0);
        let g = view(&r);
        const DELETED: u64 = 999;
        // Not at guild level...
        assert!(!g.can_view(ALICE, &[DELETED], &[]));
        // ...and not through an overwrite left behind for it: Discord removed the role from
        // every member, so nobody holds it (serenity's calculator differs here).
        let ows = [Overwrite::role(DELETED, VIEW_CHANNEL, 0)];
        assert!(!g.can_view(ALICE, &[DELETED], &ows));
        // Nor does its deny take anything away.
        let r = roles(VIEW_CHANNEL);
        let g = view(&r);
        let ows = [Overwrite::role(DELETED, 0, VIEW_CHANNEL)];
        assert!(g.can_view(ALICE, &[DELETED], &ows));
        // An existing role's overwrite still applies beside it.
        let ows = [Overwrite::role(VIP, VIEW_CHANNEL, 0)];
        let r = roles(0);
        let g = view(&r);
        assert!(g.can_view(ALICE, &[DELETED, VIP], &ows));
    }

    #[test]
    fn no_everyone_overwrite() {
        let r = roles(VIEW_CHANNEL);
        let g = view(&r);
        assert!(g.can_view(ALICE, &[], &[]));
        let ows = [Overwrite::role(MOD, 0, VIEW_CHANNEL)];
        assert!(g.can_view(ALICE, &[], &ows));
        assert!(!g.can_view(ALICE, &[MOD], &ows));
    }

    #[test]
    fn missing_everyone_role_grants_nothing() {
        let r = HashMap::from([(MOD, VIEW_CHANNEL)]);
        let g = view(&r);
        assert!(!g.can_view(ALICE, &[], &[]));
        assert!(g.can_view(ALICE, &[MOD], &[]));
    }

    #[test]
    fn thread_parent_decides() {
        let r = roles(VIEW_CHANNEL);
        let g = view(&r);
        let parent = [private(), Overwrite::role(VIP, VIEW_CHANNEL, 0)];
        assert!(g.can_view_thread(ALICE, &[VIP], &parent));
        assert!(!g.can_view_thread(ALICE, &[], &parent));
    }

    #[test]
    fn other_bits_do_not_leak_into_view() {
        let r = roles(SEND);
        let g = view(&r);
        assert!(!g.can_view(ALICE, &[], &[]));
        assert!(g.permissions_in(ALICE, &[], &[]) & SEND != 0);
    }
}
