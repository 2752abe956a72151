//! `guild_directory` (PostgreSQL, with shard leases): what the process running a guild's shard
//! knows of the guild, published for the processes that run the other shards. Only that
//! process writes a guild's row; a write that changes nothing is not made, so it announces
//! nothing.

use sea_orm::{ConnectionTrait, DatabaseBackend, Statement, Value};

use super::{live_instances::DB_NOW_MS, Database};
use crate::{
    discord::directory::GuildInfo,
    domain::snowflake::{from_db, to_db},
    error::{AppError, AppResult, ErrorCode},
};

#[derive(Clone)]
pub struct GuildDirectoryStore {
    db: Database,
}

fn statement(sql: String, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DatabaseBackend::Postgres, sql, values)
}

fn decode(guild_id: i64, body: &str) -> AppResult<GuildInfo> {
    serde_json::from_str(body).map_err(|err| {
        AppError::new(
            ErrorCode::Internal,
            format!(
                "guild_directory: the row of guild {} does not read",
                from_db(guild_id)
            ),
        )
        .with_source(err)
    })
}

impl GuildDirectoryStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// The guild as this process knows it; `false` when the row already said so.
    pub async fn publish(&self, info: &GuildInfo) -> AppResult<bool> {
        let body = serde_json::to_string(info).map_err(|err| {
            AppError::new(ErrorCode::Internal, "guild_directory: cannot write a guild")
                .with_source(err)
        })?;
        let sql = format!(
            "INSERT INTO guild_directory (guild_id, name, body, updated_at) \
             VALUES ($1, $2, $3, {DB_NOW_MS}) \
             ON CONFLICT (guild_id) DO UPDATE SET name = EXCLUDED.name, body = EXCLUDED.body, \
             updated_at = EXCLUDED.updated_at \
             WHERE guild_directory.body IS DISTINCT FROM EXCLUDED.body"
        );
        let done = self
            .db
            .conn()
            .execute_raw(statement(
                sql,
                vec![to_db(info.id).into(), info.name.clone().into(), body.into()],
            ))
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The bot is no longer in the guild.
    pub async fn unpublish(&self, guild_id: u64) -> AppResult<()> {
        self.db
            .conn()
            .execute_raw(statement(
                "DELETE FROM guild_directory WHERE guild_id = $1".into(),
                vec![to_db(guild_id).into()],
            ))
            .await?;
        Ok(())
    }

    pub async fn get(&self, guild_id: u64) -> AppResult<Option<GuildInfo>> {
        let row = self
            .db
            .conn()
            .query_one_raw(statement(
                "SELECT guild_id, body FROM guild_directory WHERE guild_id = $1".into(),
                vec![to_db(guild_id).into()],
            ))
            .await?;
        match row {
            Some(r) => Ok(Some(decode(
                r.try_get("", "guild_id")?,
                &r.try_get::<String>("", "body")?,
            )?)),
            None => Ok(None),
        }
    }

    /// Every published guild; a row that does not read is left out (and logged).
    pub async fn all(&self) -> AppResult<Vec<GuildInfo>> {
        let rows = self
            .db
            .conn()
            .query_all_raw(statement(
                "SELECT guild_id, body FROM guild_directory".into(),
                Vec::new(),
            ))
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            match decode(
                r.try_get("", "guild_id")?,
                &r.try_get::<String>("", "body")?,
            ) {
                Ok(info) => out.push(info),
                Err(err) => tracing::warn!(error = %err, "guild directory: a row left out"),
            }
        }
        Ok(out)
    }
}
