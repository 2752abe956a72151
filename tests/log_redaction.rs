//! No secret reaches the log, whoever writes the line: `seatgate serve` runs with every
//! crate's trace output on (serenity, reqwest, hyper and sqlx print routes, headers and
//! connection strings their own way) while it mirrors through a webhook and answers a tenant
//! token; its whole log holds neither the bot token, the operator token, the tenant token,
//! the webhook's token nor the database password. (That the writer hides what a line would
//! print is `telemetry`'s unit test: no dependency of today prints one of these here.)

mod mirror_support;

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use reqwest::Method;
use sea_orm::{ConnectionTrait, Statement};
use seatgate::{
    sandbox::{RateLimitConfig, Sandbox, SandboxOptions, Scenario},
    store::testing::TestDatabase,
};

use mirror_support::*;

const OPERATOR: &str = "log-test-operator-token";
const DB_PASSWORD: &str = "db-password-never-logged";

#[actix_web::test]
async fn trace_logs_of_every_crate_hold_no_secret() {
    no_proxy();
    let t = TestDatabase::empty().await.unwrap();
    // PostgreSQL here trusts every local connection, so a password in the URL is accepted
    // and must still not be printed. SQLite's URL has none.
    let db_url = t.url.replacen(
        "postgres://postgres@",
        &format!("postgres://postgres:{DB_PASSWORD}@"),
        1,
    );
    let sandbox = Sandbox::start(SandboxOptions {
        scenario: Some(Scenario::from_json(&scenario(1)).unwrap()),
        rate_limits: RateLimitConfig::disabled(),
        ..SandboxOptions::default()
    })
    .await
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("serve.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_seatgate"))
        .arg("serve")
        .env_clear()
        .env("SEATGATE_DATABASE_URL", &db_url)
        .env("SEATGATE_DISCORD_TOKEN", sandbox.bot_token())
        .env("SEATGATE_DISCORD_API_URL", sandbox.api_url())
        .env("SEATGATE_OPERATOR_TOKEN", OPERATOR)
        .env("SEATGATE_BIND", format!("127.0.0.1:{port}"))
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("RUST_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();

    let admin = Admin::new(format!("http://127.0.0.1:{port}"), OPERATOR.into());
    admin.wait_up(Duration::from_secs(30)).await;
    admin.configure(&["webhook"]).await;
    attached(&sandbox).await;
    let token = admin
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{TENANT}/tokens"),
            None,
        )
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let tenant = Admin::new(format!("http://127.0.0.1:{port}"), token.clone());
    tenant
        .call(
            Method::GET,
            &format!("/api/v1/tenants/{TENANT}/connectors"),
            None,
        )
        .await;
    let probe = "a signal mirrored through a webhook";
    let mut delivered = false;
    for _ in 0..20 {
        post(&sandbox, probe);
        if until(Duration::from_secs(1), || {
            live(&sandbox, target(0).1).iter().any(|c| c == probe)
        })
        .await
        {
            delivered = true;
            break;
        }
    }
    assert!(delivered, "the webhook copy never arrived");
    let db = sea_orm::Database::connect(t.url.as_str()).await.unwrap();
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT token FROM service_webhooks".to_owned(),
        ))
        .await
        .unwrap()
        .expect("the service recorded its webhook");
    let webhook_token: String = row.try_get_by_index(0).unwrap();
    let _ = child.kill();
    let _ = child.wait();

    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        text.lines().count() > 200
            && text.contains("TRACE")
            && text.contains("serenity")
            && text.contains("hyper"),
        "the log holds the dependencies' trace lines ({} lines)",
        text.lines().count()
    );
    for (what, secret) in [
        ("bot token", sandbox.bot_token().trim_start_matches("Bot ")),
        ("operator token", OPERATOR),
        ("tenant token", token.as_str()),
        ("webhook token", webhook_token.as_str()),
        ("database password", DB_PASSWORD),
    ] {
        let hits: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(secret))
            .take(3)
            .collect();
        assert!(hits.is_empty(), "the {what} is in the log: {hits:#?}");
    }
    sandbox.shutdown().await;
}
