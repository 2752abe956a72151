//! Runtime settings changed through the admin API that survive a restart.

use entities::service_settings::{self, Entity as ServiceSettings};
use sea_orm::{sea_query::OnConflict, EntityTrait, Set};

use super::{now_ms, Database};
use crate::error::AppResult;

pub const KILL_SWITCH: &str = "kill_switch";

#[derive(Clone, Debug)]
pub struct SettingsStore {
    db: Database,
}

impl SettingsStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// A setting's stored value.
    pub async fn get(&self, key: &str) -> AppResult<Option<String>> {
        let row = ServiceSettings::find_by_id(key.to_owned())
            .one(self.db.conn())
            .await?;
        Ok(row.map(|r| r.value))
    }

    pub async fn set(&self, key: &str, value: &str) -> AppResult<()> {
        let row = service_settings::ActiveModel {
            key: Set(key.to_owned()),
            value: Set(value.to_owned()),
            updated_at: Set(now_ms()),
        };
        ServiceSettings::insert(row)
            .on_conflict(
                OnConflict::column(service_settings::Column::Key)
                    .update_columns([
                        service_settings::Column::Value,
                        service_settings::Column::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .exec(self.db.conn())
            .await?;
        Ok(())
    }

    /// The persisted kill switch, or `None` when the API never set it.
    pub async fn kill_switch(&self) -> AppResult<Option<bool>> {
        Ok(self.get(KILL_SWITCH).await?.map(|v| v == "true"))
    }

    pub async fn set_kill_switch(&self, on: bool) -> AppResult<()> {
        self.set(KILL_SWITCH, &on.to_string()).await
    }
}
