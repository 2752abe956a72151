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

/// Rows a test or bench needs before the service starts: a connector, its mappings and its
/// server configs, written straight to the tables (the admin API has its own tests).
pub mod seed {
    use sea_orm::{ActiveModelTrait, ActiveValue::Set};

    use crate::{domain::snowflake, error::AppResult, store::Database};

    pub async fn connector(
        db: &Database,
        tenant: &str,
        connector: &str,
        source_guild: u64,
    ) -> AppResult<()> {
        entities::connectors::ActiveModel {
            tenant_key: Set(tenant.into()),
            connector_id: Set(connector.into()),
            name: Set(connector.into()),
            source_guild_id: Set(snowflake::to_db(source_guild)),
            enabled: Set(true),
            created_at: Set(0),
            updated_at: Set(0),
            ..Default::default()
        }
        .insert(db.conn())
        .await?;
        // As a connector written with the operator token does: its source guild is granted.
        crate::store::grants::GrantStore::new(db.clone())
            .grant(tenant, source_guild)
            .await?;
        Ok(())
    }

    /// Returns the mapping's id.
    pub async fn mapping(
        db: &Database,
        (tenant, connector): (&str, &str),
        source_channel: u64,
        (target_guild, target_channel): (u64, u64),
        delivery_mode: &str,
    ) -> AppResult<i64> {
        let m = entities::connector_mappings::ActiveModel {
            tenant_key: Set(tenant.into()),
            connector_id: Set(connector.into()),
            source_channel_id: Set(snowflake::to_db(source_channel)),
            target_guild_id: Set(snowflake::to_db(target_guild)),
            target_channel_id: Set(snowflake::to_db(target_channel)),
            delivery_mode: Set(delivery_mode.into()),
            enabled: Set(true),
            created_at: Set(0),
            updated_at: Set(0),
            ..Default::default()
        }
        .insert(db.conn())
        .await?;
        Ok(m.id)
    }

    /// An `enforce`-mode server config.
    pub async fn enforced_server(
        db: &Database,
        (tenant, connector): (&str, &str),
        guild: u64,
        seat_limit: i64,
        notify_channel: Option<u64>,
    ) -> AppResult<()> {
        entities::discord_server_configs::ActiveModel {
            tenant_key: Set(tenant.into()),
            connector_id: Set(connector.into()),
            guild_id: Set(snowflake::to_db(guild)),
            seat_limit: Set(seat_limit),
            enforcement_mode: Set("enforce".into()),
            enforcement_override: Set("none".into()),
            stale_grace: Set(false),
            notify_channel_id: Set(notify_channel.map(snowflake::to_db)),
            created_at: Set(0),
            updated_at: Set(0),
            ..Default::default()
        }
        .insert(db.conn())
        .await?;
        Ok(())
    }
}
