//! The `serve` processes on one PostgreSQL database, by heartbeat: the live ones split the bot
//! token's global rate limit. Every time is PostgreSQL's clock (`clock_timestamp()`), never a
//! process's own, so processes whose clocks differ still agree on who is live.

use sea_orm::{ConnectionTrait, DatabaseBackend, Statement, Value};

use super::Database;
use crate::error::AppResult;

/// Milliseconds of PostgreSQL's clock.
pub(super) const DB_NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

#[derive(Clone)]
pub struct LiveInstances {
    db: Database,
}

impl LiveInstances {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    fn statement(sql: String, values: Vec<Value>) -> Statement {
        Statement::from_sql_and_values(DatabaseBackend::Postgres, sql, values)
    }

    /// This process is alive now, its admin API at `admin_url`.
    pub async fn heartbeat(&self, worker_id: &str, admin_url: &str) -> AppResult<()> {
        let sql = format!(
            "INSERT INTO service_instances (worker_id, started_at, last_seen, admin_url) \
             VALUES ($1, {DB_NOW_MS}, {DB_NOW_MS}, $2) \
             ON CONFLICT (worker_id) DO UPDATE SET last_seen = EXCLUDED.last_seen, \
             admin_url = EXCLUDED.admin_url"
        );
        self.db
            .conn()
            .execute_raw(Self::statement(
                sql,
                vec![worker_id.into(), admin_url.into()],
            ))
            .await?;
        Ok(())
    }

    /// The admin API of the live process that holds the lease of the shard carrying
    /// `guild_id`, if one does.
    pub async fn owner_url(&self, guild_id: u64) -> AppResult<Option<String>> {
        let sql = format!(
            "SELECT i.admin_url FROM gateway_shard_leases l \
             JOIN service_instances i ON i.worker_id = l.holder \
             WHERE l.shard_id = $1 % l.shard_total AND l.expires_at > {DB_NOW_MS} \
             AND i.admin_url IS NOT NULL"
        );
        let row = self
            .db
            .conn()
            .query_one_raw(Self::statement(
                sql,
                vec![i64::try_from(guild_id >> 22).unwrap_or(0).into()],
            ))
            .await?;
        Ok(match row {
            Some(r) => r.try_get::<Option<String>>("", "admin_url")?,
            None => None,
        })
    }

    /// Processes seen within the last `ttl_ms`, this one included once it has beaten.
    pub async fn live(&self, ttl_ms: i64) -> AppResult<u32> {
        let sql = format!(
            "SELECT count(*) AS n FROM service_instances WHERE last_seen > {DB_NOW_MS} - $1"
        );
        let row = self
            .db
            .conn()
            .query_one_raw(Self::statement(sql, vec![ttl_ms.into()]))
            .await?;
        let n: i64 = match row {
            Some(r) => r.try_get("", "n")?,
            None => 0,
        };
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Every process's row: worker id, admin URL, milliseconds since its last heartbeat.
    pub async fn list(&self) -> AppResult<Vec<(String, Option<String>, i64)>> {
        let sql = format!(
            "SELECT worker_id, admin_url, {DB_NOW_MS} - last_seen AS ago \
             FROM service_instances ORDER BY worker_id"
        );
        let rows = self
            .db
            .read_conn()
            .query_all_raw(Self::statement(sql, Vec::new()))
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push((
                r.try_get("", "worker_id")?,
                r.try_get("", "admin_url")?,
                r.try_get("", "ago")?,
            ));
        }
        Ok(out)
    }

    /// A graceful stop: the others take this process's share at their next heartbeat.
    pub async fn leave(&self, worker_id: &str) -> AppResult<()> {
        self.db
            .conn()
            .execute_raw(Self::statement(
                "DELETE FROM service_instances WHERE worker_id = $1".into(),
                vec![worker_id.into()],
            ))
            .await?;
        Ok(())
    }

    /// Rows of processes dead for longer than `older_than_ms` (killed, never back).
    pub async fn forget_dead(&self, older_than_ms: i64) -> AppResult<u64> {
        let sql = format!("DELETE FROM service_instances WHERE last_seen < {DB_NOW_MS} - $1");
        Ok(self
            .db
            .conn()
            .execute_raw(Self::statement(sql, vec![older_than_ms.into()]))
            .await?
            .rows_affected())
    }
}
