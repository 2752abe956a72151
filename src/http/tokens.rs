//! Tenant tokens (operator only): create (shown once), list ids, revoke.

use actix_web::{delete, get, post, web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::{auth::Caller, validate, AppState};
use crate::{
    error::{AppError, AppResult, ErrorCode},
    store::tokens::TokenStore,
};

/// A new tenant token. `token` is shown this once and cannot be read back.
#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    pub token_id: i64,
    pub tenant_key: String,
    pub token: String,
    pub created_at: i64,
}

#[derive(Serialize, ToSchema)]
pub struct TokenInfo {
    pub token_id: i64,
    pub created_at: i64,
}

#[derive(Serialize, ToSchema)]
pub struct TokenList {
    pub items: Vec<TokenInfo>,
}

#[utoipa::path(post, path = "/api/v1/tenants/{tenant_key}/tokens", tag = "tokens",
    params(("tenant_key" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$")),
    responses((status = 201, body = CreatedToken), (status = 400, body = super::openapi::ErrorBody),
        (status = 401, body = super::openapi::ErrorBody), (status = 403, body = super::openapi::ErrorBody)),
    security(("bearer" = [])))]
#[post("/api/v1/tenants/{tenant_key}/tokens")]
pub async fn create_token(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    caller.require_operator()?;
    let tenant_key = path.into_inner();
    validate::tenant_key(&tenant_key)?;
    let (row, token) = TokenStore::new(state.db.clone())
        .create(&tenant_key)
        .await?;
    state.auth.remember(&row);
    tracing::info!(tenant = %tenant_key, token_id = row.id, "[admin/discord-bot] tenant token created");
    Ok(HttpResponse::Created().json(CreatedToken {
        token_id: row.id,
        tenant_key,
        token,
        created_at: row.created_at,
    }))
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant_key}/tokens", tag = "tokens",
    params(("tenant_key" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$")),
    responses((status = 200, body = TokenList), (status = 400, body = super::openapi::ErrorBody),
        (status = 401, body = super::openapi::ErrorBody), (status = 403, body = super::openapi::ErrorBody)),
    security(("bearer" = [])))]
#[get("/api/v1/tenants/{tenant_key}/tokens")]
pub async fn list_tokens(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    caller.require_operator()?;
    let tenant_key = path.into_inner();
    validate::tenant_key(&tenant_key)?;
    let rows = TokenStore::new(state.db.clone()).list(&tenant_key).await?;
    Ok(HttpResponse::Ok().json(TokenList {
        items: rows
            .into_iter()
            .map(|r| TokenInfo {
                token_id: r.id,
                created_at: r.created_at,
            })
            .collect(),
    }))
}

#[utoipa::path(delete, path = "/api/v1/tenants/{tenant_key}/tokens/{token_id}", tag = "tokens",
    params(("tenant_key" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"), ("token_id" = String, Path, pattern = "^[1-9][0-9]{0,17}$")),
    responses((status = 204), (status = 400, body = super::openapi::ErrorBody),
        (status = 401, body = super::openapi::ErrorBody), (status = 403, body = super::openapi::ErrorBody),
        (status = 404, body = super::openapi::ErrorBody)),
    security(("bearer" = [])))]
#[delete("/api/v1/tenants/{tenant_key}/tokens/{token_id}")]
pub async fn revoke_token(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> AppResult<HttpResponse> {
    caller.require_operator()?;
    let (tenant_key, token_id) = path.into_inner();
    validate::tenant_key(&tenant_key)?;
    let token_id = validate::row_id("token_id", &token_id)?;
    if !TokenStore::new(state.db.clone())
        .revoke(&tenant_key, token_id)
        .await?
    {
        return Err(AppError::new(ErrorCode::NotFound, "token not found"));
    }
    state.auth.forget(token_id);
    tracing::info!(tenant = %tenant_key, token_id, "[admin/discord-bot] tenant token revoked");
    Ok(HttpResponse::NoContent().finish())
}
