//! `/api/v1/openapi.json`, generated from the handlers' `#[utoipa::path]` attributes.

use actix_web::{get, HttpResponse};
use serde::Serialize;
use utoipa::{
    openapi::security::{Http, HttpAuthScheme, SecurityScheme},
    Modify, OpenApi, ToSchema,
};

use super::{
    connectors, enforcement, failed_jobs, grants, guilds, mappings, metrics, queues, seats,
    servers, shards, tokens,
};

/// Every error: `{"error": {"code", "message"}}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code (`seat_limit_invalid`, `auth_required`, ...).
    pub code: String,
    pub message: String,
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "seatgate admin API", description = "Connectors, mappings, per-server seat limits and enforcement"),
    modifiers(&BearerAuth),
    paths(
        tokens::create_token, tokens::list_tokens, tokens::revoke_token,
        grants::list_source_guilds, grants::grant_source_guild, grants::revoke_source_guild,
        guilds::list_guilds, guilds::list_guild_channels, guilds::list_guild_roles,
        connectors::list_connectors, connectors::create_connector, connectors::get_connector,
        connectors::put_connector, connectors::patch_connector, connectors::delete_connector,
        mappings::list_mappings, mappings::create_mapping, mappings::get_mapping,
        mappings::put_mapping, mappings::patch_mapping, mappings::delete_mapping,
        servers::list_servers, servers::get_server, servers::put_server, servers::patch_server, servers::delete_server,
        servers::get_snapshot, servers::request_audit, seats::list_seats, seats::export_seats, servers::list_events,
        failed_jobs::list_failed_jobs,
        enforcement::get_enforcement, enforcement::put_enforcement,
        queues::get_queues, shards::get_shards, metrics::prometheus, openapi_json,
    ),
    components(schemas(ErrorBody, ErrorDetail))
)]
pub struct ApiDoc;

#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "This document", content_type = "application/json")))]
#[get("/api/v1/openapi.json")]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
