//! Reading Discord-shaped JSON (scenario files, control bodies) into sandbox records.
//! Ids and permissions are accepted as strings (Discord's form) or numbers.

use std::collections::BTreeMap;

use serde_json::Value;

use super::error::{DResult, DiscordError};
use super::model::{
    Channel, Guild, Member, Overwrite, Role, User, OVERWRITE_MEMBER, OVERWRITE_ROLE,
};

/// Bot identity fixed by a scenario's `bot` entry.
#[derive(Debug, Clone)]
pub struct BotSpec {
    pub id: u64,
    pub username: String,
}

/// A parsed scenario file: `{"bot": {"id", "username"}, "guilds": [...]}`.
#[derive(Debug, Clone, Default)]
pub struct Scenario {
    pub bot: Option<BotSpec>,
    pub guilds: Vec<Value>,
    /// What `GET /gateway/bot` recommends (`shards`); 1 when absent.
    pub shards: Option<u64>,
}

/// Shards a sandbox may recommend.
pub const MAX_SHARDS: u64 = 1024;

impl Scenario {
    pub fn from_json(v: &Value) -> DResult<Scenario> {
        let obj = v
            .as_object()
            .ok_or_else(|| DiscordError::invalid_form("scenario must be a JSON object"))?;
        let bot = match obj.get("bot") {
            None | Some(Value::Null) => None,
            Some(b) => Some(BotSpec {
                id: req_id(b, "id", "bot.id")?,
                username: opt_str(b, "username").unwrap_or_else(|| "seatgate".into()),
            }),
        };
        let guilds = match obj.get("guilds") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a.clone(),
            Some(_) => return Err(DiscordError::invalid_form("guilds must be an array")),
        };
        let shards = match obj.get("shards") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .filter(|n| (1..=MAX_SHARDS).contains(n))
                    .ok_or_else(|| {
                        DiscordError::invalid_form(format!(
                            "shards must be a whole number from 1 to {MAX_SHARDS}"
                        ))
                    })?,
            ),
        };
        Ok(Scenario {
            bot,
            guilds,
            shards,
        })
    }
}

pub fn parse_id(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

pub fn parse_perms(v: &Value) -> Option<u64> {
    parse_id(v)
}

pub fn req_id(obj: &Value, key: &str, what: &str) -> DResult<u64> {
    obj.get(key)
        .and_then(parse_id)
        .ok_or_else(|| DiscordError::invalid_form(format!("{what}: a snowflake is required")))
}

pub fn opt_id(obj: &Value, key: &str, what: &str) -> DResult<Option<u64>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => parse_id(v)
            .map(Some)
            .ok_or_else(|| DiscordError::invalid_form(format!("{what}: not a snowflake"))),
    }
}

pub fn opt_str(obj: &Value, key: &str) -> Option<String> {
    obj.get(key).and_then(Value::as_str).map(str::to_owned)
}

pub fn opt_perms(obj: &Value, key: &str, what: &str) -> DResult<Option<u64>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => parse_perms(v)
            .map(Some)
            .ok_or_else(|| DiscordError::invalid_form(format!("{what}: not a permission bitset"))),
    }
}

pub fn id_list(obj: &Value, key: &str, what: &str) -> DResult<Option<Vec<u64>>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                parse_id(v)
                    .ok_or_else(|| DiscordError::invalid_form(format!("{what}: not a snowflake")))
            })
            .collect::<DResult<Vec<u64>>>()
            .map(Some),
        Some(_) => Err(DiscordError::invalid_form(format!(
            "{what}: must be an array"
        ))),
    }
}

pub fn parse_user(v: &Value) -> DResult<User> {
    let id = req_id(v, "id", "user.id")?;
    Ok(User {
        id,
        username: opt_str(v, "username").unwrap_or_else(|| format!("user{id}")),
        global_name: opt_str(v, "global_name"),
        avatar: opt_str(v, "avatar"),
        bot: v.get("bot").and_then(Value::as_bool).unwrap_or(false),
    })
}

pub fn parse_role(v: &Value, fallback_position: i64) -> DResult<Role> {
    let id = req_id(v, "id", "role.id")?;
    parse_role_fields(id, v, fallback_position)
}

/// A role from a body whose id is given separately (control `POST /guilds/{g}/roles`).
pub fn parse_role_fields(id: u64, v: &Value, fallback_position: i64) -> DResult<Role> {
    Ok(Role {
        id,
        name: opt_str(v, "name").unwrap_or_else(|| "new role".into()),
        permissions: opt_perms(v, "permissions", "role.permissions")?.unwrap_or(0),
        position: v
            .get("position")
            .and_then(Value::as_i64)
            .unwrap_or(fallback_position),
        color: v.get("color").and_then(Value::as_u64).unwrap_or(0) as u32,
        hoist: v.get("hoist").and_then(Value::as_bool).unwrap_or(false),
        managed: v.get("managed").and_then(Value::as_bool).unwrap_or(false),
        mentionable: v
            .get("mentionable")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

pub fn parse_overwrite_kind(v: Option<&Value>) -> DResult<u8> {
    match v {
        Some(Value::Number(n)) if n.as_u64() == Some(0) => Ok(OVERWRITE_ROLE),
        Some(Value::Number(n)) if n.as_u64() == Some(1) => Ok(OVERWRITE_MEMBER),
        Some(Value::String(s)) if s == "role" || s == "0" => Ok(OVERWRITE_ROLE),
        Some(Value::String(s)) if s == "member" || s == "1" => Ok(OVERWRITE_MEMBER),
        _ => Err(DiscordError::invalid_form(
            "overwrite.type must be 0 (role) or 1 (member)",
        )),
    }
}

pub fn parse_overwrite_fields(id: u64, v: &Value) -> DResult<Overwrite> {
    Ok(Overwrite {
        id,
        kind: parse_overwrite_kind(v.get("type"))?,
        allow: opt_perms(v, "allow", "overwrite.allow")?.unwrap_or(0),
        deny: opt_perms(v, "deny", "overwrite.deny")?.unwrap_or(0),
    })
}

pub fn parse_channel(v: &Value, guild_id: u64, fallback_position: i64) -> DResult<Channel> {
    let id = req_id(v, "id", "channel.id")?;
    parse_channel_fields(id, v, guild_id, fallback_position)
}

pub fn parse_channel_fields(
    id: u64,
    v: &Value,
    guild_id: u64,
    fallback_position: i64,
) -> DResult<Channel> {
    let kind = match v.get("type") {
        None | Some(Value::Null) => 0,
        Some(t) => t.as_u64().filter(|t| *t <= 16).ok_or_else(|| {
            DiscordError::invalid_form("channel.type must be a channel type number")
        })? as u8,
    };
    let overwrites = match v.get("permission_overwrites") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|o| parse_overwrite_fields(req_id(o, "id", "overwrite.id")?, o))
            .collect::<DResult<Vec<_>>>()?,
        Some(_) => {
            return Err(DiscordError::invalid_form(
                "channel.permission_overwrites must be an array",
            ))
        }
    };
    Ok(Channel {
        id,
        guild_id,
        kind,
        name: opt_str(v, "name").unwrap_or_else(|| format!("channel-{id}")),
        position: v
            .get("position")
            .and_then(Value::as_i64)
            .unwrap_or(fallback_position),
        parent_id: opt_id(v, "parent_id", "channel.parent_id")?,
        topic: opt_str(v, "topic"),
        nsfw: v.get("nsfw").and_then(Value::as_bool).unwrap_or(false),
        overwrites,
        last_message_id: None,
    })
}

/// A member entry `{"user": {...}, "roles": [...], "nick"?}`; returns the member and its user.
pub fn parse_member(v: &Value, joined_at: &str) -> DResult<(Member, User)> {
    let user_v = v
        .get("user")
        .ok_or_else(|| DiscordError::invalid_form("member.user is required"))?;
    let user = parse_user(user_v)?;
    let roles = id_list(v, "roles", "member.roles")?.unwrap_or_default();
    Ok((
        Member {
            user_id: user.id,
            roles,
            nick: opt_str(v, "nick"),
            joined_at: opt_str(v, "joined_at").unwrap_or_else(|| joined_at.to_owned()),
        },
        user,
    ))
}

/// A whole guild object. The `@everyone` role (id = guild id) is added when missing, with
/// Discord's default permissions for a new server.
pub fn parse_guild(v: &Value, now: &str) -> DResult<(Guild, Vec<User>)> {
    let id = req_id(v, "id", "guild.id")?;
    let owner_id = req_id(v, "owner_id", "guild.owner_id")?;
    let mut roles = BTreeMap::new();
    if let Some(list) = v.get("roles") {
        let list = list
            .as_array()
            .ok_or_else(|| DiscordError::invalid_form("guild.roles must be an array"))?;
        for (i, r) in list.iter().enumerate() {
            let role = parse_role(r, i as i64)?;
            roles.insert(role.id, role);
        }
    }
    roles.entry(id).or_insert_with(|| Role {
        id,
        name: "@everyone".into(),
        permissions: DEFAULT_EVERYONE_PERMISSIONS,
        position: 0,
        color: 0,
        hoist: false,
        managed: false,
        mentionable: false,
    });
    let mut channels = BTreeMap::new();
    if let Some(list) = v.get("channels") {
        let list = list
            .as_array()
            .ok_or_else(|| DiscordError::invalid_form("guild.channels must be an array"))?;
        for (i, c) in list.iter().enumerate() {
            let ch = parse_channel(c, id, i as i64)?;
            channels.insert(ch.id, ch);
        }
    }
    let mut members = BTreeMap::new();
    let mut users = Vec::new();
    if let Some(list) = v.get("members") {
        let list = list
            .as_array()
            .ok_or_else(|| DiscordError::invalid_form("guild.members must be an array"))?;
        for m in list {
            let (member, user) = parse_member(m, now)?;
            members.insert(member.user_id, member);
            users.push(user);
        }
    }
    Ok((
        Guild {
            id,
            name: opt_str(v, "name").unwrap_or_else(|| format!("guild-{id}")),
            owner_id,
            joined_at: now.to_owned(),
            roles,
            channels,
            members,
        },
        users,
    ))
}

/// `@everyone` permissions when a scenario leaves the role out: the everyday text and voice
/// bits a new Discord server grants (create invite, reactions, view, send, embed, attach, read
/// history, external emojis, connect, speak, change nickname).
pub const DEFAULT_EVERYONE_PERMISSIONS: u64 = (1 << 0)
    | (1 << 6)
    | (1 << 10)
    | (1 << 11)
    | (1 << 14)
    | (1 << 15)
    | (1 << 16)
    | (1 << 18)
    | (1 << 20)
    | (1 << 21)
    | (1 << 26);
