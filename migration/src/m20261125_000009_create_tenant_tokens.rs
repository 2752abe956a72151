use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Tenant API tokens. Only the SHA-256 of a token is stored; the token itself is shown once.
#[derive(DeriveIden)]
enum TenantTokens {
    Table,
    Id,
    TenantKey,
    TokenHash,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use TenantTokens as T;
        manager
            .create_table(
                Table::create()
                    .table(T::Table)
                    .if_not_exists()
                    .col(big_pk_auto(T::Id))
                    .col(text(T::TenantKey))
                    .col(text(T::TokenHash))
                    .col(big_integer(T::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("tenant_tokens_by_hash")
                    .table(T::Table)
                    .col(T::TokenHash)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("tenant_tokens_by_tenant")
                    .table(T::Table)
                    .col(T::TenantKey)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(TenantTokens::Table).to_owned())
            .await
    }
}
