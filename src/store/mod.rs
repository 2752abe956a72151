//! The thin store layer over the SeaORM entities: one repository per aggregate, plus the
//! durable queue shared by audit jobs and mirror jobs.

pub mod catch_up;
pub mod db;
pub mod instance;
pub mod live_instances;
pub mod mirror;
pub mod queue;
pub mod rate_holds;
pub mod retention;
pub mod seat_audit;
pub mod testing;

pub use db::{now_ms, Database};
pub mod connectors;
pub mod grants;
pub mod guild_directory;
pub mod servers;
pub mod settings;
pub mod shard_leases;
pub mod tokens;
