use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "discord_server_configs")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub tenant_key: String,
    pub connector_id: String,
    pub guild_id: i64,
    pub seat_limit: i64,
    /// `off`, `shadow` or `enforce`.
    pub enforcement_mode: String,
    /// `none`, `allow` or `block`.
    pub enforcement_override: String,
    pub stale_grace: bool,
    pub basic_role_id: Option<i64>,
    pub advanced_role_id: Option<i64>,
    pub pro_role_id: Option<i64>,
    pub notify_channel_id: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Deleted (kept for the history and links until purged or aged out).
    pub deleted_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
