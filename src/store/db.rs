//! Connecting to SQLite (embedded default) or PostgreSQL, and running migrations.

use std::{sync::Arc, time::Duration};

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous},
    ConnectOptions, ConnectionTrait, DatabaseBackend, DatabaseConnection, DatabaseTransaction,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};

use crate::error::{AppError, AppResult, ErrorCode};

/// Milliseconds since the Unix epoch, UTC: the unit of every stored timestamp.
/// The advisory lock migrations run under on PostgreSQL ("seatgate" in ASCII, its last
/// bits changed: neither the instance lease's nor the claims').
const MIGRATE_LOCK: i64 = 0x7365_6174_6761_7465 ^ 2;

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A pooled connection to the service's database.
#[derive(Clone, Debug)]
pub struct Database {
    conn: DatabaseConnection,
    /// PostgreSQL only: connections whose commits do not wait for the WAL flush, for queue
    /// claims (see [`Database::claim_conn`]).
    claims: Option<DatabaseConnection>,
    /// SQLite (file) only: connections for reads that need not queue behind the writer
    /// (see [`Database::read_conn`]).
    reads: Option<DatabaseConnection>,
    /// SQLite only: the task that checkpoints the WAL, stopped with the last clone.
    _checkpointer: Option<Arc<Checkpointer>>,
}

/// Pages the WAL may reach before a commit checkpoints it itself; the background checkpoint
/// keeps it far below this, so it is only a backstop.
const WAL_BACKSTOP_PAGES: &str = "10000";
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// Commits wait until they are on disk.
    Full,
    /// PostgreSQL `synchronous_commit = off`.
    AsyncCommit,
}

#[derive(Debug)]
struct Checkpointer(tokio::task::JoinHandle<()>);

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Database {
    /// Connects to `sqlite:` or `postgres://` URLs.
    ///
    /// SQLite runs in WAL mode with foreign keys on, through ONE connection: SQLite has one
    /// writer, and writers on several connections wait for each other in its busy handler,
    /// which sleeps 1, 2, 5 ... 100 ms between tries (that put 200 ms to 1 s into the mirror's
    /// tail latency). On one connection they queue in the pool instead, first come first
    /// served, and reads are short. The WAL is checkpointed by a task on its own connection,
    /// so a commit never waits for the checkpoint's fsync.
    pub async fn connect(url: &str) -> AppResult<Database> {
        let sqlite = url.starts_with("sqlite:");
        let conn = Self::pool(url, if sqlite { 1 } else { 16 }, Durability::Full).await?;
        let claims = if sqlite {
            None
        } else {
            Some(Self::pool(url, 4, Durability::AsyncCommit).await?)
        };
        let file = sqlite && !url.contains(":memory:") && !url.contains("mode=memory");
        let reads = if file {
            Some(Self::pool(url, 2, Durability::Full).await?)
        } else {
            None
        };
        let checkpointer = if file {
            let wal = Self::pool(url, 1, Durability::Full).await?;
            Some(Arc::new(Checkpointer(tokio::spawn(async move {
                let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    if let Err(err) = wal
                        .execute_unprepared("PRAGMA wal_checkpoint(PASSIVE)")
                        .await
                    {
                        tracing::debug!(error = %err, "[db] WAL checkpoint failed; the next one retries");
                    }
                }
            }))))
        } else {
            None
        };
        Ok(Database {
            conn,
            claims,
            reads,
            _checkpointer: checkpointer,
        })
    }

    async fn pool(
        url: &str,
        connections: u32,
        durability: Durability,
    ) -> AppResult<DatabaseConnection> {
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .sqlx_logging(false)
            .max_connections(connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(10));
        if url.starts_with("sqlite:") {
            options.map_sqlx_sqlite_opts(|opts| {
                opts.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(30))
                    .foreign_keys(true)
                    .pragma("wal_autocheckpoint", WAL_BACKSTOP_PAGES)
                    // Statement journals (a multi-row UPDATE inside a transaction keeps one)
                    // in memory, not in a temporary file written on every such statement.
                    .pragma("temp_store", "memory")
            });
        } else if durability == Durability::AsyncCommit {
            options.map_sqlx_postgres_opts(|opts| opts.options([("synchronous_commit", "off")]));
        }
        sea_orm::Database::connect(options).await.map_err(|err| {
            // The URL may carry a password: name the backend, not the URL.
            AppError::new(
                ErrorCode::DatabaseUnavailable,
                "cannot connect to the database named by SEATGATE_DATABASE_URL",
            )
            .with_source(err)
        })
    }

    /// Where queue claims run. On PostgreSQL their commits do not wait for the WAL flush
    /// (an fsync that took 60-100 ms now and then was the mirror's tail latency at low
    /// load). A claim lost to a PostgreSQL crash is a job whose lease was never taken: it
    /// is claimed again, as after an expired lease, and the delivery's nonce or stored link
    /// keeps the repeat from duplicating a message. The next durable commit (the settle that
    /// records the job done) flushes the claim with it.
    pub fn claim_conn(&self) -> &DatabaseConnection {
        self.claims.as_ref().unwrap_or(&self.conn)
    }

    /// Where a lone read that must not wait for the writer runs. On SQLite the one
    /// read-write connection is busy with every transaction in turn; a WAL reader on its own
    /// connection neither waits for them nor blocks them, and sees every committed write.
    /// (Gateway ingest's "is this a source channel" read waited up to 15 ms for it.)
    pub fn read_conn(&self) -> &DatabaseConnection {
        self.reads.as_ref().unwrap_or(&self.conn)
    }

    pub fn conn(&self) -> &DatabaseConnection {
        &self.conn
    }

    pub fn backend(&self) -> DatabaseBackend {
        self.conn.get_database_backend()
    }

    pub async fn migrate(&self) -> AppResult<()> {
        if self.backend() != DatabaseBackend::Postgres {
            Migrator::up(&self.conn, None).await?;
            return Ok(());
        }
        // Several processes started at once on an empty database would each create the
        // tables (and all but one fail on a duplicate key): one migrates at a time, holding a
        // transaction-scoped advisory lock on a connection of its own while the migrator uses
        // the others; the ones after it find nothing left to do.
        let guard = self.conn.begin().await?;
        guard
            .execute_raw(sea_orm::Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "SELECT pg_advisory_xact_lock($1)",
                [MIGRATE_LOCK.into()],
            ))
            .await?;
        let migrated = Migrator::up(&self.conn, None).await;
        guard.commit().await?;
        migrated?;
        Ok(())
    }

    /// Cheap liveness probe for `/readyz`.
    pub async fn ping(&self) -> AppResult<()> {
        self.conn.ping().await.map_err(|err| {
            AppError::new(ErrorCode::DatabaseUnavailable, "database is not reachable")
                .with_source(err)
        })
    }

    /// A transaction for read-then-write work. On SQLite it takes the write lock up front
    /// (BEGIN IMMEDIATE) so that it waits on the busy timeout instead of failing with
    /// SQLITE_BUSY when it upgrades from reading to writing.
    pub async fn begin_write(&self) -> AppResult<DatabaseTransaction> {
        let options = TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..Default::default()
        };
        let options = match self.backend() {
            DatabaseBackend::Sqlite => options,
            _ => TransactionOptions::default(),
        };
        Ok(self.conn.begin_with_options(options).await?)
    }

    pub async fn close(self) -> AppResult<()> {
        if let Some(claims) = self.claims {
            claims.close().await?;
        }
        if let Some(reads) = self.reads {
            reads.close().await?;
        }
        self.conn.close().await?;
        Ok(())
    }
}
