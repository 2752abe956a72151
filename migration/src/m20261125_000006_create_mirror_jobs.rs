use sea_orm_migration::{prelude::*, schema::*};

use crate::queue_columns::{add_queue_columns, create_queue_indexes};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum MirrorJobs {
    Table,
    TenantKey,
    ConnectorId,
    MappingId,
    TargetGuildId,
    TargetChannelId,
    Kind,
    SourceChannelId,
    SourceMessageId,
    Payload,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use MirrorJobs as T;
        let mut table = Table::create();
        table.table(T::Table).if_not_exists();
        add_queue_columns(&mut table)
            .col(text(T::TenantKey))
            .col(text(T::ConnectorId))
            .col(big_integer(T::MappingId))
            .col(big_integer(T::TargetGuildId))
            .col(big_integer(T::TargetChannelId))
            .col(text(T::Kind))
            .col(big_integer(T::SourceChannelId))
            .col(big_integer(T::SourceMessageId))
            .col(text(T::Payload));
        manager.create_table(table).await?;
        create_queue_indexes(manager, "mirror_jobs").await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("mirror_jobs_by_source_message")
                    .table(T::Table)
                    .col(T::MappingId)
                    .col(T::SourceMessageId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(MirrorJobs::Table).to_owned())
            .await
    }
}
