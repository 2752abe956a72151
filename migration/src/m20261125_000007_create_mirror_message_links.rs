use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum MirrorMessageLinks {
    Table,
    Id,
    MappingId,
    SourceMessageId,
    TargetChannelId,
    TargetMessageId,
    WebhookId,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use MirrorMessageLinks as T;
        manager
            .create_table(
                Table::create()
                    .table(T::Table)
                    .if_not_exists()
                    .col(big_pk_auto(T::Id))
                    .col(big_integer(T::MappingId))
                    .col(big_integer(T::SourceMessageId))
                    .col(big_integer(T::TargetChannelId))
                    .col(big_integer(T::TargetMessageId))
                    .col(big_integer_null(T::WebhookId))
                    .col(big_integer(T::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("mirror_message_links_by_mapping_source")
                    .table(T::Table)
                    .col(T::MappingId)
                    .col(T::SourceMessageId)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(MirrorMessageLinks::Table).to_owned())
            .await
    }
}
