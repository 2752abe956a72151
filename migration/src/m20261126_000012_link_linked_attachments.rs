use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// A delivered message remembers which source attachments it linked rather than uploaded
/// (one URL per line), so that an edit links the same ones: a file the CDN refused at send
/// time is planned for upload, and an edit that followed the plan would drop its link.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER TABLE mirror_message_links ADD COLUMN linked_attachments TEXT NULL",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("ALTER TABLE mirror_message_links DROP COLUMN linked_attachments")
            .await?;
        Ok(())
    }
}
