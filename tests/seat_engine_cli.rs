//! `seatgate seats count --fixture FILE`, run as an operator would.

use std::path::PathBuf;
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/seats")
        .join(name)
}

fn run(path: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_seatgate"))
        .args(["seats", "count", "--fixture"])
        .arg(path)
        .env_remove("SEATGATE_CONFIG")
        .output()
        .unwrap()
}

#[test]
fn counts_the_small_guild_fixture() {
    let out = run(&fixture("small_guild.json"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stderr: {stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "exactly one line: {stdout:?}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["seats_used"], 5);
    assert_eq!(
        v["by_tier"],
        serde_json::json!({"basic": 1, "advanced": 1, "pro": 1})
    );
    assert_eq!(v["members_scanned"], 9);
    assert!(v["elapsed_ms"].as_f64().unwrap() >= 0.0);
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 4, "{keys:?}");
}

#[test]
fn missing_file_is_an_io_error() {
    let out = run(&fixture("does-not-exist.json"));
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("io_error"));
}

#[test]
fn bad_snowflake_is_reported_with_its_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.json");
    let text = std::fs::read_to_string(fixture("small_guild.json"))
        .unwrap()
        .replace(r#""owner_id": "1""#, r#""owner_id": "one""#);
    std::fs::write(&path, text).unwrap();
    let out = run(&path);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("snowflake_invalid"), "{stderr}");
    assert!(stderr.contains("guild.owner_id"), "{stderr}");
}
