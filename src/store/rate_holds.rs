//! Telling the other processes on the database of a Discord bucket this one found used up:
//! a PostgreSQL `NOTIFY` on the change feed's channel, read by their feeds into their limiters.
//! No row: a hold matters for seconds, and one lost with a listener's connection is found out
//! from Discord's own headers on the next request.

use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
use tokio::sync::mpsc;

use super::Database;
use crate::domain::{changes::RATE_HOLD, rate_limits::SharedHold};

/// Sends each hold from `holds` as `from`'s, in order, until the limiter is gone.
pub async fn publish(db: Database, from: String, mut holds: mpsc::UnboundedReceiver<SharedHold>) {
    while let Some(hold) = holds.recv().await {
        let payload = serde_json::json!({"table": RATE_HOLD, "from": from, "hold": hold});
        let sent = db
            .conn()
            .execute_raw(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "SELECT pg_notify($1, $2)",
                vec![
                    migration::CHANGES_CHANNEL.into(),
                    payload.to_string().into(),
                ],
            ))
            .await;
        if let Err(err) = sent {
            // The others find the bucket out from Discord's headers instead.
            tracing::debug!(error = %err, route = %hold.route, "[discord] a used-up bucket could not be told to the other processes");
        }
    }
}
