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
    assert_eq!(before, 11);
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
