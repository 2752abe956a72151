//! Retention: finished jobs, links and enforcement events older than their ages are removed
//! in small batches, so that the tables stay bounded and no batch holds SQLite's one writer
//! for long.

use sea_orm::{
    sea_query::{Expr, ExprTrait, Query},
    ColumnTrait, EntityTrait, QueryFilter,
};

use super::Database;
use crate::error::AppResult;

/// Rows removed per statement: each is a few milliseconds of the writer on SQLite.
pub const BATCH: u64 = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionAges {
    /// Finished (done, failed, cancelled, expired) mirror and audit jobs.
    pub jobs_ms: i64,
    /// Links from source messages to their copies: a source edit or delete older than this
    /// no longer reaches the copies.
    pub links_ms: i64,
    /// Pause/resume history.
    pub events_ms: i64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub mirror_jobs: u64,
    pub audit_jobs: u64,
    pub links: u64,
    pub events: u64,
}

impl Pruned {
    pub fn total(&self) -> u64 {
        self.mirror_jobs + self.audit_jobs + self.links + self.events
    }
}

/// One batch of each table; call again while [`Pruned::total`] is not zero.
pub async fn prune_batch(db: &Database, ages: RetentionAges, now: i64) -> AppResult<Pruned> {
    use entities::{
        discord_seat_audit_jobs as audit, mirror_jobs as mirror, mirror_message_links as links,
        seat_enforcement_events as events,
    };
    let conn = db.conn();
    let mirror_jobs = mirror::Entity::delete_many()
        .filter(
            mirror::Column::Id.in_subquery(
                Query::select()
                    .column(mirror::Column::Id)
                    .from(mirror::Entity)
                    .and_where(Expr::col(mirror::Column::FinishedAt).lt(now - ages.jobs_ms))
                    .limit(BATCH)
                    .to_owned(),
            ),
        )
        .exec(conn)
        .await?
        .rows_affected;
    let audit_jobs = audit::Entity::delete_many()
        .filter(
            audit::Column::Id.in_subquery(
                Query::select()
                    .column(audit::Column::Id)
                    .from(audit::Entity)
                    .and_where(Expr::col(audit::Column::FinishedAt).lt(now - ages.jobs_ms))
                    .limit(BATCH)
                    .to_owned(),
            ),
        )
        .exec(conn)
        .await?
        .rows_affected;
    let links = links::Entity::delete_many()
        .filter(
            links::Column::Id.in_subquery(
                Query::select()
                    .column(links::Column::Id)
                    .from(links::Entity)
                    .and_where(Expr::col(links::Column::CreatedAt).lt(now - ages.links_ms))
                    .limit(BATCH)
                    .to_owned(),
            ),
        )
        .exec(conn)
        .await?
        .rows_affected;
    let events = events::Entity::delete_many()
        .filter(
            events::Column::Id.in_subquery(
                Query::select()
                    .column(events::Column::Id)
                    .from(events::Entity)
                    .and_where(Expr::col(events::Column::At).lt(now - ages.events_ms))
                    .limit(BATCH)
                    .to_owned(),
            ),
        )
        .exec(conn)
        .await?
        .rows_affected;
    Ok(Pruned {
        mirror_jobs,
        audit_jobs,
        links,
        events,
    })
}
