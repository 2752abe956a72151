//! Connecting to SQLite (embedded default) or PostgreSQL, and running migrations.

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous},
    ConnectOptions, DatabaseBackend, DatabaseConnection, DatabaseTransaction,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};

use crate::error::{AppError, AppResult, ErrorCode};

/// Milliseconds since the Unix epoch, UTC: the unit of every stored timestamp.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A pooled connection to the service's database.
#[derive(Clone, Debug)]
pub struct Database {
    conn: DatabaseConnection,
}

impl Database {
    /// Connects to `sqlite:` or `postgres://` URLs. SQLite runs in WAL mode with a busy
    /// timeout and foreign keys on.
    pub async fn connect(url: &str) -> AppResult<Database> {
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .sqlx_logging(false)
            .acquire_timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(10));
        if url.starts_with("sqlite:") {
            options.max_connections(8).map_sqlx_sqlite_opts(|opts| {
                opts.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(30))
                    .foreign_keys(true)
            });
        } else {
            options.max_connections(16);
        }
        let conn = sea_orm::Database::connect(options).await.map_err(|err| {
            // The URL may carry a password: name the backend, not the URL.
            AppError::new(
                ErrorCode::DatabaseUnavailable,
                "cannot connect to the database named by SEATGATE_DATABASE_URL",
            )
            .with_source(err)
        })?;
        Ok(Database { conn })
    }

    pub fn conn(&self) -> &DatabaseConnection {
        &self.conn
    }

    pub fn backend(&self) -> DatabaseBackend {
        self.conn.get_database_backend()
    }

    pub async fn migrate(&self) -> AppResult<()> {
        Migrator::up(&self.conn, None).await?;
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
        self.conn.close().await?;
        Ok(())
    }
}
