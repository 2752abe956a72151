//! Seat engine on a synthetic large guild: 1,000,000 members, 250 roles, 50 channels, 20 of
//! them mapped.
//!
//! - from-scratch count: `GuildIndex::build` on 1M members, beside the naive loop (serenity's
//!   `user_permissions_in` per member per mapped channel, stopping at the first visible one)
//!   run on a 100,000-member sample of the same guild and scaled by 10; the index is also
//!   built from that very serenity sample, and both counts are checked to agree;
//! - one member event, one overwrite change on the 1M-member index;
//! - resident bytes per member of the index, measured with a counting allocator.
//!
//! `cargo bench --bench seat_engine`

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;

use seatgate::domain::permissions::{Overwrite, ADMINISTRATOR, VIEW_CHANNEL};
use seatgate::domain::seats::{
    ChannelSnapshot, GuildIndex, GuildSnapshot, MemberSnapshot, RoleSnapshot, TierRoles,
};

// ----- counting allocator (only counts while enabled) -----

struct Counting;
static COUNTING: AtomicBool = AtomicBool::new(false);
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

// ----- synthetic guild -----

const MEMBERS: usize = 1_000_000;
const SAMPLE: usize = 100_000;
const ROLES: usize = 250;
const CHANNELS: usize = 50;
const MAPPED: usize = 20;
const GUILD: u64 = 1_100_000_000_000_000_000;
const SEND: u64 = 1 << 11;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// A role index skewed towards the first roles, as real guilds hand out a few roles
    /// to many and many roles to few.
    fn role(&mut self) -> usize {
        self.role_skewed(3)
    }
    fn role_skewed(&mut self, skew: i32) -> usize {
        ((self.unit().powi(skew)) * ROLES as f64) as usize
    }
}

fn role_id(i: usize) -> u64 {
    GUILD + 1 + i as u64
}
fn channel_id(i: usize) -> u64 {
    GUILD + 10_000 + i as u64
}
fn user_id(i: usize) -> u64 {
    // Snowflake-like: a timestamp-ish high part and a scattered low part.
    200_000_000_000_000_000 + (i as u64) * 4_194_304 + (i as u64 * 2_654_435_761) % 4_096
}

/// Tier roles (basic, advanced, pro) and a staff role: common to rare, as the skew gives.
const BASIC: usize = 0;
const ADVANCED: usize = 1;
const PRO: usize = 2;
const STAFF: usize = 5;
const MUTED: usize = 9;

/// The shape of a guild selling access: the 20 mapped channels are the paid feeds, private
/// to @everyone and opened to tier roles and staff (with a muted role denied and a few
/// member overwrites); the other 30 channels are community channels, some public.
///
/// `member_skew` shapes how members' roles are drawn (u^skew over the 250 roles): 3 gives
/// about 160,000 distinct role sets per million members, 8 about 70,000.
fn synthetic_guild(members: usize, member_skew: i32) -> GuildSnapshot {
    let mut rng = Rng(42);
    let mut roles = vec![RoleSnapshot {
        id: GUILD,
        permissions: VIEW_CHANNEL | SEND,
    }];
    for i in 0..ROLES {
        let mut p = rng.next() & !(VIEW_CHANNEL | ADMINISTRATOR);
        if i % 5 == 0 {
            p |= VIEW_CHANNEL;
        }
        if i == 150 || i == 230 {
            p |= ADMINISTRATOR;
        }
        roles.push(RoleSnapshot {
            id: role_id(i),
            permissions: p,
        });
    }
    let mut channels = Vec::new();
    for c in 0..CHANNELS {
        let mut ows = Vec::new();
        if c < MAPPED {
            ows.push(Overwrite::role(GUILD, 0, VIEW_CHANNEL));
            ows.push(Overwrite::role(role_id(PRO), VIEW_CHANNEL, 0));
            ows.push(Overwrite::role(role_id(STAFF), VIEW_CHANNEL, 0));
            ows.push(Overwrite::role(role_id(MUTED), 0, VIEW_CHANNEL | SEND));
            if c % 2 == 0 {
                ows.push(Overwrite::role(role_id(ADVANCED), VIEW_CHANNEL, 0));
            }
            if c % 4 == 0 {
                ows.push(Overwrite::role(role_id(BASIC), VIEW_CHANNEL, 0));
            }
        } else {
            if c % 3 != 2 {
                ows.push(Overwrite::role(GUILD, 0, VIEW_CHANNEL));
            }
            for _ in 0..2 + rng.below(7) {
                let r = role_id(rng.role());
                if rng.unit() < 0.7 {
                    ows.push(Overwrite::role(r, VIEW_CHANNEL | SEND, 0));
                } else {
                    ows.push(Overwrite::role(r, 0, VIEW_CHANNEL));
                }
            }
        }
        for _ in 0..rng.below(4) {
            let u = user_id(rng.below(members));
            if rng.unit() < 0.5 {
                ows.push(Overwrite::member(u, VIEW_CHANNEL, 0));
            } else {
                ows.push(Overwrite::member(u, 0, VIEW_CHANNEL));
            }
        }
        // Discord keeps one overwrite per target.
        let mut seen = std::collections::HashSet::new();
        ows.retain(|o| seen.insert(o.target));
        channels.push(ChannelSnapshot {
            id: channel_id(c),
            overwrites: ows,
        });
    }
    let members = (0..members)
        .map(|i| {
            let k = match rng.unit() {
                x if x < 0.25 => 0,
                x if x < 0.60 => 1,
                x if x < 0.82 => 2,
                x if x < 0.94 => 3,
                _ => 4 + rng.below(3),
            };
            let mut roles: Vec<u64> = (0..k)
                .map(|_| role_id(rng.role_skewed(member_skew)))
                .collect();
            roles.sort_unstable();
            roles.dedup();
            MemberSnapshot {
                user_id: user_id(i),
                roles,
                is_bot: rng.unit() < 0.005,
            }
        })
        .collect();
    GuildSnapshot {
        guild_id: GUILD,
        owner_id: user_id(7),
        roles,
        channels,
        members,
    }
}

fn mapped_ids() -> Vec<u64> {
    (0..MAPPED).map(channel_id).collect()
}

fn tiers() -> TierRoles {
    TierRoles {
        basic: Some(role_id(BASIC)),
        advanced: Some(role_id(ADVANCED)),
        pro: Some(role_id(PRO)),
    }
}

fn serenity_guild(g: &GuildSnapshot) -> serenity::model::guild::Guild {
    use seatgate::domain::permissions::OverwriteTarget;
    let roles: Vec<_> = g
        .roles
        .iter()
        .map(|r| {
            json!({"id": r.id.to_string(), "name": "r", "color": 0,
                   "colors": {"primary_color": 0}, "hoist": false, "managed": false,
                   "permissions": r.permissions.to_string(), "position": 0})
        })
        .collect();
    let channels: Vec<_> = g
        .channels
        .iter()
        .map(|c| {
            let ows: Vec<_> = c
                .overwrites
                .iter()
                .map(|o| {
                    let (id, kind) = match o.target {
                        OverwriteTarget::Role(id) => (id, 0),
                        OverwriteTarget::Member(id) => (id, 1),
                    };
                    json!({"id": id.to_string(), "type": kind,
                           "allow": o.allow.to_string(), "deny": o.deny.to_string()})
                })
                .collect();
            json!({"id": c.id.to_string(), "type": 0, "name": "c", "position": 0,
                   "permission_overwrites": ows})
        })
        .collect();
    let members: Vec<_> = g
        .members
        .iter()
        .map(|m| {
            let roles: Vec<String> = m.roles.iter().map(|r| r.to_string()).collect();
            json!({"user": {"id": m.user_id.to_string(), "username": "u", "bot": m.is_bot},
                   "roles": roles, "deaf": false, "mute": false, "flags": 0,
                   "joined_at": "2024-01-01T00:00:00.000000+00:00"})
        })
        .collect();
    let value = json!({
        "id": g.guild_id.to_string(), "name": "g", "owner_id": g.owner_id.to_string(),
        "verification_level": 0, "default_message_notifications": 0,
        "explicit_content_filter": 0, "roles": roles, "emojis": [], "features": [],
        "mfa_level": 0, "system_channel_flags": 0, "premium_tier": 0,
        "preferred_locale": "en-US", "nsfw_level": 0, "stickers": [],
        "premium_progress_bar_enabled": false,
        "joined_at": "2024-01-01T00:00:00.000000+00:00", "large": true,
        "member_count": g.members.len(), "voice_states": [], "members": members,
        "channels": channels, "threads": [], "presences": [], "stage_instances": [],
        "guild_scheduled_events": []
    });
    let guild: serenity::model::guild::Guild =
        serde_json::from_value(value).expect("synthetic guild deserializes");
    assert_eq!(guild.channels.len(), g.channels.len());
    assert_eq!(guild.members.len(), g.members.len());
    guild
}

/// The naive count: every member against every mapped channel with serenity's calculator.
fn naive_count(guild: &serenity::model::guild::Guild, mapped: &[u64]) -> u64 {
    use serenity::model::id::ChannelId;
    use serenity::model::permissions::Permissions;
    let channels: Vec<_> = mapped
        .iter()
        .filter_map(|id| guild.channels.get(&ChannelId::new(*id)))
        .collect();
    guild
        .members
        .values()
        .filter(|m| !m.user.bot)
        .filter(|m| {
            channels.iter().any(|c| {
                guild
                    .user_permissions_in(c, m)
                    .contains(Permissions::VIEW_CHANNEL)
            })
        })
        .count() as u64
}

/// The literal reading: every member against every mapped channel, then "at least one".
fn naive_count_all_channels(guild: &serenity::model::guild::Guild, mapped: &[u64]) -> u64 {
    use serenity::model::id::ChannelId;
    use serenity::model::permissions::Permissions;
    let channels: Vec<_> = mapped
        .iter()
        .filter_map(|id| guild.channels.get(&ChannelId::new(*id)))
        .collect();
    guild
        .members
        .values()
        .filter(|m| !m.user.bot)
        .filter(|m| {
            channels
                .iter()
                .filter(|c| {
                    guild
                        .user_permissions_in(c, m)
                        .contains(Permissions::VIEW_CHANNEL)
                })
                .count()
                > 0
        })
        .count() as u64
}

fn time<T>(runs: u32, mut f: impl FnMut() -> T) -> Duration {
    let started = Instant::now();
    for _ in 0..runs {
        black_box(f());
    }
    started.elapsed() / runs
}

/// The same guild with members' roles concentrated on fewer roles: the speed-up depends on
/// how many distinct role sets there are (the per-member cost is one hash lookup in the
/// role-set table, which stops fitting in cache as it grows).
fn sensitivity_to_distinct_role_sets(mapped: &[u64], tiers: TierRoles) {
    let full = synthetic_guild(MEMBERS, 8);
    let mut sample = full.clone();
    sample.members.truncate(SAMPLE);
    let sg = serenity_guild(&sample);
    let naive = naive_count_all_channels(&sg, mapped);
    assert_eq!(
        GuildIndex::from_serenity_guild(&sg, mapped, tiers)
            .seat_count()
            .seats_used,
        naive
    );
    let index = GuildIndex::build(&full, mapped, tiers);
    assert_eq!(
        GuildIndex::count_snapshot(&full, mapped, tiers),
        index.seat_count()
    );
    let t_count = time(5, || GuildIndex::count_snapshot(&full, mapped, tiers));
    let t_index = time(3, || GuildIndex::build(&full, mapped, tiers).seat_count());
    let t_early = time(2, || naive_count(&sg, mapped)) * (MEMBERS / SAMPLE) as u32;
    let t_all = time(2, || naive_count_all_channels(&sg, mapped)) * (MEMBERS / SAMPLE) as u32;
    println!(
        "sensitivity: same guild, members' roles concentrated (u^8): {} distinct role sets, {} seats",
        index.role_set_count(),
        index.seat_count().seats_used
    );
    println!(
        "  count_snapshot {:?}, index build {:?}; naive scaled: early exit {:?}, all channels {:?}",
        t_count, t_index, t_early, t_all
    );
    println!(
        "  speed-up count_snapshot: {:.0}x (early exit), {:.0}x (all channels); index build: {:.0}x, {:.0}x",
        t_early.as_secs_f64() / t_count.as_secs_f64(),
        t_all.as_secs_f64() / t_count.as_secs_f64(),
        t_early.as_secs_f64() / t_index.as_secs_f64(),
        t_all.as_secs_f64() / t_index.as_secs_f64()
    );
}

fn seat_engine(c: &mut Criterion) {
    let full = synthetic_guild(MEMBERS, 3);
    let mut sample = full.clone();
    sample.members.truncate(SAMPLE);
    let sg = serenity_guild(&sample);
    let mapped = mapped_ids();
    let tiers = tiers();

    // Correctness first: the index and the naive serenity loop agree on the sample.
    let sample_index = GuildIndex::from_serenity_guild(&sg, &mapped, tiers);
    let naive = naive_count(&sg, &mapped);
    assert_eq!(
        sample_index.seat_count().seats_used,
        naive,
        "index and naive serenity count disagree on the sample"
    );

    // Resident bytes of the 1M-member index.
    LIVE.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    let index = GuildIndex::build(&full, &mapped, tiers);
    COUNTING.store(false, Ordering::Relaxed);
    let bytes = LIVE.load(Ordering::Relaxed);
    let count = index.seat_count();

    // A summary with plain timings, so the ratio is printed in one place.
    let t_index = time(3, || GuildIndex::build(&full, &mapped, tiers).seat_count());
    let t_count = time(5, || GuildIndex::count_snapshot(&full, &mapped, tiers));
    assert_eq!(GuildIndex::count_snapshot(&full, &mapped, tiers), count);
    let t_naive_sample = time(2, || naive_count(&sg, &mapped));
    assert_eq!(naive_count_all_channels(&sg, &mapped), naive);
    let t_naive_all_sample = time(2, || naive_count_all_channels(&sg, &mapped));
    let t_naive_all_scaled = t_naive_all_sample * (MEMBERS / SAMPLE) as u32;
    let t_naive_scaled = t_naive_sample * (MEMBERS / SAMPLE) as u32;
    let t_index_sample = time(3, || {
        GuildIndex::from_serenity_guild(&sg, &mapped, tiers).seat_count()
    });
    println!("seat_engine summary ---------------------------------------------");
    println!(
        "guild: {} members, {} roles, {} channels, {} mapped; {} distinct role sets; seats_used {} (basic {}, advanced {}, pro {})",
        MEMBERS, ROLES + 1, CHANNELS, MAPPED, index.role_set_count(), count.seats_used,
        count.by_tier.basic, count.by_tier.advanced, count.by_tier.pro
    );
    println!(
        "sample check: naive serenity and index agree on {} seats of {} members",
        naive, SAMPLE
    );
    println!(
        "index resident bytes: {} total, {:.1} per member",
        bytes,
        bytes as f64 / MEMBERS as f64
    );
    println!(
        "from-scratch count (count_snapshot), 1M members: {:?}",
        t_count
    );
    println!("from-scratch index build, 1M members: {:?}", t_index);
    println!(
        "naive serenity loop (stops at the first visible channel), {}-member sample: {:?} -> scaled x{} to 1M: {:?}",
        SAMPLE,
        t_naive_sample,
        MEMBERS / SAMPLE,
        t_naive_scaled
    );
    println!(
        "speed-up (scaled naive / index build on 1M): {:.0}x",
        t_naive_scaled.as_secs_f64() / t_index.as_secs_f64()
    );
    println!(
        "speed-up (scaled naive / count_snapshot on 1M): {:.0}x",
        t_naive_scaled.as_secs_f64() / t_count.as_secs_f64()
    );
    println!(
        "naive without early exit (all 20 mapped channels per member), sample {:?} -> scaled {:?}: {:.0}x vs count_snapshot, {:.0}x vs index build",
        t_naive_all_sample,
        t_naive_all_scaled,
        t_naive_all_scaled.as_secs_f64() / t_count.as_secs_f64(),
        t_naive_all_scaled.as_secs_f64() / t_index.as_secs_f64()
    );
    println!(
        "same 100k serenity Guild: index from_serenity_guild {:?} vs naive {:?}: {:.0}x",
        t_index_sample,
        t_naive_sample,
        t_naive_sample.as_secs_f64() / t_index_sample.as_secs_f64()
    );
    sensitivity_to_distinct_role_sets(&mapped, tiers);
    println!("-----------------------------------------------------------------");

    let mut g = c.benchmark_group("from_scratch");
    g.sample_size(10).warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("count_snapshot_1M_members", |b| {
        b.iter(|| GuildIndex::count_snapshot(&full, &mapped, tiers))
    });
    g.bench_function("index_build_1M_members", |b| {
        b.iter(|| GuildIndex::build(&full, &mapped, tiers).seat_count())
    });
    g.bench_function("index_from_serenity_100k_sample", |b| {
        b.iter(|| GuildIndex::from_serenity_guild(&sg, &mapped, tiers).seat_count())
    });
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("naive_serenity_100k_sample (x10 for 1M)", |b| {
        b.iter(|| naive_count(&sg, &mapped))
    });
    g.finish();

    let mut index = index;
    let mut g = c.benchmark_group("live_1M_members");
    g.sample_size(10).warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    // A member gains and loses a role: both role sets already exist.
    let user = full.members[12_345].user_id;
    let base_roles = vec![role_id(0)];
    let more_roles = vec![role_id(0), role_id(1)];
    let mut flip = false;
    g.bench_function("member_event_role_change", |b| {
        b.iter(|| {
            flip = !flip;
            let roles = if flip { &more_roles } else { &base_roles };
            black_box(index.member_upsert(user, roles, false))
        })
    });
    // A member joins with a role set nobody has (evaluated against all 20 mapped channels),
    // then leaves (the role set is freed).
    let newcomer = user_id(MEMBERS + 1);
    let rare_roles = vec![role_id(200), role_id(201), role_id(202), role_id(203)];
    g.bench_function("member_join_new_role_set_then_leave", |b| {
        b.iter(|| {
            black_box(index.member_upsert(newcomer, &rare_roles, false));
            black_box(index.member_remove(newcomer))
        })
    });
    // A mapped channel's overwrites change: every role set is re-evaluated for it.
    let channel = mapped[0];
    let before: Vec<Overwrite> = full
        .channels
        .iter()
        .find(|ch| ch.id == channel)
        .map(|ch| ch.overwrites.clone())
        .unwrap_or_default();
    let mut after = before.clone();
    after.push(Overwrite::role(role_id(2), VIEW_CHANNEL, 0));
    let mut flip = false;
    g.bench_function("overwrite_change_on_mapped_channel", |b| {
        b.iter(|| {
            flip = !flip;
            let ows = if flip { &after } else { &before };
            black_box(index.channel_overwrites_set(channel, ows))
        })
    });
    g.finish();
}

criterion_group!(benches, seat_engine);
criterion_main!(benches);
