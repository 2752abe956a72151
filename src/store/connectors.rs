//! Connectors (a tenant's mirror configuration) and their mappings.

use entities::{
    connector_mappings::{self, Entity as Mappings},
    connectors::{self, Entity as Connectors},
};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, Set,
};

use super::{now_ms, Database};
use crate::{
    domain::snowflake::to_db,
    error::{AppError, AppResult, ErrorCode},
};

#[derive(Debug, Clone)]
pub struct NewConnector {
    pub connector_id: String,
    pub name: String,
    pub source_guild_id: u64,
}

#[derive(Debug, Clone, Default)]
pub struct ConnectorChanges {
    pub name: Option<String>,
    pub source_guild_id: Option<u64>,
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone)]
pub struct NewMapping {
    pub source_channel_id: u64,
    pub target_guild_id: u64,
    pub target_channel_id: u64,
    pub delivery_mode: String,
}

#[derive(Debug, Clone, Default)]
pub struct MappingChanges {
    pub source_channel_id: Option<u64>,
    pub target_guild_id: Option<u64>,
    pub target_channel_id: Option<u64>,
    pub delivery_mode: Option<String>,
    pub enabled: Option<bool>,
}

#[derive(Clone, Debug)]
pub struct ConnectorStore {
    db: Database,
}

impl ConnectorStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    pub async fn list(&self, tenant_key: &str) -> AppResult<Vec<connectors::Model>> {
        Ok(Connectors::find()
            .filter(connectors::Column::TenantKey.eq(tenant_key))
            .filter(connectors::Column::DeletedAt.is_null())
            .order_by_asc(connectors::Column::ConnectorId)
            .all(self.db.conn())
            .await?)
    }

    /// A connector that is not deleted.
    pub async fn get(
        &self,
        tenant_key: &str,
        connector_id: &str,
    ) -> AppResult<Option<connectors::Model>> {
        Ok(self
            .get_any(tenant_key, connector_id)
            .await?
            .filter(|c| c.deleted_at.is_none()))
    }

    /// A connector, deleted or not (the operator reads a deleted one's history).
    pub async fn get_any(
        &self,
        tenant_key: &str,
        connector_id: &str,
    ) -> AppResult<Option<connectors::Model>> {
        Ok(Connectors::find()
            .filter(connectors::Column::TenantKey.eq(tenant_key))
            .filter(connectors::Column::ConnectorId.eq(connector_id))
            .one(self.db.conn())
            .await?)
    }

    /// Every connector that is switched off or deleted, for the snapshot cache at start.
    pub async fn stopped(&self) -> AppResult<Vec<connectors::Model>> {
        Ok(Connectors::find()
            .filter(
                sea_orm::Condition::any()
                    .add(connectors::Column::Enabled.eq(false))
                    .add(connectors::Column::DeletedAt.is_not_null()),
            )
            .all(self.db.conn())
            .await?)
    }

    /// Creates a connector; `conflict` when the tenant already has one with that id.
    pub async fn create(
        &self,
        tenant_key: &str,
        new: NewConnector,
    ) -> AppResult<connectors::Model> {
        let txn = self.db.begin_write().await?;
        let exists = Connectors::find()
            .filter(connectors::Column::TenantKey.eq(tenant_key))
            .filter(connectors::Column::ConnectorId.eq(new.connector_id.as_str()))
            .one(&txn)
            .await?;
        match exists {
            Some(c) if c.deleted_at.is_some() => {
                return Err(AppError::new(
                    ErrorCode::Conflict,
                    format!(
                        "connector {} was deleted and keeps its history under this id until it is purged \
                         (DELETE .../connectors/{}?purge=true) or ages out; pick another id",
                        new.connector_id, new.connector_id
                    ),
                ))
            }
            Some(_) => {
                return Err(AppError::new(
                    ErrorCode::Conflict,
                    format!("connector {} already exists", new.connector_id),
                ))
            }
            None => {}
        }
        let now = now_ms();
        let row = connectors::ActiveModel {
            tenant_key: Set(tenant_key.to_owned()),
            connector_id: Set(new.connector_id),
            name: Set(new.name),
            source_guild_id: Set(to_db(new.source_guild_id)),
            enabled: Set(true),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
        txn.commit().await?;
        Ok(row)
    }

    pub async fn update(
        &self,
        tenant_key: &str,
        connector_id: &str,
        changes: ConnectorChanges,
    ) -> AppResult<Option<connectors::Model>> {
        let Some(row) = self.get(tenant_key, connector_id).await? else {
            return Ok(None);
        };
        let mut active = row.into_active_model();
        if let Some(name) = changes.name {
            active.name = Set(name);
        }
        if let Some(id) = changes.source_guild_id {
            active.source_guild_id = Set(to_db(id));
        }
        if let Some(enabled) = changes.enabled {
            active.enabled = Set(enabled);
        }
        active.updated_at = Set(now_ms());
        Ok(Some(active.update(self.db.conn()).await?))
    }

    /// Deletes a connector with its mappings and server configs. Kept (`deleted_at`) for the
    /// history and the links until the pruner ages them out; `purge` removes them at once
    /// (foreign keys cascade to snapshots, history and links go with their mappings).
    pub async fn delete(
        &self,
        tenant_key: &str,
        connector_id: &str,
        purge: bool,
    ) -> AppResult<bool> {
        let txn = self.db.begin_write().await?;
        let now = now_ms();
        if purge {
            let ids: Vec<i64> = Mappings::find()
                .filter(connector_mappings::Column::TenantKey.eq(tenant_key))
                .filter(connector_mappings::Column::ConnectorId.eq(connector_id))
                .all(&txn)
                .await?
                .into_iter()
                .map(|m| m.id)
                .collect();
            entities::mirror_message_links::Entity::delete_many()
                .filter(entities::mirror_message_links::Column::MappingId.is_in(ids))
                .exec(&txn)
                .await?;
            Mappings::delete_many()
                .filter(connector_mappings::Column::TenantKey.eq(tenant_key))
                .filter(connector_mappings::Column::ConnectorId.eq(connector_id))
                .exec(&txn)
                .await?;
            entities::discord_server_configs::Entity::delete_many()
                .filter(entities::discord_server_configs::Column::TenantKey.eq(tenant_key))
                .filter(entities::discord_server_configs::Column::ConnectorId.eq(connector_id))
                .exec(&txn)
                .await?;
            let res = Connectors::delete_many()
                .filter(connectors::Column::TenantKey.eq(tenant_key))
                .filter(connectors::Column::ConnectorId.eq(connector_id))
                .exec(&txn)
                .await?;
            txn.commit().await?;
            return Ok(res.rows_affected == 1);
        }
        use sea_orm::sea_query::Expr;
        Mappings::update_many()
            .col_expr(connector_mappings::Column::DeletedAt, Expr::value(now))
            .filter(connector_mappings::Column::TenantKey.eq(tenant_key))
            .filter(connector_mappings::Column::ConnectorId.eq(connector_id))
            .filter(connector_mappings::Column::DeletedAt.is_null())
            .exec(&txn)
            .await?;
        entities::discord_server_configs::Entity::update_many()
            .col_expr(
                entities::discord_server_configs::Column::DeletedAt,
                Expr::value(now),
            )
            .filter(entities::discord_server_configs::Column::TenantKey.eq(tenant_key))
            .filter(entities::discord_server_configs::Column::ConnectorId.eq(connector_id))
            .filter(entities::discord_server_configs::Column::DeletedAt.is_null())
            .exec(&txn)
            .await?;
        let res = Connectors::update_many()
            .col_expr(connectors::Column::DeletedAt, Expr::value(now))
            .filter(connectors::Column::TenantKey.eq(tenant_key))
            .filter(connectors::Column::ConnectorId.eq(connector_id))
            .filter(connectors::Column::DeletedAt.is_null())
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(res.rows_affected == 1)
    }

    pub async fn mappings(
        &self,
        tenant_key: &str,
        connector_id: &str,
    ) -> AppResult<Vec<connector_mappings::Model>> {
        Ok(Mappings::find()
            .filter(connector_mappings::Column::TenantKey.eq(tenant_key))
            .filter(connector_mappings::Column::ConnectorId.eq(connector_id))
            .filter(connector_mappings::Column::DeletedAt.is_null())
            .order_by_asc(connector_mappings::Column::Id)
            .all(self.db.conn())
            .await?)
    }

    pub async fn mapping(
        &self,
        tenant_key: &str,
        connector_id: &str,
        mapping_id: i64,
    ) -> AppResult<Option<connector_mappings::Model>> {
        Ok(Mappings::find_by_id(mapping_id)
            .filter(connector_mappings::Column::TenantKey.eq(tenant_key))
            .filter(connector_mappings::Column::ConnectorId.eq(connector_id))
            .filter(connector_mappings::Column::DeletedAt.is_null())
            .one(self.db.conn())
            .await?)
    }

    pub async fn create_mapping(
        &self,
        tenant_key: &str,
        connector_id: &str,
        new: NewMapping,
    ) -> AppResult<connector_mappings::Model> {
        let now = now_ms();
        // The same mapping deleted earlier comes back with its links and webhook.
        let deleted = Mappings::find()
            .filter(connector_mappings::Column::TenantKey.eq(tenant_key))
            .filter(connector_mappings::Column::ConnectorId.eq(connector_id))
            .filter(connector_mappings::Column::SourceChannelId.eq(to_db(new.source_channel_id)))
            .filter(connector_mappings::Column::TargetChannelId.eq(to_db(new.target_channel_id)))
            .filter(connector_mappings::Column::DeletedAt.is_not_null())
            .one(self.db.conn())
            .await?;
        if let Some(row) = deleted {
            let mut active = row.into_active_model();
            active.target_guild_id = Set(to_db(new.target_guild_id));
            active.delivery_mode = Set(new.delivery_mode);
            active.enabled = Set(true);
            active.broken_code = Set(None);
            active.broken_at = Set(None);
            active.deleted_at = Set(None);
            active.updated_at = Set(now);
            return Ok(active.update(self.db.conn()).await?);
        }
        Ok(connector_mappings::ActiveModel {
            tenant_key: Set(tenant_key.to_owned()),
            connector_id: Set(connector_id.to_owned()),
            source_channel_id: Set(to_db(new.source_channel_id)),
            target_guild_id: Set(to_db(new.target_guild_id)),
            target_channel_id: Set(to_db(new.target_channel_id)),
            delivery_mode: Set(new.delivery_mode),
            enabled: Set(true),
            broken_code: Set(None),
            broken_at: Set(None),
            webhook_id: Set(None),
            webhook_token: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        }
        .insert(self.db.conn())
        .await?)
    }

    /// Applies `changes`; an edit clears the broken state so delivery is tried again.
    pub async fn update_mapping(
        &self,
        row: connector_mappings::Model,
        changes: MappingChanges,
    ) -> AppResult<connector_mappings::Model> {
        let mut active = row.into_active_model();
        if let Some(v) = changes.source_channel_id {
            active.source_channel_id = Set(to_db(v));
        }
        if let Some(v) = changes.target_guild_id {
            active.target_guild_id = Set(to_db(v));
        }
        if let Some(v) = changes.target_channel_id {
            if to_db(v) != *active.target_channel_id.as_ref() {
                // Another channel needs a webhook of its own; copies made before keep theirs
                // (their links say which).
                active.webhook_id = Set(None);
                active.webhook_token = Set(None);
            }
            active.target_channel_id = Set(to_db(v));
        }
        if let Some(v) = changes.delivery_mode {
            active.delivery_mode = Set(v);
        }
        if let Some(v) = changes.enabled {
            active.enabled = Set(v);
        }
        active.broken_code = Set(None);
        active.broken_at = Set(None);
        active.updated_at = Set(now_ms());
        let txn = self.db.begin_write().await?;
        let updated = active.update(&txn).await?;
        // Sends still queued go where the mapping points now (and the gate counts that
        // guild); edits and deletes follow their copies, wherever those are.
        entities::mirror_jobs::Entity::update_many()
            .col_expr(
                entities::mirror_jobs::Column::TargetGuildId,
                sea_orm::sea_query::Expr::value(updated.target_guild_id),
            )
            .col_expr(
                entities::mirror_jobs::Column::TargetChannelId,
                sea_orm::sea_query::Expr::value(updated.target_channel_id),
            )
            .filter(entities::mirror_jobs::Column::MappingId.eq(updated.id))
            .filter(entities::mirror_jobs::Column::Kind.eq("send"))
            .filter(entities::mirror_jobs::Column::Status.eq("pending"))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(updated)
    }

    /// Deletes a mapping: kept (`deleted_at`) so that a later source delete still removes
    /// its copies, until the pruner ages its links out; `purge` removes it and its links.
    pub async fn delete_mapping(&self, id: i64, purge: bool) -> AppResult<bool> {
        if purge {
            let txn = self.db.begin_write().await?;
            entities::mirror_message_links::Entity::delete_many()
                .filter(entities::mirror_message_links::Column::MappingId.eq(id))
                .exec(&txn)
                .await?;
            let res = Mappings::delete_by_id(id).exec(&txn).await?;
            txn.commit().await?;
            return Ok(res.rows_affected == 1);
        }
        let res = Mappings::update_many()
            .col_expr(
                connector_mappings::Column::DeletedAt,
                sea_orm::sea_query::Expr::value(now_ms()),
            )
            .filter(connector_mappings::Column::Id.eq(id))
            .filter(connector_mappings::Column::DeletedAt.is_null())
            .exec(self.db.conn())
            .await?;
        Ok(res.rows_affected == 1)
    }
}
