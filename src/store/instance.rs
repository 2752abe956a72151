//! One `serve` per database. Several processes on one database would each index every guild
//! and each gate jobs from a cache only its own auditor fills (a second process delivered
//! into a server over its limit), so until instances share the work through the database,
//! `serve` holds a database-wide lease for its whole life and a second one exits naming the
//! holder.
//!
//! The lease is one the operating system or PostgreSQL ends when the process ends, however
//! it ends (a SIGKILLed instance restarted at once must not wait for a timeout): an exclusive
//! lock on `<database file>.lock` on SQLite, a session advisory lock on a connection of its
//! own on PostgreSQL.

use std::{io::Write, time::Duration};

use sea_orm::sqlx::{self, Connection};

use super::{now_ms, settings::SettingsStore, Database};
use crate::error::{AppError, AppResult, ErrorCode};

/// The advisory lock's key: "seatgate" in ASCII, as a number.
const ADVISORY_KEY: i64 = 0x7365_6174_6761_7465;
const HOLDER_SETTING: &str = "instance_holder";

/// Held until dropped (or the process ends).
pub struct InstanceLease {
    _guard: Guard,
}

enum Guard {
    /// An in-memory SQLite database: no other process can open it.
    None,
    File(#[allow(dead_code)] std::fs::File),
    Postgres(tokio::task::JoinHandle<()>),
}

impl Drop for InstanceLease {
    fn drop(&mut self) {
        if let Guard::Postgres(task) = &self._guard {
            task.abort();
        }
    }
}

/// Who this process is, for the message a second one prints.
pub fn holder_description() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into());
    let since = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ");
    format!("host {host}, pid {}, since {since}", std::process::id())
}

fn already_running(holder: &str) -> AppError {
    AppError::new(
        ErrorCode::InstanceAlreadyRunning,
        format!(
            "another seatgate serve is running on this database ({holder}); one instance per \
             database until instances share the work"
        ),
    )
}

/// The file a SQLite URL names, or `None` for an in-memory database.
fn sqlite_file(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" || query.contains("mode=memory") {
        return None;
    }
    Some(path.to_owned())
}

/// Takes the lease for the database at `url` (already connected as `db`), or answers
/// `instance_already_running` naming the holder.
pub async fn acquire(url: &str, db: &Database) -> AppResult<InstanceLease> {
    let holder = holder_description();
    if url.starts_with("sqlite:") {
        let Some(path) = sqlite_file(url) else {
            return Ok(InstanceLease {
                _guard: Guard::None,
            });
        };
        let lock_path = format!("{path}.lock");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(|e| {
                AppError::new(
                    ErrorCode::IoError,
                    format!("cannot open the instance lock {lock_path}: {e}"),
                )
            })?;
        match file.try_lock() {
            Ok(()) => {
                file.set_len(0)?;
                file.write_all(holder.as_bytes())?;
                file.flush()?;
                tracing::info!(lock = %lock_path, "instance lease taken");
                Ok(InstanceLease {
                    _guard: Guard::File(file),
                })
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let held_by = std::fs::read_to_string(&lock_path).unwrap_or_default();
                Err(already_running(held_by.trim()))
            }
            Err(std::fs::TryLockError::Error(e)) => Err(AppError::new(
                ErrorCode::IoError,
                format!("cannot lock {lock_path}: {e}"),
            )),
        }
    } else {
        let mut conn = pg_connect(url).await?;
        if !try_advisory_lock(&mut conn).await? {
            let held_by = SettingsStore::new(db.clone())
                .get(HOLDER_SETTING)
                .await?
                .unwrap_or_else(|| "holder unknown".into());
            return Err(already_running(&held_by));
        }
        SettingsStore::new(db.clone())
            .set(HOLDER_SETTING, &holder)
            .await?;
        tracing::info!("instance lease taken (PostgreSQL advisory lock)");
        let url = url.to_owned();
        let task = tokio::spawn(keep(conn, url));
        Ok(InstanceLease {
            _guard: Guard::Postgres(task),
        })
    }
}

async fn pg_connect(url: &str) -> AppResult<sqlx::PgConnection> {
    sqlx::PgConnection::connect(url).await.map_err(|err| {
        // The URL may carry a password: name the setting, not the URL.
        AppError::new(
            ErrorCode::DatabaseUnavailable,
            "cannot connect to the database named by SEATGATE_DATABASE_URL for the instance lease",
        )
        .with_source(err)
    })
}

async fn try_advisory_lock(conn: &mut sqlx::PgConnection) -> AppResult<bool> {
    sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
        .bind(ADVISORY_KEY)
        .fetch_one(conn)
        .await
        .map_err(|err| {
            AppError::new(ErrorCode::DatabaseError, "cannot take the instance lease")
                .with_source(err)
        })
}

/// Holds the lease's connection; after losing it (PostgreSQL restarted), takes the lock again.
async fn keep(mut conn: sqlx::PgConnection, url: String) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tick.tick().await;
        if conn.ping().await.is_ok() {
            continue;
        }
        tracing::warn!("instance lease: its connection was lost; taking the lease again");
        match pg_connect(&url).await {
            Ok(mut fresh) => match try_advisory_lock(&mut fresh).await {
                Ok(true) => conn = fresh,
                Ok(false) => tracing::error!(
                    at = now_ms(),
                    "{}: another process took the instance lease while the connection was down",
                    ErrorCode::InstanceAlreadyRunning
                ),
                Err(err) => tracing::warn!(error = %err, "instance lease: not taken yet"),
            },
            Err(err) => tracing::warn!(error = %err, "instance lease: database not reachable"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_file_sits_beside_the_database_file() {
        assert_eq!(
            sqlite_file("sqlite:///var/lib/seatgate.db?mode=rwc").as_deref(),
            Some("/var/lib/seatgate.db")
        );
        assert_eq!(
            sqlite_file("sqlite://seatgate.db?mode=rwc").as_deref(),
            Some("seatgate.db")
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("sqlite://x.db?mode=memory&cache=shared"), None);
    }
}
