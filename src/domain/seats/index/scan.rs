//! The from-scratch count over a member list, without interning a role set per member.
//!
//! Only a few roles can change a member's answer: those granting VIEW_CHANNEL or
//! ADMINISTRATOR, those with an overwrite on a mapped channel, and the tier roles. When there
//! are at most 64 of them, each gets one bit; a member's roles become a bit mask through a
//! small collision-free table, and the VIEW_CHANNEL decision on every mapped channel is a few
//! word operations on that mask (mapped channels with the same overwrites on those roles are
//! judged once). No per-member allocation, no hash-map probe: the scan splits across threads.
//!
//! The owner and members named by a member overwrite on a mapped channel are set aside and
//! evaluated one by one by the index, as in [`GuildIndex::member_upsert`].

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{mix, GuildIndex};
use crate::domain::permissions::{ADMINISTRATOR, VIEW_CHANNEL};
use crate::domain::seats::{MemberList, Members, SeatCount, TierRoles};

/// Below this many members per thread, starting a thread costs more than it saves.
const MIN_MEMBERS_PER_THREAD: usize = 32_768;

/// Members per unit of work handed to a thread.
const CHUNK: usize = 16_384;

/// How many threads a scan of `members` members uses by default.
pub(super) fn default_threads(members: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.min(members / MIN_MEMBERS_PER_THREAD).max(1)
}

/// Mapped channels that judge the relevant roles alike, reduced to masks over the role bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Class {
    /// Roles whose overwrite allows VIEW_CHANNEL on the channel.
    allow: u64,
    /// Roles whose overwrite denies it.
    deny: u64,
    /// Whether the channel is open after the `@everyone` overwrite, for a base without
    /// (`[0]`) and with (`[1]`) VIEW_CHANNEL.
    open: [bool; 2],
}

/// Role id -> bit, one probe: `table[(id * mult) >> shift]` holds the id or another key.
struct RoleBits {
    mult: u64,
    shift: u32,
    table: Vec<(u64, u64)>,
}

impl RoleBits {
    /// A collision-free multiplicative hash for `ids` (distinct), when one is found in a
    /// table of at most 4096 entries.
    fn perfect(ids: &[u64]) -> Option<Self> {
        let min_bits = (ids.len().max(1) * 2).next_power_of_two().trailing_zeros();
        for bits in min_bits + 1..=12 {
            let shift = 64 - bits;
            for seed in 0..64u64 {
                let mult = mix(seed.wrapping_add(u64::from(bits) << 32)) | 1;
                let mut table = vec![(0u64, 0u64); 1 << bits];
                let mut used = vec![false; 1 << bits];
                let collision_free = ids.iter().enumerate().all(|(i, id)| {
                    let at = (id.wrapping_mul(mult) >> shift) as usize;
                    if used[at] {
                        return false;
                    }
                    used[at] = true;
                    table[at] = (*id, 1 << i);
                    true
                });
                if collision_free {
                    return Some(Self { mult, shift, table });
                }
            }
        }
        None
    }

    /// Without a branch on whether the id is in the table (most roles are not, in no
    /// predictable order): the bits are masked by the key comparison.
    #[inline]
    fn get(&self, id: u64) -> u64 {
        // An empty entry holds (0, 0): whatever id lands there gets no bit.
        let (key, bits) = self
            .table
            .get((id.wrapping_mul(self.mult) >> self.shift) as usize)
            .copied()
            .unwrap_or((!id, 0));
        bits & u64::from(key == id).wrapping_neg()
    }
}

/// How many members ahead the scan asks for role lists.
const PREFETCH_AHEAD: usize = 16;

/// A cheap 4096-bit filter over the special members' ids: most members are ruled out without
/// a hash-map probe.
struct SpecialFilter([u64; 64]);

impl SpecialFilter {
    fn at(id: u64) -> (usize, u64) {
        let h = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        ((h >> 58) as usize, 1u64 << ((h >> 52) & 63))
    }

    fn maybe(&self, id: u64) -> bool {
        let (w, b) = Self::at(id);
        self.0[w] & b != 0
    }
}

/// Everything a member's answer depends on, for a guild with at most 64 relevant roles.
pub(super) struct Projection {
    bits: RoleBits,
    admin_everyone: bool,
    view_everyone: bool,
    admin_roles: u64,
    view_roles: u64,
    /// Does any mapped channel exist (what an administrator sees)?
    any_channel: bool,
    classes: Vec<Class>,
    tier_bits: [u64; 3],
    specials: SpecialFilter,
    /// An id that is never given a bit (the `@everyone` role's).
    no_role: u64,
}

/// One thread's share: the counts of its regular members, its members set aside for the
/// index (special, or listed more than once), and whether its user ids ascend strictly.
#[derive(Default)]
struct Partial {
    seats: u64,
    tiers: [u64; 3],
    /// Positions in the member list.
    set_aside: Vec<usize>,
    ascending: bool,
    first_id: Option<u64>,
    last_id: Option<u64>,
}

/// Users listed more than once, sorted (usually none).
type Repeated = [u64];

impl Projection {
    /// `None` when more than 64 roles matter or no collision-free table is found: the caller
    /// interns role sets instead.
    pub(super) fn new(index: &GuildIndex, tiers: TierRoles) -> Option<Self> {
        let guild_id = index.guild_id;
        let mut relevant: Vec<u64> = index
            .roles
            .iter()
            .filter(|(_, p)| **p & (VIEW_CHANNEL | ADMINISTRATOR) != 0)
            .map(|(id, _)| *id)
            .chain(index.masks.roles.keys().copied())
            .chain(
                [tiers.basic, tiers.advanced, tiers.pro]
                    .into_iter()
                    .flatten(),
            )
            .filter(|id| *id != guild_id)
            .collect();
        relevant.sort_unstable();
        relevant.dedup();
        if relevant.len() > 64 {
            return None;
        }
        let bits = RoleBits::perfect(&relevant)?;
        let everyone = index.everyone();
        let (mut admin_roles, mut view_roles) = (0u64, 0u64);
        for (id, p) in &index.roles {
            if *id == guild_id {
                continue;
            }
            if p & ADMINISTRATOR != 0 {
                admin_roles |= bits.get(*id);
            }
            if p & VIEW_CHANNEL != 0 {
                view_roles |= bits.get(*id);
            }
        }
        let m = &index.masks;
        let slot_bit = |mask: &[u64], slot: usize| {
            mask.get(slot / 64)
                .is_some_and(|w| w & (1 << (slot % 64)) != 0)
        };
        let mut classes: Vec<Class> = Vec::new();
        for slot in 0..index.slots.len() {
            if !slot_bit(&m.exists, slot) {
                continue;
            }
            let (ev_allow, ev_deny) = (
                slot_bit(&m.everyone_allow, slot),
                slot_bit(&m.everyone_deny, slot),
            );
            let mut class = Class {
                allow: 0,
                deny: 0,
                open: [ev_allow, ev_allow || !ev_deny],
            };
            for (role, (allow, deny)) in &m.roles {
                if slot_bit(allow, slot) {
                    class.allow |= bits.get(*role);
                }
                if slot_bit(deny, slot) {
                    class.deny |= bits.get(*role);
                }
            }
            if !classes.contains(&class) {
                classes.push(class);
            }
        }
        let mut filter = [0u64; 64];
        for id in index
            .member_overwrite_refs
            .keys()
            .copied()
            .chain([index.owner_id])
        {
            let (w, b) = SpecialFilter::at(id);
            filter[w] |= b;
        }
        // A tier role the guild no longer has is held by nobody.
        let tier_bit = |t: Option<u64>| {
            t.filter(|id| *id != guild_id && index.role_exists(*id))
                .map_or(0, |id| bits.get(id))
        };
        Some(Self {
            admin_everyone: everyone & ADMINISTRATOR != 0,
            view_everyone: everyone & VIEW_CHANNEL != 0,
            admin_roles,
            view_roles,
            any_channel: !classes.is_empty(),
            classes,
            tier_bits: [
                tier_bit(tiers.basic),
                tier_bit(tiers.advanced),
                tier_bit(tiers.pro),
            ],
            specials: SpecialFilter(filter),
            no_role: guild_id,
            bits,
        })
    }

    /// Does a regular member whose relevant roles are `mask` see a mapped channel?
    #[inline]
    ///
    /// Without branches on the member's data (`|` and `&` on bools, every class judged): the
    /// answer is unpredictable member to member, and mispredicted branches cost more than
    /// the few extra word operations.
    fn sees(&self, mask: u64) -> bool {
        let admin = self.admin_everyone | (mask & self.admin_roles != 0);
        let view = usize::from(self.view_everyone | (mask & self.view_roles != 0));
        let mut open = false;
        for c in &self.classes {
            open |= (mask & c.allow != 0) | ((mask & c.deny == 0) & c.open[view]);
        }
        (admin & self.any_channel) | (!admin & open)
    }

    /// The member's relevant roles as a bit mask. The first four roles are looked up with no
    /// branch on how many there are (a short list repeats its last role, an empty one looks
    /// up `no_role`, which has no bit); longer lists, rare, loop over the rest.
    #[inline]
    fn mask(&self, roles: &[u64]) -> u64 {
        let last = roles.len().wrapping_sub(1);
        let at = |i: usize| roles.get(i.min(last)).copied().unwrap_or(self.no_role);
        let mut mask = self.bits.get(at(0)) | self.bits.get(at(1));
        mask |= self.bits.get(at(2)) | self.bits.get(at(3));
        if let Some(rest) = roles.get(4..) {
            for id in rest {
                mask |= self.bits.get(*id);
            }
        }
        mask
    }

    fn scan<M: Members + ?Sized>(
        &self,
        index: &GuildIndex,
        repeated: &Repeated,
        members: &M,
        range: std::ops::Range<usize>,
    ) -> Partial {
        let mut out = Partial {
            ascending: true,
            first_id: (!range.is_empty()).then(|| members.user_id(range.start)),
            last_id: (!range.is_empty()).then(|| members.user_id(range.end - 1)),
            ..Partial::default()
        };
        // Id 0 first reads as out of order: only the cost of a sort, never a wrong count.
        let mut previous = 0u64;
        let mut out_of_order = false;
        for i in range {
            members.prefetch(i + PREFETCH_AHEAD);
            let user_id = members.user_id(i);
            out_of_order |= user_id <= previous;
            previous = user_id;
            if self.specials.maybe(user_id)
                && (index.is_special(user_id) || repeated.binary_search(&user_id).is_ok())
            {
                out.set_aside.push(i);
                continue;
            }
            if members.is_bot(i) {
                continue;
            }
            let mask = members.with_roles(i, |roles| self.mask(roles));
            let seen = self.sees(mask);
            out.seats += u64::from(seen);
            for (n, bit) in out.tiers.iter_mut().zip(self.tier_bits) {
                *n += u64::from(seen & (mask & bit != 0));
            }
        }
        out.ascending = !out_of_order;
        out
    }

    /// Scans `members` in chunks of [`CHUNK`] members, shared out to `threads` threads as
    /// they become free; the calling thread scans too, so a helper thread the scheduler starts
    /// late costs little. The partials come back in member order.
    fn scan_on<M: Members + ?Sized>(
        &self,
        index: &GuildIndex,
        repeated: &Repeated,
        members: &M,
        threads: usize,
    ) -> Vec<Partial> {
        in_chunks(members.len(), threads, |range| {
            self.scan(index, repeated, members, range)
        })
    }

    /// The count over `members` on `threads` threads. A user listed more than once counts by
    /// their last entry: when the ids do not ascend strictly, the repeated ones are found (one
    /// sort of the ids) and their entries set aside with the special members.
    pub(super) fn count<M: Members + ?Sized>(
        mut self,
        index: &mut GuildIndex,
        members: &M,
        threads: usize,
    ) -> SeatCount {
        let mut partials = self.scan_on(index, &[], members, threads);
        let ascending = partials.iter().all(|p| p.ascending)
            && partials
                .windows(2)
                .all(|w| match (w[0].last_id, w[1].first_id) {
                    (Some(a), Some(b)) => a < b,
                    _ => true,
                });
        if !ascending {
            let repeated = repeated_ids(members);
            if !repeated.is_empty() {
                for id in &repeated {
                    let (w, b) = SpecialFilter::at(*id);
                    self.specials.0[w] |= b;
                }
                partials = self.scan_on(index, &repeated, members, threads);
            }
        }
        let mut count = SeatCount::default();
        for p in &partials {
            count.seats_used += p.seats;
            count.by_tier.basic += p.tiers[0];
            count.by_tier.advanced += p.tiers[1];
            count.by_tier.pro += p.tiers[2];
        }
        // Set-aside entries are in member order: the last entry of each user decides.
        let mut judged: HashSet<u64> = HashSet::new();
        for &i in partials.iter().flat_map(|p| &p.set_aside).rev() {
            let user_id = members.user_id(i);
            if !judged.insert(user_id) || members.is_bot(i) {
                continue;
            }
            let set = members.with_roles(i, |roles| index.intern(roles));
            if index.member_sees_any(user_id, set) {
                count.seats_used += 1;
                count.by_tier.add_mask(index.sets[set as usize].tiers, 1);
            }
        }
        count
    }

    /// The count over a flat list whose ids ascend (no user twice). Every member is first
    /// judged as a regular one from its role positions alone: a table turns each position
    /// into relevant-role bits, and no id is read. Then the special members (the owner,
    /// those named by member overwrites), found by binary search, are taken back out and
    /// judged one by one. The pass reads the role positions and where each member's begin:
    /// a few bytes per member.
    pub(super) fn count_flat(
        self,
        index: &mut GuildIndex,
        members: &MemberList,
        threads: usize,
    ) -> SeatCount {
        let lut: Vec<u64> = members
            .role_ids()
            .iter()
            .map(|id| self.bits.get(*id))
            .collect();
        let partials = in_chunks(members.len(), threads, |range| {
            let (mut seats, mut tiers) = (0u64, [0u64; 3]);
            for i in range {
                if members.is_bot(i) {
                    continue;
                }
                let mask = members
                    .role_positions(i)
                    .iter()
                    .fold(0u64, |m, p| m | lut[*p as usize]);
                let seen = self.sees(mask);
                seats += u64::from(seen);
                for (n, bit) in tiers.iter_mut().zip(self.tier_bits) {
                    *n += u64::from(seen & (mask & bit != 0));
                }
            }
            (seats, tiers)
        });
        let mut count = SeatCount::default();
        for (seats, tiers) in partials {
            count.seats_used += seats;
            count.by_tier.basic += tiers[0];
            count.by_tier.advanced += tiers[1];
            count.by_tier.pro += tiers[2];
        }
        let specials: Vec<u64> = index
            .member_overwrite_refs
            .keys()
            .copied()
            .chain([index.owner_id])
            .collect::<HashSet<u64>>()
            .into_iter()
            .collect();
        for user_id in specials {
            let Some(i) = members.position_of(user_id) else {
                continue;
            };
            if members.is_bot(i) {
                continue;
            }
            let mask = members
                .role_positions(i)
                .iter()
                .fold(0u64, |m, p| m | lut[*p as usize]);
            if self.sees(mask) {
                count.seats_used -= 1;
                for (tier, bit) in [
                    &mut count.by_tier.basic,
                    &mut count.by_tier.advanced,
                    &mut count.by_tier.pro,
                ]
                .into_iter()
                .zip(self.tier_bits)
                {
                    *tier -= u64::from(mask & bit != 0);
                }
            }
            let set = members.with_roles(i, |roles| index.intern(roles));
            if index.member_sees_any(user_id, set) {
                count.seats_used += 1;
                count.by_tier.add_mask(index.sets[set as usize].tiers, 1);
            }
        }
        count
    }
}

/// Runs `f` over `0..n` in chunks of [`CHUNK`] on up to `threads` threads (the calling one
/// included, taking chunks as they come free); the results in chunk order.
fn in_chunks<T: Send>(
    n: usize,
    threads: usize,
    f: impl Fn(std::ops::Range<usize>) -> T + Sync,
) -> Vec<T> {
    let chunks = n.div_ceil(CHUNK).max(1);
    if threads <= 1 || chunks == 1 {
        return vec![f(0..n)];
    }
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let c = next.fetch_add(1, Ordering::Relaxed);
            if c >= chunks {
                break done;
            }
            done.push((c, f(c * CHUNK..((c + 1) * CHUNK).min(n))));
        }
    };
    let mut done = std::thread::scope(|s| {
        let helpers: Vec<_> = (1..threads.min(chunks)).map(|_| s.spawn(work)).collect();
        let mut done = work();
        for h in helpers {
            done.extend(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
        }
        done
    });
    done.sort_unstable_by_key(|(c, _)| *c);
    done.into_iter().map(|(_, t)| t).collect()
}

/// The user ids listed more than once, sorted.
pub(super) fn repeated_ids<M: Members + ?Sized>(members: &M) -> Vec<u64> {
    let mut ids: Vec<u64> = (0..members.len()).map(|i| members.user_id(i)).collect();
    ids.sort_unstable();
    let mut repeated: Vec<u64> = ids
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| w[0])
        .collect();
    repeated.dedup();
    repeated
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::permissions::Overwrite;
    use crate::domain::seats::{
        count_reference, ChannelSnapshot, GuildSnapshot, MemberList, MemberSnapshot, RoleSnapshot,
    };

    const GUILD: u64 = 1_000;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(1);
            mix(self.0)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
        fn chance(&mut self, percent: u64) -> bool {
            self.below(100) < percent
        }
        fn view_bits(&mut self) -> u64 {
            [
                0,
                VIEW_CHANNEL,
                ADMINISTRATOR,
                VIEW_CHANNEL | 1 << 11,
                1 << 11,
            ][self.below(5) as usize]
        }
    }

    /// A random guild: up to 150 roles (so sometimes more than 64 that matter), a few
    /// channels with role, `@everyone` and member overwrites, members with repeats, bots and
    /// the owner, in ascending or scrambled order.
    fn random_guild(rng: &mut Rng) -> (GuildSnapshot, Vec<u64>, TierRoles) {
        let users = 1 + rng.below(300);
        random_guild_of(rng, users)
    }

    fn random_guild_of(rng: &mut Rng, users: u64) -> (GuildSnapshot, Vec<u64>, TierRoles) {
        let roles = 1 + rng.below(150);
        let role = |rng: &mut Rng| GUILD + 1 + rng.below(roles + 3); // a few unknown ids
        let user = |rng: &mut Rng| 10_000 + rng.below(users);
        let mut g = GuildSnapshot {
            guild_id: GUILD,
            owner_id: user(rng),
            ..GuildSnapshot::default()
        };
        if rng.chance(90) {
            let permissions = rng.view_bits();
            g.roles.push(RoleSnapshot {
                id: GUILD,
                permissions,
            });
        }
        for i in 0..roles {
            let permissions = if rng.chance(2) {
                ADMINISTRATOR
            } else {
                rng.view_bits() & !ADMINISTRATOR
            };
            g.roles.push(RoleSnapshot {
                id: GUILD + 1 + i,
                permissions,
            });
        }
        let bits = |rng: &mut Rng| [0, VIEW_CHANNEL, 1 << 11][rng.below(3) as usize];
        for c in 0..1 + rng.below(6) {
            let mut overwrites = Vec::new();
            if rng.chance(60) {
                overwrites.push(Overwrite::role(GUILD, bits(rng), bits(rng)));
            }
            let many = rng.chance(30);
            for _ in 0..rng.below(if many { 90 } else { 8 }) {
                overwrites.push(Overwrite::role(role(rng), bits(rng), bits(rng)));
            }
            for _ in 0..rng.below(4) {
                overwrites.push(Overwrite::member(user(rng), bits(rng), bits(rng)));
            }
            g.channels.push(ChannelSnapshot {
                id: 500 + c,
                overwrites,
            });
        }
        for _ in 0..rng.below(users + 20) {
            let mut roles: Vec<u64> = (0..rng.below(5)).map(|_| role(rng)).collect();
            if rng.chance(10) {
                roles.push(GUILD);
            }
            g.members.push(MemberSnapshot {
                user_id: user(rng),
                roles,
                is_bot: rng.chance(10),
            });
        }
        if rng.chance(50) {
            // Ascending ids without repeats, as Discord's paginated list.
            g.members.sort_by_key(|m| m.user_id);
            g.members.dedup_by_key(|m| m.user_id);
        }
        let mapped: Vec<u64> = (0..rng.below(5)).map(|_| 500 + rng.below(7)).collect();
        let tier = |rng: &mut Rng| rng.chance(70).then(|| role(rng));
        let tiers = TierRoles {
            basic: tier(rng),
            advanced: tier(rng),
            pro: tier(rng),
        };
        (g, mapped, tiers)
    }

    #[test]
    fn serial_and_parallel_scans_equal_the_reference() {
        let (mut wide, mut repeats, mut scrambled) = (0, 0, 0);
        for seed in 0..3_000 {
            let mut rng = Rng(seed * 7_919);
            let (g, mapped, tiers) = random_guild(&mut rng);
            let (expected, _) = count_reference(&g, &mapped, &tiers);
            let mut index = GuildIndex::new(g.guild_id, g.owner_id, tiers);
            for r in &g.roles {
                index.role_upsert(r.id, r.permissions);
            }
            for c in &g.channels {
                index.channel_overwrites_set(c.id, &c.overwrites);
            }
            index.set_mapped_channels(&mapped);
            wide += usize::from(Projection::new(&index, tiers).is_none());
            repeats += usize::from(!repeated_ids(g.members.as_slice()).is_empty());
            scrambled += usize::from(!g.members.windows(2).all(|w| w[0].user_id < w[1].user_id));
            let flat = MemberList::try_from(g.members.as_slice()).unwrap();
            for threads in [1, 2, 3, 8] {
                let got = GuildIndex::count_snapshot_on(&g, &mapped, tiers, threads);
                assert_eq!(got, expected, "seed {seed}, {threads} threads");
                let got = GuildIndex::count_members(&g, &flat, &mapped, tiers, threads);
                assert_eq!(got, expected, "seed {seed}, {threads} threads, flat list");
                let got = GuildIndex::count_member_list(&g, &flat, &mapped, tiers, threads);
                assert_eq!(
                    got, expected,
                    "seed {seed}, {threads} threads, flat fast path"
                );
            }
            assert_eq!(GuildIndex::count_snapshot(&g, &mapped, tiers), expected);
            let built = GuildIndex::build(&g, &mapped, tiers);
            assert_eq!(built.recount(), expected, "seed {seed}: live recount");
        }
        // The generator reaches every path.
        assert!(
            wide > 100,
            "guilds with more than 64 roles that matter: {wide}"
        );
        assert!(repeats > 500, "guilds listing a user twice: {repeats}");
        assert!(scrambled > 500, "guilds in scrambled order: {scrambled}");
    }

    /// Guilds large enough to be shared out in chunks, in ascending, scrambled and repeating
    /// order.
    #[test]
    fn chunked_scan_equals_the_reference() {
        let (mut chunked, mut scrambled) = (0, 0);
        for seed in 0..24 {
            let mut rng = Rng(seed * 104_729);
            let (g, mapped, tiers) = random_guild_of(&mut rng, 3 * CHUNK as u64 + 777);
            chunked += usize::from(g.members.len() > 2 * CHUNK);
            scrambled += usize::from(
                g.members.len() > 2 * CHUNK && !repeated_ids(g.members.as_slice()).is_empty(),
            );
            let (expected, _) = count_reference(&g, &mapped, &tiers);
            let flat = MemberList::try_from(g.members.as_slice()).unwrap();
            for threads in [1, 2, 3] {
                let got = GuildIndex::count_snapshot_on(&g, &mapped, tiers, threads);
                assert_eq!(got, expected, "seed {seed}, {threads} threads");
                let got = GuildIndex::count_members(&g, &flat, &mapped, tiers, threads);
                assert_eq!(got, expected, "seed {seed}, {threads} threads, flat list");
                let got = GuildIndex::count_member_list(&g, &flat, &mapped, tiers, threads);
                assert_eq!(
                    got, expected,
                    "seed {seed}, {threads} threads, flat fast path"
                );
            }
        }
        assert!(
            chunked >= 4 && scrambled >= 2,
            "{chunked} chunked, {scrambled} repeating"
        );
    }

    #[test]
    fn role_bits_give_each_relevant_role_its_bit_and_others_none() {
        let ids: Vec<u64> = (0..64)
            .map(|i| 1_100_000_000_000_000_000 + i * 4_096)
            .collect();
        let bits = RoleBits::perfect(&ids).expect("a collision-free table for 64 snowflakes");
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(bits.get(*id), 1 << i);
        }
        assert_eq!(bits.get(0), 0);
        assert_eq!(bits.get(ids[0] + 1), 0);
        assert_eq!(RoleBits::perfect(&[]).map(|b| b.get(7)), Some(0));
    }
}
