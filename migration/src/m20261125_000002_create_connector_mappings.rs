use sea_orm_migration::{prelude::*, schema::*};

use super::m20261125_000001_create_connectors::Connectors;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ConnectorMappings {
    Table,
    Id,
    TenantKey,
    ConnectorId,
    SourceChannelId,
    TargetGuildId,
    TargetChannelId,
    DeliveryMode,
    Enabled,
    BrokenCode,
    BrokenAt,
    WebhookId,
    WebhookToken,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ConnectorMappings::Table)
                    .if_not_exists()
                    .col(big_pk_auto(ConnectorMappings::Id))
                    .col(text(ConnectorMappings::TenantKey))
                    .col(text(ConnectorMappings::ConnectorId))
                    .col(big_integer(ConnectorMappings::SourceChannelId))
                    .col(big_integer(ConnectorMappings::TargetGuildId))
                    .col(big_integer(ConnectorMappings::TargetChannelId))
                    .col(text(ConnectorMappings::DeliveryMode).default("bot"))
                    .col(boolean(ConnectorMappings::Enabled).default(true))
                    .col(text_null(ConnectorMappings::BrokenCode))
                    .col(big_integer_null(ConnectorMappings::BrokenAt))
                    .col(big_integer_null(ConnectorMappings::WebhookId))
                    .col(text_null(ConnectorMappings::WebhookToken))
                    .col(big_integer(ConnectorMappings::CreatedAt))
                    .col(big_integer(ConnectorMappings::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("connector_mappings_connector_fk")
                            .from(
                                ConnectorMappings::Table,
                                (ConnectorMappings::TenantKey, ConnectorMappings::ConnectorId),
                            )
                            .to(
                                Connectors::Table,
                                (Connectors::TenantKey, Connectors::ConnectorId),
                            )
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("connector_mappings_by_tenant_connector")
                    .table(ConnectorMappings::Table)
                    .col(ConnectorMappings::TenantKey)
                    .col(ConnectorMappings::ConnectorId)
                    .col(ConnectorMappings::SourceChannelId)
                    .col(ConnectorMappings::TargetChannelId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("connector_mappings_by_source_channel")
                    .table(ConnectorMappings::Table)
                    .col(ConnectorMappings::SourceChannelId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ConnectorMappings::Table).to_owned())
            .await
    }
}
