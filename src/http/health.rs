//! `/healthz`: the process answers. `/readyz`: the database answers too; it also lists the
//! gateway shards this process runs and their connection stage.

use actix_web::{get, web, HttpResponse};
use serde_json::json;

use super::AppState;
use crate::error::AppError;

#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    state.db.ping().await?;
    Ok(HttpResponse::Ok().json(json!({
        "status": "ready",
        "database": "ok",
        "shards": state.shards.list(),
    })))
}
