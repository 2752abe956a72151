//! The Discord guilds a tenant uses, by name, with their channels and roles: what the admin
//! page's pickers offer. Read from what the gateway told ([`GuildDirectory`]), never from
//! Discord per request.
//!
//! A tenant sees the guilds it uses: source guilds granted to it or named by its connectors,
//! target guilds named by its mappings or server configs. Any other guild answers 404, like
//! the rest of the API (another tenant's customers stay unknown to it). The operator sees
//! every guild the bot is in, so it can pick a new customer's server before anything names it.
//!
//! [`GuildDirectory`]: crate::discord::directory::GuildDirectory

use std::collections::BTreeMap;

use actix_web::{get, web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::{auth::Caller, openapi::ErrorBody, validate, AppState};
use crate::{
    discord::directory::{GuildInfo, PostMode},
    domain::snowflake::from_db,
    error::{AppError, AppResult, ErrorCode},
    store::{connectors::ConnectorStore, grants::GrantStore, servers::ServerStore},
};

/// How a tenant uses a guild.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GuildUse {
    /// Granted to the tenant, or the source guild of one of its connectors.
    Source,
    /// Named by one of its mappings or server configs.
    Target,
}

#[derive(Serialize, ToSchema)]
pub struct GuildItem {
    pub id: String,
    /// The guild's name; absent when the bot is not in it (or Discord has not sent it yet).
    pub name: Option<String>,
    /// Discord's icon hash (`https://cdn.discordapp.com/icons/{id}/{icon}.png`).
    pub icon: Option<String>,
    pub uses: Vec<GuildUse>,
    /// The gateway delivered this guild: its channels and roles can be listed.
    pub bot_in_guild: bool,
}

#[derive(Serialize, ToSchema)]
pub struct GuildList {
    /// By name, then id.
    pub items: Vec<GuildItem>,
}

#[derive(Serialize, ToSchema)]
pub struct GuildChannel {
    pub id: String,
    pub name: String,
    /// Discord's channel type: 0 text, 2 voice, 4 category, 5 announcement, 10-12 threads, 15
    /// forum.
    #[serde(rename = "type")]
    pub kind: u8,
    pub parent_id: Option<String>,
    pub position: i64,
    /// The bot can view and send messages there (bot delivery, notices).
    pub bot_can_post: bool,
    /// The bot can view and manage webhooks there (webhook delivery).
    pub webhook_can_post: bool,
}

#[derive(Serialize, ToSchema)]
pub struct GuildChannelList {
    /// In the order Discord's sidebar shows them: categories by position, each followed by
    /// its channels (threads after their parent).
    pub items: Vec<GuildChannel>,
}

#[derive(Serialize, ToSchema)]
pub struct GuildRole {
    pub id: String,
    pub name: String,
    /// RGB as an integer (0: no colour).
    pub color: u32,
    pub position: i64,
}

#[derive(Serialize, ToSchema)]
pub struct GuildRoleList {
    /// Highest position first, as Discord lists them; `@everyone` (the guild's id) last.
    pub items: Vec<GuildRole>,
}

/// The guilds `tenant_key` uses, and how.
async fn used_guilds(
    state: &AppState,
    tenant_key: &str,
) -> AppResult<BTreeMap<u64, Vec<GuildUse>>> {
    let mut used: BTreeMap<u64, Vec<GuildUse>> = BTreeMap::new();
    let mut add = |guild: i64, how: GuildUse| {
        let uses = used.entry(from_db(guild)).or_default();
        if !uses.contains(&how) {
            uses.push(how);
            uses.sort_unstable();
        }
    };
    for grant in GrantStore::new(state.db.clone()).list(tenant_key).await? {
        add(grant.guild_id, GuildUse::Source);
    }
    let connectors = ConnectorStore::new(state.db.clone());
    let servers = ServerStore::new(state.db.clone());
    for c in connectors.list(tenant_key).await? {
        add(c.source_guild_id, GuildUse::Source);
        for m in connectors.mappings(tenant_key, &c.connector_id).await? {
            add(m.target_guild_id, GuildUse::Target);
        }
        for s in servers.configs(tenant_key, &c.connector_id).await? {
            add(s.guild_id, GuildUse::Target);
        }
    }
    Ok(used)
}

/// The guild of a `.../guilds/{guild_id}/...` route, if the caller may read it.
async fn readable_guild(
    state: &AppState,
    caller: &Caller,
    (tenant_key, guild_id): (String, String),
) -> AppResult<GuildInfo> {
    caller.reach(&tenant_key)?;
    validate::tenant_key(&tenant_key)?;
    let guild_id = validate::guild_id("guild_id", &guild_id)?;
    let known = state.directory.guild(guild_id);
    if *caller != Caller::Operator
        && !used_guilds(state, &tenant_key)
            .await?
            .contains_key(&guild_id)
    {
        return Err(AppError::new(ErrorCode::NotFound, "guild not found"));
    }
    known.ok_or_else(|| {
        AppError::new(
            ErrorCode::BotNotInGuild,
            "the bot is not in this guild, or Discord has not sent it yet",
        )
    })
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant_key}/guilds", tag = "guilds",
    params(("tenant_key" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$")),
    responses((status = 200, body = GuildList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
#[get("/api/v1/tenants/{tenant_key}/guilds")]
pub async fn list_guilds(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    let tenant_key = path.into_inner();
    caller.reach(&tenant_key)?;
    validate::tenant_key(&tenant_key)?;
    let mut used = used_guilds(&state, &tenant_key).await?;
    if caller == Caller::Operator {
        for id in state.directory.guild_ids() {
            used.entry(id).or_default();
        }
    }
    let mut items: Vec<GuildItem> = used
        .into_iter()
        .map(|(id, uses)| {
            let known = state.directory.guild(id);
            GuildItem {
                id: id.to_string(),
                name: known.as_ref().map(|g| g.name.clone()),
                icon: known.as_ref().and_then(|g| g.icon.clone()),
                uses,
                bot_in_guild: known.is_some(),
            }
        })
        .collect();
    items.sort_by(|a, b| {
        (
            a.name.is_none(),
            a.name.as_deref().map(str::to_lowercase),
            &a.id,
        )
            .cmp(&(
                b.name.is_none(),
                b.name.as_deref().map(str::to_lowercase),
                &b.id,
            ))
    });
    Ok(HttpResponse::Ok().json(GuildList { items }))
}

/// Discord's sidebar order: top-level channels and categories by position, each category
/// followed by its channels, threads after their parent.
fn sidebar_order(guild: &GuildInfo) -> Vec<u64> {
    let key = |id: &u64| {
        let c = &guild.channels[id];
        (c.kind == 4, c.position, c.id)
    };
    let children = |parent: Option<u64>| {
        let mut ids: Vec<u64> = guild
            .channels
            .values()
            .filter(|c| c.parent_id == parent && !c.is_thread())
            .map(|c| c.id)
            .collect();
        ids.sort_by_key(key);
        ids
    };
    let threads_of = |parent: u64| -> Vec<u64> {
        guild
            .channels
            .values()
            .filter(|c| c.is_thread() && c.parent_id == Some(parent))
            .map(|c| c.id)
            .collect()
    };
    let mut out = Vec::with_capacity(guild.channels.len());
    for top in children(None) {
        out.push(top);
        out.extend(threads_of(top));
        if guild.channels[&top].kind == 4 {
            for child in children(Some(top)) {
                out.push(child);
                out.extend(threads_of(child));
            }
        }
    }
    // Whatever the walk missed (a thread whose parent is unknown) still shows, last.
    for id in guild.channels.keys() {
        if !out.contains(id) {
            out.push(*id);
        }
    }
    out
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant_key}/guilds/{guild_id}/channels", tag = "guilds",
    params(("tenant_key" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("guild_id" = String, Path, pattern = "^[1-9][0-9]{0,18}$")),
    responses((status = 200, body = GuildChannelList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "`not_found`: a guild this tenant does not use", body = ErrorBody),
        (status = 422, description = "`bot_not_in_guild`: the bot is not in it (or Discord has not sent it yet)", body = ErrorBody)),
    security(("bearer" = [])))]
#[get("/api/v1/tenants/{tenant_key}/guilds/{guild_id}/channels")]
pub async fn list_guild_channels(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> AppResult<HttpResponse> {
    let guild = readable_guild(&state, &caller, path.into_inner()).await?;
    let bot = state.directory.bot_id();
    let items = sidebar_order(&guild)
        .into_iter()
        .map(|id| {
            let c = &guild.channels[&id];
            GuildChannel {
                id: c.id.to_string(),
                name: c.name.clone(),
                kind: c.kind,
                parent_id: c.parent_id.map(|p| p.to_string()),
                position: c.position,
                bot_can_post: guild.bot_can_post(bot, c, PostMode::Bot),
                webhook_can_post: guild.bot_can_post(bot, c, PostMode::Webhook),
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(GuildChannelList { items }))
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant_key}/guilds/{guild_id}/roles", tag = "guilds",
    params(("tenant_key" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("guild_id" = String, Path, pattern = "^[1-9][0-9]{0,18}$")),
    responses((status = 200, body = GuildRoleList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "`not_found`: a guild this tenant does not use", body = ErrorBody),
        (status = 422, description = "`bot_not_in_guild`: the bot is not in it (or Discord has not sent it yet)", body = ErrorBody)),
    security(("bearer" = [])))]
#[get("/api/v1/tenants/{tenant_key}/guilds/{guild_id}/roles")]
pub async fn list_guild_roles(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> AppResult<HttpResponse> {
    let guild = readable_guild(&state, &caller, path.into_inner()).await?;
    let mut roles: Vec<_> = guild.roles.values().collect();
    roles.sort_by_key(|r| (r.id == guild.id, std::cmp::Reverse(r.position), r.id));
    Ok(HttpResponse::Ok().json(GuildRoleList {
        items: roles
            .into_iter()
            .map(|r| GuildRole {
                id: r.id.to_string(),
                name: r.name.clone(),
                color: r.color,
                position: r.position,
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discord::directory::ChannelInfo;

    fn channel(id: u64, kind: u8, parent: Option<u64>, position: i64) -> ChannelInfo {
        ChannelInfo {
            id,
            name: format!("c{id}"),
            kind,
            parent_id: parent,
            position,
            overwrites: Vec::new(),
        }
    }

    #[test]
    fn channels_come_in_sidebar_order() {
        let mut g = GuildInfo::default();
        for c in [
            channel(10, 4, None, 1),      // category "b"
            channel(11, 4, None, 0),      // category "a"
            channel(20, 0, Some(10), 0),  // in b
            channel(21, 0, Some(11), 1),  // in a, second
            channel(22, 0, Some(11), 0),  // in a, first
            channel(23, 0, None, 5),      // no category: before the categories
            channel(30, 11, Some(22), 0), // a thread of 22
        ] {
            g.channels.insert(c.id, c);
        }
        assert_eq!(sidebar_order(&g), vec![23, 11, 22, 30, 21, 10, 20]);
    }
}
