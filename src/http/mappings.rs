//! Mappings of a connector: source channel -> target channel in a target guild. A change
//! asks the auditor to recount the target server(s) and wakes the gate.

use actix_web::{delete, get, patch, post, put, web, HttpResponse};
use entities::connector_mappings;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    auth::Caller,
    connectors::{self, required},
    discord_checks::{self, Warning},
    openapi::ErrorBody,
    validate, AppState, DeleteQuery,
};
use crate::{
    actors::{
        mirror_gate::{HeldJobsMayResume, Wake},
        seat_auditor::{AuditReason, AuditRequested},
        ServerKey,
    },
    discord::directory::PostMode,
    domain::snowflake::from_db,
    error::{AppError, AppResult, ErrorCode},
    store::{
        connectors::{ConnectorStore, MappingChanges, NewMapping},
        mirror::HeldScope,
    },
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
    /// Names, when the bot is in the guilds.
    pub source_channel_name: Option<String>,
    pub target_guild_name: Option<String>,
    pub target_channel_name: Option<String>,
    /// `bot` or `webhook`.
    pub delivery_mode: String,
    pub enabled: bool,
    /// True when Discord answered a permanent error for this target; `broken_code` says which.
    pub broken: bool,
    pub broken_code: Option<String>,
    pub broken_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Accepted, but worth knowing: `bot_cannot_post` when the bot lacks the permissions to
    /// deliver there. Only on the answer to a write.
    pub warnings: Vec<Warning>,
}

impl Mapping {
    fn named(mut self, directory: &crate::discord::directory::GuildDirectory) -> Self {
        let id = |text: &str| text.parse::<u64>().ok();
        self.source_channel_name =
            id(&self.source_channel_id).and_then(|c| directory.channel_name(c));
        self.target_guild_name = id(&self.target_guild_id).and_then(|g| directory.guild_name(g));
        self.target_channel_name =
            id(&self.target_channel_id).and_then(|c| directory.channel_name(c));
        self
    }
}

impl From<connector_mappings::Model> for Mapping {
    fn from(r: connector_mappings::Model) -> Self {
        Self {
            mapping_id: r.id,
            source_channel_id: from_db(r.source_channel_id).to_string(),
            target_guild_id: from_db(r.target_guild_id).to_string(),
            target_channel_id: from_db(r.target_channel_id).to_string(),
            source_channel_name: None,
            target_guild_name: None,
            target_channel_name: None,
            delivery_mode: r.delivery_mode,
            enabled: r.enabled,
            broken: r.broken_code.is_some(),
            broken_code: r.broken_code,
            broken_at: r.broken_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
            warnings: Vec::new(),
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

/// Body of `PUT .../mappings/{mapping_id}`: the whole mapping; a field left out is 422
/// `field_required`.
#[derive(Deserialize, ToSchema)]
pub struct PutMapping {
    #[schema(pattern = "^[1-9][0-9]{0,18}$", required = true)]
    pub source_channel_id: Option<String>,
    #[schema(pattern = "^[1-9][0-9]{0,18}$", required = true)]
    pub target_guild_id: Option<String>,
    #[schema(pattern = "^[1-9][0-9]{0,18}$", required = true)]
    pub target_channel_id: Option<String>,
    #[schema(required = true)]
    pub delivery_mode: Option<DeliveryMode>,
    #[schema(required = true)]
    pub enabled: Option<bool>,
}

/// Body of `PATCH .../mappings/{mapping_id}`: only the fields given change.
#[derive(Deserialize, ToSchema)]
pub struct PatchMapping {
    #[schema(pattern = "^[1-9][0-9]{0,18}$")]
    pub source_channel_id: Option<String>,
    #[schema(pattern = "^[1-9][0-9]{0,18}$")]
    pub target_guild_id: Option<String>,
    #[schema(pattern = "^[1-9][0-9]{0,18}$")]
    pub target_channel_id: Option<String>,
    pub delivery_mode: Option<DeliveryMode>,
    pub enabled: Option<bool>,
}

/// The Discord ids of a mapping as it will be, checked: not its own source, the source
/// channel in the connector's source guild, the target channel in the target guild. Answers
/// the warnings (the bot cannot post there).
async fn check(
    state: &AppState,
    source_guild: u64,
    source_channel: u64,
    target_guild: u64,
    target_channel: u64,
    mode: &str,
) -> AppResult<Vec<Warning>> {
    if source_channel == target_channel {
        return Err(AppError::new(
            ErrorCode::MappingLoop,
            format!("target_channel_id: channel {target_channel} is this mapping's own source"),
        ));
    }
    discord_checks::channel_in_guild(state, "source_channel_id", source_channel, source_guild)
        .await?;
    discord_checks::channel_in_guild(state, "target_channel_id", target_channel, target_guild)
        .await?;
    let post = if mode == "webhook" {
        PostMode::Webhook
    } else {
        PostMode::Bot
    };
    Ok(
        discord_checks::can_post(state, "target_channel_id", target_channel, post)
            .into_iter()
            .collect(),
    )
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
        items: rows
            .into_iter()
            .map(|r| Mapping::from(r).named(&state.directory))
            .collect(),
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
    let connector = connectors::load(&state, &caller, &tenant_key, &connector_id).await?;
    let body = body.into_inner();
    let new = NewMapping {
        source_channel_id: validate::snowflake("source_channel_id", &body.source_channel_id)?,
        target_guild_id: validate::guild_id("target_guild_id", &body.target_guild_id)?,
        target_channel_id: validate::snowflake("target_channel_id", &body.target_channel_id)?,
        delivery_mode: body.delivery_mode.unwrap_or_default().as_str().to_owned(),
    };
    let warnings = check(
        &state,
        from_db(connector.source_guild_id),
        new.source_channel_id,
        new.target_guild_id,
        new.target_channel_id,
        &new.delivery_mode,
    )
    .await?;
    let target = new.target_guild_id;
    let row = ConnectorStore::new(state.db.clone())
        .create_mapping(&tenant_key, &connector_id, new)
        .await?;
    tracing::info!(tenant = %tenant_key, connector = %connector_id, mapping = row.id, "[admin/discord-bot] mapping created");
    notify(&state, &tenant_key, &connector_id, &[target]).await;
    let mut body = Mapping::from(row).named(&state.directory);
    body.warnings = warnings;
    Ok(HttpResponse::Created().json(body))
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
    Ok(HttpResponse::Ok().json(Mapping::from(row).named(&state.directory)))
}

#[utoipa::path(put, path = "/api/v1/tenants/{tenant_key}/connectors/{connector_id}/mappings/{mapping_id}", tag = "mappings",
    params(("tenant_key" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("connector_id" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("mapping_id" = String, Path, pattern = "^[1-9][0-9]{0,17}$")),
    request_body = PutMapping,
    responses((status = 200, body = Mapping), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
#[put("/api/v1/tenants/{tenant_key}/connectors/{connector_id}/mappings/{mapping_id}")]
pub async fn put_mapping(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String, String)>,
    body: web::Json<PutMapping>,
) -> AppResult<HttpResponse> {
    let (tenant_key, connector_id, mapping_id) = path.into_inner();
    let row = load_mapping(&state, &caller, &tenant_key, &connector_id, &mapping_id).await?;
    let body = body.into_inner();
    let changes = MappingChanges {
        source_channel_id: Some(validate::snowflake(
            "source_channel_id",
            &required("source_channel_id", body.source_channel_id)?,
        )?),
        target_guild_id: Some(validate::guild_id(
            "target_guild_id",
            &required("target_guild_id", body.target_guild_id)?,
        )?),
        target_channel_id: Some(validate::snowflake(
            "target_channel_id",
            &required("target_channel_id", body.target_channel_id)?,
        )?),
        delivery_mode: Some(
            required("delivery_mode", body.delivery_mode)?
                .as_str()
                .to_owned(),
        ),
        enabled: Some(required("enabled", body.enabled)?),
    };
    change(&state, &caller, row, changes).await
}

#[utoipa::path(patch, path = "/api/v1/tenants/{tenant_key}/connectors/{connector_id}/mappings/{mapping_id}", tag = "mappings",
    params(("tenant_key" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("connector_id" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("mapping_id" = String, Path, pattern = "^[1-9][0-9]{0,17}$")),
    request_body = PatchMapping,
    responses((status = 200, body = Mapping), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
#[patch("/api/v1/tenants/{tenant_key}/connectors/{connector_id}/mappings/{mapping_id}")]
pub async fn patch_mapping(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String, String)>,
    body: web::Json<PatchMapping>,
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
    change(&state, &caller, row, changes).await
}

/// Applies a mapping change after checking what it will be. A mapping enabled again lets its
/// held jobs go; one moved to another channel posts there through a webhook of that channel.
async fn change(
    state: &AppState,
    caller: &Caller,
    row: connector_mappings::Model,
    changes: MappingChanges,
) -> AppResult<HttpResponse> {
    let (tenant_key, connector_id) = (row.tenant_key.clone(), row.connector_id.clone());
    let connector = connectors::load(state, caller, &tenant_key, &connector_id).await?;
    let source = changes
        .source_channel_id
        .unwrap_or(from_db(row.source_channel_id));
    let target_guild = changes
        .target_guild_id
        .unwrap_or(from_db(row.target_guild_id));
    let target = changes
        .target_channel_id
        .unwrap_or(from_db(row.target_channel_id));
    let mode = changes
        .delivery_mode
        .clone()
        .unwrap_or(row.delivery_mode.clone());
    let warnings = check(
        state,
        from_db(connector.source_guild_id),
        source,
        target_guild,
        target,
        &mode,
    )
    .await?;
    let old_target = from_db(row.target_guild_id);
    let was_enabled = row.enabled;
    let row = ConnectorStore::new(state.db.clone())
        .update_mapping(row, changes)
        .await?;
    tracing::info!(tenant = %tenant_key, connector = %connector_id, mapping = row.id, enabled = row.enabled, "[admin/discord-bot] mapping updated");
    if row.enabled && !was_enabled {
        let _ = state
            .actors
            .release
            .send(HeldJobsMayResume(HeldScope::Mapping(row.id)))
            .await;
    }
    notify(
        state,
        &tenant_key,
        &connector_id,
        &[old_target, from_db(row.target_guild_id)],
    )
    .await;
    let mut body = Mapping::from(row).named(&state.directory);
    body.warnings = warnings;
    Ok(HttpResponse::Ok().json(body))
}

#[utoipa::path(delete, path = "/api/v1/tenants/{tenant_key}/connectors/{connector_id}/mappings/{mapping_id}", tag = "mappings",
    params(("tenant_key" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("connector_id" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("mapping_id" = String, Path, pattern = "^[1-9][0-9]{0,17}$"), DeleteQuery),
    responses((status = 204), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
#[delete("/api/v1/tenants/{tenant_key}/connectors/{connector_id}/mappings/{mapping_id}")]
pub async fn delete_mapping(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String, String)>,
    query: web::Query<DeleteQuery>,
) -> AppResult<HttpResponse> {
    let (tenant_key, connector_id, mapping_id) = path.into_inner();
    let row = load_mapping(&state, &caller, &tenant_key, &connector_id, &mapping_id).await?;
    ConnectorStore::new(state.db.clone())
        .delete_mapping(row.id, query.purge())
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
