//! The actor system: one file per actor, its message types beside it.
//!
//! | actor | owns | receives |
//! |---|---|---|
//! | [`gateway_ingest::GatewayIngest`] | the serenity client | Discord events |
//! | [`seat_auditor::SeatAuditor`] | guild indexes, audit queue worker | guild changes, audit requests |
//! | [`snapshot_cache::SnapshotCacheActor`] | the shared snapshot map | snapshot and policy updates |
//! | [`mirror_gate::MirrorGate`] | mirror queue worker | wake-ups |
//! | [`admin_http::AdminHttp`] | the actix-web server | stop |

pub mod admin_http;
pub mod gateway_ingest;
pub mod mirror_gate;
pub mod seat_auditor;
pub mod snapshot_cache;

use serde::{Deserialize, Serialize};

/// The unit of seat enforcement: a target guild under a tenant's connector.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServerKey {
    pub tenant_key: String,
    pub connector_id: String,
    pub guild_id: u64,
}

impl std::fmt::Display for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.tenant_key, self.connector_id, self.guild_id
        )
    }
}

/// Asks an actor to finish in-flight work, release what it holds, and stop.
#[derive(actix::Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Shutdown;
