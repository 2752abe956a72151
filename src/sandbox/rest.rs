//! REST API v10 as serenity calls it (through `HttpBuilder::proxy`, ratelimiter disabled).
//! Every request: route match, `Authorization: Bot TOKEN`, injected faults, rate limits, then
//! the handler, whose errors are Discord's `{"message", "code"}`. Message create/edit and webhook
//! execute/edit also take Discord's `multipart/form-data` (`payload_json` + `files[N]`); the
//! files are hosted on the CDN path (see `files`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::core::Core;
use super::error::{DResult, DiscordError};
use super::faults::Fault;
use super::files::{self, Hosted, Upload};
use super::model::{
    channel_json, guild_rest_json, role_json, user_json, webhook_json, Channel, Guild,
};
use super::perms::{
    channel_permissions, guild_permissions, highest_position, MANAGE_MESSAGES, MANAGE_ROLES,
    MANAGE_WEBHOOKS, READ_MESSAGE_HISTORY, SEND_MESSAGES, VIEW_CHANNEL,
};
use super::ratelimit::{BucketInfo, Decision};
use super::router::match_template;
use super::state::State;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Gateway,
    GatewayBot,
    Me,
    Guild,
    GuildChannels,
    GuildRoles,
    GuildMembers,
    SearchGuildMembers,
    GuildMember,
    AddMemberRole,
    RemoveMemberRole,
    Channel,
    ChannelMessages,
    CreateMessage,
    GetMessage,
    EditMessage,
    DeleteMessage,
    CreateWebhook,
    ChannelWebhooks,
    GetWebhook,
    GetWebhookWithToken,
    ExecuteWebhook,
    GetWebhookMessage,
    EditWebhookMessage,
    DeleteWebhookMessage,
}

const ROUTES: &[(&str, &str, Route)] = &[
    ("GET", "/gateway", Route::Gateway),
    ("GET", "/gateway/bot", Route::GatewayBot),
    ("GET", "/users/@me", Route::Me),
    ("GET", "/guilds/{guild_id}", Route::Guild),
    ("GET", "/guilds/{guild_id}/channels", Route::GuildChannels),
    ("GET", "/guilds/{guild_id}/roles", Route::GuildRoles),
    ("GET", "/guilds/{guild_id}/members", Route::GuildMembers),
    (
        "GET",
        "/guilds/{guild_id}/members/search",
        Route::SearchGuildMembers,
    ),
    (
        "GET",
        "/guilds/{guild_id}/members/{user_id}",
        Route::GuildMember,
    ),
    (
        "PUT",
        "/guilds/{guild_id}/members/{user_id}/roles/{role_id}",
        Route::AddMemberRole,
    ),
    (
        "DELETE",
        "/guilds/{guild_id}/members/{user_id}/roles/{role_id}",
        Route::RemoveMemberRole,
    ),
    ("GET", "/channels/{channel_id}", Route::Channel),
    (
        "GET",
        "/channels/{channel_id}/messages",
        Route::ChannelMessages,
    ),
    (
        "POST",
        "/channels/{channel_id}/messages",
        Route::CreateMessage,
    ),
    (
        "GET",
        "/channels/{channel_id}/messages/{message_id}",
        Route::GetMessage,
    ),
    (
        "PATCH",
        "/channels/{channel_id}/messages/{message_id}",
        Route::EditMessage,
    ),
    (
        "DELETE",
        "/channels/{channel_id}/messages/{message_id}",
        Route::DeleteMessage,
    ),
    (
        "POST",
        "/channels/{channel_id}/webhooks",
        Route::CreateWebhook,
    ),
    (
        "GET",
        "/channels/{channel_id}/webhooks",
        Route::ChannelWebhooks,
    ),
    ("GET", "/webhooks/{webhook_id}", Route::GetWebhook),
    (
        "GET",
        "/webhooks/{webhook_id}/{token}",
        Route::GetWebhookWithToken,
    ),
    (
        "POST",
        "/webhooks/{webhook_id}/{token}",
        Route::ExecuteWebhook,
    ),
    (
        "GET",
        "/webhooks/{webhook_id}/{token}/messages/{message_id}",
        Route::GetWebhookMessage,
    ),
    (
        "PATCH",
        "/webhooks/{webhook_id}/{token}/messages/{message_id}",
        Route::EditWebhookMessage,
    ),
    (
        "DELETE",
        "/webhooks/{webhook_id}/{token}/messages/{message_id}",
        Route::DeleteWebhookMessage,
    ),
];

enum Reply {
    Json(StatusCode, Value),
    NoContent,
}

fn ok(v: Value) -> DResult<Reply> {
    Ok(Reply::Json(StatusCode::OK, v))
}

/// A matched request. A multipart body's `payload_json` is `body`, its files `uploads`.
struct Call<'a> {
    params: Vec<&'a str>,
    query: HashMap<String, String>,
    body: Value,
    uploads: Vec<Upload>,
}

impl Call<'_> {
    fn id(&self, i: usize, unknown: fn() -> DiscordError) -> DResult<u64> {
        self.params
            .get(i)
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(unknown)
    }
    fn param(&self, i: usize) -> &str {
        self.params.get(i).copied().unwrap_or("")
    }
    /// The message payload with this request's uploads hosted in channel `cid` (see
    /// [`State::attach_uploads`]), and the files to store once the message change succeeded.
    /// Without uploads, the body as sent: its `attachments` are stored as given.
    fn message_payload(
        &self,
        st: &mut State,
        core: &Core,
        cid: u64,
        existing: Option<&[Value]>,
    ) -> (Cow<'_, Value>, Vec<(u64, Hosted)>) {
        if self.uploads.is_empty() {
            return (Cow::Borrowed(&self.body), Vec::new());
        }
        let (payload, files) =
            st.attach_uploads(cid, core.cdn_base(), &self.body, &self.uploads, existing);
        (Cow::Owned(payload), files)
    }
    fn query_u64(&self, key: &str) -> DResult<Option<u64>> {
        match self.query.get(key) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                DiscordError::invalid_form(format!("{key}: value is not a valid integer"))
            }),
        }
    }
}

pub async fn not_found() -> HttpResponse {
    DiscordError::not_found().to_response()
}

/// Serves one REST request and counts its answer in [`Core::stats`].
pub async fn entry(req: HttpRequest, payload: web::Payload, core: web::Data<Core>) -> HttpResponse {
    let resp = serve(req, payload, core.clone()).await;
    core.stats.record(resp.status().as_u16());
    resp
}

async fn serve(req: HttpRequest, payload: web::Payload, core: web::Data<Core>) -> HttpResponse {
    let body = match files::read_body(payload, core.body_limit()).await {
        Ok(b) => b,
        Err(e) => return e.to_response(),
    };
    let method = req.method().as_str().to_owned();
    let path = req
        .path()
        .strip_prefix("/api/v10")
        .unwrap_or(req.path())
        .to_owned();

    let mut path_known = false;
    let mut found = None;
    for (m, template, route) in ROUTES {
        if let Some(params) = match_template(template, &path) {
            path_known = true;
            if *m == method {
                found = Some((*template, *route, params));
                break;
            }
        }
    }
    let Some((template, route, params)) = found else {
        return if path_known {
            DiscordError::method_not_allowed().to_response()
        } else {
            DiscordError::not_found().to_response()
        };
    };

    // Webhook routes with a token in the path and the gateway URL need no bot token.
    let needs_auth = !matches!(
        route,
        Route::Gateway
            | Route::GetWebhookWithToken
            | Route::ExecuteWebhook
            | Route::GetWebhookMessage
            | Route::EditWebhookMessage
            | Route::DeleteWebhookMessage
    );
    if needs_auth {
        let authorized = req
            .headers()
            .get("Authorization")
            .and_then(|h| h.to_str().ok())
            .is_some_and(|h| core.token_ok(h));
        if !authorized {
            return DiscordError::unauthorized().to_response();
        }
    }

    if let Some(fault) = core.faults.take(&method, &path) {
        if let Some(ms) = fault.delay_ms {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if !(200..300).contains(&fault.status) {
            return fault_response(&fault);
        }
    }

    let major = params.first().copied().unwrap_or("").to_owned();
    let bucket = match core.limits.check(&method, template, &major) {
        Decision::Allowed(b) => b,
        Decision::Limited {
            retry_after,
            global,
            bucket,
        } => return too_many_requests(retry_after, global, bucket.as_ref()),
    };

    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|h| h.to_str().ok());
    let parsed_body = if files::is_multipart(content_type) {
        let content_type = content_type.unwrap_or_default();
        files::parse_form(content_type, body, core.max_upload_bytes())
            .await
            .map(|form| (form.payload, form.uploads))
    } else if body.is_empty() {
        Ok((json!({}), Vec::new()))
    } else {
        serde_json::from_slice::<Value>(&body)
            .map(|v| (v, Vec::new()))
            .map_err(|_| DiscordError::invalid_json())
    };
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();

    let result = parsed_body.and_then(|(body, uploads)| {
        let call = Call {
            params,
            query,
            body,
            uploads,
        };
        handle(&core, route, &call)
    });
    let mut resp = match result {
        Ok(Reply::Json(status, v)) => HttpResponse::build(status).json(v),
        Ok(Reply::NoContent) => HttpResponse::NoContent().finish(),
        Err(e) => e.to_response(),
    };
    if let Some(b) = bucket {
        add_headers(&mut resp, &b.headers());
    }
    resp
}

fn add_headers(resp: &mut HttpResponse, headers: &[(&'static str, String)]) {
    for (k, v) in headers {
        if let Ok(v) = actix_web::http::header::HeaderValue::from_str(v) {
            resp.headers_mut().insert(
                actix_web::http::header::HeaderName::from_static(lower(k)),
                v,
            );
        }
    }
}

fn lower(k: &'static str) -> &'static str {
    match k {
        "X-RateLimit-Limit" => "x-ratelimit-limit",
        "X-RateLimit-Remaining" => "x-ratelimit-remaining",
        "X-RateLimit-Reset" => "x-ratelimit-reset",
        "X-RateLimit-Reset-After" => "x-ratelimit-reset-after",
        "X-RateLimit-Bucket" => "x-ratelimit-bucket",
        "X-RateLimit-Global" => "x-ratelimit-global",
        "X-RateLimit-Scope" => "x-ratelimit-scope",
        _ => "retry-after",
    }
}

/// Discord's 429: body `{"message", "retry_after", "global"}`, `Retry-After` in whole seconds.
pub fn too_many_requests(
    retry_after: f64,
    global: bool,
    bucket: Option<&BucketInfo>,
) -> HttpResponse {
    rate_limited(json!(retry_after), global, None, bucket)
}

/// A 429 in Discord's shape. `retry_after` goes into the body as given (a fault may send any
/// JSON value); `Retry-After` is its whole seconds, or its text when it is not a number.
/// `scope` defaults to `global` or `user`.
fn rate_limited(
    retry_after: Value,
    global: bool,
    scope: Option<&str>,
    bucket: Option<&BucketInfo>,
) -> HttpResponse {
    let header = match &retry_after {
        Value::Number(n) => (n.as_f64().unwrap_or(1.0).ceil() as u64).max(1).to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut resp = HttpResponse::TooManyRequests().json(json!({
        "message": "You are being rate limited.",
        "retry_after": retry_after,
        "global": global,
    }));
    let mut headers: Vec<(&'static str, String)> =
        bucket.map(BucketInfo::headers).unwrap_or_default();
    headers.push(("Retry-After", header));
    headers.push((
        "X-RateLimit-Scope",
        scope
            .unwrap_or(if global { "global" } else { "user" })
            .to_owned(),
    ));
    if global {
        headers.push(("X-RateLimit-Global", "true".into()));
    }
    add_headers(&mut resp, &headers);
    resp
}

pub(super) fn fault_response(f: &Fault) -> HttpResponse {
    if f.status == 429 {
        let global = f.global.unwrap_or(false);
        let retry_after = f
            .retry_after_raw
            .clone()
            .unwrap_or_else(|| json!(f.retry_after.unwrap_or(1.0)));
        return rate_limited(retry_after, global, f.scope.as_deref(), None);
    }
    DiscordError::new(f.status, 0, format!("{}: injected fault", f.status)).to_response()
}

// ---- permission checks (twilight-util, see perms.rs) ----

fn bot_channel<'a>(st: &'a State, cid: u64, need: &[u64]) -> DResult<(&'a Guild, &'a Channel)> {
    let (g, c) = st.channel(cid)?;
    let p = channel_permissions(g, c, st.bot_id);
    if p & VIEW_CHANNEL == 0 {
        return Err(DiscordError::missing_access());
    }
    if need.iter().any(|n| p & n == 0) {
        return Err(DiscordError::missing_permissions());
    }
    Ok((g, c))
}

fn bot_guild(st: &State, gid: u64) -> DResult<&Guild> {
    let g = st.guild(gid)?;
    if !g.members.contains_key(&st.bot_id) {
        return Err(DiscordError::unknown_guild());
    }
    Ok(g)
}

fn handle(core: &Core, route: Route, call: &Call<'_>) -> DResult<Reply> {
    match route {
        Route::Gateway => ok(json!({"url": core.gateway_url})),
        // Get Gateway Bot: "shards: the recommended number of shards to use when
        // connecting" (https://discord.com/developers/docs/events/gateway#get-gateway-bot).
        Route::GatewayBot => ok(json!({
            "url": core.gateway_url,
            "shards": core.shards(),
            "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 86_400_000u64, "max_concurrency": 1},
        })),
        Route::Me => core.read(|st| {
            let bot = st.bot().ok_or_else(DiscordError::unknown_user)?;
            let mut v = user_json(bot);
            if let Some(o) = v.as_object_mut() {
                o.insert("verified".into(), json!(true));
                o.insert("mfa_enabled".into(), json!(false));
                o.insert("flags".into(), json!(0));
                o.insert("locale".into(), json!("en-US"));
            }
            ok(v)
        }),
        Route::Guild => core.read(|st| {
            let g = bot_guild(st, call.id(0, DiscordError::unknown_guild)?)?;
            let mut v = guild_rest_json(g);
            if call.query.get("with_counts").is_some_and(|w| w == "true") {
                if let Some(o) = v.as_object_mut() {
                    o.insert("approximate_member_count".into(), json!(g.members.len()));
                    o.insert("approximate_presence_count".into(), json!(0));
                }
            }
            ok(v)
        }),
        Route::GuildChannels => core.read(|st| {
            let g = bot_guild(st, call.id(0, DiscordError::unknown_guild)?)?;
            ok(Value::Array(
                g.channels.values().map(channel_json).collect(),
            ))
        }),
        Route::GuildRoles => core.read(|st| {
            let g = bot_guild(st, call.id(0, DiscordError::unknown_guild)?)?;
            ok(Value::Array(g.roles.values().map(role_json).collect()))
        }),
        Route::GuildMembers => {
            let limit = call.query_u64("limit")?.unwrap_or(1);
            if !(1..=1000).contains(&limit) {
                return Err(DiscordError::invalid_form(
                    "limit: must be between 1 and 1000",
                ));
            }
            let after = call.query_u64("after")?.unwrap_or(0);
            core.read(|st| {
                let g = bot_guild(st, call.id(0, DiscordError::unknown_guild)?)?;
                let page: Vec<Value> = g
                    .members
                    .range(after.saturating_add(1)..)
                    .take(limit as usize)
                    .filter_map(|(_, m)| st.member_value(m))
                    .collect();
                ok(Value::Array(page))
            })
        }
        // Search Guild Members: "a list of guild member objects whose username or nickname
        // starts with a provided string"; `query` required, `limit` 1-1000, default 1
        // (https://discord.com/developers/docs/resources/guild#search-guild-members).
        Route::SearchGuildMembers => {
            let limit = call.query_u64("limit")?.unwrap_or(1);
            if !(1..=1000).contains(&limit) {
                return Err(DiscordError::invalid_form(
                    "limit: must be between 1 and 1000",
                ));
            }
            let query = call
                .query
                .get("query")
                .map(|q| q.to_lowercase())
                .ok_or_else(|| DiscordError::invalid_form("query: this field is required"))?;
            core.read(|st| {
                let g = bot_guild(st, call.id(0, DiscordError::unknown_guild)?)?;
                let starts = |name: &str| name.to_lowercase().starts_with(&query);
                let page: Vec<Value> = g
                    .members
                    .values()
                    .filter(|m| {
                        m.nick.as_deref().is_some_and(starts)
                            || st
                                .users
                                .get(&m.user_id)
                                .is_some_and(|u| starts(&u.username))
                    })
                    .take(limit as usize)
                    .filter_map(|m| st.member_value(m))
                    .collect();
                ok(Value::Array(page))
            })
        }
        Route::GuildMember => core.read(|st| {
            let gid = call.id(0, DiscordError::unknown_guild)?;
            bot_guild(st, gid)?;
            let uid = call.id(1, DiscordError::unknown_member)?;
            ok(st.member_json(gid, uid)?)
        }),
        Route::AddMemberRole | Route::RemoveMemberRole => {
            let gid = call.id(0, DiscordError::unknown_guild)?;
            let uid = call.id(1, DiscordError::unknown_member)?;
            let rid = call.id(2, DiscordError::unknown_role)?;
            core.mutate(|st| {
                let g = bot_guild(st, gid)?;
                let role = g.roles.get(&rid).ok_or_else(DiscordError::unknown_role)?;
                if !g.members.contains_key(&uid) {
                    return Err(DiscordError::unknown_member());
                }
                if guild_permissions(g, st.bot_id) & MANAGE_ROLES == 0
                    || role.position >= highest_position(g, st.bot_id)
                {
                    return Err(DiscordError::missing_permissions());
                }
                if route == Route::AddMemberRole {
                    st.add_member_role(gid, uid, rid)
                } else {
                    st.remove_member_role(gid, uid, rid)
                }
            })?;
            Ok(Reply::NoContent)
        }
        Route::Channel => core.read(|st| {
            let (_, c) = bot_channel(st, call.id(0, DiscordError::unknown_channel)?, &[])?;
            ok(channel_json(c))
        }),
        Route::ChannelMessages => {
            let limit = call.query_u64("limit")?.unwrap_or(50);
            if !(1..=100).contains(&limit) {
                return Err(DiscordError::invalid_form(
                    "limit: must be between 1 and 100",
                ));
            }
            let after = call.query_u64("after")?;
            let before = call.query_u64("before")?;
            core.read(|st| {
                let cid = call.id(0, DiscordError::unknown_channel)?;
                let (g, c) = bot_channel(st, cid, &[])?;
                // Without READ_MESSAGE_HISTORY Discord answers with an empty list.
                if channel_permissions(g, c, st.bot_id) & READ_MESSAGE_HISTORY == 0 {
                    return ok(json!([]));
                }
                ok(Value::Array(st.channel_page(
                    cid,
                    after,
                    before,
                    limit as usize,
                )))
            })
        }
        Route::CreateMessage => {
            let cid = call.id(0, DiscordError::unknown_channel)?;
            let v = core.mutate(|st| {
                bot_channel(st, cid, &[SEND_MESSAGES])?;
                let bot = st.bot_id;
                let (body, files) = call.message_payload(st, core, cid, None);
                let changed = st.create_message(cid, bot, None, &body)?;
                st.store_files(files);
                Ok(changed)
            })?;
            ok(v)
        }
        Route::GetMessage => core.read(|st| {
            let cid = call.id(0, DiscordError::unknown_channel)?;
            bot_channel(st, cid, &[READ_MESSAGE_HISTORY])?;
            let m = st.message(cid, call.id(1, DiscordError::unknown_message)?)?;
            ok(st.message_value(m))
        }),
        Route::EditMessage => {
            let cid = call.id(0, DiscordError::unknown_channel)?;
            let mid = call.id(1, DiscordError::unknown_message)?;
            let v = core.mutate(|st| {
                bot_channel(st, cid, &[])?;
                let m = st.message(cid, mid)?;
                if m.author_id != st.bot_id || m.webhook_id.is_some() {
                    return Err(DiscordError::cannot_edit_others());
                }
                let existing = m.attachments.clone();
                let (body, files) = call.message_payload(st, core, cid, Some(&existing));
                let changed = st.edit_message(cid, mid, &body)?;
                st.store_files(files);
                Ok(changed)
            })?;
            ok(v)
        }
        Route::DeleteMessage => {
            let cid = call.id(0, DiscordError::unknown_channel)?;
            let mid = call.id(1, DiscordError::unknown_message)?;
            core.mutate(|st| {
                let (g, c) = bot_channel(st, cid, &[])?;
                let perms = channel_permissions(g, c, st.bot_id);
                let m = st.message(cid, mid)?;
                let own = m.author_id == st.bot_id && m.webhook_id.is_none();
                if !own && perms & MANAGE_MESSAGES == 0 {
                    return Err(DiscordError::missing_permissions());
                }
                st.delete_message(cid, mid)
            })?;
            Ok(Reply::NoContent)
        }
        Route::CreateWebhook => {
            let cid = call.id(0, DiscordError::unknown_channel)?;
            let name = call
                .body
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            check_webhook_name("name", &name)?;
            let v = core.mutate(|st| {
                bot_channel(st, cid, &[MANAGE_WEBHOOKS])?;
                let bot = st.bot_id;
                st.create_webhook(cid, name, bot)
            })?;
            ok(v)
        }
        Route::ChannelWebhooks => core.read(|st| {
            let cid = call.id(0, DiscordError::unknown_channel)?;
            bot_channel(st, cid, &[MANAGE_WEBHOOKS])?;
            let list = st
                .channel_webhooks(cid)
                .into_iter()
                .map(|w| webhook_json(w, st.users.get(&w.creator_id)))
                .collect();
            ok(Value::Array(list))
        }),
        Route::GetWebhook => core.read(|st| {
            let id = call.id(0, DiscordError::unknown_webhook)?;
            let w = st
                .webhooks
                .get(&id)
                .ok_or_else(DiscordError::unknown_webhook)?;
            bot_channel(st, w.channel_id, &[MANAGE_WEBHOOKS])?;
            ok(webhook_json(w, st.users.get(&w.creator_id)))
        }),
        Route::GetWebhookWithToken => core.read(|st| {
            let w = st.webhook(call.id(0, DiscordError::unknown_webhook)?, call.param(1))?;
            let mut v = webhook_json(w, None);
            if let Some(o) = v.as_object_mut() {
                o.remove("user");
            }
            ok(v)
        }),
        Route::ExecuteWebhook => {
            let id = call.id(0, DiscordError::unknown_webhook)?;
            let wait = call.query.get("wait").is_some_and(|w| w == "true");
            let v = core.mutate(|st| {
                let w = st.webhook(id, call.param(1))?;
                let name = match call.body.get("username").and_then(Value::as_str) {
                    Some(name) => {
                        check_webhook_name("username", name)?;
                        name.to_owned()
                    }
                    None => w.name.clone(),
                };
                let avatar = call
                    .body
                    .get("avatar_url")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let cid = w.channel_id;
                let (body, files) = call.message_payload(st, core, cid, None);
                let changed = st.create_message(cid, id, Some((id, name, avatar)), &body)?;
                st.store_files(files);
                Ok(changed)
            })?;
            if wait {
                ok(v)
            } else {
                Ok(Reply::NoContent)
            }
        }
        Route::GetWebhookMessage => core.read(|st| {
            let id = call.id(0, DiscordError::unknown_webhook)?;
            let w = st.webhook(id, call.param(1))?;
            let m = st.message(w.channel_id, call.id(2, DiscordError::unknown_message)?)?;
            if m.webhook_id != Some(id) {
                return Err(DiscordError::unknown_message());
            }
            ok(st.message_value(m))
        }),
        Route::EditWebhookMessage | Route::DeleteWebhookMessage => {
            let id = call.id(0, DiscordError::unknown_webhook)?;
            let mid = call.id(2, DiscordError::unknown_message)?;
            let v = core.mutate(|st| {
                let cid = st.webhook(id, call.param(1))?.channel_id;
                let m = st.message(cid, mid)?;
                if m.webhook_id != Some(id) {
                    return Err(DiscordError::unknown_message());
                }
                if route == Route::EditWebhookMessage {
                    let existing = m.attachments.clone();
                    let (body, files) = call.message_payload(st, core, cid, Some(&existing));
                    let changed = st.edit_message(cid, mid, &body)?;
                    st.store_files(files);
                    Ok(changed)
                } else {
                    st.delete_message(cid, mid)
                }
            })?;
            if route == Route::EditWebhookMessage {
                ok(v)
            } else {
                Ok(Reply::NoContent)
            }
        }
    }
}

/// https://discord.com/developers/docs/resources/webhook#create-webhook: "A webhook name is
/// valid if it does not contain the substrings `clyde` or `discord` (case-insensitive)" and
/// is 1 to 80 characters; the same holds for an execute's `username` override.
fn check_webhook_name(field: &str, name: &str) -> Result<(), DiscordError> {
    let n = name.chars().count();
    if n == 0 || n > 80 {
        return Err(DiscordError::invalid_form(format!(
            "{field}: must be between 1 and 80 in length"
        )));
    }
    let lower = name.to_lowercase();
    for word in ["clyde", "discord"] {
        if lower.contains(word) {
            return Err(DiscordError::invalid_form(format!(
                "{field}: cannot contain \"{word}\""
            )));
        }
    }
    Ok(())
}
