//! Pure logic: plain types and functions, no async, no I/O. Tested without a runtime.

pub mod audit;
pub mod backoff;
pub mod changes;
pub mod freshness;
pub mod gate;
pub mod invalid_requests;
pub mod mirror;
pub mod permissions;
pub mod rate_limits;
pub mod seats;
pub mod server_key;
pub mod shards;
pub mod snowflake;
