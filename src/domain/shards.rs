//! Discord's sharding: which shard carries a guild, how many shards to run, and which of a
//! shard's sessions is a new one after a gap.
//!
//! "shard_id = (guild_id >> 22) % num_shards" and "all events for a guild are sent to the
//! shard that guild maps to" (<https://discord.com/developers/docs/events/gateway#sharding>).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// More shards than any bot needs (Discord asks for one per 1,000 to 2,500 guilds).
pub const MAX_SHARDS: u32 = 16_384;

/// The shard that carries `guild_id` among `shards` (at least 1).
pub fn shard_of(guild_id: u64, shards: u64) -> u64 {
    (guild_id >> 22) % shards.max(1)
}

/// One shard of a sharded connection: `[id, total]` in IDENTIFY's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Shard {
    pub id: u32,
    pub total: u32,
}

impl Shard {
    /// The one shard of an unsharded connection: it carries every guild.
    pub const ONLY: Shard = Shard { id: 0, total: 1 };

    /// Whether this shard carries the guild's events.
    pub fn carries(&self, guild_id: u64) -> bool {
        shard_of(guild_id, u64::from(self.total)) == u64::from(self.id)
    }
}

/// `SEATGATE_SHARDS`: `auto` (what `GET /gateway/bot` recommends) or a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShardCount {
    #[default]
    Auto,
    Fixed(u32),
}

impl ShardCount {
    pub fn parse(text: &str) -> Result<ShardCount, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("auto") {
            return Ok(ShardCount::Auto);
        }
        match text.parse::<u32>() {
            Ok(n) if (1..=MAX_SHARDS).contains(&n) => Ok(ShardCount::Fixed(n)),
            _ => Err(format!(
                "must be auto or a whole number from 1 to {MAX_SHARDS}, not {text:?}"
            )),
        }
    }
}

impl Serialize for ShardCount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ShardCount::Auto => s.serialize_str("auto"),
            ShardCount::Fixed(n) => s.serialize_u32(*n),
        }
    }
}

impl<'de> Deserialize<'de> for ShardCount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // An environment variable arrives as a number or a string, a TOML file as either.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(i64),
            Text(String),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Number(n) => n.to_string(),
            Raw::Text(t) => t,
        };
        ShardCount::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// At most this many shards per process when `live` processes share `total`:
/// `ceil(total / live)`.
pub fn fair_share(total: u32, live: u32) -> u32 {
    total.div_ceil(live.max(1))
}

/// What a process does with the shard leases at one look.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeasePlan {
    /// Free shards to take, lowest first, up to the fair share.
    pub take: Vec<u32>,
    /// Held shards to give up, highest first: more than the fair share.
    pub give: Vec<u32>,
}

/// The look of a process that holds `mine` while `free` shards of `total` have no live holder
/// and `live` processes (itself included) share them.
pub fn plan_leases(total: u32, live: u32, mine: &[u32], free: &[u32]) -> LeasePlan {
    let fair = fair_share(total, live) as usize;
    let mut plan = LeasePlan::default();
    if mine.len() > fair {
        let mut held = mine.to_vec();
        held.sort_unstable_by(|a, b| b.cmp(a));
        plan.give = held.into_iter().take(mine.len() - fair).collect();
    } else {
        let mut open = free.to_vec();
        open.sort_unstable();
        plan.take = open.into_iter().take(fair - mine.len()).collect();
    }
    plan
}

/// Counts each shard's READYs: a shard's first is the start, a later one a new session after a
/// gap whose events are lost (for that shard's guilds only).
#[derive(Debug, Default)]
pub struct ShardSessions {
    started: HashMap<u32, u32>,
}

impl ShardSessions {
    /// Records a READY on `shard`; true when the shard had a session before.
    pub fn ready(&mut self, shard: u32) -> bool {
        let n = self.started.entry(shard).or_insert(0);
        *n += 1;
        *n > 1
    }

    /// READYs on `shard`.
    pub fn of(&self, shard: u32) -> u32 {
        self.started.get(&shard).copied().unwrap_or(0)
    }

    /// READYs on every shard together.
    pub fn total(&self) -> u32 {
        self.started.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guild_is_on_the_shard_of_its_timestamp_bits() {
        let guild = (5u64 << 22) | 12345;
        assert_eq!(shard_of(guild, 4), 1);
        assert_eq!(shard_of(guild, 5), 0);
        assert_eq!(shard_of(guild, 1), 0);
        assert_eq!(shard_of(guild, 0), 0, "no shards counts as one");
        assert!(Shard { id: 1, total: 4 }.carries(guild));
        assert!(!Shard { id: 0, total: 4 }.carries(guild));
        assert!(Shard::ONLY.carries(guild));
    }

    #[test]
    fn shard_counts_are_auto_or_a_number_in_range() {
        assert_eq!(ShardCount::parse("auto"), Ok(ShardCount::Auto));
        assert_eq!(ShardCount::parse(" AUTO "), Ok(ShardCount::Auto));
        assert_eq!(ShardCount::parse("4"), Ok(ShardCount::Fixed(4)));
        for bad in ["0", "-1", "many", "", "16385"] {
            assert!(ShardCount::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn shard_counts_read_from_numbers_and_strings() {
        let n: ShardCount = serde_json::from_str("3").unwrap();
        assert_eq!(n, ShardCount::Fixed(3));
        let t: ShardCount = serde_json::from_str("\"7\"").unwrap();
        assert_eq!(t, ShardCount::Fixed(7));
        let a: ShardCount = serde_json::from_str("\"auto\"").unwrap();
        assert_eq!(a, ShardCount::Auto);
        assert!(serde_json::from_str::<ShardCount>("0").is_err());
        assert_eq!(
            serde_json::to_string(&ShardCount::Auto).unwrap(),
            "\"auto\""
        );
        assert_eq!(serde_json::to_string(&ShardCount::Fixed(2)).unwrap(), "2");
    }

    #[test]
    fn processes_take_a_fair_share_and_give_up_what_is_over_it() {
        assert_eq!(fair_share(4, 1), 4);
        assert_eq!(fair_share(4, 3), 2);
        assert_eq!(fair_share(4, 0), 4, "before the first heartbeat counts");
        // Alone: every shard.
        assert_eq!(
            plan_leases(4, 1, &[], &[3, 0, 2, 1]),
            LeasePlan {
                take: vec![0, 1, 2, 3],
                give: vec![]
            }
        );
        // A second process came: the first gives up its top half, the second takes it.
        assert_eq!(
            plan_leases(4, 2, &[0, 1, 2, 3], &[]),
            LeasePlan {
                take: vec![],
                give: vec![3, 2]
            }
        );
        assert_eq!(
            plan_leases(4, 2, &[], &[2, 3]),
            LeasePlan {
                take: vec![2, 3],
                give: vec![]
            }
        );
        // Three share four: at most two each, and the third may hold none.
        assert_eq!(plan_leases(4, 3, &[0, 1], &[]), LeasePlan::default());
        assert_eq!(plan_leases(4, 3, &[], &[]), LeasePlan::default());
        // One died: its shard is free, and the others' fair share grew.
        assert_eq!(
            plan_leases(4, 2, &[0], &[3]),
            LeasePlan {
                take: vec![3],
                give: vec![]
            }
        );
    }

    #[test]
    fn a_later_ready_is_a_gap_for_its_own_shard_only() {
        let mut sessions = ShardSessions::default();
        assert!(!sessions.ready(0), "shard 0's first session is the start");
        assert!(
            !sessions.ready(1),
            "shard 1's first is not a gap, though shard 0 had one"
        );
        assert!(
            sessions.ready(0),
            "shard 0 again: its events in between are lost"
        );
        assert!(!sessions.ready(2));
        assert_eq!(sessions.total(), 4);
    }
}
