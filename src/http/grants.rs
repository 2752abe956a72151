//! The source guilds the operator granted a tenant (operator only): a tenant's connectors may
//! read only those. A connector written with the operator token grants its source guild.

use actix_web::{delete, get, put, web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::{auth::Caller, openapi::ErrorBody, validate, AppState};
use crate::{
    domain::snowflake::from_db,
    error::{AppError, AppResult, ErrorCode},
    store::grants::GrantStore,
};

#[derive(Serialize, ToSchema)]
pub struct SourceGuild {
    pub guild_id: String,
    pub granted_at: i64,
}

#[derive(Serialize, ToSchema)]
pub struct SourceGuildList {
    pub items: Vec<SourceGuild>,
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant_key}/source-guilds", tag = "tenants",
    params(("tenant_key" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$")),
    responses((status = 200, body = SourceGuildList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
#[get("/api/v1/tenants/{tenant_key}/source-guilds")]
pub async fn list_source_guilds(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    caller.require_operator()?;
    let tenant_key = path.into_inner();
    validate::tenant_key(&tenant_key)?;
    let rows = GrantStore::new(state.db.clone()).list(&tenant_key).await?;
    Ok(HttpResponse::Ok().json(SourceGuildList {
        items: rows
            .into_iter()
            .map(|r| SourceGuild {
                guild_id: from_db(r.guild_id).to_string(),
                granted_at: r.created_at,
            })
            .collect(),
    }))
}

#[utoipa::path(put, path = "/api/v1/tenants/{tenant_key}/source-guilds/{guild_id}", tag = "tenants",
    params(("tenant_key" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("guild_id" = String, Path, pattern = "^[1-9][0-9]{0,18}$")),
    responses((status = 201, description = "granted"), (status = 204, description = "already granted"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
#[put("/api/v1/tenants/{tenant_key}/source-guilds/{guild_id}")]
pub async fn grant_source_guild(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> AppResult<HttpResponse> {
    caller.require_operator()?;
    let (tenant_key, guild_id) = path.into_inner();
    validate::tenant_key(&tenant_key)?;
    let guild_id = validate::guild_id("guild_id", &guild_id)?;
    let new = GrantStore::new(state.db.clone())
        .grant(&tenant_key, guild_id)
        .await?;
    tracing::info!(tenant = %tenant_key, guild_id, new, "[admin/discord-bot] source guild granted");
    Ok(if new {
        HttpResponse::Created().finish()
    } else {
        HttpResponse::NoContent().finish()
    })
}

#[utoipa::path(delete, path = "/api/v1/tenants/{tenant_key}/source-guilds/{guild_id}", tag = "tenants",
    params(("tenant_key" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("guild_id" = String, Path, pattern = "^[1-9][0-9]{0,18}$")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
#[delete("/api/v1/tenants/{tenant_key}/source-guilds/{guild_id}")]
pub async fn revoke_source_guild(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> AppResult<HttpResponse> {
    caller.require_operator()?;
    let (tenant_key, guild_id) = path.into_inner();
    validate::tenant_key(&tenant_key)?;
    let guild_id = validate::guild_id("guild_id", &guild_id)?;
    if !GrantStore::new(state.db.clone())
        .revoke(&tenant_key, guild_id)
        .await?
    {
        return Err(AppError::new(ErrorCode::NotFound, "no such grant"));
    }
    // Its connectors reading the guild stop mirroring at once (ingest matches the grant).
    tracing::info!(tenant = %tenant_key, guild_id, "[admin/discord-bot] source guild grant revoked");
    Ok(HttpResponse::NoContent().finish())
}
