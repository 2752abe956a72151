use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// A webhook the service created: its messages are never mirrored, and the copies it posted
/// are edited and deleted through it.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "service_webhooks")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub webhook_id: i64,
    /// Secret: never logged, never returned by the API.
    #[serde(skip_serializing)]
    pub token: String,
    pub guild_id: i64,
    pub channel_id: i64,
    pub mapping_id: i64,
    pub created_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
