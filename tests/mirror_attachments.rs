//! Attachments through the whole service and the sandbox: re-uploaded up to the limit, the
//! rest linked; a file the CDN no longer serves is linked; a target refusing the files as too
//! large gets them linked; a CDN failing for a moment delays the upload, it does not lose it.

mod mirror_support;

use std::time::Duration;

use base64::Engine;
use seatgate::{
    app,
    config::Settings,
    sandbox::{Fault, RateLimitConfig, SandboxHandle},
    store::testing::TestDatabase,
};
use serde_json::{json, Value};

use mirror_support::*;

const OPERATOR: &str = "attachments-test-operator";
const LIMIT: u64 = 64 * 1024;

async fn start(t: &TestDatabase, modes: &[&str]) -> (SandboxHandle, app::Running, Admin) {
    let sandbox = start_sandbox(modes.len() as u64, RateLimitConfig::disabled()).await;
    let settings = Settings {
        mirror_attachment_limit_bytes: LIMIT,
        ..service_settings(t, &sandbox, OPERATOR)
    };
    let (running, admin) = start_service(&settings, OPERATOR).await;
    admin.configure(modes).await;
    attached(&sandbox).await;
    (sandbox, running, admin)
}

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn hosted(filename: &str, data: &[u8]) -> Value {
    json!({
        "filename": filename,
        "content_base64": base64::engine::general_purpose::STANDARD.encode(data),
    })
}

/// Posts as the provider with attachments; returns the message as the sandbox stored it.
fn post_with(sandbox: &SandboxHandle, content: &str, attachments: Vec<Value>) -> Value {
    sandbox
        .post_message(
            SOURCE_CHANNEL,
            &json!({
                "author": {"id": PROVIDER.to_string(), "username": "provider"},
                "content": content,
                "attachments": attachments,
            }),
        )
        .expect("sandbox accepts the post")
}

fn live_messages(sandbox: &SandboxHandle, channel: u64) -> Vec<Value> {
    sandbox
        .messages(channel)
        .unwrap_or_default()
        .into_iter()
        .filter(|m| !m["deleted"].as_bool().unwrap_or(false))
        .collect()
}

async fn download(url: &str) -> Vec<u8> {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = client.get(url).send().await.unwrap();
    assert!(r.status().is_success(), "{url}: {}", r.status());
    r.bytes().await.unwrap().to_vec()
}

/// The one message target `i` shows, once it shows one.
async fn the_copy(sandbox: &SandboxHandle, i: u64) -> Value {
    let channel = target(i).1;
    assert!(
        until(Duration::from_secs(20), || live_messages(sandbox, channel)
            .len()
            == 1)
        .await,
        "target {i} got nothing"
    );
    live_messages(sandbox, channel).remove(0)
}

fn url_of(message: &Value, filename: &str) -> String {
    message["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["filename"] == filename)
        .and_then(|a| a["url"].as_str())
        .unwrap_or_else(|| panic!("{filename} in {message}"))
        .to_owned()
}

#[actix_web::test]
async fn files_under_the_limit_are_uploaded_again_and_the_rest_linked_in_both_modes() {
    let t = TestDatabase::empty().await.unwrap();
    let (sandbox, running, _admin) = start(&t, &["bot", "webhook"]).await;

    let small = bytes(3_000, 7);
    let big = bytes(LIMIT as usize + 1, 9);
    let lost_url = format!(
        "{}/attachments/{SOURCE_CHANNEL}/1/lost.png",
        sandbox.api_url().trim_end_matches('/')
    );
    let source = post_with(
        &sandbox,
        "chart",
        vec![
            hosted("small.png", &small),
            hosted("big.bin", &big),
            json!({"id": "1", "filename": "lost.png", "size": 10, "url": lost_url, "proxy_url": lost_url}),
        ],
    );
    let big_url = url_of(&source, "big.bin");
    let expected = format!("chart\n{big_url}\n{lost_url}");

    for i in 0..2 {
        let copy = &the_copy(&sandbox, i).await;
        assert_eq!(copy["content"], expected.as_str(), "target {i}: {copy}");
        let files = copy["attachments"].as_array().unwrap();
        assert_eq!(files.len(), 1, "only small.png goes up again: {copy}");
        assert_eq!(files[0]["filename"], "small.png");
        let copy_url = url_of(copy, "small.png");
        assert_ne!(
            copy_url,
            url_of(&source, "small.png"),
            "a copy, not the source's file"
        );
        assert_eq!(
            download(&copy_url).await,
            small,
            "target {i}: the same bytes"
        );
    }

    // An edit changes the text and keeps the uploaded file. It links what the send linked:
    // big.bin, over the limit, and lost.png, which the plan would upload but the CDN
    // refused at send time.
    let id: u64 = source["id"].as_str().unwrap().parse().unwrap();
    sandbox
        .edit_message(SOURCE_CHANNEL, id, &json!({"content": "chart v2"}))
        .unwrap();
    let edited = format!("chart v2\n{big_url}\n{lost_url}");
    for i in 0..2 {
        let channel = target(i).1;
        assert!(
            until(Duration::from_secs(20), || live_messages(&sandbox, channel)
                [0]["content"]
                == edited.as_str())
            .await,
            "target {i} did not get the edit: {:?}",
            live_messages(&sandbox, channel)
        );
        let copy = &live_messages(&sandbox, channel)[0];
        assert_eq!(copy["attachments"].as_array().unwrap().len(), 1, "{copy}");
    }
    running.shutdown().await;
    sandbox.shutdown().await;
}

#[actix_web::test]
async fn a_target_refusing_the_files_as_too_large_gets_them_linked() {
    let t = TestDatabase::empty().await.unwrap();
    let (sandbox, running, _admin) = start(&t, &["bot"]).await;
    let channel = target(0).1;
    sandbox.add_fault(Fault::new(
        "POST",
        &format!("/channels/{channel}/messages"),
        413,
        1,
    ));
    let source = post_with(&sandbox, "x", vec![hosted("a.png", &bytes(500, 1))]);
    let expected = format!("x\n{}", url_of(&source, "a.png"));
    assert!(
        until(Duration::from_secs(20), || live_messages(&sandbox, channel)
            .len()
            == 1)
        .await
    );
    let copy = &live_messages(&sandbox, channel)[0];
    assert_eq!(copy["content"], expected.as_str(), "{copy}");
    assert_eq!(copy["attachments"], json!([]), "{copy}");
    running.shutdown().await;
    sandbox.shutdown().await;
}

#[actix_web::test]
async fn a_cdn_failing_for_a_moment_delays_the_upload_and_loses_nothing() {
    let t = TestDatabase::empty().await.unwrap();
    let (sandbox, running, _admin) = start(&t, &["bot"]).await;
    let channel = target(0).1;
    sandbox.add_fault(Fault::new("GET", "/attachments/{c}/{a}/{f}", 503, 2));
    let data = bytes(1_000, 3);
    post_with(&sandbox, "y", vec![hosted("b.png", &data)]);
    assert!(
        until(Duration::from_secs(30), || live_messages(&sandbox, channel)
            .len()
            == 1)
        .await
    );
    let copy = &live_messages(&sandbox, channel)[0];
    assert_eq!(copy["content"], "y", "uploaded, not linked: {copy}");
    assert_eq!(download(&url_of(copy, "b.png")).await, data);
    running.shutdown().await;
    sandbox.shutdown().await;
}

#[actix_web::test]
async fn a_fan_out_downloads_each_file_once_and_fetches_only_discords_hosts() {
    let t = TestDatabase::empty().await.unwrap();
    let (sandbox, running, _admin) = start(&t, &["bot", "bot", "webhook"]).await;
    sandbox.reset_stats();
    // A URL on a host that is not Discord's (nor the configured API's): linked, never read.
    let foreign = "http://127.0.0.2:9/attachments/1/2/elsewhere.png";
    post_with(
        &sandbox,
        "two charts",
        vec![
            hosted("a.png", &bytes(2_000, 1)),
            hosted("b.png", &bytes(2_500, 2)),
            json!({"id": "3", "filename": "elsewhere.png", "size": 10, "url": foreign, "proxy_url": foreign}),
        ],
    );
    for i in 0..3 {
        let copy = &the_copy(&sandbox, i).await;
        assert_eq!(copy["attachments"].as_array().unwrap().len(), 2, "{copy}");
        assert_eq!(
            copy["content"],
            format!("two charts\n{foreign}").as_str(),
            "{copy}"
        );
    }
    let stats = sandbox.stats();
    assert_eq!(
        stats["cdn_downloads"], 2,
        "one download per file for 3 targets: {stats}"
    );
    running.shutdown().await;
    sandbox.shutdown().await;
}
