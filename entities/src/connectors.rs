use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "connectors")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub tenant_key: String,
    pub connector_id: String,
    pub name: String,
    pub source_guild_id: i64,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
    /// Deleted (kept for the history and links until purged or aged out).
    pub deleted_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
