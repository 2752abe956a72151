//! The sandbox's Discord state and every change to it. Each change returns the gateway
//! dispatches Discord would emit for it; the caller publishes them under the same lock.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::error::{DResult, DiscordError};
use super::files::{attachment_json, attachment_ref, cdn_url, clean_filename, content_type_for};
use super::files::{Hosted, Upload};
use super::gateway::hub::{
    Dispatch, INTENT_GUILDS, INTENT_GUILD_MEMBERS, INTENT_GUILD_MESSAGES, INTENT_GUILD_WEBHOOKS,
};
use super::model::*;
use super::scenario::{
    id_list, opt_str, parse_channel_fields, parse_guild, parse_member, parse_overwrite_fields,
    parse_role_fields, parse_user,
};

/// Discord keeps `enforce_nonce` nonces for "a few minutes".
pub const NONCE_WINDOW: Duration = Duration::from_secs(5 * 60);
const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

pub type Changed = (Value, Vec<Dispatch>);

pub fn now_iso() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
}

pub struct State {
    pub bot_id: u64,
    pub users: HashMap<u64, User>,
    pub guilds: BTreeMap<u64, Guild>,
    pub channel_guild: HashMap<u64, u64>,
    pub messages: HashMap<u64, Message>,
    pub channel_messages: HashMap<u64, Vec<u64>>,
    pub webhooks: HashMap<u64, Webhook>,
    /// Attachment id -> hosted file, served by the CDN path.
    pub files: HashMap<u64, Hosted>,
    /// (author id, nonce) -> message id, for `enforce_nonce`.
    nonces: HashMap<(u64, String), (u64, Instant)>,
    /// The same keys in the order they were stored, for pruning from the oldest.
    nonce_order: VecDeque<((u64, String), Instant)>,
    last_id: u64,
    /// Guilds in an outage: unavailable to the gateway until it ends.
    pub outages: std::collections::HashSet<u64>,
}

impl State {
    pub fn new(bot: User) -> Self {
        let bot_id = bot.id;
        let mut users = HashMap::new();
        users.insert(bot.id, bot);
        Self {
            bot_id,
            users,
            guilds: BTreeMap::new(),
            channel_guild: HashMap::new(),
            messages: HashMap::new(),
            channel_messages: HashMap::new(),
            webhooks: HashMap::new(),
            files: HashMap::new(),
            nonces: HashMap::new(),
            nonce_order: VecDeque::new(),
            last_id: 0,
            outages: Default::default(),
        }
    }

    /// A fresh snowflake, increasing even within one millisecond.
    pub fn next_id(&mut self) -> u64 {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(DISCORD_EPOCH_MS)
            .saturating_sub(DISCORD_EPOCH_MS);
        let id = (ms << 22).max(self.last_id + 1);
        self.last_id = id;
        id
    }

    pub fn bot(&self) -> Option<&User> {
        self.users.get(&self.bot_id)
    }

    pub fn guild(&self, id: u64) -> DResult<&Guild> {
        self.guilds.get(&id).ok_or_else(DiscordError::unknown_guild)
    }

    fn guild_mut(&mut self, id: u64) -> DResult<&mut Guild> {
        self.guilds
            .get_mut(&id)
            .ok_or_else(DiscordError::unknown_guild)
    }

    pub fn channel(&self, id: u64) -> DResult<(&Guild, &Channel)> {
        let gid = self
            .channel_guild
            .get(&id)
            .ok_or_else(DiscordError::unknown_channel)?;
        let g = self.guild(*gid)?;
        let c = g
            .channels
            .get(&id)
            .ok_or_else(DiscordError::unknown_channel)?;
        Ok((g, c))
    }

    pub fn member_value(&self, m: &Member) -> Option<Value> {
        self.users.get(&m.user_id).map(|u| member_json(m, u))
    }

    pub fn member_json(&self, guild_id: u64, user_id: u64) -> DResult<Value> {
        let g = self.guild(guild_id)?;
        let m = g
            .members
            .get(&user_id)
            .ok_or_else(DiscordError::unknown_member)?;
        self.member_value(m).ok_or_else(DiscordError::unknown_user)
    }

    /// Records a user. The bot's own record (id and name fixed by the scenario's `bot`) is never
    /// replaced by a member entry that names it.
    fn upsert_user(&mut self, u: User) {
        if u.id != self.bot_id {
            self.users.insert(u.id, u);
        }
    }

    // ---- guilds ----

    /// Adds (or replaces) a guild from a Discord-shaped object; the bot joins it.
    pub fn add_guild(&mut self, v: &Value) -> DResult<Changed> {
        let now = now_iso();
        let (mut guild, users) = parse_guild(v, &now)?;
        for u in users {
            self.upsert_user(u);
        }
        guild.members.entry(self.bot_id).or_insert_with(|| Member {
            user_id: self.bot_id,
            roles: Vec::new(),
            nick: None,
            joined_at: now.clone(),
        });
        if !self.users.contains_key(&guild.owner_id) {
            let id = guild.owner_id;
            self.upsert_user(User {
                id,
                username: format!("owner{id}"),
                global_name: None,
                avatar: None,
                bot: false,
            });
        }
        let gid = guild.id;
        // Validate before touching anything, so a refused guild leaves the state as it was.
        for cid in guild.channels.keys() {
            if let Some(other) = self.channel_guild.get(cid).filter(|g| **g != gid) {
                return Err(DiscordError::invalid_form(format!(
                    "channel {cid} already belongs to guild {other}"
                )));
            }
        }
        let mut dispatches = Vec::new();
        if self.guilds.contains_key(&gid) {
            let (_, mut d) = self.remove_guild(gid)?;
            dispatches.append(&mut d);
        }
        for cid in guild.channels.keys() {
            self.channel_guild.insert(*cid, gid);
        }
        let summary =
            json!({"id": sf(gid), "name": guild.name, "member_count": guild.members.len()});
        self.guilds.insert(gid, guild);
        dispatches.push(Dispatch::guild_create(gid));
        Ok((summary, dispatches))
    }

    /// The bot leaves (or the guild goes away): GUILD_DELETE without `unavailable`.
    pub fn remove_guild(&mut self, gid: u64) -> DResult<Changed> {
        let g = self
            .guilds
            .remove(&gid)
            .ok_or_else(DiscordError::unknown_guild)?;
        for cid in g.channels.keys() {
            self.channel_guild.remove(cid);
        }
        let d = json!({"id": sf(gid)});
        Ok((
            d.clone(),
            vec![Dispatch::new("GUILD_DELETE", gid, INTENT_GUILDS, d)],
        ))
    }

    /// `{"name"?, "owner_id"?}`: GUILD_UPDATE with the whole guild object ("Sent when a guild
    /// is updated", Discord's Gateway Events; an owner transfer is Modify Guild's `owner_id`).
    pub fn update_guild(&mut self, gid: u64, v: &Value) -> DResult<Changed> {
        let owner = super::scenario::opt_id(v, "owner_id", "guild.owner_id")?;
        if let Some(owner) = owner {
            if !self.guild(gid)?.members.contains_key(&owner) {
                return Err(DiscordError::unknown_member());
            }
        }
        let g = self.guild_mut(gid)?;
        if let Some(owner) = owner {
            g.owner_id = owner;
        }
        if let Some(name) = opt_str(v, "name") {
            g.name = name;
        }
        let d = guild_rest_json(g);
        Ok((
            d.clone(),
            vec![Dispatch::new("GUILD_UPDATE", gid, INTENT_GUILDS, d)],
        ))
    }

    /// An outage: sessions get GUILD_DELETE with `unavailable: true`, then nothing of the
    /// guild until it ends ("Sent when a guild becomes or was already unavailable due to an
    /// outage", Discord's Gateway Events, Guild Delete).
    pub fn start_outage(&mut self, gid: u64) -> DResult<Changed> {
        self.guild(gid)?;
        self.outages.insert(gid);
        let d = json!({"id": sf(gid), "unavailable": true});
        Ok((
            d.clone(),
            vec![Dispatch::new("GUILD_DELETE", gid, INTENT_GUILDS, d)],
        ))
    }

    /// The outage ends: GUILD_CREATE again ("when a guild becomes available again to the
    /// client", Discord's Gateway Events, Guild Create).
    pub fn end_outage(&mut self, gid: u64) -> DResult<Changed> {
        self.guild(gid)?;
        let was = self.outages.remove(&gid);
        let d = json!({"id": sf(gid), "outage": was});
        Ok((d, vec![Dispatch::guild_create(gid)]))
    }

    // ---- members ----

    pub fn add_member(&mut self, gid: u64, v: &Value) -> DResult<Changed> {
        let now = now_iso();
        let (member, user) = parse_member(v, &now)?;
        let g = self.guild(gid)?;
        for r in &member.roles {
            if !g.roles.contains_key(r) {
                return Err(DiscordError::unknown_role());
            }
        }
        let uid = user.id;
        self.upsert_user(user);
        let g = self.guild_mut(gid)?;
        g.members.insert(uid, member);
        let d = with_guild_id(self.member_json(gid, uid)?, gid);
        Ok((
            d.clone(),
            vec![Dispatch::new(
                "GUILD_MEMBER_ADD",
                gid,
                INTENT_GUILD_MEMBERS,
                d,
            )],
        ))
    }

    /// Replaces a member's roles and/or nick (keys absent from `v` are kept).
    pub fn update_member(&mut self, gid: u64, uid: u64, v: &Value) -> DResult<Changed> {
        let roles = id_list(v, "roles", "roles")?;
        let g = self.guild(gid)?;
        if let Some(roles) = &roles {
            for r in roles {
                if !g.roles.contains_key(r) {
                    return Err(DiscordError::unknown_role());
                }
            }
        }
        let g = self.guild_mut(gid)?;
        let m = g
            .members
            .get_mut(&uid)
            .ok_or_else(DiscordError::unknown_member)?;
        if let Some(roles) = roles {
            m.roles = roles;
        }
        if let Some(nick) = v.get("nick") {
            m.nick = nick.as_str().map(str::to_owned);
        }
        self.member_changed(gid, uid)
    }

    fn member_changed(&self, gid: u64, uid: u64) -> DResult<Changed> {
        let d = with_guild_id(self.member_json(gid, uid)?, gid);
        Ok((
            d.clone(),
            vec![Dispatch::new(
                "GUILD_MEMBER_UPDATE",
                gid,
                INTENT_GUILD_MEMBERS,
                d,
            )],
        ))
    }

    pub fn add_member_role(&mut self, gid: u64, uid: u64, rid: u64) -> DResult<Changed> {
        let g = self.guild_mut(gid)?;
        if !g.roles.contains_key(&rid) {
            return Err(DiscordError::unknown_role());
        }
        let m = g
            .members
            .get_mut(&uid)
            .ok_or_else(DiscordError::unknown_member)?;
        if m.roles.contains(&rid) {
            return Ok((Value::Null, Vec::new()));
        }
        m.roles.push(rid);
        self.member_changed(gid, uid)
    }

    pub fn remove_member_role(&mut self, gid: u64, uid: u64, rid: u64) -> DResult<Changed> {
        let g = self.guild_mut(gid)?;
        if !g.roles.contains_key(&rid) {
            return Err(DiscordError::unknown_role());
        }
        let m = g
            .members
            .get_mut(&uid)
            .ok_or_else(DiscordError::unknown_member)?;
        if !m.roles.contains(&rid) {
            return Ok((Value::Null, Vec::new()));
        }
        m.roles.retain(|r| *r != rid);
        self.member_changed(gid, uid)
    }

    pub fn remove_member(&mut self, gid: u64, uid: u64) -> DResult<Changed> {
        if uid == self.bot_id {
            return self.remove_guild(gid);
        }
        let g = self.guild_mut(gid)?;
        g.members
            .remove(&uid)
            .ok_or_else(DiscordError::unknown_member)?;
        let user = self.users.get(&uid).map(user_json).unwrap_or(Value::Null);
        let d = json!({"guild_id": sf(gid), "user": user});
        Ok((
            d.clone(),
            vec![Dispatch::new(
                "GUILD_MEMBER_REMOVE",
                gid,
                INTENT_GUILD_MEMBERS,
                d,
            )],
        ))
    }

    /// Adds many plain members at once without dispatches (large-guild fixtures).
    pub fn bulk_add_members(
        &mut self,
        gid: u64,
        users: Vec<User>,
        roles: &[u64],
    ) -> DResult<usize> {
        let now = now_iso();
        let g = self
            .guilds
            .get_mut(&gid)
            .ok_or_else(DiscordError::unknown_guild)?;
        let n = users.len();
        for u in users {
            g.members.insert(
                u.id,
                Member {
                    user_id: u.id,
                    roles: roles.to_vec(),
                    nick: None,
                    joined_at: now.clone(),
                },
            );
            self.users.insert(u.id, u);
        }
        Ok(n)
    }

    // ---- roles ----

    pub fn create_role(&mut self, gid: u64, v: &Value) -> DResult<Changed> {
        let id = match v.get("id") {
            Some(idv) => super::scenario::parse_id(idv)
                .ok_or_else(|| DiscordError::invalid_form("role.id: not a snowflake"))?,
            None => self.next_id(),
        };
        let g = self.guild(gid)?;
        if g.roles.contains_key(&id) {
            return Err(DiscordError::invalid_form(format!(
                "role {id} already exists"
            )));
        }
        let position = g.roles.values().map(|r| r.position).max().unwrap_or(0) + 1;
        let role = parse_role_fields(id, v, position)?;
        let rj = role_json(&role);
        self.guild_mut(gid)?.roles.insert(id, role);
        let d = json!({"guild_id": sf(gid), "role": rj});
        Ok((
            rj,
            vec![Dispatch::new("GUILD_ROLE_CREATE", gid, INTENT_GUILDS, d)],
        ))
    }

    pub fn update_role(&mut self, gid: u64, rid: u64, v: &Value) -> DResult<Changed> {
        let g = self.guild_mut(gid)?;
        let role = g
            .roles
            .get_mut(&rid)
            .ok_or_else(DiscordError::unknown_role)?;
        if let Some(name) = opt_str(v, "name") {
            role.name = name;
        }
        if let Some(p) = super::scenario::opt_perms(v, "permissions", "role.permissions")? {
            role.permissions = p;
        }
        if let Some(p) = v.get("position").and_then(Value::as_i64) {
            role.position = p;
        }
        if let Some(c) = v.get("color").and_then(Value::as_u64) {
            role.color = c as u32;
        }
        if let Some(h) = v.get("hoist").and_then(Value::as_bool) {
            role.hoist = h;
        }
        let rj = role_json(role);
        let d = json!({"guild_id": sf(gid), "role": rj});
        Ok((
            rj,
            vec![Dispatch::new("GUILD_ROLE_UPDATE", gid, INTENT_GUILDS, d)],
        ))
    }

    /// Deleting a role also takes it off every member, as Discord does (without member events).
    pub fn delete_role(&mut self, gid: u64, rid: u64) -> DResult<Changed> {
        if rid == gid {
            return Err(DiscordError::invalid_form(
                "the @everyone role cannot be deleted",
            ));
        }
        let g = self.guild_mut(gid)?;
        g.roles
            .remove(&rid)
            .ok_or_else(DiscordError::unknown_role)?;
        for m in g.members.values_mut() {
            m.roles.retain(|r| *r != rid);
        }
        let d = json!({"guild_id": sf(gid), "role_id": sf(rid)});
        Ok((
            d.clone(),
            vec![Dispatch::new("GUILD_ROLE_DELETE", gid, INTENT_GUILDS, d)],
        ))
    }

    // ---- channels ----

    pub fn create_channel(&mut self, gid: u64, v: &Value) -> DResult<Changed> {
        let id = match v.get("id") {
            Some(idv) => super::scenario::parse_id(idv)
                .ok_or_else(|| DiscordError::invalid_form("channel.id: not a snowflake"))?,
            None => self.next_id(),
        };
        if self.channel_guild.contains_key(&id) {
            return Err(DiscordError::invalid_form(format!(
                "channel {id} already exists"
            )));
        }
        let position = self.guild(gid)?.channels.len() as i64;
        let ch = parse_channel_fields(id, v, gid, position)?;
        let cj = channel_json(&ch);
        self.guild_mut(gid)?.channels.insert(id, ch);
        self.channel_guild.insert(id, gid);
        Ok((
            cj.clone(),
            vec![Dispatch::new("CHANNEL_CREATE", gid, INTENT_GUILDS, cj)],
        ))
    }

    pub fn update_channel(&mut self, cid: u64, v: &Value) -> DResult<Changed> {
        let gid = *self
            .channel_guild
            .get(&cid)
            .ok_or_else(DiscordError::unknown_channel)?;
        let g = self.guild_mut(gid)?;
        let ch = g
            .channels
            .get_mut(&cid)
            .ok_or_else(DiscordError::unknown_channel)?;
        if let Some(name) = opt_str(v, "name") {
            ch.name = name;
        }
        if let Some(t) = v.get("topic") {
            ch.topic = t.as_str().map(str::to_owned);
        }
        if let Some(p) = v.get("position").and_then(Value::as_i64) {
            ch.position = p;
        }
        if v.get("permission_overwrites").is_some() {
            let parsed = parse_channel_fields(cid, v, gid, ch.position)?;
            ch.overwrites = parsed.overwrites;
        }
        self.channel_changed(cid)
    }

    fn channel_changed(&self, cid: u64) -> DResult<Changed> {
        let (g, ch) = self.channel(cid)?;
        let cj = channel_json(ch);
        Ok((
            cj.clone(),
            vec![Dispatch::new("CHANNEL_UPDATE", g.id, INTENT_GUILDS, cj)],
        ))
    }

    pub fn put_overwrite(&mut self, cid: u64, oid: u64, v: &Value) -> DResult<Changed> {
        let ow = parse_overwrite_fields(oid, v)?;
        let gid = *self
            .channel_guild
            .get(&cid)
            .ok_or_else(DiscordError::unknown_channel)?;
        let g = self.guild_mut(gid)?;
        let ch = g
            .channels
            .get_mut(&cid)
            .ok_or_else(DiscordError::unknown_channel)?;
        match ch.overwrites.iter_mut().find(|o| o.id == oid) {
            Some(existing) => *existing = ow,
            None => ch.overwrites.push(ow),
        }
        self.channel_changed(cid)
    }

    pub fn delete_overwrite(&mut self, cid: u64, oid: u64) -> DResult<Changed> {
        let gid = *self
            .channel_guild
            .get(&cid)
            .ok_or_else(DiscordError::unknown_channel)?;
        let g = self.guild_mut(gid)?;
        let ch = g
            .channels
            .get_mut(&cid)
            .ok_or_else(DiscordError::unknown_channel)?;
        let before = ch.overwrites.len();
        ch.overwrites.retain(|o| o.id != oid);
        if ch.overwrites.len() == before {
            return Ok((Value::Null, Vec::new()));
        }
        self.channel_changed(cid)
    }

    pub fn delete_channel(&mut self, cid: u64) -> DResult<Changed> {
        let gid = self
            .channel_guild
            .remove(&cid)
            .ok_or_else(DiscordError::unknown_channel)?;
        let g = self.guild_mut(gid)?;
        let ch = g
            .channels
            .remove(&cid)
            .ok_or_else(DiscordError::unknown_channel)?;
        let cj = channel_json(&ch);
        Ok((
            cj.clone(),
            vec![Dispatch::new("CHANNEL_DELETE", gid, INTENT_GUILDS, cj)],
        ))
    }

    // ---- messages ----

    fn author_json(&self, m: &Message) -> Value {
        match (&m.webhook_author, m.webhook_id) {
            (Some((name, avatar)), Some(wid)) => webhook_author_json(wid, name, avatar.as_deref()),
            _ => self
                .users
                .get(&m.author_id)
                .map(user_json)
                .unwrap_or(Value::Null),
        }
    }

    /// A message as REST returns it.
    pub fn message_value(&self, m: &Message) -> Value {
        message_json(m, self.author_json(m))
    }

    /// The MESSAGE_CREATE/UPDATE dispatch body (with `guild_id` and `member`) and its variant
    /// for sessions without MESSAGE_CONTENT.
    fn message_dispatch(&self, t: &'static str, m: &Message) -> Dispatch {
        let mut d = with_guild_id(self.message_value(m), m.guild_id);
        if m.webhook_id.is_none() {
            if let Some(mem) = self
                .guilds
                .get(&m.guild_id)
                .and_then(|g| g.members.get(&m.author_id))
            {
                if let Some(obj) = d.as_object_mut() {
                    obj.insert(
                        "member".into(),
                        json!({
                            "roles": mem.roles.iter().map(|r| sf(*r)).collect::<Vec<_>>(),
                            "nick": mem.nick,
                            "joined_at": mem.joined_at,
                            "deaf": false,
                            "mute": false,
                            "flags": 0,
                            "premium_since": null,
                            "avatar": null,
                        }),
                    );
                }
            }
        }
        // Discord keeps content for the bot's own messages even without MESSAGE_CONTENT.
        let mut stripped = d.clone();
        if m.author_id != self.bot_id || m.webhook_id.is_some() {
            if let Some(obj) = stripped.as_object_mut() {
                obj.insert("content".into(), json!(""));
                obj.insert("embeds".into(), json!([]));
                obj.insert("attachments".into(), json!([]));
                obj.insert("components".into(), json!([]));
            }
        }
        Dispatch::new(t, m.guild_id, INTENT_GUILD_MESSAGES, d).with_stripped(stripped)
    }

    fn live_message(&self, cid: u64, mid: u64) -> DResult<&Message> {
        self.messages
            .get(&mid)
            .filter(|m| m.channel_id == cid && !m.deleted)
            .ok_or_else(DiscordError::unknown_message)
    }

    /// Creates a message. `author_id` is the bot, a scripted user, or a webhook (with
    /// `webhook` set). Honours `nonce` + `enforce_nonce` for non-webhook authors.
    pub fn create_message(
        &mut self,
        cid: u64,
        author_id: u64,
        webhook: Option<(u64, String, Option<String>)>,
        v: &Value,
    ) -> DResult<Changed> {
        let (g, ch) = self.channel(cid)?;
        // Categories, forums and media channels hold no messages of their own.
        if matches!(ch.kind, 4 | 15 | 16) {
            return Err(DiscordError::non_text_channel());
        }
        let gid = g.id;
        let content = v
            .get("content")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let user_post = webhook.is_none() && author_id != self.bot_id;
        let max_content = max_content(user_post);
        if content.chars().count() > max_content {
            return Err(DiscordError::invalid_form(format!(
                "content: must be {max_content} or fewer in length"
            )));
        }
        // Stickers a user sent; the bot's `sticker_ids` (guild stickers) are not modelled.
        let sticker_items = if user_post {
            v.get("sticker_items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let embeds = v
            .get("embeds")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let attachments = v
            .get("attachments")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if content.is_empty()
            && embeds.is_empty()
            && attachments.is_empty()
            && sticker_items.is_empty()
        {
            return Err(DiscordError::empty_message());
        }
        let nonce = match v.get("nonce") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.chars().count() <= 25 => Some(Value::String(s.clone())),
            Some(Value::Number(n)) => Some(Value::Number(n.clone())),
            Some(_) => {
                return Err(DiscordError::invalid_form(
                    "nonce: must be 25 or fewer in length",
                ))
            }
        };
        let enforce = v
            .get("enforce_nonce")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let nonce_key = nonce.as_ref().map(|n| match n {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        if enforce && webhook.is_none() {
            if let Some(key) = &nonce_key {
                // Oldest first, so a create costs what expired since the last one, not a
                // scan of every nonce in the window.
                while let Some((old, at)) = self.nonce_order.front() {
                    if at.elapsed() < NONCE_WINDOW {
                        break;
                    }
                    if self.nonces.get(old).is_some_and(|(_, stored)| stored == at) {
                        self.nonces.remove(old);
                    }
                    self.nonce_order.pop_front();
                }
                if let Some((mid, _)) = self.nonces.get(&(author_id, key.clone())) {
                    if let Some(existing) = self.messages.get(mid) {
                        return Ok((self.message_value(existing), Vec::new()));
                    }
                }
            }
        }
        let id = self.next_id();
        let msg = Message {
            id,
            channel_id: cid,
            guild_id: gid,
            author_id,
            content,
            embeds,
            attachments,
            sticker_items,
            timestamp: now_iso(),
            edited_timestamp: None,
            nonce: if webhook.is_some() { None } else { nonce },
            webhook_id: webhook.as_ref().map(|w| w.0),
            webhook_author: webhook.map(|(_, name, avatar)| (name, avatar)),
            deleted: false,
            created_at: Instant::now(),
        };
        if let (Some(key), None) = (nonce_key, msg.webhook_id) {
            let at = Instant::now();
            self.nonce_order.push_back(((author_id, key.clone()), at));
            self.nonces.insert((author_id, key), (id, at));
        }
        let value = self.message_value(&msg);
        let dispatch = self.message_dispatch("MESSAGE_CREATE", &msg);
        self.messages.insert(id, msg);
        self.channel_messages.entry(cid).or_default().push(id);
        if let Ok(g) = self.guild_mut(gid) {
            if let Some(ch) = g.channels.get_mut(&cid) {
                ch.last_message_id = Some(id);
            }
        }
        Ok((value, vec![dispatch]))
    }

    pub fn edit_message(&mut self, cid: u64, mid: u64, v: &Value) -> DResult<Changed> {
        let m = self.live_message(cid, mid)?;
        let max_content = max_content(m.webhook_id.is_none() && m.author_id != self.bot_id);
        if let Some(c) = v.get("content").and_then(Value::as_str) {
            if c.chars().count() > max_content {
                return Err(DiscordError::invalid_form(format!(
                    "content: must be {max_content} or fewer in length"
                )));
            }
        }
        let Some(m) = self.messages.get_mut(&mid) else {
            return Err(DiscordError::unknown_message());
        };
        if let Some(c) = v.get("content") {
            m.content = c.as_str().unwrap_or("").to_owned();
        }
        if let Some(e) = v.get("embeds") {
            m.embeds = e.as_array().cloned().unwrap_or_default();
        }
        if let Some(a) = v.get("attachments") {
            m.attachments = a.as_array().cloned().unwrap_or_default();
        }
        m.edited_timestamp = Some(now_iso());
        let m = self.live_message(cid, mid)?;
        Ok((
            self.message_value(m),
            vec![self.message_dispatch("MESSAGE_UPDATE", m)],
        ))
    }

    /// Marks a message deleted (kept for the control listing, flagged `deleted`).
    pub fn delete_message(&mut self, cid: u64, mid: u64) -> DResult<Changed> {
        let gid = self.live_message(cid, mid)?.guild_id;
        if let Some(m) = self.messages.get_mut(&mid) {
            m.deleted = true;
        }
        let d = json!({"id": sf(mid), "channel_id": sf(cid), "guild_id": sf(gid)});
        Ok((
            Value::Null,
            vec![Dispatch::new(
                "MESSAGE_DELETE",
                gid,
                INTENT_GUILD_MESSAGES,
                d,
            )],
        ))
    }

    pub fn message(&self, cid: u64, mid: u64) -> DResult<&Message> {
        self.live_message(cid, mid)
    }

    /// Live messages of a channel, newest first, as `GET /channels/{id}/messages` pages them.
    pub fn channel_page(
        &self,
        cid: u64,
        after: Option<u64>,
        before: Option<u64>,
        limit: usize,
    ) -> Vec<Value> {
        let Some(ids) = self.channel_messages.get(&cid) else {
            return Vec::new();
        };
        let live = ids
            .iter()
            .filter_map(|id| self.messages.get(id))
            .filter(|m| !m.deleted)
            .filter(|m| after.is_none_or(|a| m.id > a))
            .filter(|m| before.is_none_or(|b| m.id < b));
        let mut page: Vec<&Message> = if after.is_some() {
            // Discord returns the `limit` messages right after `after`, newest first.
            live.take(limit).collect()
        } else {
            let all: Vec<&Message> = live.collect();
            let skip = all.len().saturating_sub(limit);
            all.into_iter().skip(skip).collect()
        };
        page.reverse();
        page.into_iter().map(|m| self.message_value(m)).collect()
    }

    /// Every message of a channel, oldest first, deleted ones flagged (control listing).
    pub fn channel_log(&self, cid: u64) -> DResult<Vec<Value>> {
        self.channel(cid)?;
        Ok(self
            .channel_messages
            .get(&cid)
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| self.messages.get(id))
                    .map(|m| {
                        let mut v = with_guild_id(self.message_value(m), m.guild_id);
                        if let Some(obj) = v.as_object_mut() {
                            obj.insert("deleted".into(), json!(m.deleted));
                            if let Some((_, Some(url))) = &m.webhook_author {
                                obj.insert("avatar_url".into(), json!(url));
                            }
                            obj.entry("nonce").or_insert(Value::Null);
                            obj.entry("webhook_id").or_insert(Value::Null);
                        }
                        v
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    // ---- hosted files ----

    /// Gives a file a snowflake and its attachment object (CDN url under `cdn_base`); `entry`
    /// is the `attachments[]` entry naming it, whose `filename` and `description` win. The
    /// file is stored by [`State::store_files`] once its message exists.
    pub fn host_file(
        &mut self,
        cid: u64,
        cdn_base: &str,
        upload: &Upload,
        entry: Option<&Value>,
    ) -> (Value, (u64, Hosted)) {
        let id = self.next_id();
        let name = entry
            .and_then(|e| e.get("filename"))
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .unwrap_or(&upload.filename);
        let filename = clean_filename(name);
        let file = Hosted {
            channel_id: cid,
            content_type: content_type_for(upload.content_type.as_deref(), &filename),
            filename,
            data: upload.data.clone(),
        };
        let url = cdn_url(cdn_base, cid, id, &file.filename);
        let description = entry.and_then(|e| e.get("description"));
        (attachment_json(id, &file, &url, description), (id, file))
    }

    /// The payload a multipart request amounts to: its `attachments` become, in order, the
    /// uploads its entries name (`id` = the `N` of `files[N]`) and, for an edit, the message's
    /// `existing` attachments they name by snowflake; then every upload no entry named
    /// (Discord attaches each `files[N]` part). An edit without `attachments` keeps what it
    /// had. Returns the payload and the files to store once the message change succeeded.
    pub fn attach_uploads(
        &mut self,
        cid: u64,
        cdn_base: &str,
        payload: &Value,
        uploads: &[Upload],
        existing: Option<&[Value]>,
    ) -> (Value, Vec<(u64, Hosted)>) {
        let mut used = vec![false; uploads.len()];
        let mut attachments = Vec::new();
        let mut files = Vec::new();
        match payload.get("attachments").and_then(Value::as_array) {
            Some(entries) => {
                for entry in entries {
                    let Some(key) = attachment_ref(entry) else {
                        continue;
                    };
                    let upload = uploads
                        .iter()
                        .enumerate()
                        .find(|(i, u)| !used[*i] && u.key == key);
                    if let Some((i, upload)) = upload {
                        used[i] = true;
                        let (json, file) = self.host_file(cid, cdn_base, upload, Some(entry));
                        attachments.push(json);
                        files.push(file);
                    } else if let Some(kept) = existing
                        .unwrap_or_default()
                        .iter()
                        .find(|a| attachment_ref(a).as_deref() == Some(key.as_str()))
                    {
                        attachments.push(kept.clone());
                    }
                }
            }
            None => attachments.extend(existing.unwrap_or_default().iter().cloned()),
        }
        for (upload, _) in uploads.iter().zip(&used).filter(|(_, used)| !**used) {
            let (json, file) = self.host_file(cid, cdn_base, upload, None);
            attachments.push(json);
            files.push(file);
        }
        let mut payload = payload.clone();
        if let Some(obj) = payload.as_object_mut() {
            obj.insert("attachments".into(), Value::Array(attachments));
        }
        (payload, files)
    }

    pub fn store_files(&mut self, files: Vec<(u64, Hosted)>) {
        self.files.extend(files);
    }

    // ---- webhooks ----

    /// Creates a webhook owned by `creator`; WEBHOOKS_UPDATE tells GUILD_WEBHOOKS sessions.
    pub fn create_webhook(&mut self, cid: u64, name: String, creator: u64) -> DResult<Changed> {
        let (g, _) = self.channel(cid)?;
        let gid = g.id;
        let id = self.next_id();
        // 68 characters, like Discord's webhook tokens (serenity's URL parser checks the length).
        let token = format!(
            "{}{}-sbx",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let w = Webhook {
            id,
            token,
            guild_id: gid,
            channel_id: cid,
            name,
            creator_id: creator,
        };
        let v = webhook_json(&w, self.users.get(&creator));
        self.webhooks.insert(id, w);
        let d = json!({"guild_id": sf(gid), "channel_id": sf(cid)});
        Ok((
            v,
            vec![Dispatch::new(
                "WEBHOOKS_UPDATE",
                gid,
                INTENT_GUILD_WEBHOOKS,
                d,
            )],
        ))
    }

    pub fn webhook(&self, id: u64, token: &str) -> DResult<&Webhook> {
        self.webhooks
            .get(&id)
            .filter(|w| w.token == token && self.channel_guild.contains_key(&w.channel_id))
            .ok_or_else(DiscordError::unknown_webhook)
    }

    pub fn channel_webhooks(&self, cid: u64) -> Vec<&Webhook> {
        let mut v: Vec<&Webhook> = self
            .webhooks
            .values()
            .filter(|w| w.channel_id == cid)
            .collect();
        v.sort_by_key(|w| w.id);
        v
    }

    /// Parses a bare user body (control: message authors).
    pub fn ensure_user(&mut self, v: &Value) -> DResult<u64> {
        let u = parse_user(v)?;
        let id = u.id;
        if !self.users.contains_key(&id) {
            self.upsert_user(u);
        }
        Ok(id)
    }
}

/// https://discord.com/developers/docs/resources/message#create-message: content is "up to
/// 2000 characters" for bots and webhooks; users with Nitro post up to 4,000.
fn max_content(user_post: bool) -> usize {
    if user_post {
        4000
    } else {
        2000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        let mut st = State::new(User {
            id: 99,
            username: "bot".into(),
            global_name: None,
            avatar: None,
            bot: true,
        });
        st.add_guild(
            &json!({"id": "1", "owner_id": "2", "channels": [{"id": "10", "name": "a"}],
            "roles": [{"id": "1", "permissions": "68608"}, {"id": "5", "permissions": "0"}],
            "members": [{"user": {"id": "3", "username": "u"}, "roles": ["5"]}]}),
        )
        .unwrap();
        st
    }

    #[test]
    fn a_refused_guild_leaves_the_state_as_it_was() {
        let mut st = state();
        let err = st
            .add_guild(
                &json!({"id": "7", "owner_id": "2", "channels": [{"id": "10", "name": "dup"}]}),
            )
            .unwrap_err();
        assert_eq!(err.code, 50035);
        assert!(!st.guilds.contains_key(&7));
        assert_eq!(st.channel_guild.get(&10), Some(&1));
        // Replacing a guild by its own id keeps its channels its own.
        let (_, d) = st
            .add_guild(
                &json!({"id": "1", "owner_id": "2", "channels": [{"id": "10", "name": "b"}]}),
            )
            .unwrap();
        let kinds: Vec<&str> = d.iter().map(|d| d.t).collect();
        assert_eq!(kinds, vec!["GUILD_DELETE", "GUILD_CREATE"]);
        assert_eq!(st.guilds[&1].channels[&10].name, "b");
    }

    #[test]
    fn enforce_nonce_is_per_author() {
        let mut st = state();
        let body = json!({"content": "x", "nonce": "n", "enforce_nonce": true});
        let (a, _) = st.create_message(10, 99, None, &body).unwrap();
        let (b, d) = st.create_message(10, 99, None, &body).unwrap();
        assert_eq!(a["id"], b["id"]);
        assert!(d.is_empty(), "no second MESSAGE_CREATE");
        let (c, _) = st.create_message(10, 3, None, &body).unwrap();
        assert_ne!(a["id"], c["id"]);
    }

    #[test]
    fn deleting_a_role_takes_it_off_every_member() {
        let mut st = state();
        st.delete_role(1, 5).unwrap();
        assert!(st.guilds[&1].members[&3].roles.is_empty());
        assert!(st.delete_role(1, 1).is_err(), "@everyone stays");
    }

    #[test]
    fn the_bot_joins_every_guild_with_only_everyone() {
        let st = state();
        assert!(st.guilds[&1].members[&99].roles.is_empty());
        assert!(st.users[&99].bot);
    }
}
