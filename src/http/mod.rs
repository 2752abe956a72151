//! Admin HTTP surface: health probes now; the admin API and page join here.

pub mod health;

use actix_web::web;

use crate::{actors::snapshot_cache::SnapshotCache, store::Database};

/// Shared state of every request handler.
#[derive(Clone)]
pub struct AppState {
    pub db: Database,
    pub cache: SnapshotCache,
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(health::healthz).service(health::readyz);
}
