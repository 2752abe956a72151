use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "connector_mappings")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub tenant_key: String,
    pub connector_id: String,
    pub source_channel_id: i64,
    pub target_guild_id: i64,
    pub target_channel_id: i64,
    /// `bot` or `webhook`.
    pub delivery_mode: String,
    pub enabled: bool,
    /// Set when Discord answered with a permanent error for this target (an ErrorCode).
    pub broken_code: Option<String>,
    pub broken_at: Option<i64>,
    pub webhook_id: Option<i64>,
    /// Secret: never logged, never returned by the API.
    #[serde(skip_serializing)]
    pub webhook_token: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Deleted (kept for the history and links until purged or aged out).
    pub deleted_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
