//! The source guilds the operator granted each tenant: a tenant's connectors may read only
//! those.

use entities::tenant_source_guilds::{self, Entity as Grants};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};

use super::{now_ms, Database};
use crate::{domain::snowflake::to_db, error::AppResult};

#[derive(Clone, Debug)]
pub struct GrantStore {
    db: Database,
}

impl GrantStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Grants `guild_id` to `tenant_key` (again: nothing changes). Answers whether it is new.
    pub async fn grant(&self, tenant_key: &str, guild_id: u64) -> AppResult<bool> {
        if self.is_granted(tenant_key, guild_id).await? {
            return Ok(false);
        }
        let row = tenant_source_guilds::ActiveModel {
            tenant_key: Set(tenant_key.to_owned()),
            guild_id: Set(to_db(guild_id)),
            created_at: Set(now_ms()),
            ..Default::default()
        };
        let inserted = Grants::insert(row)
            .on_conflict_do_nothing_on([
                tenant_source_guilds::Column::TenantKey,
                tenant_source_guilds::Column::GuildId,
            ])
            .exec(self.db.conn())
            .await?;
        Ok(matches!(inserted, sea_orm::TryInsertResult::Inserted(_)))
    }

    pub async fn revoke(&self, tenant_key: &str, guild_id: u64) -> AppResult<bool> {
        let res = Grants::delete_many()
            .filter(tenant_source_guilds::Column::TenantKey.eq(tenant_key))
            .filter(tenant_source_guilds::Column::GuildId.eq(to_db(guild_id)))
            .exec(self.db.conn())
            .await?;
        Ok(res.rows_affected > 0)
    }

    pub async fn is_granted(&self, tenant_key: &str, guild_id: u64) -> AppResult<bool> {
        Ok(Grants::find()
            .filter(tenant_source_guilds::Column::TenantKey.eq(tenant_key))
            .filter(tenant_source_guilds::Column::GuildId.eq(to_db(guild_id)))
            .one(self.db.conn())
            .await?
            .is_some())
    }

    pub async fn list(&self, tenant_key: &str) -> AppResult<Vec<tenant_source_guilds::Model>> {
        Ok(Grants::find()
            .filter(tenant_source_guilds::Column::TenantKey.eq(tenant_key))
            .order_by_asc(tenant_source_guilds::Column::GuildId)
            .all(self.db.conn())
            .await?)
    }
}
