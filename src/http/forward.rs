//! With shard leases, a request about a guild whose shard another process runs, answered by
//! that process: only it holds the guild's live count (`.../seats`). The owner is found
//! through the lease table and the heartbeats (`service_instances.admin_url`); the request
//! goes with the caller's own `Authorization` and is marked, so a process that lost the shard
//! meanwhile answers it itself rather than send it on again.

use std::time::Duration;

use actix_web::{
    http::{header, StatusCode},
    HttpRequest, HttpResponse,
};

use super::AppState;
use crate::error::{AppError, AppResult, ErrorCode};

/// Marks a request one process sent on to another.
pub const FORWARDED: &str = "x-seatgate-forwarded";
const TIMEOUT: Duration = Duration::from_secs(30);

/// Sends requests to the other processes' admin APIs.
#[derive(Clone)]
pub struct Forwarder {
    client: reqwest::Client,
    owners: crate::store::live_instances::LiveInstances,
}

impl Forwarder {
    pub fn new(owners: crate::store::live_instances::LiveInstances) -> Self {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .no_proxy()
            .build()
            .unwrap_or_default();
        Self { client, owners }
    }
}

/// The owner's answer when this process does not run `guild_id`'s shard; `None` when it
/// answers itself.
pub async fn to_owner(
    state: &AppState,
    req: &HttpRequest,
    guild_id: u64,
) -> AppResult<Option<HttpResponse>> {
    let Some(forwarder) = &state.forwarder else {
        return Ok(None);
    };
    if !state.shards.is_leased()
        || state.shards.carries(guild_id)
        || req.headers().contains_key(FORWARDED)
    {
        return Ok(None);
    }
    let unavailable = |why: &str| {
        AppError::new(
            ErrorCode::ShardOwnerUnavailable,
            format!(
                "guild {guild_id} is counted by another process, which {why}; try again shortly"
            ),
        )
    };
    let Some(base) = forwarder.owners.owner_url(guild_id).await? else {
        return Err(unavailable(
            "is being chosen (its shard is between two processes)",
        ));
    };
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut out = forwarder
        .client
        .get(format!("{base}{path}"))
        .header(FORWARDED, "1");
    if let Some(auth) = req.headers().get(header::AUTHORIZATION) {
        out = out.header(header::AUTHORIZATION.as_str(), auth.as_bytes());
    }
    let answer = out.send().await.map_err(|err| {
        tracing::warn!(error = %err.without_url(), owner = %base, "forward: the owner did not answer");
        unavailable("did not answer")
    })?;
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = answer
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_owned();
    let disposition = answer
        .headers()
        .get(reqwest::header::CONTENT_DISPOSITION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut response = HttpResponse::build(status);
    response.content_type(content_type);
    if let Some(d) = disposition {
        response.insert_header((header::CONTENT_DISPOSITION, d));
    }
    // Streamed as it comes: an export of a large guild is not held here whole.
    Ok(Some(response.streaming(answer.bytes_stream())))
}
