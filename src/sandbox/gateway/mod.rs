//! The gateway: one WebSocket connection per shard, JSON text frames. HELLO, IDENTIFY (token
//! checked, close 4004 otherwise), READY + GUILD_CREATE, heartbeats and ACKs, RESUME with
//! replay, INVALID_SESSION, and opcode 8 answered with GUILD_MEMBERS_CHUNK.

pub mod hub;

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{CloseCode, CloseReason, Message};
use serde_json::{json, Value};
use tokio::sync::mpsc::unbounded_channel;

use super::core::Core;
use super::model::{sf, user_json, Member, MemberWire, User};
use super::scenario::parse_id;
use hub::{Outgoing, ResumeRefused, SessionParams, INTENT_GUILD_MEMBERS};

/// GUILD_MEMBERS_CHUNK holds at most this many members, as on Discord.
pub const CHUNK_SIZE: usize = 1000;

pub async fn ws_entry(
    req: HttpRequest,
    body: web::Payload,
    core: web::Data<Core>,
) -> actix_web::Result<HttpResponse> {
    let (resp, session, stream) = actix_ws::handle(&req, body)?;
    let core = core.into_inner();
    actix_web::rt::spawn(run_connection(core, session, stream));
    Ok(resp)
}

fn close_reason(code: u16, description: &str) -> CloseReason {
    CloseReason {
        code: CloseCode::Other(code),
        description: Some(description.to_owned()),
    }
}

async fn run_connection(
    core: Arc<Core>,
    mut ws: actix_ws::Session,
    stream: actix_ws::MessageStream,
) {
    let mut stream = stream.max_frame_size(1024 * 1024);
    let conn_id = core.hub.next_conn_id();
    let (tx, mut rx) = unbounded_channel::<Outgoing>();
    let mut shutdown = core.shutdown.subscribe();
    let hello = json!({"op": 10, "d": {"heartbeat_interval": core.heartbeat_interval_ms}, "s": null, "t": null});
    if ws.text(hello.to_string()).await.is_err() {
        return;
    }
    let mut session_id: Option<String> = None;
    let close: Option<CloseReason> = loop {
        tokio::select! {
            incoming = stream.recv() => match incoming {
                None | Some(Err(_)) => break None,
                Some(Ok(Message::Text(text))) => {
                    match on_frame(&core, conn_id, &tx, &mut session_id, &text) {
                        Ok(replies) => {
                            let mut failed = false;
                            for r in replies {
                                if ws.text(r).await.is_err() {
                                    failed = true;
                                    break;
                                }
                            }
                            if failed {
                                break None;
                            }
                        }
                        Err(reason) => break Some(reason),
                    }
                }
                Some(Ok(Message::Binary(_))) => break Some(close_reason(4002, "Error while decoding payload.")),
                Some(Ok(Message::Ping(b))) => {
                    if ws.pong(&b).await.is_err() {
                        break None;
                    }
                }
                Some(Ok(Message::Close(reason))) => {
                    // As on Discord, a client closing with 1000/1001 ends its session for good.
                    let code = reason.as_ref().map(|r| u16::from(r.code));
                    if matches!(code, Some(1000 | 1001)) {
                        if let Some(sid) = session_id.take() {
                            core.hub.forget(&sid);
                        }
                    }
                    break reason;
                }
                Some(Ok(_)) => {}
            },
            out = rx.recv() => match out {
                Some(Outgoing::Text(t)) => {
                    if ws.text(t).await.is_err() {
                        break None;
                    }
                }
                Some(Outgoing::Invalidated) => {
                    session_id = None;
                    if ws.text(json!({"op": 9, "d": false, "s": null, "t": null}).to_string()).await.is_err() {
                        break None;
                    }
                }
                Some(Outgoing::Close(code, reason)) => break Some(close_reason(code, &reason)),
                None => break None,
            },
            _ = shutdown.changed() => break Some(close_reason(1001, "sandbox shutting down")),
        }
    };
    core.hub.detach(conn_id);
    let _ = ws.close(close).await;
}

/// Handles one client frame; returns frames to send back directly, or a close reason.
fn on_frame(
    core: &Arc<Core>,
    conn_id: u64,
    tx: &hub::ConnTx,
    session_id: &mut Option<String>,
    text: &str,
) -> Result<Vec<String>, CloseReason> {
    let v: Value = serde_json::from_str(text)
        .map_err(|_| close_reason(4002, "Error while decoding payload."))?;
    let op = v
        .get("op")
        .and_then(Value::as_u64)
        .ok_or_else(|| close_reason(4002, "Error while decoding payload."))?;
    let d = v.get("d").cloned().unwrap_or(Value::Null);
    match op {
        // Heartbeat: ACK, and everything up to `d` has arrived.
        1 => {
            if let (Some(sid), Some(seq)) = (session_id.as_deref(), d.as_u64()) {
                core.hub.acknowledge(sid, seq);
            }
            Ok(vec![
                json!({"op": 11, "d": null, "s": null, "t": null}).to_string()
            ])
        }
        2 => {
            if session_id.is_some() {
                return Err(close_reason(4005, "Already authenticated."));
            }
            let token = d.get("token").and_then(Value::as_str).unwrap_or("");
            if !core.token_ok(token) {
                return Err(close_reason(4004, "Authentication failed."));
            }
            let intents = d.get("intents").and_then(Value::as_u64).unwrap_or(0);
            let large_threshold = d
                .get("large_threshold")
                .and_then(Value::as_u64)
                .unwrap_or(50)
                .clamp(50, 250);
            let (shard_id, shard_count) = match d.get("shard").and_then(Value::as_array) {
                Some(a) if a.len() == 2 => (
                    a[0].as_u64().unwrap_or(0),
                    a[1].as_u64().unwrap_or(1).max(1),
                ),
                _ => (0, 1),
            };
            if shard_id >= shard_count {
                return Err(close_reason(4010, "Invalid shard."));
            }
            let params = SessionParams {
                intents,
                large_threshold,
                shard_id,
                shard_count,
            };
            let sid = uuid::Uuid::new_v4().simple().to_string();
            let st = core.lock();
            let ready = ready_json(core, &st, &sid, &params);
            core.hub
                .identify(&st, sid.clone(), params, conn_id, tx.clone(), &ready);
            drop(st);
            *session_id = Some(sid);
            Ok(Vec::new())
        }
        6 => {
            let token = d.get("token").and_then(Value::as_str).unwrap_or("");
            if !core.token_ok(token) {
                return Err(close_reason(4004, "Authentication failed."));
            }
            let sid = d
                .get("session_id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let seq = d.get("seq").and_then(Value::as_u64).unwrap_or(0);
            match core.hub.resume(&sid, seq, conn_id, tx.clone()) {
                Ok(()) => {
                    *session_id = Some(sid);
                    Ok(Vec::new())
                }
                Err(ResumeRefused::UnknownSession | ResumeRefused::TooOld) => Ok(vec![
                    json!({"op": 9, "d": false, "s": null, "t": null}).to_string(),
                ]),
            }
        }
        8 => {
            let Some(sid) = session_id.as_deref() else {
                return Err(close_reason(4003, "Not authenticated."));
            };
            // Large answers take a while to build: off the connection's thread.
            let (core, sid) = (core.clone(), sid.to_owned());
            tokio::task::spawn_blocking(move || request_guild_members(&core, &sid, &d));
            Ok(Vec::new())
        }
        // Presence and voice state updates: accepted and ignored.
        3 | 4 | 31 => {
            if session_id.is_none() {
                return Err(close_reason(4003, "Not authenticated."));
            }
            Ok(Vec::new())
        }
        _ => Err(close_reason(4001, "Unknown opcode.")),
    }
}

fn ready_json(core: &Core, st: &super::state::State, sid: &str, p: &SessionParams) -> Value {
    let mut user = st.bot().map(user_json).unwrap_or(Value::Null);
    if let Some(o) = user.as_object_mut() {
        o.insert("verified".into(), json!(true));
        o.insert("mfa_enabled".into(), json!(false));
        o.insert("flags".into(), json!(0));
        o.insert("email".into(), Value::Null);
    }
    let guilds: Vec<Value> = st
        .guilds
        .keys()
        .filter(|g| p.owns_guild(**g))
        .map(|g| json!({"id": sf(*g), "unavailable": true}))
        .collect();
    json!({
        "v": 10,
        "user": user,
        "guilds": guilds,
        "session_id": sid,
        "session_type": "normal",
        "resume_gateway_url": core.gateway_url,
        "shard": [p.shard_id, p.shard_count],
        "application": {"id": sf(core.bot_id), "flags": 0},
        "private_channels": [],
        "presences": [],
        "relationships": [],
        "guild_join_requests": [],
        "geo_ordered_rtc_regions": [],
        "user_settings": {},
        "_trace": ["seatgate-sandbox"],
    })
}

/// Opcode 8: `{"guild_id", "query"?, "limit", "user_ids"?, "nonce"?}` -> GUILD_MEMBERS_CHUNK
/// dispatches of at most 1000 members, `chunk_index`/`chunk_count`, the nonce echoed.
fn request_guild_members(core: &Core, sid: &str, d: &Value) {
    let Some(params) = core.hub.session_params(sid) else {
        return;
    };
    let guild_ids: Vec<u64> = match d.get("guild_id") {
        Some(Value::Array(a)) => a.iter().filter_map(parse_id).collect(),
        Some(v) => parse_id(v).into_iter().collect(),
        None => Vec::new(),
    };
    let nonce = d.get("nonce").and_then(Value::as_str).map(str::to_owned);
    let query = d
        .get("query")
        .and_then(Value::as_str)
        .map(str::to_lowercase);
    let limit = d.get("limit").and_then(Value::as_u64).unwrap_or(0) as usize;
    let user_ids: Option<Vec<u64>> = d.get("user_ids").map(|u| match u {
        Value::Array(a) => a.iter().filter_map(parse_id).collect(),
        other => parse_id(other).into_iter().collect(),
    });
    for gid in guild_ids {
        // Listing the whole member list needs the privileged GUILD_MEMBERS intent.
        if user_ids.is_none() && params.intents & INTENT_GUILD_MEMBERS == 0 {
            continue;
        }
        if !params.owns_guild(gid) {
            continue;
        }
        // Copy the selection out of the state lock; serialise outside it.
        let (selected, not_found): (Vec<(Member, User)>, Vec<String>) = {
            let st = core.lock();
            let Some(g) = st.guilds.get(&gid) else {
                continue;
            };
            let with_user = |m: &Member| st.users.get(&m.user_id).map(|u| (m.clone(), u.clone()));
            match &user_ids {
                Some(ids) => {
                    let mut found = Vec::new();
                    let mut missing = Vec::new();
                    for id in ids.iter().take(100) {
                        match g.members.get(id).and_then(with_user) {
                            Some(pair) => found.push(pair),
                            None => missing.push(sf(*id)),
                        }
                    }
                    (found, missing)
                }
                None => {
                    let q = query.clone().unwrap_or_default();
                    let cap = if q.is_empty() && limit == 0 {
                        usize::MAX
                    } else {
                        limit.clamp(1, 100)
                    };
                    let found = g
                        .members
                        .values()
                        .filter(|m| {
                            q.is_empty()
                                || st.users.get(&m.user_id).is_some_and(|u| {
                                    u.username.to_lowercase().starts_with(&q)
                                        || m.nick
                                            .as_deref()
                                            .is_some_and(|n| n.to_lowercase().starts_with(&q))
                                })
                        })
                        .take(cap)
                        .filter_map(with_user)
                        .collect();
                    (found, Vec::new())
                }
            }
        };
        let count = selected.len().div_ceil(CHUNK_SIZE).max(1);
        for i in 0..count {
            let chunk = selected
                .get(i * CHUNK_SIZE..((i + 1) * CHUNK_SIZE).min(selected.len()))
                .unwrap_or(&[]);
            let members: Vec<MemberWire<'_>> =
                chunk.iter().map(|(m, u)| MemberWire::new(m, u)).collect();
            // Members are serialised straight to text; the envelope is small.
            let mut extra = String::new();
            if i == 0 && !not_found.is_empty() {
                extra.push_str(&format!(r#","not_found":{}"#, json!(not_found)));
            }
            if let Some(n) = &nonce {
                extra.push_str(&format!(r#","nonce":{}"#, json!(n)));
            }
            let members_text = serde_json::to_string(&members).unwrap_or_else(|_| "[]".into());
            let text = format!(
                r#"{{"guild_id":"{gid}","chunk_index":{i},"chunk_count":{count},"members":{members_text}{extra}}}"#
            );
            core.hub.send_to(sid, "GUILD_MEMBERS_CHUNK", &text);
        }
    }
}
