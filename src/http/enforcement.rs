//! The global kill switch (operator only): persisted, and applied to the snapshot cache so
//! the gate treats every server as `off` at once without losing configs.

use actix_web::{get, put, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{auth::Caller, openapi::ErrorBody, AppState};
use crate::{
    actors::snapshot_cache::KillSwitchSet,
    discord::invalid_guard::InvalidRequestStatus,
    error::{AppError, AppResult, ErrorCode},
    store::settings::SettingsStore,
};

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Enforcement {
    /// True: enforcement is off for every server (configs are kept).
    pub kill_switch: bool,
    /// (Answers only) Discord's 401/403/429 answers to this process in the last 10 minutes,
    /// and whether the ban guard slows requests down; absent without a bot token.
    #[serde(default, skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub discord_invalid_requests: Option<InvalidRequestStatus>,
}

#[utoipa::path(get, path = "/api/v1/enforcement", tag = "enforcement",
    responses((status = 200, body = Enforcement), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
#[get("/api/v1/enforcement")]
pub async fn get_enforcement(
    state: web::Data<AppState>,
    caller: Caller,
) -> AppResult<HttpResponse> {
    caller.require_operator()?;
    Ok(HttpResponse::Ok().json(Enforcement {
        kill_switch: state.cache.kill_switch(),
        discord_invalid_requests: state.invalid_requests.as_ref().map(|g| g.status()),
    }))
}

#[utoipa::path(put, path = "/api/v1/enforcement", tag = "enforcement",
    request_body = Enforcement,
    responses((status = 200, body = Enforcement), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody)),
    security(("bearer" = [])))]
#[put("/api/v1/enforcement")]
pub async fn put_enforcement(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<Enforcement>,
) -> AppResult<HttpResponse> {
    caller.require_operator()?;
    let on = body.kill_switch;
    SettingsStore::new(state.db.clone())
        .set_kill_switch(on)
        .await?;
    state
        .actors
        .kill_switch
        .send(KillSwitchSet(on))
        .await
        .map_err(|err| {
            AppError::new(ErrorCode::Internal, "the snapshot cache is not running").with_source(err)
        })?;
    if on {
        tracing::warn!("[admin/discord-bot] kill switch ON: enforcement off for every server");
    } else {
        tracing::info!("[admin/discord-bot] kill switch off: per-server enforcement modes apply");
    }
    Ok(HttpResponse::Ok().json(Enforcement {
        kill_switch: on,
        discord_invalid_requests: state.invalid_requests.as_ref().map(|g| g.status()),
    }))
}
