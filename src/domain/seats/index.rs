//! The live guild index: one entry per distinct role set, members as `user id -> role set`.
//!
//! Members with the same roles see the same channels, so visibility is computed once per
//! distinct role set per mapped channel and kept as one bit per (mapped channel, role set).
//! Every role set carries its count of "regular" members; the seat total is the sum over the
//! role sets that see at least one mapped channel, maintained incrementally.
//!
//! The members whose answer does not follow from their roles alone are "special" and are
//! evaluated one by one: the owner (sees everything) and members named by a member
//! overwrite on a mapped channel. Bots are never counted and never stored, apart from their
//! ids.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use smallvec::SmallVec;

mod scan;

use super::{GuildSnapshot, Members, SeatCount, TierRoles};
use crate::domain::permissions::{
    apply_layers, base_permissions, sight, Layer, Overwrite, OverwriteLayers, OverwriteTarget,
    Sight, SightInputs, ADMINISTRATOR, VIEW_CHANNEL,
};

/// Hasher for Discord ids: the splitmix64 finaliser. Ids come from Discord, not from an
/// adversary, and SipHash would cost more than the rest of a member event.
#[derive(Default, Clone, Copy)]
struct IdHasher(u64);

const fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = mix(self.0 ^ u64::from(*b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = mix(self.0 ^ n);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

const NO_SET: u32 = u32::MAX;

type RoleList = SmallVec<[u64; 8]>;
/// One bit per mapped channel (slot), VIEW_CHANNEL only.
type Mask = SmallVec<[u64; 1]>;

/// The VIEW_CHANNEL bit of every mapped channel's overwrites, one bit per slot, so a role
/// set is judged on all mapped channels at once with a few word operations per role it
/// holds. Rebuilt whenever the mapped channels or their overwrites change.
#[derive(Default)]
struct ViewMasks {
    exists: Mask,
    everyone_allow: Mask,
    everyone_deny: Mask,
    /// Role -> (allow, deny) over the slots whose channel has an overwrite for it.
    roles: IdMap<(Mask, Mask)>,
}

struct RoleSet {
    /// Sorted, deduplicated, without the `@everyone` role. Empty while the slot is free.
    roles: SmallVec<[u64; 2]>,
    /// Next role set with the same role-list hash (intern chain, sets of two or more roles), or
    /// `NO_SET`.
    next: u32,
    live: bool,
    /// `@everyone` OR the roles' permissions; `ALL` with ADMINISTRATOR.
    base: u64,
    tiers: u8,
    /// How many mapped channels this role set sees.
    visible_slots: u32,
    /// Stored members with this role set that are counted through it (not special).
    regular: u32,
    /// All stored members with this role set, special ones included.
    holders: u32,
}

fn mask_bit(mask: &Mask, slot: usize) -> bool {
    mask.get(slot / 64)
        .is_some_and(|w| w & (1 << (slot % 64)) != 0)
}

#[derive(Clone, Copy)]
struct MemberEntry {
    set: u32,
    special: bool,
}

/// A channel's overwrites folded into layers; role and member entries sorted by id.
#[derive(Default)]
struct Channel {
    everyone: Layer,
    roles: Vec<(u64, Layer)>,
    members: Vec<(u64, Layer)>,
}

impl Channel {
    fn from_overwrites(guild_id: u64, overwrites: &[Overwrite]) -> Self {
        let mut ch = Channel::default();
        for ow in overwrites {
            let layer = Layer {
                allow: ow.allow,
                deny: ow.deny,
            };
            match ow.target {
                OverwriteTarget::Role(id) if id == guild_id => {
                    ch.everyone = ch.everyone.merge(layer)
                }
                OverwriteTarget::Role(id) => ch.roles.push((id, layer)),
                OverwriteTarget::Member(id) => ch.members.push((id, layer)),
            }
        }
        fold_sorted(&mut ch.roles);
        fold_sorted(&mut ch.members);
        ch
    }

    /// The role layer for a member holding `set_roles`, from the overwrites of roles the
    /// guild still has (`exists`): an overwrite left behind for a deleted role applies to
    /// nobody.
    fn roles_layer(&self, set_roles: &[u64], exists: impl Fn(u64) -> bool) -> Layer {
        self.role_layers(set_roles, exists)
            .fold(Layer::default(), |acc, (_, l)| acc.merge(*l))
    }

    /// Each overwrite of a role in `set_roles` the guild still has (`exists`).
    fn role_layers<'a>(
        &'a self,
        set_roles: &'a [u64],
        exists: impl Fn(u64) -> bool + 'a,
    ) -> impl Iterator<Item = &'a (u64, Layer)> + 'a {
        self.roles
            .iter()
            .filter(move |(id, _)| set_roles.binary_search(id).is_ok() && exists(*id))
    }

    fn member_layer(&self, user_id: u64) -> Layer {
        match self.members.binary_search_by_key(&user_id, |(id, _)| *id) {
            Ok(i) => self.members[i].1,
            Err(_) => Layer::default(),
        }
    }
}

/// Sorts by id and merges duplicate ids (two overwrites for one target act as one).
fn fold_sorted(entries: &mut Vec<(u64, Layer)>) {
    entries.sort_unstable_by_key(|(id, _)| *id);
    entries.dedup_by(|later, kept| {
        if later.0 == kept.0 {
            kept.1 = kept.1.merge(later.1);
            true
        } else {
            false
        }
    });
}

/// One mapped channel: which role sets see it, one bit per role set id.
struct Slot {
    channel_id: u64,
    visible: Vec<u64>,
}

impl Slot {
    fn get(&self, set: u32) -> bool {
        let (w, b) = (set as usize / 64, set % 64);
        self.visible.get(w).is_some_and(|word| word & (1 << b) != 0)
    }

    fn put(&mut self, set: u32, on: bool) {
        let (w, b) = (set as usize / 64, set % 64);
        if w >= self.visible.len() {
            if !on {
                return;
            }
            self.visible.resize(w + 1, 0);
        }
        if on {
            self.visible[w] |= 1 << b;
        } else {
            self.visible[w] &= !(1 << b);
        }
    }
}

/// Live seat count of one target guild. See the module documentation.
pub struct GuildIndex {
    guild_id: u64,
    owner_id: u64,
    /// Role id -> permissions, `@everyone` (id = guild id) included.
    roles: IdMap<u64>,
    /// Every channel of the guild we were told about (mapped or not), threads excluded.
    channels: IdMap<Channel>,
    /// Thread -> its parent channel: a thread is judged by its parent.
    thread_parents: IdMap<u64>,
    /// The mapped targets as configured (channels or threads), in mapping order.
    targets: Vec<u64>,
    /// One per distinct channel the targets resolve to.
    slots: Vec<Slot>,
    tiers: TierRoles,
    sets: Vec<RoleSet>,
    free_sets: Vec<u32>,
    /// Role-list hash -> first role set of its chain (sets of two or more roles).
    intern: IdMap<u32>,
    /// The sets of at most one role, which most members hold: role id (0 for no role) -> set.
    small_sets: IdMap<u32>,
    masks: ViewMasks,
    members: IdMap<MemberEntry>,
    bots: IdMap<()>,
    /// User -> number of mapped channels carrying a member overwrite for them.
    member_overwrite_refs: IdMap<u32>,
    /// Counted special members -> their tier mask.
    special_counted: IdMap<u8>,
    regular_count: SeatCount,
    special_count: SeatCount,
}

impl std::fmt::Debug for GuildIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuildIndex")
            .field("guild_id", &self.guild_id)
            .field("owner_id", &self.owner_id)
            .field("members", &self.member_count())
            .field("role_sets", &self.role_set_count())
            .field("mapped_channels", &self.mapped_channel_ids())
            .field("seat_count", &self.seat_count())
            .finish()
    }
}

impl GuildIndex {
    /// An index of a guild with no roles, channels or members yet.
    pub fn new(guild_id: u64, owner_id: u64, tiers: TierRoles) -> Self {
        Self {
            guild_id,
            owner_id,
            roles: IdMap::default(),
            channels: IdMap::default(),
            thread_parents: IdMap::default(),
            targets: Vec::new(),
            slots: Vec::new(),
            tiers,
            sets: Vec::new(),
            free_sets: Vec::new(),
            intern: IdMap::default(),
            small_sets: IdMap::default(),
            masks: ViewMasks::default(),
            members: IdMap::default(),
            bots: IdMap::default(),
            member_overwrite_refs: IdMap::default(),
            special_counted: IdMap::default(),
            regular_count: SeatCount::default(),
            special_count: SeatCount::default(),
        }
    }

    /// Builds the index of a whole guild (a from-scratch count). A member listed twice keeps
    /// its last entry.
    pub fn build(guild: &GuildSnapshot, mapped_channel_ids: &[u64], tiers: TierRoles) -> Self {
        let mut index = Self::new(guild.guild_id, guild.owner_id, tiers);
        for role in &guild.roles {
            index.role_upsert(role.id, role.permissions);
        }
        for channel in &guild.channels {
            index.channel_overwrites_set(channel.id, &channel.overwrites);
        }
        for thread in &guild.threads {
            index.thread_upsert(thread.id, thread.parent_id);
        }
        index.set_mapped_channels(mapped_channel_ids);
        index.reserve_members(guild.members.len());
        for m in &guild.members {
            index.member_upsert(m.user_id, &m.roles, m.is_bot);
        }
        index.shrink_to_fit();
        index
    }

    /// Room for `additional` more members, before a bulk load.
    pub fn reserve_members(&mut self, additional: usize) {
        self.members.reserve(additional);
    }

    /// Gives back the spare capacity a bulk load leaves behind.
    pub fn shrink_to_fit(&mut self) {
        self.sets.shrink_to_fit();
        self.members.shrink_to_fit();
        self.intern.shrink_to_fit();
    }

    /// A from-scratch count that keeps no members, on as many threads as the machine has
    /// (one below 32,768 members per thread). A user listed more than once counts by their
    /// last entry, as in [`Self::build`]; a member list in ascending id order (as Discord's
    /// paginated member list comes) is known to have no repeats without extra work, another
    /// order costs one sort of the ids.
    ///
    /// Only a few roles can change the answer (see `scan`): each member's roles are reduced to
    /// a bit mask of those and judged on all mapped channels at once, without a per-member
    /// lookup table. The owner and members named by member overwrites are evaluated one by
    /// one. A guild with more than 64 such roles interns each member's role set instead.
    pub fn count_snapshot(
        guild: &GuildSnapshot,
        mapped_channel_ids: &[u64],
        tiers: TierRoles,
    ) -> SeatCount {
        let threads = Self::default_threads(guild.members.len());
        Self::count_snapshot_on(guild, mapped_channel_ids, tiers, threads)
    }

    /// How many threads a from-scratch count of `members` members uses.
    pub fn default_threads(members: usize) -> usize {
        scan::default_threads(members)
    }

    /// [`Self::count_snapshot`] on exactly `threads` threads (at least one): for tests and
    /// benchmarks that compare the serial and the parallel scan.
    pub fn count_snapshot_on(
        guild: &GuildSnapshot,
        mapped_channel_ids: &[u64],
        tiers: TierRoles,
        threads: usize,
    ) -> SeatCount {
        Self::count_members(
            guild,
            guild.members.as_slice(),
            mapped_channel_ids,
            tiers,
            threads,
        )
    }

    /// The from-scratch count of `members` in the guild `structure` describes (its own
    /// member list is not read), on `threads` threads: [`Self::count_snapshot`] for any
    /// member list, such as the flat [`super::MemberList`] that `seatgate seats count` reads
    /// a fixture into.
    pub fn count_members<M: Members + ?Sized>(
        structure: &GuildSnapshot,
        members: &M,
        mapped_channel_ids: &[u64],
        tiers: TierRoles,
        threads: usize,
    ) -> SeatCount {
        let mut index = Self::new(structure.guild_id, structure.owner_id, tiers);
        for role in &structure.roles {
            index.role_upsert(role.id, role.permissions);
        }
        for channel in &structure.channels {
            index.channel_overwrites_set(channel.id, &channel.overwrites);
        }
        for thread in &structure.threads {
            index.thread_upsert(thread.id, thread.parent_id);
        }
        index.set_mapped_channels(mapped_channel_ids);
        match scan::Projection::new(&index, tiers) {
            Some(projection) => projection.count(&mut index, members, threads),
            None => index.count_interned(members),
        }
    }

    /// [`Self::count_members`] for a flat list. One whose ids ascend (Discord's paged
    /// member list, a fixture written from it) is counted from its role positions alone, the
    /// special members found by binary search; any other goes the general way.
    pub fn count_member_list(
        structure: &GuildSnapshot,
        members: &super::MemberList,
        mapped_channel_ids: &[u64],
        tiers: TierRoles,
        threads: usize,
    ) -> SeatCount {
        if !members.is_ascending() {
            return Self::count_members(structure, members, mapped_channel_ids, tiers, threads);
        }
        let mut index = Self::new(structure.guild_id, structure.owner_id, tiers);
        for role in &structure.roles {
            index.role_upsert(role.id, role.permissions);
        }
        for channel in &structure.channels {
            index.channel_overwrites_set(channel.id, &channel.overwrites);
        }
        for thread in &structure.threads {
            index.thread_upsert(thread.id, thread.parent_id);
        }
        index.set_mapped_channels(mapped_channel_ids);
        match scan::Projection::new(&index, tiers) {
            Some(projection) => projection.count_flat(&mut index, members, threads),
            None => index.count_interned(members),
        }
    }

    /// The from-scratch count one role set per member, for guilds where more than 64 roles
    /// matter. A user listed more than once counts by their last entry.
    fn count_interned<M: Members + ?Sized>(&mut self, members: &M) -> SeatCount {
        let repeated = scan::repeated_ids(members);
        let mut judged: HashMap<u64, ()> = HashMap::new();
        let mut per_set: Vec<u64> = Vec::new();
        let mut count = SeatCount::default();
        for i in (0..members.len()).rev() {
            let user_id = members.user_id(i);
            if repeated.binary_search(&user_id).is_ok() && judged.insert(user_id, ()).is_some() {
                continue;
            }
            if members.is_bot(i) {
                continue;
            }
            let set = members.with_roles(i, |roles| self.intern(roles));
            if self.is_special(user_id) {
                if self.member_sees_any(user_id, set) {
                    count.seats_used += 1;
                    count.by_tier.add_mask(self.sets[set as usize].tiers, 1);
                }
                continue;
            }
            if set as usize >= per_set.len() {
                per_set.resize(set as usize + 1, 0);
            }
            per_set[set as usize] += 1;
        }
        for (set, n) in per_set.into_iter().enumerate() {
            let s = &self.sets[set];
            if n > 0 && s.visible_slots > 0 {
                count.seats_used += n;
                count.by_tier.add_mask(s.tiers, n);
            }
        }
        count
    }

    /// The seat count summed afresh from the live index: the regular members of every role
    /// set that sees a mapped channel, plus the counted special members. Equals
    /// [`Self::seat_count`] (kept incrementally); costs one pass over the role sets.
    pub fn recount(&self) -> SeatCount {
        let mut count = SeatCount::default();
        for s in self.sets.iter().filter(|s| s.live && s.visible_slots > 0) {
            let n = u64::from(s.regular);
            count.seats_used += n;
            count.by_tier.add_mask(s.tiers, n);
        }
        for mask in self.special_counted.values() {
            count.seats_used += 1;
            count.by_tier.add_mask(*mask, 1);
        }
        count
    }

    pub fn guild_id(&self) -> u64 {
        self.guild_id
    }

    pub fn owner_id(&self) -> u64 {
        self.owner_id
    }

    pub fn tier_roles(&self) -> TierRoles {
        self.tiers
    }

    /// The channels the mapped targets resolve to (a thread to its parent), in mapping order.
    pub fn mapped_channel_ids(&self) -> Vec<u64> {
        self.slots.iter().map(|s| s.channel_id).collect()
    }

    /// Mapped targets the index knows neither as a channel nor as a thread: an archived
    /// thread GUILD_CREATE did not list, or a channel that does not exist. Until a recount
    /// resolves them, the count does not cover them.
    pub fn unresolved_targets(&self) -> Vec<u64> {
        self.targets
            .iter()
            .copied()
            .filter(|t| !self.channels.contains_key(t) && !self.thread_parents.contains_key(t))
            .collect()
    }

    /// Members known to the index, bots included.
    pub fn member_count(&self) -> usize {
        self.members.len() + self.bots.len()
    }

    /// Distinct role sets among the stored (non-bot) members.
    pub fn role_set_count(&self) -> usize {
        self.sets.len() - self.free_sets.len()
    }

    // ----- queries -----

    pub fn seat_count(&self) -> SeatCount {
        let (r, s) = (&self.regular_count, &self.special_count);
        SeatCount {
            seats_used: r.seats_used + s.seats_used,
            by_tier: super::TierCounts {
                basic: r.by_tier.basic + s.by_tier.basic,
                advanced: r.by_tier.advanced + s.by_tier.advanced,
                pro: r.by_tier.pro + s.by_tier.pro,
            },
        }
    }

    pub fn is_member_counted(&self, user_id: u64) -> bool {
        match self.members.get(&user_id) {
            None => false,
            Some(e) if e.special => self.special_counted.contains_key(&user_id),
            Some(e) => self.sets[e.set as usize].visible_slots > 0,
        }
    }

    /// Ids of the members holding a seat, ascending. Walks every member: for the admin page,
    /// not for the hot path.
    pub fn counted_member_ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .members
            .iter()
            .filter(|(id, e)| {
                if e.special {
                    self.special_counted.contains_key(id)
                } else {
                    self.sets[e.set as usize].visible_slots > 0
                }
            })
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The members holding a seat with their tier mask (bit 0 basic, bit 1 advanced, bit 2
    /// pro, from the tier roles they hold), ascending by id. For the admin page, like
    /// [`Self::counted_member_ids`].
    pub fn counted_members_with_tiers(&self) -> Vec<(u64, u8)> {
        let mut out: Vec<(u64, u8)> = self
            .members
            .iter()
            .filter(|(id, e)| {
                if e.special {
                    self.special_counted.contains_key(id)
                } else {
                    self.sets[e.set as usize].visible_slots > 0
                }
            })
            .map(|(id, e)| (*id, self.sets[e.set as usize].tiers))
            .collect();
        out.sort_unstable_by_key(|(id, _)| *id);
        out
    }

    /// Why a stored member sees each mapped channel they see (the first rule that gives them
    /// sight, [`sight`]), in slot order; `None` when the member is not stored.
    pub fn sight_reasons(&self, user_id: u64) -> Option<Vec<(u64, Sight)>> {
        let entry = self.members.get(&user_id)?;
        Some(self.reasons_of(&self.sets[entry.set as usize], Some(user_id)))
    }

    /// Every counted member's reasons, summed: (channel, reason) -> members. Members counted
    /// through their role set share its reasons, so this costs one look per role set (and
    /// one per special member: the owner, members with an overwrite of their own).
    pub fn sight_summary(&self) -> Vec<(u64, Sight, u64)> {
        let mut counts: HashMap<(u64, Sight), u64> = HashMap::new();
        for set in &self.sets {
            if !set.live || set.regular == 0 || set.visible_slots == 0 {
                continue;
            }
            for (channel, why) in self.reasons_of(set, None) {
                *counts.entry((channel, why)).or_default() += u64::from(set.regular);
            }
        }
        for user_id in self.special_counted.keys() {
            for (channel, why) in self.sight_reasons(*user_id).unwrap_or_default() {
                *counts.entry((channel, why)).or_default() += 1;
            }
        }
        let mut out: Vec<(u64, Sight, u64)> =
            counts.into_iter().map(|((c, w), n)| (c, w, n)).collect();
        out.sort_unstable_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
        out
    }

    /// The reasons of a member holding `set`: `user` is the member (owner, member
    /// overwrites), or `None` for one with neither.
    fn reasons_of(&self, set: &RoleSet, user: Option<u64>) -> Vec<(u64, Sight)> {
        let roles: Vec<(u64, u64)> = set
            .roles
            .iter()
            .filter_map(|id| self.roles.get(id).map(|p| (*id, *p)))
            .collect();
        let everyone = self.roles.get(&self.guild_id).copied().unwrap_or(0);
        let mut reasons = Vec::new();
        for slot in &self.slots {
            let Some(ch) = self.channels.get(&slot.channel_id) else {
                continue;
            };
            let role_layers: Vec<(u64, Layer)> = ch
                .role_layers(&set.roles, |id| self.role_exists(id))
                .copied()
                .collect();
            let why = sight(&SightInputs {
                guild_id: self.guild_id,
                is_owner: user == Some(self.owner_id),
                everyone,
                roles: &roles,
                everyone_layer: ch.everyone,
                role_layers: &role_layers,
                member_layer: user.map_or(Layer::default(), |u| ch.member_layer(u)),
            });
            if let Some(why) = why {
                reasons.push((slot.channel_id, why));
            }
        }
        reasons
    }

    /// Can a stored non-bot member view a channel of the guild (mapped or not)? `None` when
    /// the member or the channel is unknown to the index.
    pub fn can_member_view(&self, user_id: u64, channel_id: u64) -> Option<bool> {
        let entry = self.members.get(&user_id)?;
        let channel = self.channels.get(&channel_id)?;
        Some(self.member_sees(user_id, entry.set, channel))
    }

    /// A thread is judged by its parent channel: asks [`Self::can_member_view`] of the parent.
    pub fn can_member_view_thread(&self, user_id: u64, parent_channel_id: u64) -> Option<bool> {
        self.can_member_view(user_id, parent_channel_id)
    }

    // ----- member events: cost proportional to mapped channels -----

    /// GUILD_MEMBER_ADD / GUILD_MEMBER_UPDATE / a member from a chunk.
    pub fn member_upsert(&mut self, user_id: u64, roles: &[u64], is_bot: bool) -> SeatCount {
        if is_bot {
            self.drop_member(user_id);
            self.bots.insert(user_id, ());
            return self.seat_count();
        }
        self.bots.remove(&user_id);
        let set = self.intern(roles);
        let old = self.members.get(&user_id).copied();
        match old {
            Some(e) if e.set == set => {
                if e.special {
                    self.special_recount(user_id, set);
                }
            }
            _ => {
                if let Some(e) = old {
                    self.detach(user_id, e);
                }
                let special = self.is_special(user_id);
                self.attach(set, special);
                self.members.insert(user_id, MemberEntry { set, special });
                if special {
                    self.special_recount(user_id, set);
                }
            }
        }
        self.seat_count()
    }

    /// GUILD_MEMBER_REMOVE.
    pub fn member_remove(&mut self, user_id: u64) -> SeatCount {
        self.bots.remove(&user_id);
        self.drop_member(user_id);
        self.seat_count()
    }

    // ----- guild-wide events: cost proportional to distinct role sets -----

    /// GUILD_ROLE_CREATE / GUILD_ROLE_UPDATE (the `@everyone` role has the guild's id).
    pub fn role_upsert(&mut self, role_id: u64, permissions: u64) -> SeatCount {
        if self.roles.insert(role_id, permissions).is_none() {
            self.role_existence_changed(role_id);
        }
        self.role_changed(role_id)
    }

    /// GUILD_ROLE_DELETE. Members still listing the role get nothing from it: not its
    /// permissions, not an overwrite that still names it, not its tier.
    pub fn role_remove(&mut self, role_id: u64) -> SeatCount {
        if self.roles.remove(&role_id).is_some() {
            self.role_existence_changed(role_id);
        }
        self.role_changed(role_id)
    }

    /// CHANNEL_CREATE / CHANNEL_UPDATE: the channel's full overwrite list. Threads are not
    /// channels here: they are judged by their parent.
    pub fn channel_overwrites_set(
        &mut self,
        channel_id: u64,
        overwrites: &[Overwrite],
    ) -> SeatCount {
        let channel = Channel::from_overwrites(self.guild_id, overwrites);
        self.replace_channel(channel_id, Some(channel))
    }

    /// CHANNEL_DELETE. A mapped channel that no longer exists is seen by nobody.
    pub fn channel_remove(&mut self, channel_id: u64) -> SeatCount {
        self.replace_channel(channel_id, None)
    }

    /// Replaces the mapped targets (channels or threads; duplicates ignored).
    pub fn set_mapped_channels(&mut self, target_ids: &[u64]) -> SeatCount {
        self.targets.clear();
        for id in target_ids {
            if !self.targets.contains(id) {
                self.targets.push(*id);
            }
        }
        self.resolve_targets()
    }

    /// Maps one more target (a channel, or a thread judged by its parent). A channel the
    /// index does not know yet is seen by nobody until [`Self::channel_overwrites_set`]
    /// brings it.
    pub fn map_channel(&mut self, target_id: u64) -> SeatCount {
        if !self.targets.contains(&target_id) {
            self.targets.push(target_id);
        }
        self.resolve_targets()
    }

    pub fn unmap_channel(&mut self, target_id: u64) -> SeatCount {
        self.targets.retain(|t| *t != target_id);
        self.resolve_targets()
    }

    /// THREAD_CREATE / THREAD_UPDATE / a thread of GUILD_CREATE or THREAD_LIST_SYNC.
    pub fn thread_upsert(&mut self, thread_id: u64, parent_id: u64) -> SeatCount {
        let old = self.thread_parents.insert(thread_id, parent_id);
        if old != Some(parent_id) && self.targets.contains(&thread_id) {
            return self.resolve_targets();
        }
        self.seat_count()
    }

    /// THREAD_DELETE: a mapped thread that no longer exists is seen by nobody.
    pub fn thread_remove(&mut self, thread_id: u64) -> SeatCount {
        if self.thread_parents.remove(&thread_id).is_some() && self.targets.contains(&thread_id) {
            return self.resolve_targets();
        }
        self.seat_count()
    }

    /// The slots the targets resolve to, added and removed as they differ from today's.
    fn resolve_targets(&mut self) -> SeatCount {
        let mut wanted: Vec<u64> = Vec::with_capacity(self.targets.len());
        for t in &self.targets {
            let channel = self.thread_parents.get(t).copied().unwrap_or(*t);
            if !wanted.contains(&channel) {
                wanted.push(channel);
            }
        }
        let unmapped: Vec<u64> = self
            .slots
            .iter()
            .map(|s| s.channel_id)
            .filter(|id| !wanted.contains(id))
            .collect();
        for id in unmapped {
            self.remove_slot(id);
        }
        for id in wanted {
            self.add_slot(id);
        }
        self.seat_count()
    }

    fn add_slot(&mut self, channel_id: u64) {
        if self.slot_of(channel_id).is_some() {
            return;
        }
        self.slots.push(Slot {
            channel_id,
            visible: Vec::new(),
        });
        self.rebuild_masks();
        let slot = self.slots.len() - 1;
        self.refresh_slot(slot);
        let users = self.channel_member_ids(channel_id);
        for u in &users {
            *self.member_overwrite_refs.entry(*u).or_insert(0) += 1;
        }
        for u in users {
            self.reconcile_special(u);
        }
        self.recount_specials();
    }

    fn remove_slot(&mut self, channel_id: u64) {
        let Some(slot) = self.slot_of(channel_id) else {
            return;
        };
        for set in 0..self.sets.len() as u32 {
            if self.slots[slot].get(set) {
                self.set_bit(slot, set, false);
            }
        }
        self.slots.swap_remove(slot);
        self.rebuild_masks();
        let users = self.channel_member_ids(channel_id);
        for u in &users {
            self.release_member_ref(*u);
        }
        for u in users {
            self.reconcile_special(u);
        }
        self.recount_specials();
    }

    /// GUILD_UPDATE with a new owner.
    pub fn set_owner(&mut self, owner_id: u64) -> SeatCount {
        let old = std::mem::replace(&mut self.owner_id, owner_id);
        self.reconcile_special(old);
        self.reconcile_special(owner_id);
        self.seat_count()
    }

    /// The server config's tier roles changed.
    pub fn set_tier_roles(&mut self, tiers: TierRoles) -> SeatCount {
        self.tiers = tiers;
        for set in 0..self.sets.len() as u32 {
            if self.sets[set as usize].live {
                self.uncount_set(set);
                self.sets[set as usize].tiers = self.tier_mask(&self.sets[set as usize].roles);
                self.count_set(set);
            }
        }
        self.recount_specials();
        self.seat_count()
    }

    // ----- internals -----

    fn everyone(&self) -> u64 {
        self.roles.get(&self.guild_id).copied().unwrap_or(0)
    }

    fn role_exists(&self, role_id: u64) -> bool {
        self.roles.contains_key(&role_id)
    }

    /// The tiers a member holding `roles` has: tier roles the guild still has.
    fn tier_mask(&self, roles: &[u64]) -> u8 {
        let held = |tier: Option<u64>| tier.filter(|id| self.role_exists(*id));
        TierRoles {
            basic: held(self.tiers.basic),
            advanced: held(self.tiers.advanced),
            pro: held(self.tiers.pro),
        }
        .mask(roles)
    }

    /// A role appeared or disappeared: overwrites naming it start or stop applying.
    fn role_existence_changed(&mut self, role_id: u64) {
        let named = self.slots.iter().any(|slot| {
            self.channels.get(&slot.channel_id).is_some_and(|c| {
                c.roles
                    .binary_search_by_key(&role_id, |(id, _)| *id)
                    .is_ok()
            })
        });
        if named {
            self.rebuild_masks();
        }
    }

    fn slot_of(&self, channel_id: u64) -> Option<usize> {
        self.slots.iter().position(|s| s.channel_id == channel_id)
    }

    fn channel_member_ids(&self, channel_id: u64) -> Vec<u64> {
        self.channels
            .get(&channel_id)
            .map(|c| c.members.iter().map(|(id, _)| *id).collect())
            .unwrap_or_default()
    }

    fn is_special(&self, user_id: u64) -> bool {
        user_id == self.owner_id || self.member_overwrite_refs.contains_key(&user_id)
    }

    fn set_base(&self, roles: &[u64]) -> u64 {
        base_permissions(self.everyone(), roles, |id| self.roles.get(&id).copied())
    }

    fn rebuild_masks(&mut self) {
        let words = self.slots.len().div_ceil(64);
        let zero = || Mask::from_elem(0, words);
        let mut m = ViewMasks {
            exists: zero(),
            everyone_allow: zero(),
            everyone_deny: zero(),
            roles: IdMap::default(),
        };
        for (i, slot) in self.slots.iter().enumerate() {
            let Some(ch) = self.channels.get(&slot.channel_id) else {
                continue;
            };
            let (w, bit) = (i / 64, 1u64 << (i % 64));
            m.exists[w] |= bit;
            if ch.everyone.allow & VIEW_CHANNEL != 0 {
                m.everyone_allow[w] |= bit;
            }
            if ch.everyone.deny & VIEW_CHANNEL != 0 {
                m.everyone_deny[w] |= bit;
            }
            for (role, layer) in &ch.roles {
                if !self.roles.contains_key(role) {
                    continue; // a deleted role's overwrite applies to nobody
                }
                let (allow, deny) = m.roles.entry(*role).or_insert_with(|| (zero(), zero()));
                if layer.allow & VIEW_CHANNEL != 0 {
                    allow[w] |= bit;
                }
                if layer.deny & VIEW_CHANNEL != 0 {
                    deny[w] |= bit;
                }
            }
        }
        self.masks = m;
    }

    /// Which mapped channels a member with `roles` and `base` permissions sees, without a
    /// member overwrite: steps 2 to 4 on the VIEW_CHANNEL bit of every slot at once.
    fn visibility(&self, base: u64, roles: &[u64]) -> Mask {
        let m = &self.masks;
        if base & ADMINISTRATOR != 0 {
            return m.exists.clone();
        }
        let b = if base & VIEW_CHANNEL != 0 { !0u64 } else { 0 };
        let mut v: Mask = m
            .everyone_deny
            .iter()
            .zip(&m.everyone_allow)
            .map(|(deny, allow)| (b & !deny) | allow)
            .collect();
        if !m.roles.is_empty() {
            let mut role_allow = Mask::from_elem(0, v.len());
            let mut role_deny = Mask::from_elem(0, v.len());
            for (allow, deny) in roles.iter().filter_map(|r| m.roles.get(r)) {
                for w in 0..v.len() {
                    role_allow[w] |= allow[w];
                    role_deny[w] |= deny[w];
                }
            }
            for w in 0..v.len() {
                v[w] = (v[w] & !role_deny[w]) | role_allow[w];
            }
        }
        for (w, exists) in v.iter_mut().zip(&m.exists) {
            *w &= exists;
        }
        v
    }

    fn set_visibility(&self, set: u32) -> Mask {
        let s = &self.sets[set as usize];
        self.visibility(s.base, &s.roles)
    }

    fn member_sees(&self, user_id: u64, set: u32, ch: &Channel) -> bool {
        if user_id == self.owner_id {
            return true;
        }
        let s = &self.sets[set as usize];
        let layers = OverwriteLayers {
            everyone: ch.everyone,
            roles: ch.roles_layer(&s.roles, |id| self.role_exists(id)),
            member: ch.member_layer(user_id),
        };
        apply_layers(s.base, &layers) & VIEW_CHANNEL != 0
    }

    fn member_sees_any(&self, user_id: u64, set: u32) -> bool {
        self.slots.iter().any(|slot| {
            self.channels
                .get(&slot.channel_id)
                .is_some_and(|ch| self.member_sees(user_id, set, ch))
        })
    }

    fn uncount_set(&mut self, set: u32) {
        let s = &self.sets[set as usize];
        if s.visible_slots > 0 && s.regular > 0 {
            let n = u64::from(s.regular);
            self.regular_count.seats_used -= n;
            self.regular_count.by_tier.sub_mask(s.tiers, n);
        }
    }

    fn count_set(&mut self, set: u32) {
        let s = &self.sets[set as usize];
        if s.visible_slots > 0 && s.regular > 0 {
            let n = u64::from(s.regular);
            self.regular_count.seats_used += n;
            self.regular_count.by_tier.add_mask(s.tiers, n);
        }
    }

    fn set_bit(&mut self, slot: usize, set: u32, on: bool) {
        if self.slots[slot].get(set) == on {
            return;
        }
        self.uncount_set(set);
        self.slots[slot].put(set, on);
        let s = &mut self.sets[set as usize];
        if on {
            s.visible_slots += 1;
        } else {
            s.visible_slots -= 1;
        }
        self.count_set(set);
    }

    /// Recomputes one mapped channel for every live role set.
    fn refresh_slot(&mut self, slot: usize) {
        for set in 0..self.sets.len() as u32 {
            if !self.sets[set as usize].live {
                continue;
            }
            let on = mask_bit(&self.set_visibility(set), slot);
            self.set_bit(slot, set, on);
        }
    }

    /// Recomputes base permissions, tiers and every mapped channel of one role set.
    fn refresh_set(&mut self, set: u32) {
        let tiers = self.tier_mask(&self.sets[set as usize].roles);
        if tiers != self.sets[set as usize].tiers {
            self.uncount_set(set);
            self.sets[set as usize].tiers = tiers;
            self.count_set(set);
        }
        self.sets[set as usize].base = self.set_base(&self.sets[set as usize].roles);
        let mask = self.set_visibility(set);
        for slot in 0..self.slots.len() {
            self.set_bit(slot, set, mask_bit(&mask, slot));
        }
    }

    fn role_changed(&mut self, role_id: u64) -> SeatCount {
        let everyone = role_id == self.guild_id;
        for set in 0..self.sets.len() as u32 {
            let s = &self.sets[set as usize];
            if s.live && (everyone || s.roles.binary_search(&role_id).is_ok()) {
                self.refresh_set(set);
            }
        }
        self.recount_specials();
        self.seat_count()
    }

    fn replace_channel(&mut self, channel_id: u64, channel: Option<Channel>) -> SeatCount {
        let old_users = self.channel_member_ids(channel_id);
        match channel {
            Some(c) => {
                self.channels.insert(channel_id, c);
            }
            None => {
                self.channels.remove(&channel_id);
            }
        }
        let Some(slot) = self.slot_of(channel_id) else {
            return self.seat_count();
        };
        self.rebuild_masks();
        self.refresh_slot(slot);
        let new_users = self.channel_member_ids(channel_id);
        if old_users != new_users {
            for u in &old_users {
                self.release_member_ref(*u);
            }
            for u in &new_users {
                *self.member_overwrite_refs.entry(*u).or_insert(0) += 1;
            }
            for u in old_users.into_iter().chain(new_users) {
                self.reconcile_special(u);
            }
        }
        self.recount_specials();
        self.seat_count()
    }

    fn release_member_ref(&mut self, user_id: u64) {
        if let Some(n) = self.member_overwrite_refs.get_mut(&user_id) {
            *n -= 1;
            if *n == 0 {
                self.member_overwrite_refs.remove(&user_id);
            }
        }
    }

    fn role_list_hash(roles: &[u64]) -> u64 {
        roles
            .iter()
            .fold(mix(roles.len() as u64), |h, r| mix(h ^ mix(*r)))
    }

    /// The role set id for `roles`, creating (and evaluating) it when new.
    fn intern(&mut self, roles: &[u64]) -> u32 {
        // Fast paths for role lists already in normal form, the usual case.
        match roles {
            [] => {
                if let Some(set) = self.small_sets.get(&0) {
                    return *set;
                }
            }
            [role] if *role != self.guild_id => {
                if let Some(set) = self.small_sets.get(role) {
                    return *set;
                }
            }
            _ if roles.windows(2).all(|w| w[0] < w[1]) && !roles.contains(&self.guild_id) => {
                if let (_, _, Some(set)) = self.find_chain(roles) {
                    return set;
                }
            }
            _ => {}
        }
        let mut list: RoleList = roles
            .iter()
            .copied()
            .filter(|r| *r != self.guild_id)
            .collect();
        if !list.is_sorted() {
            list.sort_unstable();
        }
        list.dedup();
        let (hash, head) = if list.len() <= 1 {
            let key = list.first().copied().unwrap_or(0);
            if let Some(set) = self.small_sets.get(&key) {
                return *set;
            }
            (key, NO_SET)
        } else {
            match self.find_chain(&list) {
                (_, _, Some(set)) => return set,
                (hash, head, None) => (hash, head),
            }
        };
        let base = self.set_base(&list);
        let mask = self.visibility(base, &list);
        let set = RoleSet {
            base,
            tiers: self.tier_mask(&list),
            roles: SmallVec::from_slice(&list),
            next: head,
            live: true,
            visible_slots: 0,
            regular: 0,
            holders: 0,
        };
        let small = set.roles.len() <= 1;
        let id = match self.free_sets.pop() {
            Some(id) => {
                self.sets[id as usize] = set;
                id
            }
            None => {
                self.sets.push(set);
                (self.sets.len() - 1) as u32
            }
        };
        if small {
            self.small_sets.insert(hash, id);
        } else {
            self.intern.insert(hash, id);
        }
        for slot in 0..self.slots.len() {
            if mask_bit(&mask, slot) {
                self.set_bit(slot, id, true);
            }
        }
        id
    }

    /// Looks a normalised list of two or more roles up: (hash, chain head, the set if any).
    fn find_chain(&self, list: &[u64]) -> (u64, u32, Option<u32>) {
        let hash = Self::role_list_hash(list);
        let head = self.intern.get(&hash).copied().unwrap_or(NO_SET);
        let mut cursor = head;
        while cursor != NO_SET {
            let s = &self.sets[cursor as usize];
            if s.roles[..] == *list {
                return (hash, head, Some(cursor));
            }
            cursor = s.next;
        }
        (hash, head, None)
    }

    fn release_set(&mut self, set: u32) {
        for slot in 0..self.slots.len() {
            self.set_bit(slot, set, false);
        }
        let (hash, next, small) = {
            let s = &self.sets[set as usize];
            let small = s.roles.len() <= 1;
            let key = if small {
                s.roles.first().copied().unwrap_or(0)
            } else {
                Self::role_list_hash(&s.roles)
            };
            (key, s.next, small)
        };
        if small {
            self.small_sets.remove(&hash);
        } else {
            let head = self.intern.get(&hash).copied().unwrap_or(NO_SET);
            if head == set {
                if next == NO_SET {
                    self.intern.remove(&hash);
                } else {
                    self.intern.insert(hash, next);
                }
            } else {
                let mut cursor = head;
                while cursor != NO_SET {
                    let after = self.sets[cursor as usize].next;
                    if after == set {
                        self.sets[cursor as usize].next = next;
                        break;
                    }
                    cursor = after;
                }
            }
        }
        let s = &mut self.sets[set as usize];
        s.roles = SmallVec::new();
        s.live = false;
        s.next = NO_SET;
        self.free_sets.push(set);
    }

    fn attach(&mut self, set: u32, special: bool) {
        self.sets[set as usize].holders += 1;
        if !special {
            self.uncount_set(set);
            self.sets[set as usize].regular += 1;
            self.count_set(set);
        }
    }

    fn detach(&mut self, user_id: u64, entry: MemberEntry) {
        if entry.special {
            self.special_uncount(user_id);
        } else {
            self.uncount_set(entry.set);
            self.sets[entry.set as usize].regular -= 1;
            self.count_set(entry.set);
        }
        let s = &mut self.sets[entry.set as usize];
        s.holders -= 1;
        if s.holders == 0 {
            self.release_set(entry.set);
        }
    }

    fn drop_member(&mut self, user_id: u64) {
        if let Some(e) = self.members.remove(&user_id) {
            self.detach(user_id, e);
        }
    }

    fn special_uncount(&mut self, user_id: u64) {
        if let Some(mask) = self.special_counted.remove(&user_id) {
            self.special_count.seats_used -= 1;
            self.special_count.by_tier.sub_mask(mask, 1);
        }
    }

    fn special_recount(&mut self, user_id: u64, set: u32) {
        self.special_uncount(user_id);
        if self.member_sees_any(user_id, set) {
            let mask = self.sets[set as usize].tiers;
            self.special_counted.insert(user_id, mask);
            self.special_count.seats_used += 1;
            self.special_count.by_tier.add_mask(mask, 1);
        }
    }

    /// Moves a member between the regular (role set) and special (one by one) counting after
    /// the owner or a member overwrite changed, and re-evaluates them if special.
    fn reconcile_special(&mut self, user_id: u64) {
        let Some(mut entry) = self.members.get(&user_id).copied() else {
            return;
        };
        let special = self.is_special(user_id);
        if entry.special != special {
            self.uncount_set(entry.set);
            if special {
                self.sets[entry.set as usize].regular -= 1;
            } else {
                self.special_uncount(user_id);
                self.sets[entry.set as usize].regular += 1;
            }
            self.count_set(entry.set);
            entry.special = special;
            self.members.insert(user_id, entry);
        }
        if special {
            self.special_recount(user_id, entry.set);
        }
    }

    fn recount_specials(&mut self) {
        let mut users: Vec<u64> = self.member_overwrite_refs.keys().copied().collect();
        users.push(self.owner_id);
        for u in users {
            if let Some(e) = self.members.get(&u).copied() {
                if e.special {
                    self.special_recount(u, e.set);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::permissions::VIEW_CHANNEL;
    use crate::domain::seats::TierCounts;

    const GUILD: u64 = 100;
    const OWNER: u64 = 1;
    const VIP: u64 = 201;
    const GOLD: u64 = 301;
    const FEED: u64 = 10;
    const LOBBY: u64 = 11;

    #[test]
    fn the_summary_counts_each_member_once_per_channel_under_the_rule_that_lets_them_see() {
        use crate::domain::permissions::{Sight, Via};
        use crate::domain::seats::{ChannelSnapshot, MemberSnapshot, RoleSnapshot};
        const ADMIN: u64 = 202;
        let mut overwrites = private_feed();
        overwrites.push(Overwrite::member(7, VIEW_CHANNEL, 0));
        let member = |user_id, roles: &[u64]| MemberSnapshot {
            user_id,
            roles: roles.to_vec(),
            is_bot: false,
        };
        let guild = GuildSnapshot {
            guild_id: GUILD,
            owner_id: OWNER,
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
                    id: ADMIN,
                    permissions: ADMINISTRATOR,
                },
            ],
            channels: vec![ChannelSnapshot {
                id: FEED,
                overwrites,
            }],
            threads: Vec::new(),
            members: vec![
                member(OWNER, &[]),
                member(2, &[VIP]),
                member(3, &[VIP]),
                member(4, &[VIP, GOLD]),
                member(5, &[ADMIN]),
                member(6, &[]),
                member(7, &[]),
            ],
        };
        let index = GuildIndex::build(&guild, &[FEED], TierRoles::default());
        let why = |via, role_id| Sight { via, role_id };
        assert_eq!(
            index.sight_summary(),
            vec![
                (FEED, why(Via::RoleOverwrite, Some(VIP)), 3),
                (FEED, why(Via::Owner, None), 1),
                (FEED, why(Via::Administrator, Some(ADMIN)), 1),
                (FEED, why(Via::MemberOverwrite, None), 1),
            ]
        );
        let counted: u64 = index.sight_summary().iter().map(|r| r.2).sum();
        assert_eq!(
            counted,
            index.seat_count().seats_used,
            "one reason per counted member"
        );
        assert_eq!(
            index.sight_reasons(6),
            Some(Vec::new()),
            "denied by @everyone"
        );
    }

    fn private_feed() -> Vec<Overwrite> {
        vec![
            Overwrite::role(GUILD, 0, VIEW_CHANNEL),
            Overwrite::role(VIP, VIEW_CHANNEL, 0),
        ]
    }

    fn index() -> GuildIndex {
        let mut ix = GuildIndex::new(
            GUILD,
            OWNER,
            TierRoles {
                pro: Some(GOLD),
                ..TierRoles::default()
            },
        );
        ix.role_upsert(GUILD, VIEW_CHANNEL);
        ix.role_upsert(VIP, 0);
        ix.role_upsert(GOLD, 0);
        ix.channel_overwrites_set(FEED, &private_feed());
        ix.channel_overwrites_set(LOBBY, &[]);
        ix.map_channel(FEED);
        ix
    }

    fn seats(n: u64) -> SeatCount {
        SeatCount {
            seats_used: n,
            by_tier: TierCounts::default(),
        }
    }

    #[test]
    fn members_with_identical_roles_share_one_role_set_until_the_last_leaves() {
        let mut ix = index();
        ix.member_upsert(5, &[VIP, GOLD], false);
        ix.member_upsert(6, &[GOLD, VIP, VIP], false);
        ix.member_upsert(7, &[GUILD, VIP, GOLD], false);
        assert_eq!(ix.role_set_count(), 1);
        assert_eq!(ix.seat_count().seats_used, 3);
        assert_eq!(ix.seat_count().by_tier.pro, 3);
        for user in [5, 6, 7] {
            ix.member_remove(user);
        }
        assert_eq!(ix.role_set_count(), 0);
        assert_eq!(ix.seat_count(), SeatCount::default());
    }

    #[test]
    fn member_events_return_the_new_count() {
        let mut ix = index();
        assert_eq!(ix.member_upsert(5, &[], false), seats(0));
        assert_eq!(ix.member_upsert(5, &[VIP], false), seats(1));
        assert!(ix.is_member_counted(5));
        assert_eq!(ix.member_upsert(5, &[VIP], true), seats(0), "now a bot");
        assert_eq!(ix.member_count(), 1);
        assert_eq!(ix.member_remove(5), seats(0));
        assert_eq!(ix.member_count(), 0);
    }

    #[test]
    fn overwrite_change_reevaluates_every_role_set() {
        let mut ix = index();
        ix.member_upsert(5, &[], false);
        ix.member_upsert(6, &[VIP], false);
        assert_eq!(ix.counted_member_ids(), vec![6]);
        assert_eq!(ix.channel_overwrites_set(FEED, &[]), seats(2));
        assert_eq!(
            ix.channel_remove(FEED),
            seats(0),
            "a deleted channel is seen by nobody"
        );
        assert_eq!(ix.channel_overwrites_set(FEED, &private_feed()), seats(1));
    }

    #[test]
    fn role_permission_change_reevaluates_holders() {
        let mut ix = index();
        ix.member_upsert(5, &[VIP], false);
        ix.member_upsert(6, &[], false);
        ix.role_upsert(GUILD, 0);
        assert_eq!(ix.seat_count(), seats(1));
        // A deleted role grants nothing: the VIP overwrite left on the feed opens it to
        // nobody, though 5 still lists the role.
        assert_eq!(ix.role_remove(VIP), seats(0));
        assert_eq!(
            ix.role_upsert(GUILD, ADMINISTRATOR),
            seats(2),
            "@everyone admin"
        );
        assert_eq!(
            ix.role_remove(GUILD),
            seats(0),
            "no @everyone role: no base"
        );
        assert_eq!(
            ix.role_upsert(VIP, 0),
            seats(1),
            "the role back: its overwrite applies again"
        );
        ix.member_upsert(6, &[GOLD], false);
        let count = ix.role_upsert(GOLD, ADMINISTRATOR);
        assert_eq!(count.seats_used, 2);
        assert_eq!(count.by_tier.pro, 1);
    }

    #[test]
    fn a_deleted_tier_role_is_no_tier() {
        let mut ix = index();
        ix.member_upsert(5, &[VIP, GOLD], false);
        assert_eq!(ix.seat_count().by_tier.pro, 1);
        let count = ix.role_remove(GOLD);
        assert_eq!(count.seats_used, 1, "still sees the feed through VIP");
        assert_eq!(count.by_tier.pro, 0);
        assert_eq!(ix.role_upsert(GOLD, 0).by_tier.pro, 1);
    }

    #[test]
    fn a_deleted_roles_deny_overwrite_takes_nothing_away() {
        let mut ix = index();
        const MUTED: u64 = 401;
        ix.role_upsert(MUTED, 0);
        let mut ows = private_feed();
        ows.push(Overwrite::role(MUTED, 0, VIEW_CHANNEL));
        ix.channel_overwrites_set(FEED, &ows);
        ix.member_upsert(5, &[VIP, MUTED], false);
        assert_eq!(
            ix.seat_count(),
            seats(1),
            "VIP allow beats MUTED deny (allow wins)"
        );
        ix.member_upsert(6, &[MUTED], false);
        ix.channel_overwrites_set(LOBBY, &[Overwrite::role(MUTED, 0, VIEW_CHANNEL)]);
        ix.map_channel(LOBBY);
        assert!(!ix.is_member_counted(6), "muted out of the lobby");
        ix.role_remove(MUTED);
        assert!(ix.is_member_counted(6), "the deleted role's deny is gone");
    }

    #[test]
    fn owner_change_moves_the_owner_seat() {
        let mut ix = index();
        ix.member_upsert(OWNER, &[], false);
        ix.member_upsert(5, &[], false);
        assert_eq!(ix.counted_member_ids(), vec![OWNER]);
        assert_eq!(ix.set_owner(5), seats(1));
        assert_eq!(ix.counted_member_ids(), vec![5]);
    }

    #[test]
    fn member_overwrite_counts_that_member_alone() {
        let mut ix = index();
        ix.member_upsert(5, &[], false);
        ix.member_upsert(6, &[], false);
        let mut ows = private_feed();
        ows.push(Overwrite::member(5, VIEW_CHANNEL, 0));
        assert_eq!(ix.channel_overwrites_set(FEED, &ows), seats(1));
        assert_eq!(ix.counted_member_ids(), vec![5]);
        assert_eq!(ix.role_set_count(), 1, "5 and 6 still share their role set");
        assert_eq!(ix.channel_overwrites_set(FEED, &private_feed()), seats(0));
    }

    #[test]
    fn mapping_and_unmapping_channels() {
        let mut ix = index();
        ix.member_upsert(5, &[], false);
        assert_eq!(ix.map_channel(LOBBY), seats(1));
        assert_eq!(ix.unmap_channel(LOBBY), seats(0));
        assert_eq!(ix.set_mapped_channels(&[LOBBY, FEED, LOBBY]), seats(1));
        assert_eq!(ix.mapped_channel_ids(), vec![FEED, LOBBY]);
        assert_eq!(ix.set_mapped_channels(&[]), seats(0));
    }

    #[test]
    fn tier_roles_change_recounts_the_breakdown() {
        let mut ix = index();
        ix.member_upsert(5, &[VIP, GOLD], false);
        ix.member_upsert(6, &[GOLD], false);
        assert_eq!(ix.seat_count().by_tier.pro, 1);
        let count = ix.set_tier_roles(TierRoles {
            basic: Some(VIP),
            advanced: None,
            pro: None,
        });
        assert_eq!(
            count.by_tier,
            TierCounts {
                basic: 1,
                advanced: 0,
                pro: 0
            }
        );
    }

    #[test]
    fn thread_visibility_follows_its_parent() {
        let mut ix = index();
        ix.member_upsert(5, &[VIP], false);
        ix.member_upsert(6, &[], false);
        assert_eq!(ix.can_member_view_thread(5, FEED), Some(true));
        assert_eq!(ix.can_member_view_thread(6, FEED), Some(false));
        assert_eq!(ix.can_member_view_thread(6, LOBBY), Some(true));
        assert_eq!(ix.can_member_view_thread(6, 999), None, "unknown parent");
        assert_eq!(ix.can_member_view_thread(42, FEED), None, "unknown member");
    }
}

#[cfg(test)]
mod many_channels {
    use super::*;
    use crate::domain::seats::count_reference;
    use crate::domain::seats::{ChannelSnapshot, MemberSnapshot, RoleSnapshot};

    /// More mapped channels than one mask word holds.
    #[test]
    fn seventy_mapped_channels_use_several_mask_words() {
        const GUILD: u64 = 100;
        let private = |role: u64| {
            vec![
                Overwrite::role(GUILD, 0, VIEW_CHANNEL),
                Overwrite::role(role, VIEW_CHANNEL, 0),
            ]
        };
        let g = GuildSnapshot {
            guild_id: GUILD,
            owner_id: 1,
            roles: std::iter::once(RoleSnapshot {
                id: GUILD,
                permissions: VIEW_CHANNEL,
            })
            .chain((0..70).map(|i| RoleSnapshot {
                id: 200 + i,
                permissions: 0,
            }))
            .collect(),
            // Channel 1000 + i opens to role 200 + i.
            channels: (0..70)
                .map(|i| ChannelSnapshot {
                    id: 1000 + i,
                    overwrites: private(200 + i),
                })
                .collect(),
            threads: Vec::new(),
            members: (0..70)
                .map(|i| MemberSnapshot {
                    user_id: 10 + i,
                    roles: vec![200 + i],
                    is_bot: false,
                })
                .collect(),
        };
        let tiers = TierRoles::default();
        let high: Vec<u64> = (64..70).map(|i| 1000 + i).collect();
        let all: Vec<u64> = (0..70).map(|i| 1000 + i).collect();
        let mut ix = GuildIndex::build(&g, &all, tiers);
        assert_eq!(ix.seat_count().seats_used, 70);
        assert_eq!(ix.set_mapped_channels(&high).seats_used, 6);
        assert_eq!(ix.counted_member_ids(), (74..80).collect::<Vec<_>>());
        assert_eq!(
            GuildIndex::count_snapshot(&g, &high, tiers),
            count_reference(&g, &high, &tiers).0
        );
        assert_eq!(ix.channel_remove(1069).seats_used, 5);
    }

    /// The admin page's list: counted members only, each with the tier roles it holds, the
    /// owner (special) and a member let in by a member overwrite (special) included.
    #[test]
    fn counted_members_carry_their_tier_mask() {
        const GUILD: u64 = 100;
        const CHAN: u64 = 1000;
        const SUB: u64 = 201;
        const BRONZE: u64 = 301;
        const GOLD: u64 = 303;
        let g = GuildSnapshot {
            guild_id: GUILD,
            owner_id: 1,
            roles: vec![
                RoleSnapshot {
                    id: GUILD,
                    permissions: VIEW_CHANNEL,
                },
                RoleSnapshot {
                    id: SUB,
                    permissions: 0,
                },
                RoleSnapshot {
                    id: BRONZE,
                    permissions: 0,
                },
                RoleSnapshot {
                    id: GOLD,
                    permissions: 0,
                },
            ],
            channels: vec![ChannelSnapshot {
                id: CHAN,
                overwrites: vec![
                    Overwrite::role(GUILD, 0, VIEW_CHANNEL),
                    Overwrite::role(SUB, VIEW_CHANNEL, 0),
                    Overwrite::member(14, VIEW_CHANNEL, 0),
                ],
            }],
            threads: Vec::new(),
            members: [
                (1, vec![GOLD]),               // owner: sees everything
                (10, vec![SUB]),               // no tier
                (11, vec![SUB, BRONZE]),       // bronze
                (12, vec![SUB, BRONZE, GOLD]), // bronze and gold
                (13, vec![BRONZE]),            // cannot see: not counted
                (14, vec![GOLD]),              // member overwrite lets them in
            ]
            .into_iter()
            .map(|(user_id, roles)| MemberSnapshot {
                user_id,
                roles,
                is_bot: false,
            })
            .collect(),
        };
        let tiers = TierRoles {
            basic: Some(BRONZE),
            advanced: None,
            pro: Some(GOLD),
        };
        let ix = GuildIndex::build(&g, &[CHAN], tiers);
        assert_eq!(
            ix.counted_members_with_tiers(),
            vec![(1, 4), (10, 0), (11, 1), (12, 5), (14, 4)]
        );
        let ids: Vec<u64> = ix
            .counted_members_with_tiers()
            .iter()
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(ids, ix.counted_member_ids());
    }
}
