//! Servers of a connector (a target guild each): config, snapshot, refresh, events. Their
//! counted members are in [`super::seats`].

use std::collections::BTreeMap;

use actix_web::{delete, get, patch, post, put, web, HttpResponse};
use entities::{discord_server_configs, discord_server_seat_snapshots, seat_enforcement_events};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::{
    auth::Caller,
    connectors::{self, required},
    discord_checks::{self, Warning},
    openapi::ErrorBody,
    validate, AppState, DeleteQuery,
};
use crate::{
    actors::{
        seat_auditor::{AuditReason, AuditRequested},
        snapshot_cache::PolicyUpdated,
        ServerKey,
    },
    domain::{
        freshness::{Freshness, FreshnessWindows},
        gate::{EnforcementMode, OverrideMode},
        snowflake::from_db,
    },
    error::{AppError, AppResult, ErrorCode},
    store::{
        connectors::ConnectorStore,
        now_ms,
        servers::{policy_of, ServerConfigInput, ServerStore},
    },
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Off,
    Shadow,
    Enforce,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Override {
    None,
    Allow,
    Block,
}

/// Seat status chip of the connector workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SeatStatus {
    /// Fresh and at or under the limit.
    Ok,
    /// Fresh and over the limit.
    Over,
    /// No snapshot yet, or the last one is stale or expired.
    Pending,
    /// The last audit failed for good.
    Failed,
    /// A mapping targets this guild but it has no server config.
    Unconfigured,
}

#[derive(Serialize, ToSchema)]
pub struct ServerConfig {
    pub guild_id: String,
    pub seat_limit: i64,
    pub enforcement_mode: Mode,
    #[serde(rename = "override")]
    #[schema(rename = "override")]
    pub override_mode: Override,
    pub stale_grace: bool,
    /// Shown as "bronze".
    pub basic_role_id: Option<String>,
    /// Shown as "silver".
    pub advanced_role_id: Option<String>,
    /// Shown as "gold".
    pub pro_role_id: Option<String>,
    pub notify_channel_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Accepted, but worth knowing (`bot_not_in_guild`, `bot_cannot_post` for the notice
    /// channel). Only on the answer to a write.
    pub warnings: Vec<Warning>,
}

fn id_string(v: Option<i64>) -> Option<String> {
    v.map(|v| from_db(v).to_string())
}

impl From<&discord_server_configs::Model> for ServerConfig {
    fn from(r: &discord_server_configs::Model) -> Self {
        let policy = policy_of(r);
        Self {
            guild_id: from_db(r.guild_id).to_string(),
            seat_limit: r.seat_limit,
            enforcement_mode: match policy.mode {
                EnforcementMode::Off => Mode::Off,
                EnforcementMode::Shadow => Mode::Shadow,
                EnforcementMode::Enforce => Mode::Enforce,
            },
            override_mode: match policy.override_mode {
                OverrideMode::None => Override::None,
                OverrideMode::Allow => Override::Allow,
                OverrideMode::Block => Override::Block,
            },
            stale_grace: r.stale_grace,
            basic_role_id: id_string(r.basic_role_id),
            advanced_role_id: id_string(r.advanced_role_id),
            pro_role_id: id_string(r.pro_role_id),
            notify_channel_id: id_string(r.notify_channel_id),
            created_at: r.created_at,
            updated_at: r.updated_at,
            warnings: Vec::new(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct TierCounts {
    pub basic: i64,
    pub advanced: i64,
    pub pro: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotStatus {
    Fresh,
    Stale,
    Expired,
}

#[derive(Serialize, ToSchema)]
pub struct Snapshot {
    pub seats_used: i64,
    pub seat_limit: i64,
    pub is_over_limit: bool,
    /// Epoch milliseconds.
    pub checked_at: i64,
    pub next_check_after: i64,
    /// Judged now from `checked_at` and the configured windows; `expired` when the stored
    /// snapshot says so (a failed audit).
    pub status: SnapshotStatus,
    /// A stable error code (`seat_audit_failed`, ...), when the last audit had one;
    /// `seat_check_pending` while the member list is still arriving.
    pub last_error: Option<String>,
    pub tiers: TierCounts,
    /// While the member list is still arriving (a large guild at connect, a recount under
    /// way): how far the count has got. `seats_used` is the last complete count meanwhile.
    pub counting: Option<Counting>,
}

#[derive(Serialize, ToSchema)]
pub struct Counting {
    pub members_counted: i64,
    /// Discord's member count, when known.
    pub member_count: Option<i64>,
}

fn snapshot_status(
    row: &discord_server_seat_snapshots::Model,
    windows: &FreshnessWindows,
    now: i64,
) -> Freshness {
    let live = windows.classify(row.checked_at, now);
    match Freshness::parse(&row.status) {
        Some(Freshness::Expired) => Freshness::Expired,
        _ => live,
    }
}

impl Snapshot {
    fn from_row(
        row: &discord_server_seat_snapshots::Model,
        windows: &FreshnessWindows,
        now: i64,
    ) -> Self {
        Self {
            seats_used: row.seats_used,
            seat_limit: row.seat_limit,
            is_over_limit: row.is_over_limit,
            checked_at: row.checked_at,
            next_check_after: row.next_check_after,
            status: match snapshot_status(row, windows, now) {
                Freshness::Fresh => SnapshotStatus::Fresh,
                Freshness::Stale => SnapshotStatus::Stale,
                Freshness::Expired => SnapshotStatus::Expired,
            },
            last_error: row.last_error.clone(),
            tiers: TierCounts {
                basic: row.basic_count,
                advanced: row.advanced_count,
                pro: row.pro_count,
            },
            counting: row.members_counted.map(|members_counted| Counting {
                members_counted,
                member_count: row.member_count,
            }),
        }
    }
}

/// The chip: failed beats everything, then missing/stale/expired is pending, then over/ok.
pub fn seat_status(
    configured: bool,
    snapshot: Option<&discord_server_seat_snapshots::Model>,
    windows: &FreshnessWindows,
    now: i64,
) -> SeatStatus {
    if !configured {
        return SeatStatus::Unconfigured;
    }
    let Some(s) = snapshot else {
        return SeatStatus::Pending;
    };
    // The auditor writes `seat_audit_failed: <cause>` or `bot_not_in_guild: <cause>`.
    if s.last_error.as_deref().is_some_and(|e| {
        e.starts_with(ErrorCode::SeatAuditFailed.as_str())
            || e.starts_with(ErrorCode::BotNotInGuild.as_str())
    }) {
        return SeatStatus::Failed;
    }
    if snapshot_status(s, windows, now) != Freshness::Fresh {
        return SeatStatus::Pending;
    }
    if s.seats_used > s.seat_limit {
        SeatStatus::Over
    } else {
        SeatStatus::Ok
    }
}

#[derive(Serialize, ToSchema)]
pub struct Server {
    pub guild_id: String,
    /// The guild's name, when the bot is in it.
    pub guild_name: Option<String>,
    pub seat_status: SeatStatus,
    pub config: Option<ServerConfig>,
    pub snapshot: Option<Snapshot>,
}

#[derive(Serialize, ToSchema)]
pub struct ServerList {
    pub items: Vec<Server>,
}

/// A field that is there, `null` included (`Some(Value::Null)`); absent is `None`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// Body of `PUT .../servers/{guild_id}`: the whole config, every field given (`null` for no
/// role or no notice channel); one left out is 422 `field_required` (`seat_limit_required`
/// for the limit). Ids are strings; blank role ids mean none.
#[derive(Deserialize, ToSchema)]
pub struct PutServerConfig {
    /// A whole number >= 0.
    #[schema(value_type = i64, minimum = 0, required = true)]
    #[serde(default, deserialize_with = "present")]
    pub seat_limit: Option<Value>,
    #[schema(required = true)]
    pub enforcement_mode: Option<Mode>,
    #[serde(rename = "override")]
    #[schema(rename = "override", required = true)]
    pub override_mode: Option<Override>,
    #[schema(required = true)]
    pub stale_grace: Option<bool>,
    #[schema(value_type = Option<String>, pattern = "^\\s*([1-9][0-9]{0,18})?\\s*$", required = true)]
    #[serde(default, deserialize_with = "present")]
    pub basic_role_id: Option<Value>,
    #[schema(value_type = Option<String>, pattern = "^\\s*([1-9][0-9]{0,18})?\\s*$", required = true)]
    #[serde(default, deserialize_with = "present")]
    pub advanced_role_id: Option<Value>,
    #[schema(value_type = Option<String>, pattern = "^\\s*([1-9][0-9]{0,18})?\\s*$", required = true)]
    #[serde(default, deserialize_with = "present")]
    pub pro_role_id: Option<Value>,
    #[schema(value_type = Option<String>, pattern = "^\\s*([1-9][0-9]{0,18})?\\s*$", required = true)]
    #[serde(default, deserialize_with = "present")]
    pub notify_channel_id: Option<Value>,
}

/// Body of `PATCH .../servers/{guild_id}`: only the fields given change (`null` clears a
/// role or the notice channel).
#[derive(Deserialize, ToSchema)]
pub struct PatchServerConfig {
    #[schema(value_type = Option<i64>, minimum = 0)]
    #[serde(default, deserialize_with = "present")]
    pub seat_limit: Option<Value>,
    pub enforcement_mode: Option<Mode>,
    #[serde(rename = "override")]
    #[schema(rename = "override")]
    pub override_mode: Option<Override>,
    pub stale_grace: Option<bool>,
    #[schema(value_type = Option<String>, pattern = "^\\s*([1-9][0-9]{0,18})?\\s*$")]
    #[serde(default, deserialize_with = "present")]
    pub basic_role_id: Option<Value>,
    #[schema(value_type = Option<String>, pattern = "^\\s*([1-9][0-9]{0,18})?\\s*$")]
    #[serde(default, deserialize_with = "present")]
    pub advanced_role_id: Option<Value>,
    #[schema(value_type = Option<String>, pattern = "^\\s*([1-9][0-9]{0,18})?\\s*$")]
    #[serde(default, deserialize_with = "present")]
    pub pro_role_id: Option<Value>,
    #[schema(value_type = Option<String>, pattern = "^\\s*([1-9][0-9]{0,18})?\\s*$")]
    #[serde(default, deserialize_with = "present")]
    pub notify_channel_id: Option<Value>,
}

fn mode_of(m: Mode) -> EnforcementMode {
    match m {
        Mode::Off => EnforcementMode::Off,
        Mode::Shadow => EnforcementMode::Shadow,
        Mode::Enforce => EnforcementMode::Enforce,
    }
}

fn override_of(o: Override) -> OverrideMode {
    match o {
        Override::None => OverrideMode::None,
        Override::Allow => OverrideMode::Allow,
        Override::Block => OverrideMode::Block,
    }
}

impl PutServerConfig {
    fn validate(&self) -> AppResult<ServerConfigInput> {
        let id = |field: &str, v: &Option<Value>| -> AppResult<Option<u64>> {
            validate::optional_snowflake(field, Some(required(field, v.as_ref())?))
        };
        Ok(ServerConfigInput {
            seat_limit: validate::seat_limit(self.seat_limit.as_ref())?,
            mode: mode_of(required("enforcement_mode", self.enforcement_mode)?),
            override_mode: override_of(required("override", self.override_mode)?),
            stale_grace: required("stale_grace", self.stale_grace)?,
            basic_role_id: id("basic_role_id", &self.basic_role_id)?,
            advanced_role_id: id("advanced_role_id", &self.advanced_role_id)?,
            pro_role_id: id("pro_role_id", &self.pro_role_id)?,
            notify_channel_id: id("notify_channel_id", &self.notify_channel_id)?,
        })
    }
}

impl PatchServerConfig {
    /// The config after this patch.
    fn apply(&self, old: ServerConfigInput) -> AppResult<ServerConfigInput> {
        let id = |field: &str, v: &Option<Value>, old: Option<u64>| -> AppResult<Option<u64>> {
            match v {
                None => Ok(old),
                Some(v) => validate::optional_snowflake(field, Some(v)),
            }
        };
        Ok(ServerConfigInput {
            seat_limit: match &self.seat_limit {
                None => old.seat_limit,
                Some(v) => validate::seat_limit(Some(v))?,
            },
            mode: self.enforcement_mode.map_or(old.mode, mode_of),
            override_mode: self.override_mode.map_or(old.override_mode, override_of),
            stale_grace: self.stale_grace.unwrap_or(old.stale_grace),
            basic_role_id: id("basic_role_id", &self.basic_role_id, old.basic_role_id)?,
            advanced_role_id: id(
                "advanced_role_id",
                &self.advanced_role_id,
                old.advanced_role_id,
            )?,
            pro_role_id: id("pro_role_id", &self.pro_role_id, old.pro_role_id)?,
            notify_channel_id: id(
                "notify_channel_id",
                &self.notify_channel_id,
                old.notify_channel_id,
            )?,
        })
    }
}

#[derive(Serialize, ToSchema)]
pub struct AuditAccepted {
    pub job_id: i64,
    /// True when an audit of this server was already pending or running and was reused.
    pub deduped: bool,
}

#[derive(Serialize, ToSchema)]
pub struct EnforcementEvent {
    pub id: i64,
    /// `under`, `over` or `unknown`.
    pub from_state: String,
    pub to_state: String,
    pub seats_used: i64,
    pub seat_limit: i64,
    /// Epoch milliseconds.
    pub at: i64,
    pub cause: String,
}

impl From<seat_enforcement_events::Model> for EnforcementEvent {
    fn from(r: seat_enforcement_events::Model) -> Self {
        Self {
            id: r.id,
            from_state: r.from_state,
            to_state: r.to_state,
            seats_used: r.seats_used,
            seat_limit: r.seat_limit,
            at: r.at,
            cause: r.cause,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct EventList {
    /// Newest first.
    pub items: Vec<EnforcementEvent>,
    /// Pass as `before` for the next page; absent on the last page.
    pub next_before: Option<i64>,
}

#[derive(Deserialize, IntoParams)]
pub struct PageQuery {
    /// 1 to 500, default 100.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// Only rows with an id below this one.
    #[param(minimum = 1)]
    pub before: Option<i64>,
}

/// Validates the path, checks reach and the connector, and builds the server key.
pub(super) async fn server_key(
    state: &AppState,
    caller: &Caller,
    path: (String, String, String),
) -> AppResult<ServerKey> {
    let (tenant_key, connector_id, guild_id) = path;
    connectors::load(state, caller, &tenant_key, &connector_id).await?;
    let guild_id = validate::guild_id("guild_id", &guild_id)?;
    Ok(ServerKey {
        tenant_key,
        connector_id,
        guild_id,
    })
}

/// [`server_key`] for the pause/resume history: the operator reads it after the connector
/// was deleted too (it is kept for the retention period).
pub(super) async fn history_key(
    state: &AppState,
    caller: &Caller,
    path: (String, String, String),
) -> AppResult<ServerKey> {
    let (tenant_key, connector_id, guild_id) = path;
    if *caller != Caller::Operator {
        return server_key(state, caller, (tenant_key, connector_id, guild_id)).await;
    }
    validate::tenant_key(&tenant_key)?;
    validate::connector_id(&connector_id)?;
    ConnectorStore::new(state.db.clone())
        .get_any(&tenant_key, &connector_id)
        .await?
        .ok_or_else(|| AppError::new(ErrorCode::NotFound, "connector not found"))?;
    let guild_id = validate::guild_id("guild_id", &guild_id)?;
    Ok(ServerKey {
        tenant_key,
        connector_id,
        guild_id,
    })
}

pub(super) async fn require_config(
    state: &AppState,
    key: &ServerKey,
) -> AppResult<discord_server_configs::Model> {
    ServerStore::new(state.db.clone())
        .config(key)
        .await?
        .ok_or_else(|| AppError::new(ErrorCode::NotFound, "server config not found"))
}

async fn request_audit_for(
    state: &AppState,
    key: &ServerKey,
    reason: AuditReason,
) -> AppResult<crate::store::queue::Enqueued> {
    state
        .actors
        .audit
        .send(AuditRequested {
            key: key.clone(),
            reason,
        })
        .await
        .map_err(|err| {
            AppError::new(ErrorCode::Internal, "the seat auditor is not running").with_source(err)
        })?
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant_key}/connectors/{connector_id}/servers", tag = "servers",
    params(("tenant_key" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("connector_id" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$")),
    responses((status = 200, body = ServerList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
#[get("/api/v1/tenants/{tenant_key}/connectors/{connector_id}/servers")]
pub async fn list_servers(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> AppResult<HttpResponse> {
    let (tenant_key, connector_id) = path.into_inner();
    connectors::load(&state, &caller, &tenant_key, &connector_id).await?;
    let store = ServerStore::new(state.db.clone());
    let configs = store.configs(&tenant_key, &connector_id).await?;
    let snapshots = store.snapshots(&tenant_key, &connector_id).await?;
    let mappings = ConnectorStore::new(state.db.clone())
        .mappings(&tenant_key, &connector_id)
        .await?;
    // Every guild that has a config or is the target of a mapping, in Discord order.
    let mut guilds: BTreeMap<u64, (Option<&discord_server_configs::Model>, Option<_>)> =
        BTreeMap::new();
    for m in &mappings {
        guilds.entry(from_db(m.target_guild_id)).or_default();
    }
    for c in &configs {
        guilds.entry(from_db(c.guild_id)).or_default().0 = Some(c);
    }
    for s in &snapshots {
        if let Some(entry) = guilds.get_mut(&from_db(s.guild_id)) {
            entry.1 = Some(s);
        }
    }
    let now = now_ms();
    let items = guilds
        .into_iter()
        .map(|(guild_id, (config, snapshot))| Server {
            guild_id: guild_id.to_string(),
            guild_name: state.directory.guild_name(guild_id),
            seat_status: seat_status(config.is_some(), snapshot, &state.windows, now),
            config: config.map(ServerConfig::from),
            snapshot: snapshot.map(|s| Snapshot::from_row(s, &state.windows, now)),
        })
        .collect();
    Ok(HttpResponse::Ok().json(ServerList { items }))
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant_key}/connectors/{connector_id}/servers/{guild_id}", tag = "servers",
    params(("tenant_key" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("connector_id" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("guild_id" = String, Path, pattern = "^[1-9][0-9]{0,18}$")),
    responses((status = 200, body = ServerConfig), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
#[get("/api/v1/tenants/{tenant_key}/connectors/{connector_id}/servers/{guild_id}")]
pub async fn get_server(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String, String)>,
) -> AppResult<HttpResponse> {
    let key = server_key(&state, &caller, path.into_inner()).await?;
    let row = require_config(&state, &key).await?;
    let mut body = ServerConfig::from(&row);
    body.warnings = standing_warnings(&state, &row);
    Ok(HttpResponse::Ok().json(body))
}

#[utoipa::path(put, path = "/api/v1/tenants/{tenant_key}/connectors/{connector_id}/servers/{guild_id}", tag = "servers",
    params(("tenant_key" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("connector_id" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("guild_id" = String, Path, pattern = "^[1-9][0-9]{0,18}$")),
    request_body = PutServerConfig,
    responses((status = 200, description = "updated", body = ServerConfig),
        (status = 201, description = "created", body = ServerConfig), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)),
    security(("bearer" = [])))]
#[put("/api/v1/tenants/{tenant_key}/connectors/{connector_id}/servers/{guild_id}")]
pub async fn put_server(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String, String)>,
    body: web::Json<PutServerConfig>,
) -> AppResult<HttpResponse> {
    let key = server_key(&state, &caller, path.into_inner()).await?;
    let input = body.validate()?;
    save(&state, &key, &input).await
}

#[utoipa::path(patch, path = "/api/v1/tenants/{tenant_key}/connectors/{connector_id}/servers/{guild_id}", tag = "servers",
    params(("tenant_key" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("connector_id" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("guild_id" = String, Path, pattern = "^[1-9][0-9]{0,18}$")),
    request_body = PatchServerConfig,
    responses((status = 200, description = "updated", body = ServerConfig), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
#[patch("/api/v1/tenants/{tenant_key}/connectors/{connector_id}/servers/{guild_id}")]
pub async fn patch_server(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String, String)>,
    body: web::Json<PatchServerConfig>,
) -> AppResult<HttpResponse> {
    let key = server_key(&state, &caller, path.into_inner()).await?;
    let row = require_config(&state, &key).await?;
    let input = body.apply(input_of(&row))?;
    save(&state, &key, &input).await
}

/// The stored config as input, for a patch to change.
fn input_of(row: &discord_server_configs::Model) -> ServerConfigInput {
    let policy = policy_of(row);
    ServerConfigInput {
        seat_limit: row.seat_limit,
        mode: policy.mode,
        override_mode: policy.override_mode,
        stale_grace: row.stale_grace,
        basic_role_id: row.basic_role_id.map(from_db),
        advanced_role_id: row.advanced_role_id.map(from_db),
        pro_role_id: row.pro_role_id.map(from_db),
        notify_channel_id: row.notify_channel_id.map(from_db),
    }
}

/// What still stands against a stored config, from what the gateway told (no REST call on a
/// read): the bot left the guild, or cannot post in the notice channel.
fn standing_warnings(
    state: &AppState,
    row: &entities::discord_server_configs::Model,
) -> Vec<Warning> {
    let guild_id = from_db(row.guild_id);
    if !state.directory.has_guild(guild_id) {
        if !state.shards.carries(guild_id) {
            // Another process runs its shard and knows.
            return Vec::new();
        }
        return vec![Warning {
            code: ErrorCode::BotNotInGuild.as_str().to_owned(),
            message: format!(
                "the bot is not in guild {guild_id}, or has not received it from Discord yet"
            ),
        }];
    }
    row.notify_channel_id
        .map(from_db)
        .and_then(|channel| {
            discord_checks::can_post(
                state,
                "notify_channel_id",
                channel,
                crate::discord::directory::PostMode::Bot,
            )
        })
        .into_iter()
        .collect()
}

/// Checks the notice channel against Discord, saves the config, updates the gate's policy
/// before answering and asks for a recount.
async fn save(
    state: &AppState,
    key: &ServerKey,
    input: &ServerConfigInput,
) -> AppResult<HttpResponse> {
    let mut warnings = Vec::new();
    if !state.directory.has_guild(key.guild_id) && state.shards.carries(key.guild_id) {
        warnings.push(Warning {
            code: ErrorCode::BotNotInGuild.as_str().to_owned(),
            message: format!(
                "the bot is not in guild {}, or has not received it from Discord yet: nothing is counted or delivered there until it is",
                key.guild_id
            ),
        });
    } else if let Some(channel) = input.notify_channel_id {
        discord_checks::channel_in_guild(state, "notify_channel_id", channel, key.guild_id).await?;
        warnings.extend(discord_checks::can_post(
            state,
            "notify_channel_id",
            channel,
            crate::discord::directory::PostMode::Bot,
        ));
    }
    let (row, created) = ServerStore::new(state.db.clone())
        .upsert_config(key, input)
        .await?;
    tracing::info!(
        server = %key,
        seat_limit = input.seat_limit,
        mode = input.mode.as_str(),
        override_mode = input.override_mode.as_str(),
        stale_grace = input.stale_grace,
        created,
        "[admin/discord-bot] server config saved"
    );
    // The gate reads the policy from the cache: update it before answering.
    state
        .actors
        .policy
        .send(PolicyUpdated {
            key: key.clone(),
            policy: Some(policy_of(&row)),
        })
        .await
        .map_err(|err| {
            AppError::new(ErrorCode::Internal, "the snapshot cache is not running").with_source(err)
        })?;
    let job = request_audit_for(state, key, AuditReason::ConfigChanged).await?;
    tracing::info!(server = %key, job = job.id, deduped = job.deduped, "[admin/discord-bot] audit requested after config change");
    let mut body = ServerConfig::from(&row);
    body.warnings = warnings;
    Ok(if created {
        HttpResponse::Created().json(body)
    } else {
        HttpResponse::Ok().json(body)
    })
}

#[utoipa::path(delete, path = "/api/v1/tenants/{tenant_key}/connectors/{connector_id}/servers/{guild_id}", tag = "servers",
    params(("tenant_key" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("connector_id" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("guild_id" = String, Path, pattern = "^[1-9][0-9]{0,18}$"), DeleteQuery),
    responses((status = 204), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
#[delete("/api/v1/tenants/{tenant_key}/connectors/{connector_id}/servers/{guild_id}")]
pub async fn delete_server(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String, String)>,
    query: web::Query<DeleteQuery>,
) -> AppResult<HttpResponse> {
    let key = server_key(&state, &caller, path.into_inner()).await?;
    if !ServerStore::new(state.db.clone())
        .delete_config(&key, query.purge())
        .await?
    {
        return Err(AppError::new(
            ErrorCode::NotFound,
            "server config not found",
        ));
    }
    tracing::info!(server = %key, "[admin/discord-bot] server config cleared");
    state
        .actors
        .policy
        .send(PolicyUpdated {
            key: key.clone(),
            policy: None,
        })
        .await
        .map_err(|err| {
            AppError::new(ErrorCode::Internal, "the snapshot cache is not running").with_source(err)
        })?;
    // The auditor learns the server is gone on its next look (it drops the index).
    let job = request_audit_for(&state, &key, AuditReason::ConfigChanged).await?;
    tracing::info!(server = %key, job = job.id, deduped = job.deduped, "[admin/discord-bot] audit requested after config removal");
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant_key}/connectors/{connector_id}/servers/{guild_id}/snapshot", tag = "servers",
    params(("tenant_key" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("connector_id" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("guild_id" = String, Path, pattern = "^[1-9][0-9]{0,18}$")),
    responses((status = 200, body = Snapshot), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "`seat_snapshot_missing` when the server has not been counted yet", body = ErrorBody)),
    security(("bearer" = [])))]
#[get("/api/v1/tenants/{tenant_key}/connectors/{connector_id}/servers/{guild_id}/snapshot")]
pub async fn get_snapshot(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String, String)>,
) -> AppResult<HttpResponse> {
    let key = server_key(&state, &caller, path.into_inner()).await?;
    let row = ServerStore::new(state.db.clone())
        .snapshot(&key)
        .await?
        .ok_or_else(|| {
            AppError::new(
                ErrorCode::SeatSnapshotMissing,
                "this server has not been counted yet; request a refresh",
            )
        })?;
    Ok(HttpResponse::Ok().json(Snapshot::from_row(&row, &state.windows, now_ms())))
}

#[utoipa::path(post, path = "/api/v1/tenants/{tenant_key}/connectors/{connector_id}/servers/{guild_id}/audit", tag = "servers",
    params(("tenant_key" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("connector_id" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("guild_id" = String, Path, pattern = "^[1-9][0-9]{0,18}$")),
    responses((status = 202, body = AuditAccepted), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
#[post("/api/v1/tenants/{tenant_key}/connectors/{connector_id}/servers/{guild_id}/audit")]
pub async fn request_audit(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String, String)>,
) -> AppResult<HttpResponse> {
    let key = server_key(&state, &caller, path.into_inner()).await?;
    require_config(&state, &key).await?;
    let job = request_audit_for(&state, &key, AuditReason::AdminRefresh).await?;
    tracing::info!(server = %key, job = job.id, deduped = job.deduped, "[admin/discord-bot] refresh requested");
    Ok(HttpResponse::Accepted().json(AuditAccepted {
        job_id: job.id,
        deduped: job.deduped,
    }))
}

pub(super) fn page_limit(q: &PageQuery) -> AppResult<u64> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) || q.before.is_some_and(|b| b < 1) {
        return Err(AppError::new(
            ErrorCode::ValidationFailed,
            "limit must be 1 to 500 and before a positive id",
        ));
    }
    Ok(u64::from(limit))
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant_key}/connectors/{connector_id}/servers/{guild_id}/events", tag = "servers",
    params(("tenant_key" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("connector_id" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("guild_id" = String, Path, pattern = "^[1-9][0-9]{0,18}$"), PageQuery),
    responses((status = 200, body = EventList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
#[get("/api/v1/tenants/{tenant_key}/connectors/{connector_id}/servers/{guild_id}/events")]
pub async fn list_events(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String, String)>,
    query: web::Query<PageQuery>,
) -> AppResult<HttpResponse> {
    let key = history_key(&state, &caller, path.into_inner()).await?;
    let limit = page_limit(&query)?;
    let rows = ServerStore::new(state.db.clone())
        .events(&key, limit, query.before)
        .await?;
    let next_before = if rows.len() as u64 == limit {
        rows.last().map(|r| r.id)
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(EventList {
        items: rows.into_iter().map(EnforcementEvent::from).collect(),
        next_before,
    }))
}
