//! Migrations on the backend `SEATGATE_TEST_DATABASE` selects (SQLite by default).

use migration::{INDEXES, TABLES};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
use seatgate::{domain::snowflake, store::testing::TestDatabase};

async fn catalogue(t: &TestDatabase, kind: &str) -> Vec<String> {
    let sql = match (t.backend(), kind) {
        (DatabaseBackend::Postgres, "table") => {
            "SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public'"
        }
        (DatabaseBackend::Postgres, _) => {
            "SELECT indexname AS name FROM pg_indexes WHERE schemaname = 'public'"
        }
        (_, "table") => "SELECT name FROM sqlite_master WHERE type = 'table'",
        _ => "SELECT name FROM sqlite_master WHERE type = 'index'",
    };
    let rows =
        t.db.conn()
            .query_all_raw(Statement::from_string(t.backend(), sql))
            .await
            .unwrap();
    rows.iter()
        .map(|r| r.try_get::<String>("", "name").unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_on_an_empty_database_creates_every_table_and_index() {
    let t = TestDatabase::empty().await.unwrap();
    assert!(
        !catalogue(&t, "table")
            .await
            .iter()
            .any(|n| n == "connectors"),
        "database was not empty"
    );
    t.db.migrate().await.unwrap();
    let tables = catalogue(&t, "table").await;
    for table in TABLES {
        assert!(
            tables.iter().any(|n| n == table),
            "table {table} missing: {tables:?}"
        );
    }
    let indexes = catalogue(&t, "index").await;
    for index in INDEXES {
        assert!(
            indexes.iter().any(|n| n == index),
            "index {index} missing: {indexes:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_twice_is_a_no_op() {
    use migration::MigratorTrait;
    let t = TestDatabase::new().await.unwrap();
    let count = |t: &TestDatabase| {
        let db = t.db.clone();
        async move {
            let row = db
                .conn()
                .query_one_raw(Statement::from_string(
                    db.backend(),
                    "SELECT COUNT(*) AS n FROM seaql_migrations",
                ))
                .await
                .unwrap()
                .unwrap();
            row.try_get::<i64>("", "n").unwrap()
        }
    };
    let before = count(&t).await;
    assert_eq!(before, migration::Migrator::migrations().len() as i64);
    t.db.migrate().await.unwrap();
    assert_eq!(count(&t).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snowflakes_keep_all_64_bits_and_sort_like_discord() {
    let t = TestDatabase::new().await.unwrap();
    let ids = [
        u64::MAX,
        1u64 << 63,
        175928847299117063,
        1,
        (1u64 << 63) - 1,
    ];
    for (i, id) in ids.iter().enumerate() {
        t.db.conn()
            .execute_raw(Statement::from_sql_and_values(
                t.backend(),
                match t.backend() {
                    DatabaseBackend::Postgres => "INSERT INTO connectors (tenant_key, connector_id, name, source_guild_id, enabled, created_at, updated_at) VALUES ($1, $2, 'x', $3, true, 0, 0)",
                    _ => "INSERT INTO connectors (tenant_key, connector_id, name, source_guild_id, enabled, created_at, updated_at) VALUES (?1, ?2, 'x', ?3, true, 0, 0)",
                },
                ["t".into(), format!("c{i}").into(), snowflake::to_db(*id).into()],
            ))
            .await
            .unwrap();
    }
    let rows =
        t.db.conn()
            .query_all_raw(Statement::from_string(
                t.backend(),
                "SELECT source_guild_id FROM connectors ORDER BY source_guild_id",
            ))
            .await
            .unwrap();
    let read: Vec<u64> = rows
        .iter()
        .map(|r| snowflake::from_db(r.try_get::<i64>("", "source_guild_id").unwrap()))
        .collect();
    let mut expected = ids.to_vec();
    expected.sort();
    assert_eq!(read, expected);
}

/// Migration 13 (counting columns) goes down and up again, with 14 and 15 above it, on a database
/// holding data (SQLite drops a column only since 3.35), and its columns keep what the auditor
/// writes to them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_counting_migration_goes_down_and_up_again() {
    use migration::MigratorTrait;
    use sea_orm::EntityTrait;
    use seatgate::store::testing::seed;
    use seatgate::{domain::server_key::ServerKey, store::seat_audit::SeatAuditStore};
    let t = TestDatabase::new().await.unwrap();
    seed::connector(&t.db, "t", "c", 9).await.unwrap();
    for guild in [1, 2] {
        seed::enforced_server(&t.db, ("t", "c"), guild, 1_000, None)
            .await
            .unwrap();
    }
    let store = SeatAuditStore::new(t.db.clone());
    let key = |guild_id| ServerKey {
        tenant_key: "t".into(),
        connector_id: "c".into(),
        guild_id,
    };
    store
        .write_counting(&key(1), 250, Some(3_000), 1_000, 5)
        .await
        .unwrap();
    // Down through the counting migration (13) and every one after it.
    migration::Migrator::down(t.db.conn(), Some(steps_down_through("000013")))
        .await
        .unwrap();
    t.db.migrate().await.unwrap();
    store
        .write_counting(&key(2), 1_000, None, 1_000, 6)
        .await
        .unwrap();
    let rows = entities::discord_server_seat_snapshots::Entity::find()
        .all(t.db.conn())
        .await
        .unwrap();
    assert_eq!(rows.len(), 2, "the rows survive the columns' removal");
    let first = rows
        .iter()
        .find(|r| r.seat_limit == 1_000 && r.updated_at == 5)
        .unwrap();
    assert_eq!(
        (first.members_counted, first.member_count),
        (None, None),
        "dropped with the columns"
    );
    let second = rows.iter().find(|r| r.updated_at == 6).unwrap();
    assert_eq!(
        (second.members_counted, second.member_count),
        (Some(1_000), None)
    );
    assert_eq!(second.last_error.as_deref(), Some("seat_check_pending"));
}

/// The tenant-walls migration (14) goes down and up again on a database holding connectors,
/// and grants each existing connector's source guild to its tenant, so that upgrading stops
/// no feed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenant_walls_migration_grants_existing_source_guilds() {
    use migration::MigratorTrait;
    use seatgate::store::{connectors::ConnectorStore, grants::GrantStore, testing::seed};
    let t = TestDatabase::new().await.unwrap();
    seed::connector(&t.db, "t", "c", 9).await.unwrap();
    seed::connector(&t.db, "u", "d", 8).await.unwrap();
    let grants = GrantStore::new(t.db.clone());
    assert!(grants.revoke("t", 9).await.unwrap());
    assert!(grants.revoke("u", 8).await.unwrap());
    assert!(!grants.is_granted("t", 9).await.unwrap());
    // Down through the tenant-walls migration (14) and every one after it.
    migration::Migrator::down(t.db.conn(), Some(steps_down_through("000014")))
        .await
        .unwrap();
    t.db.migrate().await.unwrap();
    assert!(grants.is_granted("t", 9).await.unwrap());
    assert!(grants.is_granted("u", 8).await.unwrap());
    assert!(
        !grants.is_granted("t", 8).await.unwrap(),
        "a guild goes only to the tenant whose connector reads it"
    );
    let connectors = ConnectorStore::new(t.db.clone());
    assert_eq!(connectors.list("t").await.unwrap().len(), 1);
}

/// How many migrations `down` must undo to undo the one whose name contains `number` (and
/// every later one).
fn steps_down_through(number: &str) -> u32 {
    use migration::MigratorTrait;
    let names: Vec<String> = migration::Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    let at = names
        .iter()
        .position(|n| n.contains(number))
        .unwrap_or_else(|| panic!("no migration {number} in {names:?}"));
    (names.len() - at) as u32
}
