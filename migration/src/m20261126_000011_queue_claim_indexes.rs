use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const QUEUES: &[&str] = &["discord_seat_audit_jobs", "mirror_jobs"];

/// Claim reads the due pending rows in `run_after, id` order and, separately, the expired
/// leases. With only `(status, run_after)` PostgreSQL answered the combined condition with a
/// bitmap scan that visits every dead row version a busy queue leaves behind (every job was
/// once pending), then sorted: 12-17 ms per claim under load. These partial indexes hold
/// only the rows a claim can take, are read in order, and let index scans mark dead entries.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for t in QUEUES {
            db.execute_unprepared(&format!(
                "CREATE INDEX IF NOT EXISTS {t}_claimable ON {t} (run_after, id) \
                 WHERE status = 'pending'"
            ))
            .await?;
            db.execute_unprepared(&format!(
                "CREATE INDEX IF NOT EXISTS {t}_leased ON {t} (lease_expires_at) \
                 WHERE status = 'processing'"
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for t in QUEUES {
            db.execute_unprepared(&format!("DROP INDEX IF EXISTS {t}_claimable"))
                .await?;
            db.execute_unprepared(&format!("DROP INDEX IF EXISTS {t}_leased"))
                .await?;
        }
        Ok(())
    }
}
