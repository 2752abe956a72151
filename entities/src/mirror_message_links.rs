use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "mirror_message_links")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub mapping_id: i64,
    pub source_message_id: i64,
    pub target_channel_id: i64,
    pub target_message_id: i64,
    pub webhook_id: Option<i64>,
    pub created_at: i64,
    /// The source attachments the delivery linked rather than uploaded, one URL per line.
    pub linked_attachments: Option<String>,
    /// A source message delivered as several messages: the ids after the first
    /// (`target_message_id`), space-separated, in order.
    pub part_message_ids: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
