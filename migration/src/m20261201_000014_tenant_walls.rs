use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum TenantSourceGuilds {
    Table,
    Id,
    TenantKey,
    GuildId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ServiceWebhooks {
    Table,
    WebhookId,
    Token,
    GuildId,
    ChannelId,
    MappingId,
    CreatedAt,
}

/// Tenant walls (issue 13):
/// - `tenant_source_guilds`: the source guilds the operator granted each tenant. Every
///   existing connector's source guild is granted to its tenant, so nothing stops working.
/// - `service_webhooks`: every webhook the service created, with its token, so that its
///   messages are never mirrored again (no loops) and a copy is edited or deleted through the
///   webhook that posted it after its mapping moved to another channel.
/// - `deleted_at` on connectors, mappings and server configs: a delete keeps the pause/resume
///   history and the links (a later source delete still removes the copies) for the
///   retention period; `?purge=true` removes them at once.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TenantSourceGuilds::Table)
                    .if_not_exists()
                    .col(big_pk_auto(TenantSourceGuilds::Id))
                    .col(text(TenantSourceGuilds::TenantKey))
                    .col(big_integer(TenantSourceGuilds::GuildId))
                    .col(big_integer(TenantSourceGuilds::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("tenant_source_guilds_by_tenant_guild")
                    .table(TenantSourceGuilds::Table)
                    .col(TenantSourceGuilds::TenantKey)
                    .col(TenantSourceGuilds::GuildId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ServiceWebhooks::Table)
                    .if_not_exists()
                    .col(big_integer(ServiceWebhooks::WebhookId).primary_key())
                    .col(text(ServiceWebhooks::Token))
                    .col(big_integer(ServiceWebhooks::GuildId))
                    .col(big_integer(ServiceWebhooks::ChannelId))
                    .col(big_integer(ServiceWebhooks::MappingId))
                    .col(big_integer(ServiceWebhooks::CreatedAt))
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        for table in ["connectors", "connector_mappings", "discord_server_configs"] {
            db.execute_unprepared(&format!(
                "ALTER TABLE {table} ADD COLUMN deleted_at BIGINT NULL"
            ))
            .await?;
        }
        db.execute_unprepared(
            "INSERT INTO tenant_source_guilds (tenant_key, guild_id, created_at) \
             SELECT DISTINCT tenant_key, source_guild_id, 0 FROM connectors",
        )
        .await?;
        db.execute_unprepared(
            "INSERT INTO service_webhooks (webhook_id, token, guild_id, channel_id, mapping_id, created_at) \
             SELECT webhook_id, webhook_token, target_guild_id, target_channel_id, id, 0 \
             FROM connector_mappings WHERE webhook_id IS NOT NULL AND webhook_token IS NOT NULL",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for table in ["connectors", "connector_mappings", "discord_server_configs"] {
            db.execute_unprepared(&format!("ALTER TABLE {table} DROP COLUMN deleted_at"))
                .await?;
        }
        manager
            .drop_table(Table::drop().table(ServiceWebhooks::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(TenantSourceGuilds::Table).to_owned())
            .await?;
        Ok(())
    }
}
