//! Mappings of a connector: source channel -> target channel in a target guild. A change
//! asks the auditor to recount the target server(s) and wakes the gate.

use actix_web::{delete, get, post, put, web, HttpResponse};
use entities::connector_mappings;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{auth::Caller, connectors, openapi::ErrorBody, validate, AppState};
use crate::{
    actors::{
        mirror_gate::Wake,
        seat_auditor::{AuditReason, AuditRequested},
        ServerKey,
    },
    domain::snowflake::from_db,
    error::{AppError, AppResult, ErrorCode},
    store::connectors::{ConnectorStore, MappingChanges, NewMapping},
};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryMode {
    #[default]
    Bot,
    Webhook,
}

impl DeliveryMode {
    fn as_str(self) -> &'static str {
        match self {
            DeliveryMode::Bot => "bot",
            DeliveryMode::Webhook => "webhook",
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Mapping {
    pub mapping_id: i64,
    pub source_channel_id: String,
    pub target_guild_id: String,
    pub target_channel_id: String,
    /// `bot` or `webhook`.
    pub delivery_mode: String,
    pub enabled: bool,
    /// True when Discord answered a permanent error for this target; `broken_code` says which.
    pub broken: bool,
    pub broken_code: Option<String>,
    pub broken_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<connector_mappings::Model> for Mapping {
    fn from(r: connector_mappings::Model) -> Self {
        Self {
            mapping_id: r.id,
            source_channel_id: from_db(r.source_channel_id).to_string(),
            target_guild_id: from_db(r.target_guild_id).to_string(),
            target_channel_id: from_db(r.target_channel_id).to_string(),
            delivery_mode: r.delivery_mode,
            enabled: r.enabled,
            broken: r.broken_code.is_some(),
            broken_code: r.broken_code,
            broken_at: r.broken_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct MappingList {
    pub items: Vec<Mapping>,
}

#[derive(Deserialize, ToSchema)]
pub struct CreateMapping {
    #[schema(pattern = "^[1-9][0-9]{0,18}$")]
    pub source_channel_id: String,
    #[schema(pattern = "^[1-9][0-9]{0,18}$")]
    pub target_guild_id: String,
    #[schema(pattern = "^[1-9][0-9]{0,18}$")]
    pub target_channel_id: String,
    #[serde(default)]
    pub delivery_mode: Option<DeliveryMode>,
}

#[derive(Deserialize, ToSchema)]
pub struct UpdateMapping {
    #[schema(pattern = "^[1-9][0-9]{0,18}$")]
    pub source_channel_id: Option<String>,
    #[schema(pattern = "^[1-9][0-9]{0,18}$")]
    pub target_guild_id: Option<String>,
    #[schema(pattern = "^[1-9][0-9]{0,18}$")]
    pub target_channel_id: Option<String>,
    pub delivery_mode: Option<DeliveryMode>,
    pub enabled: Option<bool>,
}

/// Re-audit every target server the change touched, then wake the gate.
async fn notify(state: &AppState, tenant_key: &str, connector_id: &str, guilds: &[u64]) {
    let mut guilds = guilds.to_vec();
    guilds.sort_unstable();
    guilds.dedup();
    for guild_id in guilds {
        let key = ServerKey {
            tenant_key: tenant_key.to_owned(),
            connector_id: connector_id.to_owned(),
            guild_id,
        };
        match state
            .actors
            .audit
            .send(AuditRequested {
                key: key.clone(),
                reason: AuditReason::ConfigChanged,
            })
            .await
        {
            Ok(Ok(job)) => {
                tracing::info!(server = %key, job = job.id, deduped = job.deduped, "[admin/discord-bot] mapping changed; audit requested")
            }
            Ok(Err(err)) => {
                tracing::warn!(server = %key, error = %err, "[admin/discord-bot] mapping changed; audit request failed")
            }
            Err(err) => {
                tracing::warn!(server = %key, error = %err, "[admin/discord-bot] mapping changed; auditor unreachable")
            }
        }
    }
    state.actors.wake.do_send(Wake);
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant_key}/connectors/{connector_id}/mappings", tag = "mappings",
    params(("tenant_key" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("connector_id" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$")),
    responses((status = 200, body = MappingList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
#[get("/api/v1/tenants/{tenant_key}/connectors/{connector_id}/mappings")]
pub async fn list_mappings(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> AppResult<HttpResponse> {
    let (tenant_key, connector_id) = path.into_inner();
    connectors::load(&state, &caller, &tenant_key, &connector_id).await?;
    let rows = ConnectorStore::new(state.db.clone())
        .mappings(&tenant_key, &connector_id)
        .await?;
    Ok(HttpResponse::Ok().json(MappingList {
        items: rows.into_iter().map(Mapping::from).collect(),
    }))
}

#[utoipa::path(post, path = "/api/v1/tenants/{tenant_key}/connectors/{connector_id}/mappings", tag = "mappings",
    params(("tenant_key" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("connector_id" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$")),
    request_body = CreateMapping,
    responses((status = 201, body = Mapping), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)),
    security(("bearer" = [])))]
#[post("/api/v1/tenants/{tenant_key}/connectors/{connector_id}/mappings")]
pub async fn create_mapping(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: web::Json<CreateMapping>,
) -> AppResult<HttpResponse> {
    let (tenant_key, connector_id) = path.into_inner();
    connectors::load(&state, &caller, &tenant_key, &connector_id).await?;
    let body = body.into_inner();
    let new = NewMapping {
        source_channel_id: validate::snowflake("source_channel_id", &body.source_channel_id)?,
        target_guild_id: validate::guild_id("target_guild_id", &body.target_guild_id)?,
        target_channel_id: validate::snowflake("target_channel_id", &body.target_channel_id)?,
        delivery_mode: body.delivery_mode.unwrap_or_default().as_str().to_owned(),
    };
    let target = new.target_guild_id;
    let row = ConnectorStore::new(state.db.clone())
        .create_mapping(&tenant_key, &connector_id, new)
        .await?;
    tracing::info!(tenant = %tenant_key, connector = %connector_id, mapping = row.id, "[admin/discord-bot] mapping created");
    notify(&state, &tenant_key, &connector_id, &[target]).await;
    Ok(HttpResponse::Created().json(Mapping::from(row)))
}

async fn load_mapping(
    state: &AppState,
    caller: &Caller,
    tenant_key: &str,
    connector_id: &str,
    mapping_id: &str,
) -> AppResult<connector_mappings::Model> {
    connectors::load(state, caller, tenant_key, connector_id).await?;
    let id = validate::row_id("mapping_id", mapping_id)?;
    ConnectorStore::new(state.db.clone())
        .mapping(tenant_key, connector_id, id)
        .await?
        .ok_or_else(|| AppError::new(ErrorCode::NotFound, "mapping not found"))
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant_key}/connectors/{connector_id}/mappings/{mapping_id}", tag = "mappings",
    params(("tenant_key" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("connector_id" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("mapping_id" = String, Path, pattern = "^[1-9][0-9]{0,17}$")),
    responses((status = 200, body = Mapping), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
#[get("/api/v1/tenants/{tenant_key}/connectors/{connector_id}/mappings/{mapping_id}")]
pub async fn get_mapping(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String, String)>,
) -> AppResult<HttpResponse> {
    let (tenant_key, connector_id, mapping_id) = path.into_inner();
    let row = load_mapping(&state, &caller, &tenant_key, &connector_id, &mapping_id).await?;
    Ok(HttpResponse::Ok().json(Mapping::from(row)))
}

#[utoipa::path(put, path = "/api/v1/tenants/{tenant_key}/connectors/{connector_id}/mappings/{mapping_id}", tag = "mappings",
    params(("tenant_key" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("connector_id" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("mapping_id" = String, Path, pattern = "^[1-9][0-9]{0,17}$")),
    request_body = UpdateMapping,
    responses((status = 200, body = Mapping), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)),
    security(("bearer" = [])))]
#[put("/api/v1/tenants/{tenant_key}/connectors/{connector_id}/mappings/{mapping_id}")]
pub async fn update_mapping(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String, String)>,
    body: web::Json<UpdateMapping>,
) -> AppResult<HttpResponse> {
    let (tenant_key, connector_id, mapping_id) = path.into_inner();
    let row = load_mapping(&state, &caller, &tenant_key, &connector_id, &mapping_id).await?;
    let body = body.into_inner();
    let changes = MappingChanges {
        source_channel_id: body
            .source_channel_id
            .as_deref()
            .map(|v| validate::snowflake("source_channel_id", v))
            .transpose()?,
        target_guild_id: body
            .target_guild_id
            .as_deref()
            .map(|v| validate::guild_id("target_guild_id", v))
            .transpose()?,
        target_channel_id: body
            .target_channel_id
            .as_deref()
            .map(|v| validate::snowflake("target_channel_id", v))
            .transpose()?,
        delivery_mode: body.delivery_mode.map(|m| m.as_str().to_owned()),
        enabled: body.enabled,
    };
    let old_target = from_db(row.target_guild_id);
    let row = ConnectorStore::new(state.db.clone())
        .update_mapping(row, changes)
        .await?;
    tracing::info!(tenant = %tenant_key, connector = %connector_id, mapping = row.id, "[admin/discord-bot] mapping updated");
    notify(
        &state,
        &tenant_key,
        &connector_id,
        &[old_target, from_db(row.target_guild_id)],
    )
    .await;
    Ok(HttpResponse::Ok().json(Mapping::from(row)))
}

#[utoipa::path(delete, path = "/api/v1/tenants/{tenant_key}/connectors/{connector_id}/mappings/{mapping_id}", tag = "mappings",
    params(("tenant_key" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("connector_id" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("mapping_id" = String, Path, pattern = "^[1-9][0-9]{0,17}$")),
    responses((status = 204), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
#[delete("/api/v1/tenants/{tenant_key}/connectors/{connector_id}/mappings/{mapping_id}")]
pub async fn delete_mapping(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String, String)>,
) -> AppResult<HttpResponse> {
    let (tenant_key, connector_id, mapping_id) = path.into_inner();
    let row = load_mapping(&state, &caller, &tenant_key, &connector_id, &mapping_id).await?;
    ConnectorStore::new(state.db.clone())
        .delete_mapping(row.id)
        .await?;
    tracing::info!(tenant = %tenant_key, connector = %connector_id, mapping = row.id, "[admin/discord-bot] mapping deleted");
    notify(
        &state,
        &tenant_key,
        &connector_id,
        &[from_db(row.target_guild_id)],
    )
    .await;
    Ok(HttpResponse::NoContent().finish())
}
