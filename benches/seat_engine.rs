//! Seat engine on a synthetic large guild: 1,000,000 members, 250 roles, 50 channels, 20 of
//! them mapped.
//!
//! - from-scratch count on the 1M members: `GuildIndex::count_snapshot` (all cores, and on
//!   one thread), beside the naive loop (serenity's `user_permissions_in` per member per
//!   mapped channel) run on the very same 1M members in a serenity `Guild`, in both readings:
//!   stopping at the first visible channel, and over all 20 mapped channels. Every count is
//!   checked against the naive one first;
//! - the index build on 1M members, and a recount from the live index (a separate line: it
//!   starts from members already grouped, not from the guild data);
//! - one member event, one overwrite change on the 1M-member index;
//! - resident bytes per member of the index, measured with a counting allocator;
//! - first, cold: the guild written to a fixture file, `seatgate seats count --fixture` run on
//!   it in fresh processes (the figure an operator sees), beside serenity's naive loop and
//!   twilight's calculator run once each on the very same members, in this same run.
//!
//! The speed-up ratios printed at the end come from criterion's own samples of this run
//! (median per-iteration time of the measured samples).
//!
//! `cargo bench --bench seat_engine`

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::RefCell;
use std::hint::black_box;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, SamplingMode};
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
        threads: Vec::new(),
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
    let value = json!({
        "id": g.guild_id.to_string(), "name": "g", "owner_id": g.owner_id.to_string(),
        "verification_level": 0, "default_message_notifications": 0,
        "explicit_content_filter": 0, "roles": roles, "emojis": [], "features": [],
        "mfa_level": 0, "system_channel_flags": 0, "premium_tier": 0,
        "preferred_locale": "en-US", "nsfw_level": 0, "stickers": [],
        "premium_progress_bar_enabled": false,
        "joined_at": "2024-01-01T00:00:00.000000+00:00", "large": true,
        "member_count": g.members.len(), "voice_states": [], "members": [],
        "channels": channels, "threads": [], "presences": [], "stage_instances": [],
        "guild_scheduled_events": []
    });
    let mut guild: serenity::model::guild::Guild =
        serde_json::from_value(value).expect("synthetic guild deserializes");
    // Members one at a time: one JSON document of a million members would need gigabytes.
    for m in &g.members {
        let roles: Vec<String> = m.roles.iter().map(|r| r.to_string()).collect();
        let member: serenity::model::guild::Member = serde_json::from_value(json!({
            "user": {"id": m.user_id.to_string(), "username": "u", "bot": m.is_bot},
            "roles": roles, "deaf": false, "mute": false, "flags": 0,
            "guild_id": g.guild_id.to_string(),
            "joined_at": "2024-01-01T00:00:00.000000+00:00"
        }))
        .expect("synthetic member deserializes");
        guild.members.insert(member.user.id, member);
    }
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

/// The per-iteration times criterion measured for one benchmark, in seconds, in the order
/// they were taken (warm-up runs included: see [`measured`]).
type Samples = Rc<RefCell<Vec<f64>>>;

/// Benchmarks `f` and keeps criterion's per-sample times, so ratios can be printed from the
/// very same measurements.
fn recorded<T>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    mut f: impl FnMut() -> T,
) -> Samples {
    let samples: Samples = Rc::default();
    let sink = Rc::clone(&samples);
    g.bench_function(name, move |b| {
        b.iter_custom(|iters| {
            let started = Instant::now();
            for _ in 0..iters {
                black_box(f());
            }
            let elapsed = started.elapsed();
            sink.borrow_mut()
                .push(elapsed.as_secs_f64() / iters.max(1) as f64);
            elapsed
        })
    });
    samples
}

/// Median of the last `n` samples (criterion's measured samples follow its warm-up), or
/// `None` when the benchmark was filtered out.
fn measured(samples: &Samples, n: usize) -> Option<f64> {
    let all = samples.borrow();
    if all.is_empty() {
        return None;
    }
    let mut last: Vec<f64> = all[all.len().saturating_sub(n)..].to_vec();
    last.sort_by(f64::total_cmp);
    Some(last[last.len() / 2])
}

fn fmt(t: Option<f64>) -> String {
    match t {
        Some(t) if t >= 1.0 => format!("{t:.3} s"),
        Some(t) if t >= 1e-3 => format!("{:.2} ms", t * 1e3),
        Some(t) if t >= 1e-6 => format!("{:.2} us", t * 1e6),
        Some(t) => format!("{:.0} ns", t * 1e9),
        None => "not measured".to_string(),
    }
}

fn ratio(slow: Option<f64>, fast: Option<f64>) -> String {
    match (slow, fast) {
        (Some(s), Some(f)) => format!("{:.0}x", s / f),
        _ => "n/a".to_string(),
    }
}

/// The member list in a scrambled order (not by id, as a gateway chunk may come).
fn scrambled(g: &GuildSnapshot) -> GuildSnapshot {
    let mut out = g.clone();
    let mut rng = Rng(7);
    for i in (1..out.members.len()).rev() {
        out.members.swap(i, rng.below(i + 1));
    }
    out
}

const SAMPLES: usize = 10;

/// The guild as `seatgate seats count --fixture` reads it: Discord's JSON shapes, ids and
/// permissions as strings, members as List Guild Members gives them.
fn write_fixture(g: &GuildSnapshot, mapped: &[u64], tiers: TierRoles, path: &std::path::Path) {
    use seatgate::domain::permissions::OverwriteTarget;
    use std::io::Write;
    let file = std::fs::File::create(path).expect("fixture file");
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let roles: Vec<_> = g
        .roles
        .iter()
        .map(|r| json!({"id": r.id.to_string(), "permissions": r.permissions.to_string()}))
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
                    json!({"id": id.to_string(), "type": kind, "allow": o.allow.to_string(), "deny": o.deny.to_string()})
                })
                .collect();
            json!({"id": c.id.to_string(), "type": 0, "permission_overwrites": ows})
        })
        .collect();
    write!(
        w,
        r#"{{"guild":{{"id":"{}","owner_id":"{}","roles":{},"channels":{},"members":["#,
        g.guild_id,
        g.owner_id,
        serde_json::Value::from(roles),
        serde_json::Value::from(channels)
    )
    .expect("write");
    for (i, m) in g.members.iter().enumerate() {
        if i > 0 {
            w.write_all(b",").expect("write");
        }
        write!(
            w,
            r#"{{"user":{{"id":"{}","bot":{}}},"roles":["#,
            m.user_id, m.is_bot
        )
        .expect("write");
        for (j, r) in m.roles.iter().enumerate() {
            if j > 0 {
                w.write_all(b",").expect("write");
            }
            write!(w, r#""{r}""#).expect("write");
        }
        w.write_all(b"]}").expect("write");
    }
    let tier = |t: Option<u64>| t.map_or("null".to_string(), |id| format!(r#""{id}""#));
    write!(
        w,
        r#"]}},"mapped_channel_ids":{},"tier_role_ids":{{"basic":{},"advanced":{},"pro":{}}}}}"#,
        serde_json::Value::from(mapped.iter().map(|c| c.to_string()).collect::<Vec<_>>()),
        tier(tiers.basic),
        tier(tiers.advanced),
        tier(tiers.pro)
    )
    .expect("write");
    w.flush().expect("flush");
}

/// twilight-util's calculator, member by member, given the guild's roles only.
fn twilight_count(g: &GuildSnapshot, mapped: &[u64]) -> u64 {
    use seatgate::domain::permissions::OverwriteTarget;
    use std::collections::HashMap;
    use twilight_model::channel::permission_overwrite::{
        PermissionOverwrite, PermissionOverwriteType,
    };
    use twilight_model::channel::ChannelType;
    use twilight_model::guild::Permissions;
    use twilight_model::id::Id;
    use twilight_util::permission_calculator::PermissionCalculator;
    let perms: HashMap<u64, u64> = g.roles.iter().map(|r| (r.id, r.permissions)).collect();
    let everyone = Permissions::from_bits_truncate(perms.get(&g.guild_id).copied().unwrap_or(0));
    let channels: Vec<Vec<PermissionOverwrite>> = g
        .channels
        .iter()
        .filter(|c| mapped.contains(&c.id))
        .map(|c| {
            c.overwrites
                .iter()
                .map(|o| {
                    let (id, kind) = match o.target {
                        OverwriteTarget::Role(id) => (id, PermissionOverwriteType::Role),
                        OverwriteTarget::Member(id) => (id, PermissionOverwriteType::Member),
                    };
                    PermissionOverwrite {
                        allow: Permissions::from_bits_truncate(o.allow),
                        deny: Permissions::from_bits_truncate(o.deny),
                        id: Id::new(id),
                        kind,
                    }
                })
                .collect()
        })
        .collect();
    g.members
        .iter()
        .filter(|m| !m.is_bot)
        .filter(|m| {
            let roles: Vec<_> = m
                .roles
                .iter()
                .filter_map(|r| {
                    perms
                        .get(r)
                        .map(|p| (Id::new(*r), Permissions::from_bits_truncate(*p)))
                })
                .collect();
            channels.iter().any(|ows| {
                PermissionCalculator::new(Id::new(g.guild_id), Id::new(m.user_id), everyone, &roles)
                    .owner_id(Id::new(g.owner_id))
                    .in_channel(ChannelType::GuildText, ows)
                    .contains(Permissions::VIEW_CHANNEL)
            })
        })
        .count() as u64
}

/// `seatgate seats count --fixture` in a fresh process: its own `elapsed_ms` and seats.
fn cli_count(path: &std::path::Path) -> (f64, u64) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_seatgate"))
        .args(["seats", "count", "--fixture"])
        .arg(path)
        .env_remove("SEATGATE_CONFIG")
        .output()
        .expect("seatgate seats count runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("seats count prints one JSON line");
    (
        v["elapsed_ms"].as_f64().expect("elapsed_ms"),
        v["seats_used"].as_u64().expect("seats_used"),
    )
}

/// The cold figures: the CLI on a fixture file in fresh processes, and the two reference
/// calculators once each on the same members (in members' list order, as the file has them).
fn cold(full: &GuildSnapshot, mapped: &[u64], tiers: TierRoles, expected: u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    // SEAT_ENGINE_FIXTURE=path keeps the file, to run `seatgate seats count` on it by hand.
    let path = std::env::var_os("SEAT_ENGINE_FIXTURE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| dir.path().join("guild-1m.json"));
    let started = Instant::now();
    write_fixture(full, mapped, tiers, &path);
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "cold: fixture of {} members written ({:.0} MiB) in {:?}",
        full.members.len(),
        size as f64 / (1 << 20) as f64,
        started.elapsed()
    );
    let mut cli: Vec<f64> = (0..5)
        .map(|_| {
            let (ms, seats) = cli_count(&path);
            assert_eq!(seats, expected, "seats count agrees");
            ms
        })
        .collect();
    cli.sort_by(f64::total_cmp);
    let started = Instant::now();
    let sg = serenity_guild(full);
    let built = started.elapsed();
    let started = Instant::now();
    let naive = naive_count(&sg, mapped);
    let naive_ms = started.elapsed().as_secs_f64() * 1e3;
    drop(sg);
    assert_eq!(naive, expected, "serenity agrees");
    let started = Instant::now();
    let tw = twilight_count(full, mapped);
    let twilight_ms = started.elapsed().as_secs_f64() * 1e3;
    assert_eq!(tw, expected, "twilight agrees");
    println!("cold one-shot count, 1M members, same run:");
    println!(
        "  seatgate seats count --fixture (fresh process, 5 runs): min {:.1} ms, median {:.1} ms, max {:.1} ms",
        cli[0], cli[2], cli[4]
    );
    println!("  serenity's naive loop (user_permissions_in, once; its Guild built in {built:?}): {naive_ms:.0} ms");
    println!("  twilight's PermissionCalculator (once): {twilight_ms:.0} ms");
    println!(
        "  cold speed-up: {:.0}x serenity, {:.0}x twilight (median CLI run)",
        naive_ms / cli[2],
        twilight_ms / cli[2]
    );
}

fn seat_engine(c: &mut Criterion) {
    let full = synthetic_guild(MEMBERS, 3);
    let mapped = mapped_ids();
    let tiers = tiers();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let expected = GuildIndex::count_snapshot(&full, &mapped, tiers).seats_used;
    cold(&full, &mapped, tiers, expected);
    if std::env::var_os("SEAT_ENGINE_COLD_ONLY").is_some() {
        return;
    }

    // Resident bytes of the 1M-member index.
    LIVE.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    let index = GuildIndex::build(&full, &mapped, tiers);
    COUNTING.store(false, Ordering::Relaxed);
    let bytes = LIVE.load(Ordering::Relaxed);
    let count = index.seat_count();

    // Correctness first: every way of counting agrees with the naive serenity loop on the
    // same million members.
    let started = Instant::now();
    let sg = serenity_guild(&full);
    let serenity_build = started.elapsed();
    let naive = naive_count(&sg, &mapped);
    assert_eq!(count.seats_used, naive, "index vs naive serenity count");
    assert_eq!(naive_count_all_channels(&sg, &mapped), naive);
    assert_eq!(GuildIndex::count_snapshot(&full, &mapped, tiers), count);
    assert_eq!(
        GuildIndex::count_snapshot_on(&full, &mapped, tiers, 1),
        count
    );
    let shuffled = scrambled(&full);
    assert_eq!(GuildIndex::count_snapshot(&shuffled, &mapped, tiers), count);
    assert_eq!(index.recount(), count);
    println!("seat_engine ------------------------------------------------------");
    println!(
        "guild: {} members, {} roles, {} channels, {} mapped; {} distinct role sets; seats_used {} (basic {}, advanced {}, pro {}); naive serenity count agrees; serenity Guild of 1M members built in {:?}; {} cores",
        MEMBERS, ROLES + 1, CHANNELS, MAPPED, index.role_set_count(), count.seats_used,
        count.by_tier.basic, count.by_tier.advanced, count.by_tier.pro, serenity_build, threads
    );

    let mut g = c.benchmark_group("from_scratch_1M_members");
    g.sample_size(SAMPLES).warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(4));
    let t_count = recorded(&mut g, "count_snapshot", || {
        GuildIndex::count_snapshot(&full, &mapped, tiers)
    });
    let t_serial = recorded(&mut g, "count_snapshot_one_thread", || {
        GuildIndex::count_snapshot_on(&full, &mapped, tiers, 1)
    });
    let t_scrambled = recorded(&mut g, "count_snapshot_scrambled_order", || {
        GuildIndex::count_snapshot(&shuffled, &mapped, tiers)
    });
    g.measurement_time(Duration::from_secs(6));
    let t_build = recorded(&mut g, "index_build", || {
        GuildIndex::build(&full, &mapped, tiers).seat_count()
    });
    drop(shuffled);
    let t_recount = recorded(&mut g, "live_index_recount", || index.recount());
    // A few seconds per iteration: flat sampling, one iteration per sample.
    g.sampling_mode(SamplingMode::Flat);
    g.measurement_time(Duration::from_secs(20));
    let t_naive = recorded(&mut g, "naive_serenity_first_visible_channel", || {
        naive_count(&sg, &mapped)
    });
    g.measurement_time(Duration::from_secs(40));
    let t_naive_all = recorded(&mut g, "naive_serenity_all_mapped_channels", || {
        naive_count_all_channels(&sg, &mapped)
    });
    g.finish();
    drop(sg);

    let mut index = index;
    let mut g = c.benchmark_group("live_1M_members");
    g.sample_size(SAMPLES).warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    // A member gains and loses a role: both role sets already exist.
    let user = full.members[12_345].user_id;
    let base_roles = vec![role_id(0)];
    let more_roles = vec![role_id(0), role_id(1)];
    let mut flip = false;
    let t_event = recorded(&mut g, "member_event_role_change", || {
        flip = !flip;
        let roles = if flip { &more_roles } else { &base_roles };
        index.member_upsert(user, roles, false)
    });
    // A member joins with a role set nobody has (evaluated against all 20 mapped channels),
    // then leaves (the role set is freed).
    let newcomer = user_id(MEMBERS + 1);
    let rare_roles = vec![role_id(200), role_id(201), role_id(202), role_id(203)];
    let t_join = recorded(&mut g, "member_join_new_role_set_then_leave", || {
        black_box(index.member_upsert(newcomer, &rare_roles, false));
        index.member_remove(newcomer)
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
    let t_overwrite = recorded(&mut g, "overwrite_change_on_mapped_channel", || {
        flip = !flip;
        let ows = if flip { &after } else { &before };
        index.channel_overwrites_set(channel, ows)
    });
    g.finish();
    assert_eq!(index.recount(), index.seat_count());

    let m = |s: &Samples| measured(s, SAMPLES);
    let (count_t, naive_t, naive_all_t) = (m(&t_count), m(&t_naive), m(&t_naive_all));
    println!("seat_engine summary (medians of this run's criterion samples) -------");
    println!(
        "index resident bytes: {} total, {:.1} per member",
        bytes,
        bytes as f64 / MEMBERS as f64
    );
    println!(
        "from-scratch count_snapshot, 1M members, {} threads: {}",
        threads,
        fmt(count_t)
    );
    println!(
        "  same on one thread: {}; members in scrambled order (one sort of the ids added): {}",
        fmt(m(&t_serial)),
        fmt(m(&t_scrambled))
    );
    println!("from-scratch index build, 1M members: {}", fmt(m(&t_build)));
    println!(
        "recount from the live index (members already grouped; not from scratch): {}",
        fmt(m(&t_recount))
    );
    println!(
        "naive serenity loop on the same 1M members: first visible channel {}, all {} mapped channels {}",
        fmt(naive_t),
        MAPPED,
        fmt(naive_all_t)
    );
    println!(
        "speed-up of count_snapshot: {} vs naive first-visible, {} vs naive all-channels",
        ratio(naive_t, count_t),
        ratio(naive_all_t, count_t)
    );
    println!(
        "speed-up of count_snapshot on one thread: {} vs naive first-visible, {} vs naive all-channels",
        ratio(naive_t, m(&t_serial)),
        ratio(naive_all_t, m(&t_serial))
    );
    println!(
        "speed-up of count_snapshot, scrambled order: {} vs naive first-visible, {} vs naive all-channels",
        ratio(naive_t, m(&t_scrambled)),
        ratio(naive_all_t, m(&t_scrambled))
    );
    println!(
        "speed-up of the index build: {} vs naive first-visible, {} vs naive all-channels",
        ratio(naive_t, m(&t_build)),
        ratio(naive_all_t, m(&t_build))
    );
    println!(
        "member event (role change): {}; join with a new role set then leave: {}; overwrite change on a mapped channel: {}",
        fmt(m(&t_event)),
        fmt(m(&t_join)),
        fmt(m(&t_overwrite))
    );
    println!("-----------------------------------------------------------------");
}

criterion_group!(benches, seat_engine);
criterion_main!(benches);
