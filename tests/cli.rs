//! The binary as an operator runs it: exit codes, redaction, migrate, serve and its stop.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use seatgate::store::testing::TestDatabase;

fn seatgate() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_seatgate"));
    // Only what each test sets.
    for (key, _) in std::env::vars() {
        if key.starts_with("SEATGATE_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("NO_PROXY", "127.0.0.1,localhost");
    cmd
}

#[test]
fn serve_without_a_token_exits_2_naming_the_variable() {
    let out = seatgate().arg("serve").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SEATGATE_DISCORD_TOKEN"), "{err}");
}

#[test]
fn bad_configuration_exits_2_with_one_line_naming_the_setting() {
    let out = seatgate()
        .arg("config")
        .env("SEATGATE_BIND", "not-an-address")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("SEATGATE_BIND"), "{err}");

    let out = seatgate()
        .arg("config")
        .env("SEATGATE_QUEUE_MAX_ATTEMPTS", "zero")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SEATGATE_QUEUE_MAX_ATTEMPTS"));
}

#[test]
fn config_prints_the_effective_configuration_with_secrets_redacted() {
    let out = seatgate()
        .arg("config")
        .env("SEATGATE_DISCORD_TOKEN", "MTIz.super-secret-token")
        .env("SEATGATE_OPERATOR_TOKEN", "operator-secret")
        .env("SEATGATE_RECHECK_SECS", "42")
        .env("SEATGATE_DATABASE_URL", "postgres://u:secret@h/db")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("recheck_secs = 42"), "{text}");
    assert!(text.contains("discord_token = \"[redacted]\""), "{text}");
    assert!(
        text.contains("database_url = \"postgres://u:[redacted]@h/db\""),
        "{text}"
    );
    assert!(
        !text.contains("super-secret")
            && !text.contains("operator-secret")
            && !text.contains("secret@"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_creates_the_schema() {
    let t = TestDatabase::empty().await.unwrap();
    let out = seatgate()
        .arg("migrate")
        .env("SEATGATE_DATABASE_URL", &t.url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The schema is there: the queue can use it.
    let q = seatgate::store::queue::AuditQueue::audit(t.db.clone(), Default::default());
    assert_eq!(q.counts(0).await.unwrap().pending, 0);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_health_and_readiness_and_stops_gracefully_on_sigterm() {
    let t = TestDatabase::empty().await.unwrap();
    let port = free_port();
    let mut child = seatgate()
        .arg("serve")
        .env("SEATGATE_DATABASE_URL", &t.url)
        .env("SEATGATE_DISCORD_TOKEN", "test-token")
        .env("SEATGATE_BIND", format!("127.0.0.1:{port}"))
        .env("SEATGATE_DISCORD_API_URL", "http://127.0.0.1:9")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(resp) = client.get(format!("{base}/healthz")).send().await {
            assert_eq!(resp.status(), 200);
            break;
        }
        assert!(Instant::now() < deadline, "serve did not come up");
        assert!(child.try_wait().unwrap().is_none(), "serve exited early");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["database"], "ok");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut stderr = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(exit.success(), "exit {exit:?}: {stderr}");
    assert!(stderr.contains("stopped"), "{stderr}");
    assert!(!stderr.contains("test-token"), "token leaked into logs");
    // Migrations ran at start.
    let q = seatgate::store::queue::MirrorQueue::mirror(t.db.clone(), Default::default());
    assert_eq!(q.counts(0).await.unwrap().pending, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_format_writes_one_json_object_per_line() {
    let t = TestDatabase::empty().await.unwrap();
    let out = seatgate()
        .arg("migrate")
        .env("SEATGATE_DATABASE_URL", &t.url)
        .env("SEATGATE_LOG_FORMAT", "json")
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v.get("level").is_some(), "{line}");
    }
    assert!(
        lines.iter().any(|l| l.contains("migrations applied")),
        "{err}"
    );
}

/// Without shard leases (SQLite, or PostgreSQL with `SEATGATE_SHARD_LEASES=false`) a second
/// `serve` on the same database must not run beside the first: it exits 2 naming the holder.
/// A first one killed with SIGKILL holds nothing: the next starts at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_serve_on_the_same_database_exits_2_naming_the_first() {
    let t = TestDatabase::empty().await.unwrap();
    let serve = |port: u16| {
        seatgate()
            .arg("serve")
            .env("SEATGATE_DATABASE_URL", &t.url)
            .env("SEATGATE_SHARD_LEASES", "false")
            .env("SEATGATE_DISCORD_TOKEN", "test-token")
            .env("SEATGATE_BIND", format!("127.0.0.1:{port}"))
            .env("SEATGATE_DISCORD_API_URL", "http://127.0.0.1:9")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let up = |port: u16| {
        let client = client.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            while client
                .get(format!("http://127.0.0.1:{port}/healthz"))
                .send()
                .await
                .is_err()
            {
                assert!(Instant::now() < deadline, "serve did not come up");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let first_port = free_port();
    let mut first = serve(first_port);
    up(first_port).await;

    let second = serve(free_port()).wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{err}");
    assert!(err.contains("instance_already_running"), "{err}");
    assert!(
        err.contains(&format!("pid {}", first.id())),
        "names the holder: {err}"
    );

    first.kill().unwrap();
    first.wait().unwrap();
    let third_port = free_port();
    let mut third = serve(third_port);
    up(third_port).await;
    assert!(third.try_wait().unwrap().is_none(), "the third runs");
    third.kill().unwrap();
    third.wait().unwrap();
}
