use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "mirror_jobs")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub status: String,
    pub dedupe_key: Option<String>,
    pub run_after: i64,
    pub attempts: i32,
    pub max_attempts: i32,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<i64>,
    pub claim_token: Option<String>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
    pub tenant_key: String,
    pub connector_id: String,
    pub mapping_id: i64,
    pub target_guild_id: i64,
    pub target_channel_id: i64,
    /// `send`, `edit` or `delete`.
    pub kind: String,
    pub source_channel_id: i64,
    pub source_message_id: i64,
    /// JSON: content, embeds, attachments, reply reference, author name and avatar.
    pub payload: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
