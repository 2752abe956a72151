//! In-memory Discord records and their Discord-shaped JSON renderings.
//!
//! Renderings carry every key serenity 0.12.5 requires (see reference/discord-notes.md); the
//! contract tests in `tests/sandbox_contract.rs` decode each of them with serenity's models.

use std::collections::BTreeMap;

use serde_json::{json, Value};

pub const OVERWRITE_ROLE: u8 = 0;
pub const OVERWRITE_MEMBER: u8 = 1;

#[derive(Debug, Clone)]
pub struct User {
    pub id: u64,
    pub username: String,
    pub global_name: Option<String>,
    pub avatar: Option<String>,
    pub bot: bool,
}

#[derive(Debug, Clone)]
pub struct Role {
    pub id: u64,
    pub name: String,
    pub permissions: u64,
    pub position: i64,
    pub color: u32,
    pub hoist: bool,
    pub managed: bool,
    pub mentionable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overwrite {
    pub id: u64,
    pub kind: u8,
    pub allow: u64,
    pub deny: u64,
}

#[derive(Debug, Clone)]
pub struct Channel {
    pub id: u64,
    pub guild_id: u64,
    pub kind: u8,
    pub name: String,
    pub position: i64,
    pub parent_id: Option<u64>,
    pub topic: Option<String>,
    pub nsfw: bool,
    pub overwrites: Vec<Overwrite>,
    pub last_message_id: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Member {
    pub user_id: u64,
    pub roles: Vec<u64>,
    pub nick: Option<String>,
    pub joined_at: String,
}

#[derive(Debug, Clone)]
pub struct Guild {
    pub id: u64,
    pub name: String,
    pub owner_id: u64,
    pub joined_at: String,
    pub roles: BTreeMap<u64, Role>,
    pub channels: BTreeMap<u64, Channel>,
    /// Ordered by user id, as `GET /guilds/{id}/members?after=` pages them.
    pub members: BTreeMap<u64, Member>,
}

#[derive(Debug, Clone)]
pub struct Message {
    pub id: u64,
    pub channel_id: u64,
    pub guild_id: u64,
    pub author_id: u64,
    pub content: String,
    pub embeds: Vec<Value>,
    pub attachments: Vec<Value>,
    /// Sticker items (`id`, `name`, `format_type`): only users' posts carry them here.
    pub sticker_items: Vec<Value>,
    pub timestamp: String,
    pub edited_timestamp: Option<String>,
    pub nonce: Option<Value>,
    pub webhook_id: Option<u64>,
    /// Author shown on webhook messages (`username` / `avatar_url` overrides).
    pub webhook_author: Option<(String, Option<String>)>,
    pub deleted: bool,
    /// When the nonce was recorded, for `enforce_nonce` (Discord keeps them a few minutes).
    pub created_at: std::time::Instant,
}

#[derive(Debug, Clone)]
pub struct Webhook {
    pub id: u64,
    pub token: String,
    pub guild_id: u64,
    pub channel_id: u64,
    pub name: String,
    pub creator_id: u64,
}

pub fn sf(id: u64) -> String {
    id.to_string()
}

pub fn user_json(u: &User) -> Value {
    json!({
        "id": sf(u.id),
        "username": u.username,
        "discriminator": "0",
        "global_name": u.global_name,
        "avatar": u.avatar,
        "bot": u.bot,
        "public_flags": 0,
        "banner": null,
        "accent_color": null,
        "avatar_decoration_data": null,
    })
}

pub fn role_json(r: &Role) -> Value {
    json!({
        "id": sf(r.id),
        "name": r.name,
        "color": r.color,
        "colors": {"primary_color": r.color, "secondary_color": null, "tertiary_color": null},
        "hoist": r.hoist,
        "icon": null,
        "unicode_emoji": null,
        "position": r.position,
        "permissions": r.permissions.to_string(),
        "managed": r.managed,
        "mentionable": r.mentionable,
        "flags": 0,
    })
}

pub fn overwrite_json(o: &Overwrite) -> Value {
    json!({"id": sf(o.id), "type": o.kind, "allow": o.allow.to_string(), "deny": o.deny.to_string()})
}

pub fn channel_json(c: &Channel) -> Value {
    let mut v = json!({
        "id": sf(c.id),
        "type": c.kind,
        "guild_id": sf(c.guild_id),
        "name": c.name,
        "position": c.position,
        "permission_overwrites": c.overwrites.iter().map(overwrite_json).collect::<Vec<_>>(),
        "parent_id": c.parent_id.map(sf),
        "nsfw": c.nsfw,
        "flags": 0,
    });
    if let Some(obj) = v.as_object_mut() {
        match c.kind {
            // Voice and stage channels.
            2 | 13 => {
                obj.insert("bitrate".into(), json!(64000));
                obj.insert("user_limit".into(), json!(0));
                obj.insert("rtc_region".into(), Value::Null);
            }
            // Categories carry neither topic nor last message.
            4 => {}
            _ => {
                obj.insert("topic".into(), json!(c.topic));
                obj.insert("last_message_id".into(), json!(c.last_message_id.map(sf)));
                obj.insert("rate_limit_per_user".into(), json!(0));
            }
        }
    }
    v
}

/// A guild member without `guild_id` (as inside GUILD_CREATE and member lists).
pub fn member_json(m: &Member, user: &User) -> Value {
    json!({
        "user": user_json(user),
        "nick": m.nick,
        "avatar": null,
        "banner": null,
        "roles": m.roles.iter().map(|r| sf(*r)).collect::<Vec<_>>(),
        "joined_at": m.joined_at,
        "premium_since": null,
        "deaf": false,
        "mute": false,
        "flags": 0,
        "pending": false,
        "communication_disabled_until": null,
    })
}

pub fn with_guild_id(mut v: Value, guild_id: u64) -> Value {
    if let Some(obj) = v.as_object_mut() {
        obj.insert("guild_id".into(), json!(sf(guild_id)));
    }
    v
}

/// The guild object of `GET /guilds/{id}` (no members, channels or gateway-only keys).
pub fn guild_rest_json(g: &Guild) -> Value {
    json!({
        "id": sf(g.id),
        "name": g.name,
        "icon": null,
        "splash": null,
        "discovery_splash": null,
        "owner_id": sf(g.owner_id),
        "afk_channel_id": null,
        "afk_timeout": 300,
        "widget_enabled": false,
        "widget_channel_id": null,
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "roles": g.roles.values().map(role_json).collect::<Vec<_>>(),
        "emojis": [],
        "features": [],
        "mfa_level": 0,
        "application_id": null,
        "system_channel_id": null,
        "system_channel_flags": 0,
        "rules_channel_id": null,
        "max_presences": null,
        "max_members": 500000,
        "vanity_url_code": null,
        "description": null,
        "banner": null,
        "premium_tier": 0,
        "premium_subscription_count": 0,
        "preferred_locale": "en-US",
        "public_updates_channel_id": null,
        "max_video_channel_users": 25,
        "max_stage_video_channel_users": 50,
        "nsfw_level": 0,
        "stickers": [],
        "premium_progress_bar_enabled": false,
        "safety_alerts_channel_id": null,
    })
}

/// The GUILD_CREATE payload. `members` is the member list to include (all of them, or only the
/// bot's own entry for a large guild).
pub fn guild_create_json(g: &Guild, members: Vec<Value>, large: bool) -> Value {
    let mut v = guild_rest_json(g);
    if let Some(obj) = v.as_object_mut() {
        obj.insert("joined_at".into(), json!(g.joined_at));
        obj.insert("large".into(), json!(large));
        obj.insert("unavailable".into(), json!(false));
        obj.insert("member_count".into(), json!(g.members.len()));
        obj.insert("voice_states".into(), json!([]));
        obj.insert("members".into(), Value::Array(members));
        obj.insert(
            "channels".into(),
            Value::Array(g.channels.values().map(channel_json).collect()),
        );
        obj.insert("threads".into(), json!([]));
        obj.insert("presences".into(), json!([]));
        obj.insert("stage_instances".into(), json!([]));
        obj.insert("guild_scheduled_events".into(), json!([]));
        obj.insert("soundboard_sounds".into(), json!([]));
    }
    v
}

/// A message as REST returns it. `author` is the resolved author object.
pub fn message_json(m: &Message, author: Value) -> Value {
    let mut v = json!({
        "id": sf(m.id),
        "type": 0,
        "channel_id": sf(m.channel_id),
        "author": author,
        "content": m.content,
        "timestamp": m.timestamp,
        "edited_timestamp": m.edited_timestamp,
        "tts": false,
        "mention_everyone": false,
        "mentions": [],
        "mention_roles": [],
        "attachments": m.attachments,
        "embeds": m.embeds,
        "pinned": false,
        "flags": 0,
        "components": [],
    });
    if let Some(obj) = v.as_object_mut() {
        if let Some(nonce) = &m.nonce {
            obj.insert("nonce".into(), nonce.clone());
        }
        if let Some(wh) = m.webhook_id {
            obj.insert("webhook_id".into(), json!(sf(wh)));
        }
        if !m.sticker_items.is_empty() {
            obj.insert("sticker_items".into(), json!(m.sticker_items));
        }
    }
    v
}

/// `url` is Discord's own form (`https://discord.com/api/webhooks/...`), which serenity's
/// `Webhook::from_url` requires; serenity's proxy setting rewrites it to the sandbox.
pub fn webhook_json(w: &Webhook, creator: Option<&User>) -> Value {
    json!({
        "id": sf(w.id),
        "type": 1,
        "guild_id": sf(w.guild_id),
        "channel_id": sf(w.channel_id),
        "user": creator.map(user_json),
        "name": w.name,
        "avatar": null,
        "token": w.token,
        "application_id": null,
        "url": format!("https://discord.com/api/webhooks/{}/{}", w.id, w.token),
    })
}

/// The author of a webhook message. `avatar_url` overrides become an image hash, as Discord
/// stores the image and reports its hash (serenity accepts only 32-character hashes).
pub fn webhook_author_json(webhook_id: u64, name: &str, avatar_url: Option<&str>) -> Value {
    let avatar = avatar_url.map(|url| {
        use sha2::Digest;
        hex::encode(&sha2::Sha256::digest(url.as_bytes())[..16])
    });
    json!({
        "id": sf(webhook_id),
        "username": name,
        "discriminator": "0000",
        "global_name": null,
        "avatar": avatar,
        "bot": true,
        "public_flags": 0,
    })
}

/// A member serialised straight to JSON, without building a `Value` tree: GUILD_MEMBERS_CHUNK
/// answers for very large guilds use it. Same keys as [`member_json`].
#[derive(serde::Serialize)]
pub struct MemberWire<'a> {
    user: UserWire<'a>,
    nick: Option<&'a str>,
    avatar: Option<()>,
    banner: Option<()>,
    roles: Vec<String>,
    joined_at: &'a str,
    premium_since: Option<()>,
    deaf: bool,
    mute: bool,
    flags: u8,
    pending: bool,
    communication_disabled_until: Option<()>,
}

#[derive(serde::Serialize)]
struct UserWire<'a> {
    id: String,
    username: &'a str,
    discriminator: &'static str,
    global_name: Option<&'a str>,
    avatar: Option<&'a str>,
    bot: bool,
    public_flags: u8,
    banner: Option<()>,
    accent_color: Option<()>,
    avatar_decoration_data: Option<()>,
}

impl<'a> MemberWire<'a> {
    pub fn new(m: &'a Member, u: &'a User) -> Self {
        Self {
            user: UserWire {
                id: sf(u.id),
                username: &u.username,
                discriminator: "0",
                global_name: u.global_name.as_deref(),
                avatar: u.avatar.as_deref(),
                bot: u.bot,
                public_flags: 0,
                banner: None,
                accent_color: None,
                avatar_decoration_data: None,
            },
            nick: m.nick.as_deref(),
            avatar: None,
            banner: None,
            roles: m.roles.iter().map(|r| sf(*r)).collect(),
            joined_at: &m.joined_at,
            premium_since: None,
            deaf: false,
            mute: false,
            flags: 0,
            pending: false,
            communication_disabled_until: None,
        }
    }
}
