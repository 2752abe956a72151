//! Queue depths (operator only): pending / processing / failed counts and the age of the
//! oldest due job per queue.

use actix_web::{get, web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::{auth::Caller, openapi::ErrorBody, AppState};
use crate::{error::AppResult, store::now_ms, store::queue::QueueCounts};

#[derive(Serialize, ToSchema)]
pub struct QueueDepth {
    /// `audit` or `mirror`.
    pub name: String,
    pub pending: i64,
    pub processing: i64,
    pub failed: i64,
    pub done: i64,
    /// Age in ms of the oldest pending job that is due; absent when none is due.
    pub oldest_due_age_ms: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct Queues {
    pub queues: Vec<QueueDepth>,
}

fn depth(name: &str, c: QueueCounts, done: i64) -> QueueDepth {
    QueueDepth {
        name: name.to_owned(),
        pending: c.pending,
        processing: c.processing,
        failed: c.failed,
        done,
        oldest_due_age_ms: c.oldest_due_age_ms,
    }
}

/// Both queues' live counts, for the metrics and the API.
pub async fn all_counts(state: &AppState) -> AppResult<[(&'static str, QueueCounts); 2]> {
    let now = now_ms();
    Ok([
        ("audit", state.audit_queue.counts(now).await?),
        ("mirror", state.mirror_queue.counts(now).await?),
    ])
}

#[utoipa::path(get, path = "/api/v1/queues", tag = "queues",
    responses((status = 200, body = Queues), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
#[get("/api/v1/queues")]
pub async fn get_queues(state: web::Data<AppState>, caller: Caller) -> AppResult<HttpResponse> {
    caller.require_operator()?;
    let [(audit, a), (mirror, m)] = all_counts(&state).await?;
    Ok(HttpResponse::Ok().json(Queues {
        queues: vec![
            depth(audit, a, state.audit_queue.done_count().await?),
            depth(mirror, m, state.mirror_queue.done_count().await?),
        ],
    }))
}
