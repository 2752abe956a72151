//! Which process runs which gateway shard (operator only). With shard leases, from the lease
//! table and the heartbeats: every process answers the same. Without, the one process runs
//! every shard.

use actix_web::{get, web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::{auth::Caller, openapi::ErrorBody, AppState};
use crate::{
    error::AppResult,
    store::{live_instances::LiveInstances, shard_leases::ShardLeases},
};

#[derive(Serialize, ToSchema)]
pub struct ShardHolding {
    pub shard_id: u32,
    pub shard_total: u32,
    /// The worker id of the process running it; absent while it is free (between two
    /// processes).
    pub holder: Option<String>,
    /// Where the holder's admin API answers, when it told.
    pub holder_admin_url: Option<String>,
    /// Raised at every take: a process that lost the shard cannot write under it.
    pub epoch: i64,
    /// Milliseconds until the lease expires unless renewed (every second).
    pub expires_in_ms: i64,
    /// Held by the process that answered.
    pub this_process: bool,
}

#[derive(Serialize, ToSchema)]
pub struct ServiceInstance {
    pub worker_id: String,
    pub admin_url: Option<String>,
    /// Milliseconds since its last heartbeat (every 2 s; live under 10 s).
    pub last_seen_ms_ago: i64,
    pub live: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Shards {
    /// Shards are shared between processes through leases (`SEATGATE_SHARD_LEASES`).
    pub leased: bool,
    /// The worker id of the process that answered.
    pub answered_by: String,
    pub shards: Vec<ShardHolding>,
    /// The processes on this database (PostgreSQL; empty on SQLite).
    pub instances: Vec<ServiceInstance>,
}

#[utoipa::path(get, path = "/api/v1/shards", tag = "shards",
    responses((status = 200, body = Shards), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
#[get("/api/v1/shards")]
pub async fn get_shards(state: web::Data<AppState>, caller: Caller) -> AppResult<HttpResponse> {
    caller.require_operator()?;
    let me = state.worker_id.clone();
    let on_postgres = state.db.backend() == sea_orm::DatabaseBackend::Postgres;
    let instances = if on_postgres {
        LiveInstances::new(state.db.clone())
            .list()
            .await?
            .into_iter()
            .map(|(worker_id, admin_url, ago)| ServiceInstance {
                worker_id,
                admin_url,
                last_seen_ms_ago: ago,
                live: ago < crate::actors::instance_registry::LIVE_TTL.as_millis() as i64,
            })
            .collect()
    } else {
        Vec::new()
    };
    let leased = state.shards.is_leased();
    let shards = if leased {
        ShardLeases::new(state.db.clone())
            .list()
            .await?
            .into_iter()
            .map(|l| {
                let holder = l.held().then(|| l.holder.clone()).flatten();
                ShardHolding {
                    shard_id: l.shard_id,
                    shard_total: l.shard_total,
                    holder_admin_url: holder.as_ref().and_then(|h| {
                        instances
                            .iter()
                            .find(|i: &&ServiceInstance| &i.worker_id == h)
                            .and_then(|i| i.admin_url.clone())
                    }),
                    this_process: holder.as_deref() == Some(me.as_str()),
                    holder,
                    epoch: l.epoch,
                    expires_in_ms: l.expires_in_ms.max(0),
                }
            })
            .collect()
    } else {
        state
            .shards
            .list()
            .into_iter()
            .map(|s| ShardHolding {
                shard_id: s.id,
                shard_total: s.total,
                holder: Some(me.clone()),
                holder_admin_url: None,
                epoch: 0,
                expires_in_ms: 0,
                this_process: true,
            })
            .collect()
    };
    Ok(HttpResponse::Ok().json(Shards {
        leased,
        answered_by: me,
        shards,
        instances,
    }))
}
