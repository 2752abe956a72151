//! Test databases: every test gets its own, so tests run in parallel on both backends.
//!
//! `SEATGATE_TEST_DATABASE=postgres` selects PostgreSQL (server from
//! `SEATGATE_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`); anything
//! else, or unset, selects SQLite in a temporary directory.

use sea_orm::{ConnectionTrait, DatabaseBackend};

use super::Database;
use crate::error::{AppError, AppResult};

const DEFAULT_PG: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A fresh, migrated database that is dropped (PostgreSQL) or deleted (SQLite) when the
/// value is dropped.
pub struct TestDatabase {
    pub db: Database,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg_admin: Option<(String, String)>,
}

pub fn wants_postgres() -> bool {
    std::env::var("SEATGATE_TEST_DATABASE")
        .map(|v| v.eq_ignore_ascii_case("postgres"))
        .unwrap_or(false)
}

impl TestDatabase {
    /// The backend `SEATGATE_TEST_DATABASE` selects.
    pub async fn new() -> AppResult<TestDatabase> {
        let t = Self::empty().await?;
        t.db.migrate().await?;
        Ok(t)
    }

    /// A fresh database with no tables, on the selected backend.
    pub async fn empty() -> AppResult<TestDatabase> {
        if wants_postgres() {
            Self::postgres().await
        } else {
            Self::sqlite().await
        }
    }

    async fn sqlite() -> AppResult<TestDatabase> {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
        let db = Database::connect(&url).await?;
        Ok(TestDatabase {
            db,
            url,
            _dir: Some(dir),
            pg_admin: None,
        })
    }

    async fn postgres() -> AppResult<TestDatabase> {
        let admin_url =
            std::env::var("SEATGATE_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_PG.to_owned());
        let name = format!("seatgate_test_{}", uuid::Uuid::new_v4().simple());
        let admin = sea_orm::Database::connect(admin_url.as_str()).await?;
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await?;
        admin.close().await?;
        let base = admin_url
            .rsplit_once('/')
            .map(|(b, _)| b.to_owned())
            .ok_or_else(|| AppError::internal("SEATGATE_TEST_POSTGRES_URL has no database"))?;
        let url = format!("{base}/{name}");
        let db = Database::connect(&url).await?;
        Ok(TestDatabase {
            db,
            url,
            _dir: None,
            pg_admin: Some((admin_url, name)),
        })
    }

    pub fn backend(&self) -> DatabaseBackend {
        self.db.backend()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((admin_url, name)) = self.pg_admin.take() else {
            return;
        };
        // Drop runs outside async context: use a short-lived runtime on its own thread.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(admin) = sea_orm::Database::connect(admin_url.as_str()).await {
                    let _ = admin
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}
