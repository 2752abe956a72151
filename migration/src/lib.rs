//! Schema migrations for every table in DESIGN.md "Persistence". Index names are prefixed
//! with their table's name because SQL wants index names unique per schema.
//!
//! Conventions shared by every table:
//! - Discord ids are BIGINT holding the snowflake with its sign bit flipped
//!   (`seatgate::domain::snowflake::to_db`), so all 64 bits survive and order is Discord's.
//! - Timestamps are BIGINT milliseconds since the Unix epoch (UTC), compared and indexed the
//!   same way on SQLite and PostgreSQL.

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_create_connectors;
mod m20261125_000002_create_connector_mappings;
mod m20261125_000003_create_discord_server_configs;
mod m20261125_000004_create_discord_server_seat_snapshots;
mod m20261125_000005_create_discord_seat_audit_jobs;
mod m20261125_000006_create_mirror_jobs;
mod m20261125_000007_create_mirror_message_links;
mod m20261125_000008_create_seat_enforcement_events;
mod m20261125_000009_create_tenant_tokens;
mod m20261125_000010_create_service_settings;
mod m20261126_000011_queue_claim_indexes;
mod m20261126_000012_link_linked_attachments;
mod m20261201_000013_snapshot_counting_progress;
mod m20261201_000014_tenant_walls;
mod m20261202_000015_link_parts;
mod m20261204_000016_change_notifications;
mod m20261204_000017_service_instances;
mod m20261204_000018_shard_leases;
mod m20261207_000019_guild_directory;
mod queue_columns;

/// The PostgreSQL `NOTIFY` channel on which every change of a row other instances keep in
/// memory is announced (by triggers, in the change's own transaction).
pub use m20261204_000016_change_notifications::CHANNEL as CHANGES_CHANNEL;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_create_connectors::Migration),
            Box::new(m20261125_000002_create_connector_mappings::Migration),
            Box::new(m20261125_000003_create_discord_server_configs::Migration),
            Box::new(m20261125_000004_create_discord_server_seat_snapshots::Migration),
            Box::new(m20261125_000005_create_discord_seat_audit_jobs::Migration),
            Box::new(m20261125_000006_create_mirror_jobs::Migration),
            Box::new(m20261125_000007_create_mirror_message_links::Migration),
            Box::new(m20261125_000008_create_seat_enforcement_events::Migration),
            Box::new(m20261125_000009_create_tenant_tokens::Migration),
            Box::new(m20261125_000010_create_service_settings::Migration),
            Box::new(m20261126_000011_queue_claim_indexes::Migration),
            Box::new(m20261126_000012_link_linked_attachments::Migration),
            Box::new(m20261201_000013_snapshot_counting_progress::Migration),
            Box::new(m20261201_000014_tenant_walls::Migration),
            Box::new(m20261202_000015_link_parts::Migration),
            Box::new(m20261204_000016_change_notifications::Migration),
            Box::new(m20261204_000017_service_instances::Migration),
            Box::new(m20261204_000018_shard_leases::Migration),
            Box::new(m20261207_000019_guild_directory::Migration),
        ]
    }
}

/// Every table the migrations create, in creation order.
pub const TABLES: &[&str] = &[
    "connectors",
    "connector_mappings",
    "discord_server_configs",
    "discord_server_seat_snapshots",
    "discord_seat_audit_jobs",
    "mirror_jobs",
    "mirror_message_links",
    "seat_enforcement_events",
    "tenant_tokens",
    "service_settings",
    "tenant_source_guilds",
    "service_webhooks",
    "service_instances",
    "gateway_shard_leases",
    "gateway_identify",
];

/// Every named index the migrations create.
pub const INDEXES: &[&str] = &[
    "connectors_by_tenant_connector",
    "connector_mappings_by_tenant_connector",
    "connector_mappings_by_source_channel",
    "discord_server_configs_by_tenant_connector_guild",
    "discord_server_seat_snapshots_by_tenant_connector_guild",
    "discord_server_seat_snapshots_by_status_next_check_after",
    "discord_seat_audit_jobs_by_status_run_after",
    "discord_seat_audit_jobs_by_dedupe",
    "discord_seat_audit_jobs_claimable",
    "discord_seat_audit_jobs_leased",
    "mirror_jobs_by_status_run_after",
    "mirror_jobs_by_dedupe",
    "mirror_jobs_claimable",
    "mirror_jobs_leased",
    "mirror_jobs_by_source_message",
    "mirror_message_links_by_mapping_source",
    "seat_enforcement_events_by_tenant_connector_guild",
    "tenant_tokens_by_hash",
    "tenant_tokens_by_tenant",
    "tenant_source_guilds_by_tenant_guild",
];
