use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The channel every change is announced on.
pub const CHANNEL: &str = "seatgate_changes";

/// The tables whose rows other instances keep in memory, with the columns that name a row.
/// The payload carries only those (never a token or a token's hash): a listener reads the row.
const WATCHED: &[(&str, &[&str])] = &[
    (
        "discord_server_seat_snapshots",
        &["tenant_key", "connector_id", "guild_id"],
    ),
    (
        "discord_server_configs",
        &["tenant_key", "connector_id", "guild_id"],
    ),
    ("connectors", &["tenant_key", "connector_id"]),
    (
        "connector_mappings",
        &["tenant_key", "connector_id", "target_guild_id"],
    ),
    ("service_settings", &["key"]),
    ("tenant_tokens", &["id"]),
    ("service_webhooks", &["webhook_id"]),
];

/// On PostgreSQL, every insert, update and delete of a watched row is announced with
/// `pg_notify` from a trigger, so in the same transaction as the change: it reaches the
/// listeners when, and only if, the change commits, whichever code path wrote it. SQLite
/// has one process per database and no notifications: nothing to do there.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared(&format!(
            r#"CREATE OR REPLACE FUNCTION seatgate_notify_change() RETURNS trigger AS $$
DECLARE
    changed jsonb;
    payload jsonb;
    i integer;
BEGIN
    IF TG_OP = 'DELETE' THEN changed := to_jsonb(OLD); ELSE changed := to_jsonb(NEW); END IF;
    payload := jsonb_build_object('table', TG_TABLE_NAME, 'op', lower(TG_OP));
    FOR i IN 0 .. TG_NARGS - 1 LOOP
        payload := payload || jsonb_build_object(TG_ARGV[i], changed -> TG_ARGV[i]);
    END LOOP;
    PERFORM pg_notify('{CHANNEL}', payload::text);
    RETURN NULL;
END
$$ LANGUAGE plpgsql"#
        ))
        .await?;
        for (table, keys) in WATCHED {
            let args = keys
                .iter()
                .map(|k| format!("'{k}'"))
                .collect::<Vec<_>>()
                .join(", ");
            db.execute_unprepared(&format!(
                "CREATE TRIGGER {table}_notify AFTER INSERT OR UPDATE OR DELETE ON {table} \
                 FOR EACH ROW EXECUTE FUNCTION seatgate_notify_change({args})"
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        for (table, _) in WATCHED {
            db.execute_unprepared(&format!("DROP TRIGGER IF EXISTS {table}_notify ON {table}"))
                .await?;
        }
        db.execute_unprepared("DROP FUNCTION IF EXISTS seatgate_notify_change()")
            .await?;
        Ok(())
    }
}
