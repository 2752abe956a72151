//! Gateway shards shared by the processes on one PostgreSQL database through leases: a shard
//! is held by at most one process until its lease expires, by PostgreSQL's clock only. Every
//! take raises the shard's epoch; a renew or a release names the epoch it holds, so a process
//! whose lease expired and was taken cannot renew or release the new holder's.

use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseTransaction, Statement, Value};

use super::{live_instances::DB_NOW_MS, Database};
use crate::error::AppResult;

/// A shard's lease as the table holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardLease {
    pub shard_id: u32,
    pub shard_total: u32,
    pub holder: Option<String>,
    pub epoch: i64,
    /// Milliseconds until it expires (0 or less: expired, free to take).
    pub expires_in_ms: i64,
}

impl ShardLease {
    pub fn held(&self) -> bool {
        self.holder.is_some() && self.expires_in_ms > 0
    }
}

#[derive(Clone)]
pub struct ShardLeases {
    db: Database,
}

fn statement(sql: String, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DatabaseBackend::Postgres, sql, values)
}

impl ShardLeases {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// One row per shard of `total`; rows of another total (the shard count changed) go.
    pub async fn ensure(&self, total: u32) -> AppResult<()> {
        let conn = self.db.conn();
        conn.execute_raw(statement(
            "DELETE FROM gateway_shard_leases WHERE shard_total <> $1".into(),
            vec![i64::from(total).into()],
        ))
        .await?;
        conn.execute_raw(statement(
            "INSERT INTO gateway_shard_leases (shard_id, shard_total, holder, epoch, expires_at) \
             SELECT g, $1, NULL, 0, 0 FROM generate_series(0, $1 - 1) AS g \
             ON CONFLICT (shard_id) DO NOTHING"
                .into(),
            vec![i64::from(total).into()],
        ))
        .await?;
        Ok(())
    }

    /// Takes `shard` for `holder` if it is free, its lease expired, or it is still held
    /// under `holder` by an earlier run (a process restarted with the same
    /// `SEATGATE_WORKER_ID` after a crash takes its shards back at once instead of waiting
    /// out its own lease; the new epoch fences anything the earlier run still sends). The
    /// new epoch.
    pub async fn take(&self, shard: u32, holder: &str, ttl_ms: i64) -> AppResult<Option<i64>> {
        let sql = format!(
            "UPDATE gateway_shard_leases SET holder = $2, epoch = epoch + 1, \
             expires_at = {DB_NOW_MS} + $3 \
             WHERE shard_id = $1 AND (holder IS NULL OR holder = $2 OR expires_at <= {DB_NOW_MS}) \
             RETURNING epoch"
        );
        let row = self
            .db
            .conn()
            .query_one_raw(statement(
                sql,
                vec![i64::from(shard).into(), holder.into(), ttl_ms.into()],
            ))
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get::<i64>("", "epoch")?),
            None => None,
        })
    }

    /// Extends a lease still held under `epoch`; false when it was lost.
    pub async fn renew(
        &self,
        shard: u32,
        holder: &str,
        epoch: i64,
        ttl_ms: i64,
    ) -> AppResult<bool> {
        let sql = format!(
            "UPDATE gateway_shard_leases SET expires_at = {DB_NOW_MS} + $4 \
             WHERE shard_id = $1 AND holder = $2 AND epoch = $3 AND expires_at > {DB_NOW_MS}"
        );
        let done = self
            .db
            .conn()
            .execute_raw(statement(
                sql,
                vec![
                    i64::from(shard).into(),
                    holder.into(),
                    epoch.into(),
                    ttl_ms.into(),
                ],
            ))
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives a shard up (a graceful stop, or more than a fair share): free at once.
    pub async fn release(&self, shard: u32, holder: &str, epoch: i64) -> AppResult<bool> {
        let done = self
            .db
            .conn()
            .execute_raw(statement(
                "UPDATE gateway_shard_leases SET holder = NULL, expires_at = 0 \
                 WHERE shard_id = $1 AND holder = $2 AND epoch = $3"
                    .into(),
                vec![i64::from(shard).into(), holder.into(), epoch.into()],
            ))
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A write transaction that may change what the holder of `shard` owns: it holds the
    /// lease row (`FOR SHARE`, so no take can commit before it does) if `holder` still holds
    /// it under `epoch`; `None` when the lease was lost (the write is refused).
    pub async fn begin_fenced(
        &self,
        shard: u32,
        holder: &str,
        epoch: i64,
    ) -> AppResult<Option<DatabaseTransaction>> {
        let txn = self.db.begin_write().await?;
        let sql = format!(
            "SELECT 1 AS held FROM gateway_shard_leases \
             WHERE shard_id = $1 AND holder = $2 AND epoch = $3 AND expires_at > {DB_NOW_MS} \
             FOR SHARE"
        );
        let held = txn
            .query_one_raw(statement(
                sql,
                vec![i64::from(shard).into(), holder.into(), epoch.into()],
            ))
            .await?;
        if held.is_some() {
            Ok(Some(txn))
        } else {
            txn.rollback().await?;
            Ok(None)
        }
    }

    pub async fn list(&self) -> AppResult<Vec<ShardLease>> {
        let sql = format!(
            "SELECT shard_id, shard_total, holder, epoch, expires_at - {DB_NOW_MS} AS expires_in \
             FROM gateway_shard_leases ORDER BY shard_id"
        );
        let rows = self
            .db
            .read_conn()
            .query_all_raw(statement(sql, vec![]))
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(ShardLease {
                shard_id: u32::try_from(r.try_get::<i32>("", "shard_id")?).unwrap_or(0),
                shard_total: u32::try_from(r.try_get::<i32>("", "shard_total")?).unwrap_or(0),
                holder: r.try_get("", "holder")?,
                epoch: r.try_get("", "epoch")?,
                expires_in_ms: r.try_get("", "expires_in")?,
            });
        }
        Ok(out)
    }

    /// Takes the IDENTIFY slot of `bucket` if no process identified in it for `spacing_ms`
    /// (Discord: `max_concurrency` IDENTIFYs per 5 s, one per bucket).
    pub async fn identify_slot(&self, bucket: u32, spacing_ms: i64) -> AppResult<bool> {
        let sql = format!(
            "INSERT INTO gateway_identify (bucket, last_at) VALUES ($1, {DB_NOW_MS}) \
             ON CONFLICT (bucket) DO UPDATE SET last_at = EXCLUDED.last_at \
             WHERE gateway_identify.last_at <= EXCLUDED.last_at - $2 \
             RETURNING last_at"
        );
        let row = self
            .db
            .conn()
            .query_one_raw(statement(
                sql,
                vec![i64::from(bucket).into(), spacing_ms.into()],
            ))
            .await?;
        Ok(row.is_some())
    }
}
