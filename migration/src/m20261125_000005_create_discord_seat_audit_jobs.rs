use sea_orm_migration::{prelude::*, schema::*};

use crate::queue_columns::{add_queue_columns, create_queue_indexes};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum DiscordSeatAuditJobs {
    Table,
    TenantKey,
    ConnectorId,
    GuildId,
    Reason,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use DiscordSeatAuditJobs as T;
        let mut table = Table::create();
        table.table(T::Table).if_not_exists();
        add_queue_columns(&mut table)
            .col(text(T::TenantKey))
            .col(text(T::ConnectorId))
            .col(big_integer(T::GuildId))
            .col(text(T::Reason));
        manager.create_table(table).await?;
        create_queue_indexes(manager, "discord_seat_audit_jobs").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(DiscordSeatAuditJobs::Table).to_owned())
            .await
    }
}
