//! SeaORM entities, one module per table. Discord ids are stored sign-flipped in BIGINT
//! columns (see `seatgate::domain::snowflake`) and timestamps as epoch milliseconds (UTC).

pub mod connector_mappings;
pub mod connectors;
pub mod discord_seat_audit_jobs;
pub mod discord_server_configs;
pub mod discord_server_seat_snapshots;
pub mod mirror_jobs;
pub mod mirror_message_links;
pub mod seat_enforcement_events;
pub mod service_settings;
pub mod service_webhooks;
pub mod tenant_source_guilds;
pub mod tenant_tokens;

pub mod prelude {
    pub use super::connector_mappings::Entity as ConnectorMappings;
    pub use super::connectors::Entity as Connectors;
    pub use super::discord_seat_audit_jobs::Entity as DiscordSeatAuditJobs;
    pub use super::discord_server_configs::Entity as DiscordServerConfigs;
    pub use super::discord_server_seat_snapshots::Entity as DiscordServerSeatSnapshots;
    pub use super::mirror_jobs::Entity as MirrorJobs;
    pub use super::mirror_message_links::Entity as MirrorMessageLinks;
    pub use super::seat_enforcement_events::Entity as SeatEnforcementEvents;
    pub use super::service_settings::Entity as ServiceSettings;
    pub use super::service_webhooks::Entity as ServiceWebhooks;
    pub use super::tenant_source_guilds::Entity as TenantSourceGuilds;
    pub use super::tenant_tokens::Entity as TenantTokens;
}
