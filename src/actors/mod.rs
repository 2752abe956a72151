//! The actor system: one file per actor, its message types beside it.
//!
//! | actor | owns | receives |
//! |---|---|---|
//! | [`gateway_ingest::GatewayIngest`] | the serenity client | Discord events |
//! | [`seat_auditor::SeatAuditor`] | guild indexes, audit queue worker | guild changes, audit requests |
//! | [`snapshot_cache::SnapshotCacheActor`] | the shared snapshot map | snapshot and policy updates |
//! | [`mirror_gate::MirrorGate`] | mirror queue worker | wake-ups |
//! | [`admin_http::AdminHttp`] | the actix-web server | stop |
//! | [`retention_pruner::RetentionPruner`] | nothing: deletes aged rows | its interval |
//! | [`change_feed::ChangeFeed`] | a PostgreSQL `LISTEN` connection | other instances' changes |
//! | [`instance_registry::InstanceRegistry`] | this process's heartbeat row | its interval |
//! | [`directory_publisher::DirectoryPublisher`] | nothing: writes its shards' guilds | its interval |

pub mod admin_http;
pub mod change_feed;
pub mod directory_publisher;
pub mod gateway_ingest;
pub mod instance_registry;
pub mod mirror_gate;
pub mod retention_pruner;
pub mod seat_auditor;
pub mod snapshot_cache;

pub use crate::domain::server_key::ServerKey;

/// Asks an actor to finish in-flight work, release what it holds, and stop.
#[derive(actix::Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Shutdown;
