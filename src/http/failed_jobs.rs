//! A server's failed mirror jobs with Discord's word on each (`last_error`): what an admin
//! reads when a message did not arrive.

use actix_web::{get, web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::{
    auth::Caller,
    openapi::ErrorBody,
    servers::{history_key, page_limit, PageQuery},
    AppState,
};
use crate::{domain::snowflake, error::AppResult, store::mirror::failed_jobs};

#[derive(Serialize, ToSchema)]
pub struct FailedJob {
    pub id: i64,
    /// `send`, `edit` or `delete`.
    pub kind: String,
    pub mapping_id: i64,
    #[schema(example = "1300000000000000000")]
    pub source_message_id: String,
    #[schema(example = "1300000000000000000")]
    pub target_channel_id: String,
    pub attempts: i32,
    /// `code: detail`, e.g. `mirror_payload_rejected: 400 code 50035 ...`.
    pub last_error: Option<String>,
    /// When it failed (epoch ms).
    pub failed_at: i64,
}

#[derive(Serialize, ToSchema)]
pub struct FailedJobList {
    /// Newest first.
    pub items: Vec<FailedJob>,
    /// Pass as `before` for the next page; absent on the last page.
    pub next_before: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant_key}/connectors/{connector_id}/servers/{guild_id}/failed-jobs", tag = "servers",
    params(("tenant_key" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("connector_id" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("guild_id" = String, Path, pattern = "^[1-9][0-9]{0,18}$"), PageQuery),
    responses((status = 200, body = FailedJobList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
#[get("/api/v1/tenants/{tenant_key}/connectors/{connector_id}/servers/{guild_id}/failed-jobs")]
pub async fn list_failed_jobs(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String, String)>,
    query: web::Query<PageQuery>,
) -> AppResult<HttpResponse> {
    let key = history_key(&state, &caller, path.into_inner()).await?;
    let limit = page_limit(&query)?;
    let rows = failed_jobs(&state.db, &key, limit, query.before).await?;
    let next_before = if rows.len() as u64 == limit {
        rows.last().map(|r| r.id)
    } else {
        None
    };
    let items = rows
        .into_iter()
        .map(|j| FailedJob {
            id: j.id,
            kind: j.kind,
            mapping_id: j.mapping_id,
            source_message_id: snowflake::from_db(j.source_message_id).to_string(),
            target_channel_id: snowflake::from_db(j.target_channel_id).to_string(),
            attempts: j.attempts,
            last_error: j.last_error.map(|e| crate::redact::text(&e)),
            failed_at: j.finished_at.unwrap_or(j.updated_at),
        })
        .collect();
    Ok(HttpResponse::Ok().json(FailedJobList { items, next_before }))
}
