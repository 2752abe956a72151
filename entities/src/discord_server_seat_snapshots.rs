use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "discord_server_seat_snapshots")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub tenant_key: String,
    pub connector_id: String,
    pub guild_id: i64,
    pub seats_used: i64,
    pub seat_limit: i64,
    pub is_over_limit: bool,
    pub checked_at: i64,
    pub next_check_after: i64,
    /// `fresh`, `stale` or `expired` as last written.
    pub status: String,
    pub last_error: Option<String>,
    pub basic_count: i64,
    pub advanced_count: i64,
    pub pro_count: i64,
    pub updated_at: i64,
    /// While the member list is still arriving: members counted so far.
    pub members_counted: Option<i64>,
    /// ... of this many (Discord's member count), when known.
    pub member_count: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
