use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The `serve` processes on this database, each with its last heartbeat (milliseconds of
/// PostgreSQL's clock, the only clock they share): the live ones split Discord's global rate
/// limit of the one bot token between them.
#[derive(DeriveIden)]
enum ServiceInstances {
    Table,
    WorkerId,
    StartedAt,
    LastSeen,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use ServiceInstances as T;
        manager
            .create_table(
                Table::create()
                    .table(T::Table)
                    .if_not_exists()
                    .col(text(T::WorkerId).primary_key())
                    .col(big_integer(T::StartedAt))
                    .col(big_integer(T::LastSeen))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ServiceInstances::Table).to_owned())
            .await
    }
}
