use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Gateway shards shared by the `serve` processes on one PostgreSQL database: one row per
/// shard, held by at most one process until `expires_at` (milliseconds of PostgreSQL's clock),
/// its `epoch` raised at every take so that a process that lost a shard cannot renew it.
#[derive(DeriveIden)]
enum GatewayShardLeases {
    Table,
    ShardId,
    ShardTotal,
    Holder,
    Epoch,
    ExpiresAt,
}

/// When each IDENTIFY bucket (`shard_id % max_concurrency`) last identified: Discord allows
/// one IDENTIFY per bucket per 5 seconds, for all processes together.
#[derive(DeriveIden)]
enum GatewayIdentify {
    Table,
    Bucket,
    LastAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use GatewayShardLeases as L;
        manager
            .create_table(
                Table::create()
                    .table(L::Table)
                    .if_not_exists()
                    .col(integer(L::ShardId).primary_key())
                    .col(integer(L::ShardTotal))
                    .col(text_null(L::Holder))
                    .col(big_integer(L::Epoch).default(0))
                    .col(big_integer(L::ExpiresAt).default(0))
                    .to_owned(),
            )
            .await?;
        use GatewayIdentify as I;
        manager
            .create_table(
                Table::create()
                    .table(I::Table)
                    .if_not_exists()
                    .col(integer(I::Bucket).primary_key())
                    .col(big_integer(I::LastAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(GatewayIdentify::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(GatewayShardLeases::Table).to_owned())
            .await
    }
}
