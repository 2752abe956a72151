//! The HTTP control surface under `control_url`: script Discord state and read back what the
//! bot did. Same operations as [`super::SandboxHandle`]'s methods; errors in Discord's shape.
//! No authentication: the sandbox only ever listens on loopback.
//!
//! | route | body | answer |
//! |---|---|---|
//! | `POST /guilds` | Discord guild object (id, name, owner_id, roles, channels, members) | 201; GUILD_CREATE |
//! | `DELETE /guilds/{g}` | | 204; GUILD_DELETE |
//! | `POST /guilds/{g}/members` | `{"user": {"id", "username", "bot"?}, "roles": [...]}` | 201; GUILD_MEMBER_ADD |
//! | `PATCH /guilds/{g}/members/{u}` | `{"roles": [...]}`, `{"nick"}` | 200; GUILD_MEMBER_UPDATE |
//! | `DELETE /guilds/{g}/members/{u}` | | 204; GUILD_MEMBER_REMOVE |
//! | `POST /guilds/{g}/roles`, `PATCH`/`DELETE /guilds/{g}/roles/{r}` | role fields | GUILD_ROLE_* |
//! | `POST /guilds/{g}/channels`, `PATCH`/`DELETE /channels/{c}` | channel fields | CHANNEL_* |
//! | `PUT`/`DELETE /channels/{c}/permissions/{o}` | `{"type": 0/1, "allow", "deny"}` | 204; CHANNEL_UPDATE |
//! | `POST /channels/{c}/messages` | `{"author": {"id", "username"}, "content", "embeds"?, "attachments"?}`; an attachment `{"filename", "content_base64", "content_type"?}` is hosted (CDN url), others are stored as given | 201; MESSAGE_CREATE |
//! | `PATCH`/`DELETE /channels/{c}/messages/{m}` | `{"content"}` | MESSAGE_UPDATE / MESSAGE_DELETE |
//! | `GET /channels/{c}/messages` | | every message, oldest first, `deleted` flagged |
//! | `POST /faults`, `DELETE /faults` | [`Fault`] | 201 / 204 |
//! | `PUT /rate-limits` | `{"enabled": bool}` | 204 |
//! | `GET /stats`, `DELETE /stats` | | `{"requests", "rate_limited", "invalid"}`: REST answers since start, 429s, and 401/403/429s (Discord's invalid requests) / 204, reset |
//! | `PUT /upload-limit` | `{"max_upload_bytes": n}` (default 10 MiB) | 204; larger files answer 413 (40005) |
//! | `POST /gateway/disconnect` | | `{"sessions": n}`; sockets closed with 4000, resumable |
//! | `POST /gateway/invalidate-session` | | `{"sessions": n}`; op 9 `false` |
//!
//! Hosted attachments (uploaded to the REST message routes as `multipart/form-data`, or
//! posted here with `content_base64`) are served without auth, like Discord's CDN, at
//! `GET {api_url}/attachments/{channel_id}/{attachment_id}/{filename}`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::core::Core;
use super::error::{DResult, DiscordError};
use super::faults::Fault;
use super::files::{self, Upload};
use super::router::match_template;

/// Posts a message as a scripted user: `{"author": {"id", "username"}, "content", ...}`.
/// `attachments` entries with `content_base64` (and `filename`, `content_type`?) are hosted on
/// the CDN path and become full attachment objects; other entries are stored as given.
pub fn post_message(core: &Core, channel_id: u64, v: &Value) -> DResult<Value> {
    let author = v
        .get("author")
        .ok_or_else(|| DiscordError::invalid_form("author is required"))?;
    let inline = inline_files(v, core.max_upload_bytes())?;
    core.mutate(|st| {
        let author_id = st.ensure_user(author)?;
        let mut body = v.clone();
        let mut hosted = Vec::new();
        if let Some(list) = body.get_mut("attachments").and_then(Value::as_array_mut) {
            for (i, upload) in &inline {
                if let Some(entry) = list.get_mut(*i) {
                    let (json, file) =
                        st.host_file(channel_id, core.cdn_base(), upload, Some(entry));
                    *entry = json;
                    hosted.push(file);
                }
            }
        }
        let changed = st.create_message(channel_id, author_id, None, &body)?;
        st.store_files(hosted);
        Ok(changed)
    })
}

/// The `attachments` entries that carry their bytes (`content_base64`), by position.
fn inline_files(v: &Value, max_bytes: u64) -> DResult<Vec<(usize, Upload)>> {
    use base64::Engine as _;
    let Some(list) = v.get("attachments").and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        let Some(encoded) = entry.get("content_base64") else {
            continue;
        };
        let data = encoded
            .as_str()
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
            .ok_or_else(|| {
                DiscordError::invalid_form(format!(
                    "attachments.{i}.content_base64: must be base64"
                ))
            })?;
        if data.len() as u64 > max_bytes {
            return Err(DiscordError::entity_too_large());
        }
        let filename = entry
            .get("filename")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                DiscordError::invalid_form(format!("attachments.{i}.filename: required"))
            })?;
        out.push((
            i,
            Upload {
                key: i.to_string(),
                filename: filename.to_owned(),
                content_type: entry
                    .get("content_type")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                data: data.into(),
            },
        ));
    }
    Ok(out)
}

fn id(params: &[&str], i: usize) -> DResult<u64> {
    params
        .get(i)
        .and_then(|s| s.parse().ok())
        .ok_or_else(DiscordError::not_found)
}

fn json_status(status: StatusCode, v: Value) -> HttpResponse {
    HttpResponse::build(status).json(v)
}

pub async fn entry(req: HttpRequest, payload: web::Payload, core: web::Data<Core>) -> HttpResponse {
    let body = match files::read_body(payload, core.body_limit()).await {
        Ok(b) => b,
        Err(e) => return e.to_response(),
    };
    let path = req
        .path()
        .strip_prefix("/control")
        .unwrap_or(req.path())
        .to_owned();
    let method = req.method().as_str().to_owned();
    let body = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) => v,
            Err(_) => return DiscordError::invalid_json().to_response(),
        }
    };
    match handle(&core, &method, &path, &body) {
        Ok(resp) => resp,
        Err(e) => e.to_response(),
    }
}

fn handle(core: &Core, method: &str, path: &str, body: &Value) -> DResult<HttpResponse> {
    let m = |t: &str| match_template(t, path);
    let created = |v: Value| json_status(StatusCode::CREATED, v);
    let okj = |v: Value| json_status(StatusCode::OK, v);
    let no_content = || HttpResponse::NoContent().finish();

    if m("/gateway/sessions").is_some() {
        return match method {
            "GET" => Ok(okj(Value::Array(
                core.hub
                    .live_sessions()
                    .into_iter()
                    .map(|s| json!({"session_id": s.session_id, "shard": [s.shard_id, s.shard_count]}))
                    .collect(),
            ))),
            _ => Err(DiscordError::method_not_allowed()),
        };
    }
    if let Some(p) = m("/guilds") {
        let _ = p;
        return match method {
            "POST" => Ok(created(core.mutate(|st| st.add_guild(body))?)),
            _ => Err(DiscordError::method_not_allowed()),
        };
    }
    if let Some(p) = m("/guilds/{guild_id}") {
        return match method {
            "PATCH" => Ok(okj(core.mutate(|st| st.update_guild(id(&p, 0)?, body))?)),
            "DELETE" => {
                core.mutate(|st| st.remove_guild(id(&p, 0)?))?;
                Ok(no_content())
            }
            _ => Err(DiscordError::method_not_allowed()),
        };
    }
    if let Some(p) = m("/guilds/{guild_id}/outage") {
        let g = id(&p, 0)?;
        return match method {
            "PUT" => Ok(okj(core.mutate(|st| st.start_outage(g))?)),
            "DELETE" => Ok(okj(core.mutate(|st| st.end_outage(g))?)),
            _ => Err(DiscordError::method_not_allowed()),
        };
    }
    if let Some(p) = m("/guilds/{guild_id}/members") {
        return match method {
            "POST" => Ok(created(core.mutate(|st| st.add_member(id(&p, 0)?, body))?)),
            _ => Err(DiscordError::method_not_allowed()),
        };
    }
    if let Some(p) = m("/guilds/{guild_id}/members/{user_id}") {
        let (g, u) = (id(&p, 0)?, id(&p, 1)?);
        return match method {
            "PATCH" => Ok(okj(core.mutate(|st| st.update_member(g, u, body))?)),
            "DELETE" => {
                core.mutate(|st| st.remove_member(g, u))?;
                Ok(no_content())
            }
            _ => Err(DiscordError::method_not_allowed()),
        };
    }
    if let Some(p) = m("/guilds/{guild_id}/roles") {
        return match method {
            "POST" => Ok(created(core.mutate(|st| st.create_role(id(&p, 0)?, body))?)),
            _ => Err(DiscordError::method_not_allowed()),
        };
    }
    if let Some(p) = m("/guilds/{guild_id}/roles/{role_id}") {
        let (g, r) = (id(&p, 0)?, id(&p, 1)?);
        return match method {
            "PATCH" => Ok(okj(core.mutate(|st| st.update_role(g, r, body))?)),
            "DELETE" => {
                core.mutate(|st| st.delete_role(g, r))?;
                Ok(no_content())
            }
            _ => Err(DiscordError::method_not_allowed()),
        };
    }
    if let Some(p) = m("/guilds/{guild_id}/channels") {
        return match method {
            "POST" => Ok(created(
                core.mutate(|st| st.create_channel(id(&p, 0)?, body))?,
            )),
            _ => Err(DiscordError::method_not_allowed()),
        };
    }
    if let Some(p) = m("/channels/{channel_id}") {
        let c = id(&p, 0)?;
        return match method {
            "PATCH" => Ok(okj(core.mutate(|st| st.update_channel(c, body))?)),
            "DELETE" => {
                core.mutate(|st| st.delete_channel(c))?;
                Ok(no_content())
            }
            _ => Err(DiscordError::method_not_allowed()),
        };
    }
    if let Some(p) = m("/channels/{channel_id}/permissions/{overwrite_id}") {
        let (c, o) = (id(&p, 0)?, id(&p, 1)?);
        return match method {
            "PUT" => {
                core.mutate(|st| st.put_overwrite(c, o, body))?;
                Ok(no_content())
            }
            "DELETE" => {
                core.mutate(|st| st.delete_overwrite(c, o))?;
                Ok(no_content())
            }
            _ => Err(DiscordError::method_not_allowed()),
        };
    }
    if let Some(p) = m("/channels/{channel_id}/messages") {
        let c = id(&p, 0)?;
        return match method {
            "POST" => Ok(created(post_message(core, c, body)?)),
            "GET" => Ok(okj(Value::Array(core.read(|st| st.channel_log(c))?))),
            _ => Err(DiscordError::method_not_allowed()),
        };
    }
    if let Some(p) = m("/channels/{channel_id}/messages/{message_id}") {
        let (c, msg) = (id(&p, 0)?, id(&p, 1)?);
        return match method {
            "PATCH" => Ok(okj(core.mutate(|st| st.edit_message(c, msg, body))?)),
            "DELETE" => {
                core.mutate(|st| st.delete_message(c, msg))?;
                Ok(no_content())
            }
            _ => Err(DiscordError::method_not_allowed()),
        };
    }
    if m("/faults").is_some() {
        return match method {
            "POST" => {
                let fault: Fault = serde_json::from_value(body.clone())
                    .map_err(|e| DiscordError::invalid_form(e.to_string()))?;
                core.faults.add(fault);
                Ok(created(json!({"ok": true})))
            }
            "DELETE" => {
                core.faults.clear();
                Ok(no_content())
            }
            _ => Err(DiscordError::method_not_allowed()),
        };
    }
    if m("/stats").is_some() {
        return match method {
            "GET" => Ok(okj(core.stats.json())),
            "DELETE" => {
                core.stats.reset();
                Ok(no_content())
            }
            _ => Err(DiscordError::method_not_allowed()),
        };
    }
    if m("/rate-limits").is_some() && method == "PUT" {
        let mut config = core.limits.config();
        if let Some(e) = body.get("enabled").and_then(Value::as_bool) {
            config.enabled = e;
        }
        core.limits.set_config(config);
        return Ok(no_content());
    }
    if m("/upload-limit").is_some() && method == "PUT" {
        let bytes = body
            .get("max_upload_bytes")
            .and_then(Value::as_u64)
            .filter(|b| *b > 0)
            .ok_or_else(|| {
                DiscordError::invalid_form("max_upload_bytes: must be a positive integer")
            })?;
        core.set_max_upload_bytes(bytes);
        return Ok(no_content());
    }
    if m("/gateway/disconnect").is_some() && method == "POST" {
        return Ok(okj(json!({"sessions": core.hub.drop_connections()})));
    }
    if m("/gateway/invalidate-session").is_some() && method == "POST" {
        return Ok(okj(json!({"sessions": core.hub.invalidate_sessions()})));
    }
    Err(DiscordError::not_found())
}
