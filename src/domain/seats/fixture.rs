//! The guild fixture read by `seatgate seats count`: Discord's own JSON shapes (ids and
//! permissions as strings), unknown fields ignored.
//!
//! ```json
//! {"guild": {"id": "1", "owner_id": "2", "roles": [...], "channels": [...], "members": [...]},
//!  "mapped_channel_ids": ["10"],
//!  "tier_role_ids": {"basic": "5", "advanced": null, "pro": null}}
//! ```
//!
//! A mapped thread (channel type 10, 11 or 12 with a `parent_id`) is judged by its parent.
//!
//! The members are read straight into a flat [`MemberList`]: their ids are parsed from the
//! JSON text in place, with no string or list allocated (and freed) per member. A million
//! small frees left behind by a parse made the first allocations after it (those of the
//! count) wait while the allocator tidied them up.

use std::{borrow::Cow, collections::HashSet, fmt};

use serde::{
    de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor},
    Deserialize, Deserializer,
};

use super::{ChannelSnapshot, GuildSnapshot, MemberList, RoleSnapshot, TierRoles};
use crate::domain::permissions::Overwrite;
use crate::domain::snowflake;
use crate::error::{AppError, ErrorCode};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fixture {
    /// The guild's roles, channels and owner; its members are in [`Fixture::members`].
    pub guild: GuildSnapshot,
    pub members: MemberList,
    /// Threads already resolved to their parent channel.
    pub mapped_channel_ids: Vec<u64>,
    pub tiers: TierRoles,
}

#[derive(Deserialize)]
struct RawFixture {
    guild: RawGuild,
    mapped_channel_ids: Vec<String>,
    #[serde(default)]
    tier_role_ids: RawTiers,
}

#[derive(Deserialize)]
struct RawGuild {
    id: String,
    owner_id: String,
    #[serde(default)]
    roles: Vec<RawRole>,
    #[serde(default)]
    channels: Vec<RawChannel>,
    #[serde(default)]
    threads: Vec<RawChannel>,
    #[serde(default)]
    members: RawMembers,
}

#[derive(Deserialize)]
struct RawRole {
    id: String,
    permissions: String,
}

#[derive(Deserialize)]
struct RawChannel {
    id: String,
    #[serde(rename = "type", default)]
    kind: u8,
    #[serde(default)]
    parent_id: Option<String>,
    #[serde(default)]
    permission_overwrites: Vec<RawOverwrite>,
}

#[derive(Deserialize)]
struct RawOverwrite {
    id: String,
    #[serde(rename = "type")]
    kind: u8,
    allow: String,
    deny: String,
}

/// The member list as it is read: the members, and the first thing wrong with one of them
/// (reported after the parse with its own code and field, as for the rest of the fixture).
#[derive(Default)]
struct RawMembers {
    list: MemberList,
    error: Option<AppError>,
}

impl RawMembers {
    fn fail(&mut self, err: AppError) {
        self.error.get_or_insert(err);
    }
}

impl<'de> Deserialize<'de> for RawMembers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListVisitor;
        impl<'de> Visitor<'de> for ListVisitor {
            type Value = RawMembers;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of guild members")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawMembers, A::Error> {
                let n = seq.size_hint().unwrap_or(0);
                let mut out = RawMembers {
                    list: MemberList::with_capacity(n, n * 2),
                    error: None,
                };
                let mut seen = HashSet::with_capacity(n);
                let mut i = 0usize;
                while seq
                    .next_element_seed(MemberSeed {
                        out: &mut out,
                        seen: &mut seen,
                        i,
                    })?
                    .is_some()
                {
                    i += 1;
                }
                Ok(out)
            }
        }
        deserializer.deserialize_seq(ListVisitor)
    }
}

#[derive(Deserialize)]
struct RawUser<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(default)]
    bot: bool,
}

/// One member: `{"user": {"id", "bot"?}, "roles": [...]}`, other keys ignored.
struct MemberSeed<'m> {
    out: &'m mut RawMembers,
    seen: &'m mut HashSet<u64>,
    i: usize,
}

impl<'de> DeserializeSeed<'de> for MemberSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for MemberSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a guild member object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let i = self.i;
        let mut user: Option<(u64, bool)> = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match key.as_ref() {
                "user" => {
                    let u: RawUser<'de> = map.next_value()?;
                    let field = || format!("guild.members[{i}].user.id");
                    match snowflake::parse(&u.id) {
                        Some(id) => user = Some((id, u.bot)),
                        None => {
                            self.out.fail(
                                id(&field(), &u.id)
                                    .err()
                                    .unwrap_or_else(|| invalid(field())),
                            );
                            user = Some((0, u.bot));
                        }
                    }
                }
                "roles" => map.next_value_seed(RolesSeed {
                    out: &mut *self.out,
                    i,
                })?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let Some((user_id, bot)) = user else {
            return Err(de::Error::custom(format!("guild.members[{i}] has no user")));
        };
        if user_id != 0 && !self.seen.insert(user_id) {
            self.out.fail(invalid(format!(
                "guild.members[{i}].user.id: user {user_id} is listed twice"
            )));
        }
        self.out.list.finish_member(user_id, bot);
        Ok(())
    }
}

/// A member's role ids, pushed into the flat list as they are read.
struct RolesSeed<'m> {
    out: &'m mut RawMembers,
    i: usize,
}

impl<'de> DeserializeSeed<'de> for RolesSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RolesSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of role ids")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut j = 0usize;
        while let Some(text) = seq.next_element::<Cow<'de, str>>()? {
            match snowflake::parse(&text) {
                Some(role) => {
                    if self.out.list.push_role(role).is_err() {
                        self.out.fail(invalid(format!(
                            "guild.members[{}].roles[{j}]: more than {} distinct role ids",
                            self.i,
                            super::members::MAX_DISTINCT_ROLES
                        )));
                    }
                }
                None => {
                    let field = format!("guild.members[{}].roles[{j}]", self.i);
                    let err = id(&field, &text).err().unwrap_or_else(|| invalid(field));
                    self.out.fail(err);
                }
            }
            j += 1;
        }
        Ok(())
    }
}

#[derive(Deserialize, Default)]
struct RawTiers {
    basic: Option<String>,
    advanced: Option<String>,
    pro: Option<String>,
}

const THREAD_TYPES: [u8; 3] = [10, 11, 12];

fn id(field: &str, text: &str) -> Result<u64, AppError> {
    snowflake::parse_field(field, text, ErrorCode::SnowflakeInvalid)
}

fn permissions(field: &str, text: &str) -> Result<u64, AppError> {
    let text = text.trim();
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(format!(
            "{field} must be a permission bit set as a decimal string"
        )));
    }
    text.parse::<u64>()
        .map_err(|_| invalid(format!("{field} does not fit in 64 bits")))
}

fn invalid(message: String) -> AppError {
    AppError::new(ErrorCode::ValidationFailed, message)
}

/// Parses a fixture. Malformed JSON is `invalid_json`, a bad id `snowflake_invalid`, anything
/// else wrong `validation_failed`; each message names the offending field.
pub fn parse_fixture(json: &str) -> Result<Fixture, AppError> {
    let raw: RawFixture = serde_json::from_str(json).map_err(|e| {
        AppError::new(ErrorCode::InvalidJson, format!("fixture is not valid: {e}")).with_source(e)
    })?;
    let g = raw.guild;
    let guild_id = id("guild.id", &g.id)?;
    let owner_id = id("guild.owner_id", &g.owner_id)?;

    let roles = g
        .roles
        .iter()
        .enumerate()
        .map(|(i, r)| {
            Ok(RoleSnapshot {
                id: id(&format!("guild.roles[{i}].id"), &r.id)?,
                permissions: permissions(&format!("guild.roles[{i}].permissions"), &r.permissions)?,
            })
        })
        .collect::<Result<Vec<_>, AppError>>()?;

    let mut channels = Vec::with_capacity(g.channels.len());
    // thread id -> parent id
    let mut thread_parents = std::collections::HashMap::new();
    for (list, raw_channels) in [("channels", &g.channels), ("threads", &g.threads)] {
        for (i, c) in raw_channels.iter().enumerate() {
            let field = format!("guild.{list}[{i}]");
            let channel_id = id(&format!("{field}.id"), &c.id)?;
            if THREAD_TYPES.contains(&c.kind) {
                let parent = c.parent_id.as_deref().ok_or_else(|| {
                    invalid(format!("{field}.parent_id is required for a thread"))
                })?;
                thread_parents.insert(channel_id, id(&format!("{field}.parent_id"), parent)?);
                continue;
            }
            let overwrites = c
                .permission_overwrites
                .iter()
                .enumerate()
                .map(|(j, o)| {
                    let field = format!("{field}.permission_overwrites[{j}]");
                    let target = id(&format!("{field}.id"), &o.id)?;
                    let allow = permissions(&format!("{field}.allow"), &o.allow)?;
                    let deny = permissions(&format!("{field}.deny"), &o.deny)?;
                    match o.kind {
                        0 => Ok(Overwrite::role(target, allow, deny)),
                        1 => Ok(Overwrite::member(target, allow, deny)),
                        other => Err(invalid(format!(
                            "{field}.type must be 0 (role) or 1 (member), not {other}"
                        ))),
                    }
                })
                .collect::<Result<Vec<_>, AppError>>()?;
            channels.push(ChannelSnapshot {
                id: channel_id,
                overwrites,
            });
        }
    }

    if let Some(err) = g.members.error {
        return Err(err);
    }
    let members = g.members.list;

    let mut mapped_channel_ids = Vec::with_capacity(raw.mapped_channel_ids.len());
    for (i, text) in raw.mapped_channel_ids.iter().enumerate() {
        let channel = id(&format!("mapped_channel_ids[{i}]"), text)?;
        mapped_channel_ids.push(thread_parents.get(&channel).copied().unwrap_or(channel));
    }

    let tier = |name: &str, text: &Option<String>| {
        text.as_deref()
            .map(|t| id(&format!("tier_role_ids.{name}"), t))
            .transpose()
    };
    let tiers = TierRoles {
        basic: tier("basic", &raw.tier_role_ids.basic)?,
        advanced: tier("advanced", &raw.tier_role_ids.advanced)?,
        pro: tier("pro", &raw.tier_role_ids.pro)?,
    };

    Ok(Fixture {
        guild: GuildSnapshot {
            guild_id,
            owner_id,
            roles,
            channels,
            threads: Vec::new(),
            members: Vec::new(),
        },
        members,
        mapped_channel_ids,
        tiers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUE_EXAMPLE: &str = r#"
    {"guild": {"id": "1", "owner_id": "2",
               "roles": [{"id": "1", "permissions": "1024"}],
               "channels": [{"id": "10", "type": 0,
                             "permission_overwrites": [{"id": "1", "type": 0, "allow": "0", "deny": "1024"}]}],
               "members": [{"user": {"id": "2", "bot": false}, "roles": []}]},
     "mapped_channel_ids": ["10"],
     "tier_role_ids": {"basic": "5", "advanced": null, "pro": null}}"#;

    #[test]
    fn parses_the_issue_example() {
        let f = parse_fixture(ISSUE_EXAMPLE).unwrap();
        assert_eq!(f.guild.guild_id, 1);
        assert_eq!(f.guild.owner_id, 2);
        assert_eq!(
            f.guild.roles,
            vec![RoleSnapshot {
                id: 1,
                permissions: 1024
            }]
        );
        assert_eq!(
            f.guild.channels[0].overwrites,
            vec![Overwrite::role(1, 0, 1024)]
        );
        assert_eq!(f.mapped_channel_ids, vec![10]);
        assert_eq!(f.tiers.basic, Some(5));
        assert_eq!(f.tiers.advanced, None);
    }

    #[test]
    fn mapped_thread_is_judged_by_its_parent() {
        let json = ISSUE_EXAMPLE.replace(
            r#""members""#,
            r#""threads": [{"id": "77", "type": 11, "parent_id": "10"}], "members""#,
        );
        let json = json.replace(r#"["10"]"#, r#"["77"]"#);
        let f = parse_fixture(&json).unwrap();
        assert_eq!(f.mapped_channel_ids, vec![10]);
    }

    #[test]
    fn bad_inputs_have_clear_codes() {
        let cases = [
            (
                ISSUE_EXAMPLE.replace(r#""owner_id": "2""#, r#""owner_id": "x2""#),
                ErrorCode::SnowflakeInvalid,
                "guild.owner_id",
            ),
            (
                ISSUE_EXAMPLE.replace(r#""permissions": "1024""#, r#""permissions": "-4""#),
                ErrorCode::ValidationFailed,
                "guild.roles[0].permissions",
            ),
            (
                ISSUE_EXAMPLE.replace(r#""type": 0, "allow""#, r#""type": 2, "allow""#),
                ErrorCode::ValidationFailed,
                "permission_overwrites[0].type",
            ),
            (
                ISSUE_EXAMPLE.replace(r#""basic": "5""#, r#""basic": "0""#),
                ErrorCode::SnowflakeInvalid,
                "tier_role_ids.basic",
            ),
            (
                ISSUE_EXAMPLE.replace(r#""mapped_channel_ids": ["10"],"#, ""),
                ErrorCode::InvalidJson,
                "mapped_channel_ids",
            ),
            (
                ISSUE_EXAMPLE[..40].to_string(),
                ErrorCode::InvalidJson,
                "fixture",
            ),
        ];
        for (json, code, field) in cases {
            let err = parse_fixture(&json).unwrap_err();
            assert_eq!(err.code(), code, "{json}");
            assert!(
                err.message().contains(field),
                "{} lacks {field}",
                err.message()
            );
        }
    }
}
