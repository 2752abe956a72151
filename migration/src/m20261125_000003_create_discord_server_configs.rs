use sea_orm_migration::{prelude::*, schema::*};

use super::m20261125_000001_create_connectors::Connectors;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum DiscordServerConfigs {
    Table,
    Id,
    TenantKey,
    ConnectorId,
    GuildId,
    SeatLimit,
    EnforcementMode,
    EnforcementOverride,
    StaleGrace,
    BasicRoleId,
    AdvancedRoleId,
    ProRoleId,
    NotifyChannelId,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use DiscordServerConfigs as T;
        manager
            .create_table(
                Table::create()
                    .table(T::Table)
                    .if_not_exists()
                    .col(big_pk_auto(T::Id))
                    .col(text(T::TenantKey))
                    .col(text(T::ConnectorId))
                    .col(big_integer(T::GuildId))
                    .col(big_integer(T::SeatLimit))
                    .col(text(T::EnforcementMode).default("off"))
                    .col(text(T::EnforcementOverride).default("none"))
                    .col(boolean(T::StaleGrace).default(false))
                    .col(big_integer_null(T::BasicRoleId))
                    .col(big_integer_null(T::AdvancedRoleId))
                    .col(big_integer_null(T::ProRoleId))
                    .col(big_integer_null(T::NotifyChannelId))
                    .col(big_integer(T::CreatedAt))
                    .col(big_integer(T::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("discord_server_configs_connector_fk")
                            .from(T::Table, (T::TenantKey, T::ConnectorId))
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
                    .name("discord_server_configs_by_tenant_connector_guild")
                    .table(T::Table)
                    .col(T::TenantKey)
                    .col(T::ConnectorId)
                    .col(T::GuildId)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(DiscordServerConfigs::Table).to_owned())
            .await
    }
}
