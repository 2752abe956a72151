use sea_orm_migration::{prelude::*, schema::*};

use super::m20261125_000001_create_connectors::Connectors;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum SeatEnforcementEvents {
    Table,
    Id,
    TenantKey,
    ConnectorId,
    GuildId,
    FromState,
    ToState,
    SeatsUsed,
    SeatLimit,
    At,
    Cause,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use SeatEnforcementEvents as T;
        manager
            .create_table(
                Table::create()
                    .table(T::Table)
                    .if_not_exists()
                    .col(big_pk_auto(T::Id))
                    .col(text(T::TenantKey))
                    .col(text(T::ConnectorId))
                    .col(big_integer(T::GuildId))
                    .col(text(T::FromState))
                    .col(text(T::ToState))
                    .col(big_integer(T::SeatsUsed))
                    .col(big_integer(T::SeatLimit))
                    .col(big_integer(T::At))
                    .col(text(T::Cause))
                    .foreign_key(
                        ForeignKey::create()
                            .name("seat_enforcement_events_connector_fk")
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
                    .name("seat_enforcement_events_by_tenant_connector_guild")
                    .table(T::Table)
                    .col(T::TenantKey)
                    .col(T::ConnectorId)
                    .col(T::GuildId)
                    .col(T::At)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(SeatEnforcementEvents::Table).to_owned())
            .await
    }
}
