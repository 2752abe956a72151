use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// While a server's member list is still arriving (a large guild at connect, a recount under
/// way), its snapshot says how far the count has got: `members_counted` of `member_count`.
/// Both are NULL once a complete count is written.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for column in ["members_counted", "member_count"] {
            db.execute_unprepared(&format!(
                "ALTER TABLE discord_server_seat_snapshots ADD COLUMN {column} BIGINT NULL"
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for column in ["members_counted", "member_count"] {
            db.execute_unprepared(&format!(
                "ALTER TABLE discord_server_seat_snapshots DROP COLUMN {column}"
            ))
            .await?;
        }
        Ok(())
    }
}
