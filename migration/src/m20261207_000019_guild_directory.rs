use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// What the gateway told the process that runs a guild's shard about that guild (name, icon,
/// channels with their overwrites, roles, the bot's roles), so that every process answers the
/// admin API's names and pickers the same; written by that process only. `body` is the guild
/// as JSON. Announced on the change channel like the rows of migration 16.
#[derive(DeriveIden)]
enum GuildDirectory {
    Table,
    GuildId,
    Name,
    Body,
    UpdatedAt,
}

/// Where each process's admin API answers, for a request about a guild that another process
/// owns (`.../seats`: only the owner holds the guild's live count).
#[derive(DeriveIden)]
enum ServiceInstances {
    Table,
    AdminUrl,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use GuildDirectory as T;
        manager
            .create_table(
                Table::create()
                    .table(T::Table)
                    .if_not_exists()
                    .col(big_integer(T::GuildId).primary_key())
                    .col(text(T::Name))
                    .col(text(T::Body))
                    .col(big_integer(T::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(ServiceInstances::Table)
                    .add_column(text_null(ServiceInstances::AdminUrl))
                    .to_owned(),
            )
            .await?;
        // A claim with several processes looks for an earlier job of the same target channel
        // that another process holds.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX IF NOT EXISTS mirror_jobs_processing_by_target \
                 ON mirror_jobs (target_channel_id, id) WHERE status = 'processing'",
            )
            .await?;
        if manager.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared(
                    "CREATE TRIGGER guild_directory_notify AFTER INSERT OR UPDATE OR DELETE \
                     ON guild_directory FOR EACH ROW EXECUTE FUNCTION \
                     seatgate_notify_change('guild_id')",
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS mirror_jobs_processing_by_target")
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(ServiceInstances::Table)
                    .drop_column(ServiceInstances::AdminUrl)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(GuildDirectory::Table).to_owned())
            .await
    }
}
