use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub enum Connectors {
    Table,
    Id,
    TenantKey,
    ConnectorId,
    Name,
    SourceGuildId,
    Enabled,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Connectors::Table)
                    .if_not_exists()
                    .col(big_pk_auto(Connectors::Id))
                    .col(text(Connectors::TenantKey))
                    .col(text(Connectors::ConnectorId))
                    .col(text(Connectors::Name))
                    .col(big_integer(Connectors::SourceGuildId))
                    .col(boolean(Connectors::Enabled).default(true))
                    .col(big_integer(Connectors::CreatedAt))
                    .col(big_integer(Connectors::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("connectors_by_tenant_connector")
                    .table(Connectors::Table)
                    .col(Connectors::TenantKey)
                    .col(Connectors::ConnectorId)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Connectors::Table).to_owned())
            .await
    }
}
