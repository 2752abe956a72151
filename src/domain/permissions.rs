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
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum OverwriteTarget {
    Role(u64),
    Member(u64),
}

/// One entry of a channel's `permission_overwrites`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
        for (applies, layer) in member_overwrites(guild_id, user_id, member_roles, overwrites) {
            let into = match applies {
                Applies::Everyone => &mut layers.everyone,
                Applies::Role(_) => &mut layers.roles,
                Applies::Member => &mut layers.member,
            };
            *into = into.merge(layer);
        }
        layers
    }
}

/// Which layer an overwrite that concerns a member belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applies {
    Everyone,
    Role(u64),
    Member,
}

/// The overwrites of `overwrites` that concern a member with `user_id` holding
/// `member_roles`, each with its layer.
pub fn member_overwrites<'a>(
    guild_id: u64,
    user_id: u64,
    member_roles: &'a [u64],
    overwrites: &'a [Overwrite],
) -> impl Iterator<Item = (Applies, Layer)> + 'a {
    overwrites.iter().filter_map(move |ow| {
        let layer = Layer {
            allow: ow.allow,
            deny: ow.deny,
        };
        let applies = match ow.target {
            OverwriteTarget::Role(id) if id == guild_id => Applies::Everyone,
            OverwriteTarget::Role(id) if member_roles.contains(&id) => Applies::Role(id),
            OverwriteTarget::Member(id) if id == user_id => Applies::Member,
            _ => return None,
        };
        Some((applies, layer))
    })
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

/// The rule that lets a member see a channel, as the admin page explains a seat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Via {
    /// The guild's owner sees every channel.
    Owner,
    /// ADMINISTRATOR, through `role_id` (the guild id for `@everyone`).
    Administrator,
    /// `@everyone` may view: by the role's permissions or the channel's `@everyone` allow.
    Everyone,
    /// Role `role_id`'s permissions allow viewing (no overwrite decides).
    Role,
    /// The channel's allow overwrite for role `role_id`.
    RoleOverwrite,
    /// The channel's allow overwrite for the member.
    MemberOverwrite,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Owner => "owner",
            Via::Administrator => "administrator",
            Via::Everyone => "everyone",
            Via::Role => "role",
            Via::RoleOverwrite => "role_overwrite",
            Via::MemberOverwrite => "member_overwrite",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sight {
    pub via: Via,
    pub role_id: Option<u64>,
}

/// What decides one member's VIEW_CHANNEL in one channel: `roles` are the member's roles the
/// guild has, with their permissions, in the order to name them (the first that causes
/// sight is named); `role_layers` the channel's overwrites for those roles.
#[derive(Debug, Clone, Copy)]
pub struct SightInputs<'a> {
    pub guild_id: u64,
    pub is_owner: bool,
    pub everyone: u64,
    pub roles: &'a [(u64, u64)],
    pub everyone_layer: Layer,
    pub role_layers: &'a [(u64, Layer)],
    pub member_layer: Layer,
}

/// Why the member sees the channel, following Discord's order (owner, ADMINISTRATOR, then
/// the member's overwrite, the roles' overwrites, `@everyone`'s, then the base permissions):
/// the first step that sets VIEW_CHANNEL is the reason; `None` when the member cannot see
/// it. Agrees with [`apply_layers`] on every input (tested below).
pub fn sight(i: &SightInputs<'_>) -> Option<Sight> {
    let because = |via, role_id| Some(Sight { via, role_id });
    if i.is_owner {
        return because(Via::Owner, None);
    }
    if i.everyone & ADMINISTRATOR != 0 {
        return because(Via::Administrator, Some(i.guild_id));
    }
    if let Some((id, _)) = i.roles.iter().find(|(_, p)| p & ADMINISTRATOR != 0) {
        return because(Via::Administrator, Some(*id));
    }
    if i.member_layer.allow & VIEW_CHANNEL != 0 {
        return because(Via::MemberOverwrite, None);
    }
    if i.member_layer.deny & VIEW_CHANNEL != 0 {
        return None;
    }
    if let Some((id, _)) = i
        .role_layers
        .iter()
        .find(|(_, l)| l.allow & VIEW_CHANNEL != 0)
    {
        return because(Via::RoleOverwrite, Some(*id));
    }
    if i.role_layers
        .iter()
        .any(|(_, l)| l.deny & VIEW_CHANNEL != 0)
    {
        return None;
    }
    if i.everyone_layer.allow & VIEW_CHANNEL != 0 {
        return because(Via::Everyone, None);
    }
    if i.everyone_layer.deny & VIEW_CHANNEL != 0 {
        return None;
    }
    if i.everyone & VIEW_CHANNEL != 0 {
        return because(Via::Everyone, None);
    }
    i.roles
        .iter()
        .find(|(_, p)| p & VIEW_CHANNEL != 0)
        .and_then(|(id, _)| because(Via::Role, Some(*id)))
}

impl GuildView<'_> {
    /// [`sight`] for a member holding `member_roles` in a channel with `overwrites`.
    pub fn sight(
        &self,
        user_id: u64,
        member_roles: &[u64],
        overwrites: &[Overwrite],
    ) -> Option<Sight> {
        let held: Vec<u64> = member_roles
            .iter()
            .copied()
            .filter(|id| *id != self.guild_id && self.roles.contains_key(id))
            .collect();
        let roles: Vec<(u64, u64)> = held
            .iter()
            .filter_map(|id| self.roles.get(id).map(|p| (*id, *p)))
            .collect();
        let mut everyone_layer = Layer::default();
        let mut member_layer = Layer::default();
        let mut role_layers: Vec<(u64, Layer)> = Vec::new();
        for (applies, layer) in member_overwrites(self.guild_id, user_id, &held, overwrites) {
            match applies {
                Applies::Everyone => everyone_layer = everyone_layer.merge(layer),
                Applies::Role(id) => role_layers.push((id, layer)),
                Applies::Member => member_layer = member_layer.merge(layer),
            }
        }
        sight(&SightInputs {
            guild_id: self.guild_id,
            is_owner: user_id == self.owner_id,
            everyone: self.roles.get(&self.guild_id).copied().unwrap_or(0),
            roles: &roles,
            everyone_layer,
            role_layers: &role_layers,
            member_layer,
        })
    }
}

#[cfg(test)]
mod sight_tests {
    use super::*;

    const GUILD: u64 = 100;
    const OWNER: u64 = 1;
    const ALICE: u64 = 2;
    const SUB: u64 = 300;
    const ADMIN: u64 = 301;

    fn view(roles: &HashMap<u64, u64>) -> GuildView<'_> {
        GuildView {
            guild_id: GUILD,
            owner_id: OWNER,
            roles,
        }
    }

    fn why(via: Via, role_id: Option<u64>) -> Option<Sight> {
        Some(Sight { via, role_id })
    }

    #[test]
    fn the_owner_sees_through_ownership_even_where_everyone_is_denied() {
        let roles = HashMap::from([(GUILD, 0)]);
        let deny = [Overwrite::role(GUILD, 0, VIEW_CHANNEL)];
        assert_eq!(view(&roles).sight(OWNER, &[], &deny), why(Via::Owner, None));
    }

    #[test]
    fn an_administrator_role_is_named_as_the_cause() {
        let roles = HashMap::from([(GUILD, 0), (SUB, VIEW_CHANNEL), (ADMIN, ADMINISTRATOR)]);
        let deny = [Overwrite::member(ALICE, 0, VIEW_CHANNEL)];
        assert_eq!(
            view(&roles).sight(ALICE, &[SUB, ADMIN], &deny),
            why(Via::Administrator, Some(ADMIN)),
            "ADMINISTRATOR passes every overwrite"
        );
    }

    #[test]
    fn everyone_allowed_by_the_role_or_by_the_channel() {
        let open = HashMap::from([(GUILD, VIEW_CHANNEL)]);
        assert_eq!(view(&open).sight(ALICE, &[], &[]), why(Via::Everyone, None));
        let closed = HashMap::from([(GUILD, 0)]);
        let allow = [Overwrite::role(GUILD, VIEW_CHANNEL, 0)];
        assert_eq!(
            view(&closed).sight(ALICE, &[], &allow),
            why(Via::Everyone, None)
        );
        assert_eq!(view(&closed).sight(ALICE, &[], &[]), None);
    }

    #[test]
    fn a_roles_permissions_are_named_when_no_overwrite_decides() {
        let roles = HashMap::from([(GUILD, 0), (SUB, VIEW_CHANNEL)]);
        assert_eq!(
            view(&roles).sight(ALICE, &[SUB], &[]),
            why(Via::Role, Some(SUB))
        );
    }

    #[test]
    fn a_role_overwrite_beats_everyones_deny_and_names_its_role() {
        let roles = HashMap::from([(GUILD, VIEW_CHANNEL), (SUB, 0)]);
        let ows = [
            Overwrite::role(GUILD, 0, VIEW_CHANNEL),
            Overwrite::role(SUB, VIEW_CHANNEL, 0),
        ];
        assert_eq!(
            view(&roles).sight(ALICE, &[SUB], &ows),
            why(Via::RoleOverwrite, Some(SUB))
        );
        assert_eq!(view(&roles).sight(ALICE, &[], &ows), None);
    }

    #[test]
    fn a_member_overwrite_beats_a_roles_deny() {
        let roles = HashMap::from([(GUILD, 0), (SUB, VIEW_CHANNEL)]);
        let ows = [
            Overwrite::role(SUB, 0, VIEW_CHANNEL),
            Overwrite::member(ALICE, VIEW_CHANNEL, 0),
        ];
        assert_eq!(
            view(&roles).sight(ALICE, &[SUB], &ows),
            why(Via::MemberOverwrite, None)
        );
    }

    #[test]
    fn a_reason_is_given_exactly_when_the_member_can_view() {
        // Every combination of the guild-level and overwrite-level choices for one role.
        let levels = [0, VIEW_CHANNEL, ADMINISTRATOR];
        let layers = [None, Some((VIEW_CHANNEL, 0)), Some((0, VIEW_CHANNEL))];
        let mut cases = 0;
        for everyone in levels {
            for sub in levels {
                for ow_everyone in layers {
                    for ow_sub in layers {
                        for ow_member in layers {
                            for holds in [false, true] {
                                for user in [OWNER, ALICE] {
                                    let roles = HashMap::from([(GUILD, everyone), (SUB, sub)]);
                                    let mut ows = Vec::new();
                                    if let Some((a, d)) = ow_everyone {
                                        ows.push(Overwrite::role(GUILD, a, d));
                                    }
                                    if let Some((a, d)) = ow_sub {
                                        ows.push(Overwrite::role(SUB, a, d));
                                    }
                                    if let Some((a, d)) = ow_member {
                                        ows.push(Overwrite::member(user, a, d));
                                    }
                                    let member_roles: &[u64] = if holds { &[SUB] } else { &[] };
                                    let v = view(&roles);
                                    assert_eq!(
                                        v.sight(user, member_roles, &ows).is_some(),
                                        v.can_view(user, member_roles, &ows),
                                        "{everyone} {sub} {ows:?} {holds} {user}"
                                    );
                                    cases += 1;
                                }
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(cases, 972);
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
