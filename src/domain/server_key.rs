//! The unit of seat enforcement: a target guild under a tenant's connector.

use serde::{Deserialize, Serialize};

/// A target guild under a tenant's connector (DESIGN.md "server").
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
