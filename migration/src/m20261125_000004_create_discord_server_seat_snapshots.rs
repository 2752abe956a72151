use sea_orm_migration::{prelude::*, schema::*};

use super::m20261125_000001_create_connectors::Connectors;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum DiscordServerSeatSnapshots {
    Table,
    Id,
    TenantKey,
    ConnectorId,
    GuildId,
    SeatsUsed,
    SeatLimit,
    IsOverLimit,
    CheckedAt,
    NextCheckAfter,
    Status,
    LastError,
    BasicCount,
    AdvancedCount,
    ProCount,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use DiscordServerSeatSnapshots as T;
        manager
            .create_table(
                Table::create()
                    .table(T::Table)
                    .if_not_exists()
                    .col(big_pk_auto(T::Id))
                    .col(text(T::TenantKey))
                    .col(text(T::ConnectorId))
                    .col(big_integer(T::GuildId))
                    .col(big_integer(T::SeatsUsed))
                    .col(big_integer(T::SeatLimit))
                    .col(boolean(T::IsOverLimit))
                    .col(big_integer(T::CheckedAt))
                    .col(big_integer(T::NextCheckAfter))
                    .col(text(T::Status))
                    .col(text_null(T::LastError))
                    .col(big_integer(T::BasicCount).default(0))
                    .col(big_integer(T::AdvancedCount).default(0))
                    .col(big_integer(T::ProCount).default(0))
                    .col(big_integer(T::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("discord_server_seat_snapshots_connector_fk")
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
                    .name("discord_server_seat_snapshots_by_tenant_connector_guild")
                    .table(T::Table)
                    .col(T::TenantKey)
                    .col(T::ConnectorId)
                    .col(T::GuildId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("discord_server_seat_snapshots_by_status_next_check_after")
                    .table(T::Table)
                    .col(T::Status)
                    .col(T::NextCheckAfter)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(DiscordServerSeatSnapshots::Table)
                    .to_owned(),
            )
            .await
    }
}
