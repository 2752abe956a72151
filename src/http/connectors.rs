//! Connectors of a tenant: list, create, get, update, delete.

use actix_web::{delete, get, patch, post, put, web, HttpResponse};
use entities::connectors;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{auth::Caller, discord_checks, openapi::ErrorBody, validate, AppState, DeleteQuery};
use crate::{
    actors::snapshot_cache::{ConnectorRun, ConnectorState},
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
    /// The source guild's name, when the bot is in it.
    pub source_guild_name: Option<String>,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Connector {
    fn named(mut self, directory: &crate::discord::directory::GuildDirectory) -> Self {
        self.source_guild_name = self
            .source_guild_id
            .parse()
            .ok()
            .and_then(|id| directory.guild_name(id));
        self
    }
}

impl From<connectors::Model> for Connector {
    fn from(r: connectors::Model) -> Self {
        Self {
            connector_id: r.connector_id,
            name: r.name,
            source_guild_id: from_db(r.source_guild_id).to_string(),
            source_guild_name: None,
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

/// Body of `PUT .../connectors/{connector_id}`: the whole connector; a field left out is
/// 422 `field_required`.
#[derive(Deserialize, ToSchema)]
pub struct PutConnector {
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^\\s*\\S",
        required = true
    )]
    pub name: Option<String>,
    #[schema(pattern = "^[1-9][0-9]{0,18}$", required = true)]
    pub source_guild_id: Option<String>,
    #[schema(required = true)]
    pub enabled: Option<bool>,
}

/// Body of `PATCH .../connectors/{connector_id}`: only the fields given change.
#[derive(Deserialize, ToSchema)]
pub struct PatchConnector {
    #[schema(min_length = 1, max_length = 100, pattern = "^\\s*\\S")]
    pub name: Option<String>,
    #[schema(pattern = "^[1-9][0-9]{0,18}$")]
    pub source_guild_id: Option<String>,
    pub enabled: Option<bool>,
}

pub(super) fn required<T>(field: &str, v: Option<T>) -> AppResult<T> {
    v.ok_or_else(|| {
        AppError::new(
            ErrorCode::FieldRequired,
            format!("{field} is required: PUT replaces the whole resource (PATCH changes only the fields given)"),
        )
    })
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
        items: rows
            .into_iter()
            .map(|r| Connector::from(r).named(&state.directory))
            .collect(),
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
    discord_checks::source_guild(&state, &caller, &tenant_key, new.source_guild_id).await?;
    let row = ConnectorStore::new(state.db.clone())
        .create(&tenant_key, new)
        .await?;
    tracing::info!(tenant = %tenant_key, connector = %row.connector_id, "[admin/discord-bot] connector created");
    Ok(HttpResponse::Created().json(Connector::from(row).named(&state.directory)))
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
    Ok(HttpResponse::Ok().json(Connector::from(row).named(&state.directory)))
}

#[utoipa::path(put, path = "/api/v1/tenants/{tenant_key}/connectors/{connector_id}", tag = "connectors",
    params(("tenant_key" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("connector_id" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$")),
    request_body = PutConnector,
    responses((status = 200, body = Connector), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
#[put("/api/v1/tenants/{tenant_key}/connectors/{connector_id}")]
pub async fn put_connector(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: web::Json<PutConnector>,
) -> AppResult<HttpResponse> {
    let (tenant_key, connector_id) = path.into_inner();
    let row = load(&state, &caller, &tenant_key, &connector_id).await?;
    let body = body.into_inner();
    let changes = ConnectorChanges {
        name: Some(validate::name("name", &required("name", body.name)?)?),
        source_guild_id: Some(validate::guild_id(
            "source_guild_id",
            &required("source_guild_id", body.source_guild_id)?,
        )?),
        enabled: Some(required("enabled", body.enabled)?),
    };
    change(&state, &caller, row, changes).await
}

#[utoipa::path(patch, path = "/api/v1/tenants/{tenant_key}/connectors/{connector_id}", tag = "connectors",
    params(("tenant_key" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("connector_id" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$")),
    request_body = PatchConnector,
    responses((status = 200, body = Connector), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)),
    security(("bearer" = [])))]
#[patch("/api/v1/tenants/{tenant_key}/connectors/{connector_id}")]
pub async fn patch_connector(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: web::Json<PatchConnector>,
) -> AppResult<HttpResponse> {
    let (tenant_key, connector_id) = path.into_inner();
    let row = load(&state, &caller, &tenant_key, &connector_id).await?;
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
    change(&state, &caller, row, changes).await
}

/// Applies a connector change: a new source guild must be granted (and cannot be taken while
/// mappings read the old one); switching it off holds its jobs, on again releases them.
async fn change(
    state: &AppState,
    caller: &Caller,
    row: connectors::Model,
    changes: ConnectorChanges,
) -> AppResult<HttpResponse> {
    let (tenant_key, connector_id) = (row.tenant_key.clone(), row.connector_id.clone());
    let store = ConnectorStore::new(state.db.clone());
    if let Some(guild) = changes.source_guild_id {
        if guild != from_db(row.source_guild_id) {
            discord_checks::source_guild(state, caller, &tenant_key, guild).await?;
            if !store.mappings(&tenant_key, &connector_id).await?.is_empty() {
                return Err(AppError::new(
                    ErrorCode::Conflict,
                    "source_guild_id: the connector's mappings read channels of its source guild; delete them before changing it",
                ));
            }
        }
    }
    let row = store
        .update(&tenant_key, &connector_id, changes)
        .await?
        .ok_or_else(|| AppError::new(ErrorCode::NotFound, "connector not found"))?;
    tracing::info!(tenant = %tenant_key, connector = %connector_id, enabled = row.enabled, "[admin/discord-bot] connector updated");
    state
        .actors
        .connector_state
        .send(ConnectorState {
            tenant_key: tenant_key.clone(),
            connector_id: connector_id.clone(),
            run: if row.enabled {
                ConnectorRun::Live
            } else {
                ConnectorRun::Disabled
            },
        })
        .await
        .map_err(|err| {
            AppError::new(ErrorCode::Internal, "the snapshot cache is not running").with_source(err)
        })?;
    state.actors.wake.do_send(crate::actors::mirror_gate::Wake);
    Ok(HttpResponse::Ok().json(Connector::from(row).named(&state.directory)))
}

#[utoipa::path(delete, path = "/api/v1/tenants/{tenant_key}/connectors/{connector_id}", tag = "connectors",
    params(("tenant_key" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("connector_id" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"), DeleteQuery),
    responses((status = 204), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
#[delete("/api/v1/tenants/{tenant_key}/connectors/{connector_id}")]
pub async fn delete_connector(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    query: web::Query<DeleteQuery>,
) -> AppResult<HttpResponse> {
    let (tenant_key, connector_id) = path.into_inner();
    caller.reach(&tenant_key)?;
    validate::tenant_key(&tenant_key)?;
    validate::connector_id(&connector_id)?;
    let store = ConnectorStore::new(state.db.clone());
    // A deleted connector can still be purged.
    let purge = query.purge();
    let found = match store.get_any(&tenant_key, &connector_id).await? {
        Some(c) if c.deleted_at.is_none() || purge => c,
        _ => return Err(AppError::new(ErrorCode::NotFound, "connector not found")),
    };
    let servers = crate::store::servers::ServerStore::new(state.db.clone())
        .configs(&tenant_key, &connector_id)
        .await?;
    store
        .delete(&tenant_key, &found.connector_id, purge)
        .await?;
    let _ = state
        .actors
        .connector_state
        .send(ConnectorState {
            tenant_key: tenant_key.clone(),
            connector_id: connector_id.clone(),
            run: ConnectorRun::Deleted,
        })
        .await;
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
    tracing::info!(tenant = %tenant_key, connector = %connector_id, servers = servers.len(), purge, "[admin/discord-bot] connector deleted");
    Ok(HttpResponse::NoContent().finish())
}
