//! Admin HTTP surface: health probes, the admin API under `/api/v1`, `/metrics`, and the
//! admin page. One module per concern; every handler answers errors as
//! `{"error": {"code", "message"}}` with a stable code, never a bare 500 for bad input.

pub mod auth;
pub mod connectors;
pub mod discord_checks;
pub mod enforcement;
pub mod failed_jobs;
pub mod forward;
pub mod grants;
pub mod guilds;
pub mod health;
pub mod mappings;
pub mod metrics;
pub mod openapi;
pub mod page;
pub mod queues;
pub mod seats;
pub mod servers;
pub mod shards;
pub mod tokens;
pub mod validate;

use actix::Recipient;
use actix_web::{
    error::{JsonPayloadError, PathError, QueryPayloadError},
    web, HttpRequest, HttpResponse,
};

use std::sync::Arc;

use serde::Deserialize;
use utoipa::IntoParams;

use crate::{
    actors::{
        mirror_gate::{HeldJobsMayResume, Wake},
        seat_auditor::{AuditRequested, CountedSeats},
        snapshot_cache::{ConnectorState, KillSwitchSet, PolicyUpdated, SnapshotCache},
    },
    discord::{directory::GuildDirectory, port::DiscordPort},
    domain::freshness::FreshnessWindows,
    error::{AppError, ErrorCode},
    store::{
        queue::{AuditQueue, MirrorQueue},
        Database,
    },
};

/// Largest request body the admin API reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The actors the admin API talks to.
#[derive(Clone)]
pub struct ActorLinks {
    /// Seat auditor: recount a server.
    pub audit: Recipient<AuditRequested>,
    /// Seat auditor: a page of a server's counted members from its live index.
    pub seats: Recipient<CountedSeats>,
    /// Snapshot cache actor: a server's policy changed.
    pub policy: Recipient<PolicyUpdated>,
    /// Snapshot cache actor: the global kill switch changed.
    pub kill_switch: Recipient<KillSwitchSet>,
    /// Mirror gate: something changed that may unblock or create work.
    pub wake: Recipient<Wake>,
    /// Mirror gate: jobs held for a mapping enabled again may go.
    pub release: Recipient<HeldJobsMayResume>,
    /// Snapshot cache actor: a connector was enabled, disabled or deleted.
    pub connector_state: Recipient<ConnectorState>,
}

/// Shared state of every request handler.
#[derive(Clone)]
pub struct AppState {
    pub db: Database,
    pub cache: SnapshotCache,
    pub auth: auth::Authenticator,
    pub actors: ActorLinks,
    pub windows: FreshnessWindows,
    pub audit_queue: AuditQueue,
    pub mirror_queue: MirrorQueue,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// What the gateway told of the bot's guilds: checks the ids admins write.
    pub directory: GuildDirectory,
    /// The gateway shards this process runs.
    pub shards: crate::discord::shards::ShardStates,
    /// This process's worker id (its name on leases).
    pub worker_id: String,
    /// With shard leases: the way to the process that runs another shard's guild.
    pub forwarder: Option<forward::Forwarder>,
    /// Discord's REST API, for what the gateway did not tell (`None` without a token).
    pub discord: Option<Arc<dyn DiscordPort>>,
    /// Members' names for the rows shown, read over REST and kept briefly (`None` without a
    /// token).
    pub names: Option<crate::discord::member_names::MemberNames>,
    /// The ban guard's count of Discord's 401/403/429 answers (`None` without a token).
    pub invalid_requests: Option<Arc<crate::discord::invalid_guard::InvalidRequestGuard>>,
    /// When `/metrics` last read the queue depths and snapshots from the database: scrapes
    /// closer together than [`metrics::DB_READ_INTERVAL`] are answered from memory.
    pub metrics_read_at: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

/// `?purge=true` on a delete: remove the history and links at once instead of keeping them
/// for the retention period.
#[derive(Debug, Deserialize, IntoParams)]
pub struct DeleteQuery {
    pub purge: Option<bool>,
}

impl DeleteQuery {
    pub fn purge(&self) -> bool {
        self.purge.unwrap_or(false)
    }
}

/// Registers every route with its state and extractor configuration.
pub fn configure(state: AppState) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(web::Data::new(state))
            .app_data(json_config())
            .app_data(path_config())
            .app_data(query_config())
            .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
            .service(health::healthz)
            .service(health::readyz)
            .service(metrics::prometheus)
            .service(openapi::openapi_json)
            .service(tokens::create_token)
            .service(tokens::list_tokens)
            .service(tokens::revoke_token)
            .service(grants::list_source_guilds)
            .service(grants::grant_source_guild)
            .service(grants::revoke_source_guild)
            .service(guilds::list_guilds)
            .service(guilds::list_guild_channels)
            .service(guilds::list_guild_roles)
            .service(connectors::list_connectors)
            .service(connectors::create_connector)
            .service(connectors::get_connector)
            .service(connectors::put_connector)
            .service(connectors::patch_connector)
            .service(connectors::delete_connector)
            .service(mappings::list_mappings)
            .service(mappings::create_mapping)
            .service(mappings::get_mapping)
            .service(mappings::put_mapping)
            .service(mappings::patch_mapping)
            .service(mappings::delete_mapping)
            .service(servers::list_servers)
            .service(servers::get_server)
            .service(servers::put_server)
            .service(servers::patch_server)
            .service(servers::delete_server)
            .service(servers::get_snapshot)
            .service(servers::request_audit)
            .service(seats::list_seats)
            .service(seats::export_seats)
            .service(servers::list_events)
            .service(failed_jobs::list_failed_jobs)
            .service(enforcement::get_enforcement)
            .service(enforcement::put_enforcement)
            .service(queues::get_queues)
            .service(shards::get_shards)
            .service(page::index)
            .service(page::admin_index)
            .service(page::app_js)
            .service(page::style_css)
            .default_service(web::to(no_route));
    }
}

/// Message of the 404 for a path no route serves (tests tell it from "resource absent").
pub const NO_ROUTE: &str = "no such route";

async fn no_route(_req: HttpRequest) -> Result<HttpResponse, AppError> {
    Err(AppError::new(ErrorCode::NotFound, NO_ROUTE))
}

fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(MAX_BODY_BYTES)
        .error_handler(|err, _req| {
            let app = match &err {
                JsonPayloadError::Overflow { .. }
                | JsonPayloadError::OverflowKnownLength { .. } => AppError::new(
                    ErrorCode::PayloadTooLarge,
                    format!("request body is larger than {MAX_BODY_BYTES} bytes"),
                ),
                JsonPayloadError::ContentType => AppError::new(
                    ErrorCode::InvalidJson,
                    "request body must be JSON with Content-Type: application/json",
                ),
                JsonPayloadError::Deserialize(e) => AppError::new(
                    ErrorCode::InvalidJson,
                    format!("request body does not fit this route: {e}"),
                ),
                _ => AppError::new(ErrorCode::InvalidJson, "request body could not be read"),
            };
            app.into()
        })
}

fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err: PathError, _req| {
        AppError::new(ErrorCode::ValidationFailed, format!("bad path: {err}")).into()
    })
}

fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err: QueryPayloadError, _req| {
        AppError::new(
            ErrorCode::ValidationFailed,
            format!("bad query string: {err}"),
        )
        .into()
    })
}
