//! Connectors of a tenant: list, create, get, update, delete.

use actix_web::{delete, get, post, put, web, HttpResponse};
use entities::connectors;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{auth::Caller, openapi::ErrorBody, validate, AppState};
use crate::{
    domain::snowflake::from_db,
    error::{AppError, AppResult, ErrorCode},
    store::connectors::{ConnectorChanges, ConnectorStore, NewConnector},
};

#[derive(Serialize, ToSchema)]
pub struct Connector {
    pub connector_id: String,
    pub name: String,
    /// Discord id, as a string.
    pub source_guild_id: String,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<connectors::Model> for Connector {
    fn from(r: connectors::Model) -> Self {
        Self {
            connector_id: r.connector_id,
            name: r.name,
            source_guild_id: from_db(r.source_guild_id).to_string(),
            enabled: r.enabled,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ConnectorList {
    pub items: Vec<Connector>,
}

#[derive(Deserialize, ToSchema)]
pub struct CreateConnector {
    #[schema(pattern = "^[A-Za-z0-9_.-]{1,64}$")]
    pub connector_id: String,
    #[schema(min_length = 1, max_length = 100, pattern = "^\\s*\\S")]
    pub name: String,
    #[schema(pattern = "^[1-9][0-9]{0,18}$")]
    pub source_guild_id: String,
}

#[derive(Deserialize, ToSchema)]
pub struct UpdateConnector {
    #[schema(min_length = 1, max_length = 100, pattern = "^\\s*\\S")]
    pub name: Option<String>,
    #[schema(pattern = "^[1-9][0-9]{0,18}$")]
    pub source_guild_id: Option<String>,
    pub enabled: Option<bool>,
}

/// Validates the path, checks the caller reaches the tenant, and loads the connector (404
/// when absent or another tenant's).
pub(super) async fn load(
    state: &AppState,
    caller: &Caller,
    tenant_key: &str,
    connector_id: &str,
) -> AppResult<connectors::Model> {
    caller.reach(tenant_key)?;
    validate::tenant_key(tenant_key)?;
    validate::connector_id(connector_id)?;
    ConnectorStore::new(state.db.clone())
        .get(tenant_key, connector_id)
        .await?
        .ok_or_else(|| AppError::new(ErrorCode::NotFound, "connector not found"))
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant_key}/connectors", tag = "connectors",
    params(("tenant_key" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$")),
    responses((status = 200, body = ConnectorList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
#[get("/api/v1/tenants/{tenant_key}/connectors")]
pub async fn list_connectors(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    let tenant_key = path.into_inner();
    caller.reach(&tenant_key)?;
    validate::tenant_key(&tenant_key)?;
    let rows = ConnectorStore::new(state.db.clone())
        .list(&tenant_key)
        .await?;
    Ok(HttpResponse::Ok().json(ConnectorList {
        items: rows.into_iter().map(Connector::from).collect(),
    }))
}

#[utoipa::path(post, path = "/api/v1/tenants/{tenant_key}/connectors", tag = "connectors",
    params(("tenant_key" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$")),
    request_body = CreateConnector,
    responses((status = 201, body = Connector), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)),
    security(("bearer" = [])))]
#[post("/api/v1/tenants/{tenant_key}/connectors")]
pub async fn create_connector(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Json<CreateConnector>,
) -> AppResult<HttpResponse> {
    let tenant_key = path.into_inner();
    caller.reach(&tenant_key)?;
    validate::tenant_key(&tenant_key)?;
    let body = body.into_inner();
    validate::connector_id(&body.connector_id)?;
    let new = NewConnector {
        connector_id: body.connector_id,
        name: validate::name("name", &body.name)?,
        source_guild_id: validate::guild_id("source_guild_id", &body.source_guild_id)?,
    };
    let row = ConnectorStore::new(state.db.clone())
        .create(&tenant_key, new)
        .await?;
    tracing::info!(tenant = %tenant_key, connector = %row.connector_id, "[admin/discord-bot] connector created");
    Ok(HttpResponse::Created().json(Connector::from(row)))
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant_key}/connectors/{connector_id}", tag = "connectors",
    params(("tenant_key" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("connector_id" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$")),
    responses((status = 200, body = Connector), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
#[get("/api/v1/tenants/{tenant_key}/connectors/{connector_id}")]
pub async fn get_connector(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> AppResult<HttpResponse> {
    let (tenant_key, connector_id) = path.into_inner();
    let row = load(&state, &caller, &tenant_key, &connector_id).await?;
    Ok(HttpResponse::Ok().json(Connector::from(row)))
}

#[utoipa::path(put, path = "/api/v1/tenants/{tenant_key}/connectors/{connector_id}", tag = "connectors",
    params(("tenant_key" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("connector_id" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$")),
    request_body = UpdateConnector,
    responses((status = 200, body = Connector), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)),
    security(("bearer" = [])))]
#[put("/api/v1/tenants/{tenant_key}/connectors/{connector_id}")]
pub async fn update_connector(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: web::Json<UpdateConnector>,
) -> AppResult<HttpResponse> {
    let (tenant_key, connector_id) = path.into_inner();
    load(&state, &caller, &tenant_key, &connector_id).await?;
    let body = body.into_inner();
    let changes = ConnectorChanges {
        name: body
            .name
            .as_deref()
            .map(|n| validate::name("name", n))
            .transpose()?,
        source_guild_id: body
            .source_guild_id
            .as_deref()
            .map(|g| validate::guild_id("source_guild_id", g))
            .transpose()?,
        enabled: body.enabled,
    };
    let row = ConnectorStore::new(state.db.clone())
        .update(&tenant_key, &connector_id, changes)
        .await?
        .ok_or_else(|| AppError::new(ErrorCode::NotFound, "connector not found"))?;
    tracing::info!(tenant = %tenant_key, connector = %connector_id, "[admin/discord-bot] connector updated");
    state.actors.wake.do_send(crate::actors::mirror_gate::Wake);
    Ok(HttpResponse::Ok().json(Connector::from(row)))
}

#[utoipa::path(delete, path = "/api/v1/tenants/{tenant_key}/connectors/{connector_id}", tag = "connectors",
    params(("tenant_key" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("connector_id" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$")),
    responses((status = 204), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
#[delete("/api/v1/tenants/{tenant_key}/connectors/{connector_id}")]
pub async fn delete_connector(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> AppResult<HttpResponse> {
    let (tenant_key, connector_id) = path.into_inner();
    load(&state, &caller, &tenant_key, &connector_id).await?;
    let servers = crate::store::servers::ServerStore::new(state.db.clone())
        .configs(&tenant_key, &connector_id)
        .await?;
    ConnectorStore::new(state.db.clone())
        .delete(&tenant_key, &connector_id)
        .await?;
    // The cache forgets the deleted servers' policies so the gate stops consulting them.
    for row in &servers {
        let _ = state
            .actors
            .policy
            .send(crate::actors::snapshot_cache::PolicyUpdated {
                key: crate::store::servers::key_of(row),
                policy: None,
            })
            .await;
    }
    tracing::info!(tenant = %tenant_key, connector = %connector_id, servers = servers.len(), "[admin/discord-bot] connector deleted");
    Ok(HttpResponse::NoContent().finish())
}
