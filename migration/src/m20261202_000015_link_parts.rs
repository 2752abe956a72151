use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// A source message longer than a target message may be (2,000 characters) is delivered as
/// several messages; the link keeps the ids after the first (space-separated, in order), so
/// that an edit or a delete of the source reaches every one of them.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER TABLE mirror_message_links ADD COLUMN part_message_ids TEXT NULL",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("ALTER TABLE mirror_message_links DROP COLUMN part_message_ids")
            .await?;
        Ok(())
    }
}
