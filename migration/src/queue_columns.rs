//! Columns every durable queue table carries (audit jobs and mirror jobs share one queue
//! mechanism), and the partial unique index that keeps one live row per dedupe key.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveIden)]
pub enum QueueCol {
    Id,
    Status,
    DedupeKey,
    RunAfter,
    Attempts,
    MaxAttempts,
    LeaseOwner,
    LeaseExpiresAt,
    ClaimToken,
    LastError,
    CreatedAt,
    UpdatedAt,
    FinishedAt,
}

pub fn add_queue_columns(table: &mut TableCreateStatement) -> &mut TableCreateStatement {
    table
        .col(big_pk_auto(QueueCol::Id))
        .col(text(QueueCol::Status))
        .col(text_null(QueueCol::DedupeKey))
        .col(big_integer(QueueCol::RunAfter))
        .col(integer(QueueCol::Attempts).default(0))
        .col(integer(QueueCol::MaxAttempts))
        .col(text_null(QueueCol::LeaseOwner))
        .col(big_integer_null(QueueCol::LeaseExpiresAt))
        .col(text_null(QueueCol::ClaimToken))
        .col(text_null(QueueCol::LastError))
        .col(big_integer(QueueCol::CreatedAt))
        .col(big_integer(QueueCol::UpdatedAt))
        .col(big_integer_null(QueueCol::FinishedAt))
}

/// `{table}_by_status_run_after` and the partial unique `{table}_by_dedupe`: at most one
/// pending-or-processing row per dedupe key, enforced by the database itself so that
/// concurrent enqueues cannot both win. Same SQL on SQLite and PostgreSQL.
pub async fn create_queue_indexes(manager: &SchemaManager<'_>, table: &str) -> Result<(), DbErr> {
    let db = manager.get_connection();
    db.execute_unprepared(&format!(
        "CREATE INDEX IF NOT EXISTS {table}_by_status_run_after ON {table} (status, run_after)"
    ))
    .await?;
    db.execute_unprepared(&format!(
        "CREATE UNIQUE INDEX IF NOT EXISTS {table}_by_dedupe ON {table} (dedupe_key) \
         WHERE dedupe_key IS NOT NULL AND status IN ('pending', 'processing')"
    ))
    .await?;
    Ok(())
}
