//! `seatgate sandbox`: prints one JSON line with the URLs and token, serves, stops on SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

#[tokio::test]
async fn seatgate_sandbox_prints_its_urls_serves_the_scenario_and_stops_on_sigterm() {
    common::sandbox::no_proxy();
    let mut child = Command::new(env!("CARGO_BIN_EXE_seatgate"))
        .args([
            "sandbox",
            "--bind",
            "127.0.0.1:0",
            "--shards",
            "3",
            "--scenario",
        ])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/demo.json"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("RUST_LOG", "debug")
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    let line = tokio::time::timeout(Duration::from_secs(20), line)
        .await
        .expect("a line within 20 s")
        .unwrap()
        .unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        vec!["api_url", "bot_token", "control_url", "gateway_url"]
    );

    let http = seatgate::discord::connect::http(
        v["api_url"].as_str().unwrap(),
        v["bot_token"].as_str().unwrap(),
    );
    let me = http.get_current_user().await.unwrap();
    assert_eq!(me.id.get(), 990_000_000_000_000_001, "the scenario's bot");
    let guild = http
        .get_guild(serenity::all::GuildId::new(840_000_000_000_000_001))
        .await
        .unwrap();
    assert_eq!(guild.name, "Customer Server");
    let gateway = http.get_bot_gateway().await.unwrap();
    assert_eq!(
        gateway.shards, 3,
        "--shards sets what /gateway/bot recommends"
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait());
    let exit = tokio::time::timeout(Duration::from_secs(10), exit)
        .await
        .expect("exits within 10 s")
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn seatgate_sandbox_refuses_zero_shards() {
    let out = Command::new(env!("CARGO_BIN_EXE_seatgate"))
        .args(["sandbox", "--shards", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--shards"));
}

#[test]
fn seatgate_sandbox_refuses_a_public_bind() {
    let out = Command::new(env!("CARGO_BIN_EXE_seatgate"))
        .args(["sandbox", "--bind", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
    assert!(out.stdout.is_empty());
}
