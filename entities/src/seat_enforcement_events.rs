use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "seat_enforcement_events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub tenant_key: String,
    pub connector_id: String,
    pub guild_id: i64,
    /// `under`, `over` or `unknown`.
    pub from_state: String,
    pub to_state: String,
    pub seats_used: i64,
    pub seat_limit: i64,
    pub at: i64,
    pub cause: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
