//! Server configs (seat limit, enforcement mode, tier roles), their last snapshots and the
//! pause/resume history, per `(tenant_key, connector_id, guild_id)`.

use entities::{
    discord_server_configs::{self, Entity as Configs},
    discord_server_seat_snapshots::{self, Entity as Snapshots},
    seat_enforcement_events::{self, Entity as Events},
};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use super::{now_ms, Database};
use crate::{
    domain::{
        gate::{EnforcementMode, OverrideMode, ServerPolicy},
        server_key::ServerKey,
        snowflake::{from_db, to_db},
    },
    error::AppResult,
};

/// A validated server config as the admin API writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfigInput {
    pub seat_limit: i64,
    pub mode: EnforcementMode,
    pub override_mode: OverrideMode,
    pub stale_grace: bool,
    pub basic_role_id: Option<u64>,
    pub advanced_role_id: Option<u64>,
    pub pro_role_id: Option<u64>,
    pub notify_channel_id: Option<u64>,
}

/// The gate's view of a stored config. Unknown stored values fall back to the safe default
/// (`off` / `none`).
pub fn policy_of(row: &discord_server_configs::Model) -> ServerPolicy {
    ServerPolicy {
        mode: EnforcementMode::parse(&row.enforcement_mode).unwrap_or_default(),
        override_mode: OverrideMode::parse(&row.enforcement_override).unwrap_or_default(),
        stale_grace: row.stale_grace,
    }
}

pub fn key_of(row: &discord_server_configs::Model) -> ServerKey {
    ServerKey {
        tenant_key: row.tenant_key.clone(),
        connector_id: row.connector_id.clone(),
        guild_id: from_db(row.guild_id),
    }
}

#[derive(Clone, Debug)]
pub struct ServerStore {
    db: Database,
}

impl ServerStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Every config, for loading policies into the snapshot cache at start.
    pub async fn all_configs(&self) -> AppResult<Vec<discord_server_configs::Model>> {
        Ok(Configs::find()
            .filter(discord_server_configs::Column::DeletedAt.is_null())
            .all(self.db.conn())
            .await?)
    }

    pub async fn configs(
        &self,
        tenant_key: &str,
        connector_id: &str,
    ) -> AppResult<Vec<discord_server_configs::Model>> {
        Ok(Configs::find()
            .filter(discord_server_configs::Column::TenantKey.eq(tenant_key))
            .filter(discord_server_configs::Column::ConnectorId.eq(connector_id))
            .filter(discord_server_configs::Column::DeletedAt.is_null())
            .order_by_asc(discord_server_configs::Column::GuildId)
            .all(self.db.conn())
            .await?)
    }

    pub async fn config(
        &self,
        key: &ServerKey,
    ) -> AppResult<Option<discord_server_configs::Model>> {
        Ok(Configs::find()
            .filter(discord_server_configs::Column::TenantKey.eq(key.tenant_key.as_str()))
            .filter(discord_server_configs::Column::ConnectorId.eq(key.connector_id.as_str()))
            .filter(discord_server_configs::Column::GuildId.eq(to_db(key.guild_id)))
            .filter(discord_server_configs::Column::DeletedAt.is_null())
            .one(self.db.conn())
            .await?)
    }

    /// Inserts or replaces the config of `key`; returns the row and whether it was created.
    pub async fn upsert_config(
        &self,
        key: &ServerKey,
        input: &ServerConfigInput,
    ) -> AppResult<(discord_server_configs::Model, bool)> {
        let txn = self.db.begin_write().await?;
        let existing = Configs::find()
            .filter(discord_server_configs::Column::TenantKey.eq(key.tenant_key.as_str()))
            .filter(discord_server_configs::Column::ConnectorId.eq(key.connector_id.as_str()))
            .filter(discord_server_configs::Column::GuildId.eq(to_db(key.guild_id)))
            .one(&txn)
            .await?;
        let now = now_ms();
        // A deleted config written again comes back with its history.
        let created = existing.as_ref().is_none_or(|r| r.deleted_at.is_some());
        let mut active = match existing {
            Some(row) => row.into_active_model(),
            None => discord_server_configs::ActiveModel {
                tenant_key: Set(key.tenant_key.clone()),
                connector_id: Set(key.connector_id.clone()),
                guild_id: Set(to_db(key.guild_id)),
                created_at: Set(now),
                ..Default::default()
            },
        };
        active.seat_limit = Set(input.seat_limit);
        active.enforcement_mode = Set(input.mode.as_str().to_owned());
        active.enforcement_override = Set(input.override_mode.as_str().to_owned());
        active.stale_grace = Set(input.stale_grace);
        active.basic_role_id = Set(input.basic_role_id.map(to_db));
        active.advanced_role_id = Set(input.advanced_role_id.map(to_db));
        active.pro_role_id = Set(input.pro_role_id.map(to_db));
        active.notify_channel_id = Set(input.notify_channel_id.map(to_db));
        active.updated_at = Set(now);
        active.deleted_at = Set(None);
        let row = match active.id {
            sea_orm::ActiveValue::Unchanged(_) | sea_orm::ActiveValue::Set(_) => {
                active.update(&txn).await?
            }
            sea_orm::ActiveValue::NotSet => active.insert(&txn).await?,
        };
        txn.commit().await?;
        Ok((row, created))
    }

    /// Deletes a server config: kept (`deleted_at`) with its pause/resume history until the
    /// pruner ages it out; `purge` removes it, its snapshot and its history at once.
    pub async fn delete_config(&self, key: &ServerKey, purge: bool) -> AppResult<bool> {
        let filter = |q: sea_orm::Select<Configs>| {
            q.filter(discord_server_configs::Column::TenantKey.eq(key.tenant_key.as_str()))
                .filter(discord_server_configs::Column::ConnectorId.eq(key.connector_id.as_str()))
                .filter(discord_server_configs::Column::GuildId.eq(to_db(key.guild_id)))
        };
        let Some(row) = filter(Configs::find()).one(self.db.conn()).await? else {
            return Ok(false);
        };
        if purge {
            let res = Configs::delete_by_id(row.id).exec(self.db.conn()).await?;
            return Ok(res.rows_affected == 1);
        }
        if row.deleted_at.is_some() {
            return Ok(false);
        }
        let mut active = row.into_active_model();
        active.deleted_at = Set(Some(now_ms()));
        active.update(self.db.conn()).await?;
        Ok(true)
    }

    pub async fn snapshot(
        &self,
        key: &ServerKey,
    ) -> AppResult<Option<discord_server_seat_snapshots::Model>> {
        Ok(Snapshots::find()
            .filter(discord_server_seat_snapshots::Column::TenantKey.eq(key.tenant_key.as_str()))
            .filter(
                discord_server_seat_snapshots::Column::ConnectorId.eq(key.connector_id.as_str()),
            )
            .filter(discord_server_seat_snapshots::Column::GuildId.eq(to_db(key.guild_id)))
            .one(self.db.conn())
            .await?)
    }

    pub async fn snapshots(
        &self,
        tenant_key: &str,
        connector_id: &str,
    ) -> AppResult<Vec<discord_server_seat_snapshots::Model>> {
        Ok(Snapshots::find()
            .filter(discord_server_seat_snapshots::Column::TenantKey.eq(tenant_key))
            .filter(discord_server_seat_snapshots::Column::ConnectorId.eq(connector_id))
            .all(self.db.conn())
            .await?)
    }

    /// Every snapshot (for the snapshots-by-status gauge).
    pub async fn all_snapshots(&self) -> AppResult<Vec<discord_server_seat_snapshots::Model>> {
        Ok(Snapshots::find().all(self.db.read_conn()).await?)
    }

    /// Pause/resume history of a server, newest first, at most `limit` rows with id < `before`.
    pub async fn events(
        &self,
        key: &ServerKey,
        limit: u64,
        before: Option<i64>,
    ) -> AppResult<Vec<seat_enforcement_events::Model>> {
        let mut q = Events::find()
            .filter(seat_enforcement_events::Column::TenantKey.eq(key.tenant_key.as_str()))
            .filter(seat_enforcement_events::Column::ConnectorId.eq(key.connector_id.as_str()))
            .filter(seat_enforcement_events::Column::GuildId.eq(to_db(key.guild_id)));
        if let Some(before) = before {
            q = q.filter(seat_enforcement_events::Column::Id.lt(before));
        }
        Ok(q.order_by_desc(seat_enforcement_events::Column::Id)
            .limit(limit)
            .all(self.db.conn())
            .await?)
    }

    /// Writes a snapshot row (upsert). The auditor owns snapshot writes; this exists for
    /// tests and tools that need a known snapshot.
    pub async fn put_snapshot(
        &self,
        key: &ServerKey,
        row: discord_server_seat_snapshots::Model,
    ) -> AppResult<discord_server_seat_snapshots::Model> {
        let txn = self.db.begin_write().await?;
        Snapshots::delete_many()
            .filter(discord_server_seat_snapshots::Column::TenantKey.eq(key.tenant_key.as_str()))
            .filter(
                discord_server_seat_snapshots::Column::ConnectorId.eq(key.connector_id.as_str()),
            )
            .filter(discord_server_seat_snapshots::Column::GuildId.eq(to_db(key.guild_id)))
            .exec(&txn)
            .await?;
        let mut active = row.into_active_model().reset_all();
        active.id = sea_orm::ActiveValue::NotSet;
        active.tenant_key = Set(key.tenant_key.clone());
        active.connector_id = Set(key.connector_id.clone());
        active.guild_id = Set(to_db(key.guild_id));
        let row = active.insert(&txn).await?;
        txn.commit().await?;
        Ok(row)
    }

    /// Appends a pause/resume event (the auditor's job; exposed for tests and tools).
    pub async fn append_event(
        &self,
        key: &ServerKey,
        event: seat_enforcement_events::Model,
    ) -> AppResult<seat_enforcement_events::Model> {
        let mut active = event.into_active_model().reset_all();
        active.id = sea_orm::ActiveValue::NotSet;
        active.tenant_key = Set(key.tenant_key.clone());
        active.connector_id = Set(key.connector_id.clone());
        active.guild_id = Set(to_db(key.guild_id));
        Ok(active.insert(self.db.conn()).await?)
    }
}
