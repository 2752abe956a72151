//! Source messages Discord would refuse as they are, end to end on the sandbox (its limits
//! on): a sticker-only message, a persona whose name Discord forbids, and a message longer
//! than a bot may send.

mod mirror_support;

use std::time::Duration;

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use seatgate::{sandbox::RateLimitConfig, store::testing::TestDatabase};
use serde_json::{json, Value};

use mirror_support::*;

const OPERATOR: &str = "payloads-test-operator";

fn post_json(sandbox: &seatgate::sandbox::SandboxHandle, body: Value) -> u64 {
    let m = sandbox
        .post_message(SOURCE_CHANNEL, &body)
        .expect("sandbox accepts the post");
    m["id"].as_str().and_then(|s| s.parse().ok()).expect("id")
}

fn messages(sandbox: &seatgate::sandbox::SandboxHandle, channel: u64) -> Vec<Value> {
    sandbox.messages(channel).unwrap_or_default()
}

#[actix_web::test]
async fn stickers_forbidden_persona_names_and_refused_payloads() {
    let t = TestDatabase::empty().await.unwrap();
    let sandbox = start_sandbox(2, RateLimitConfig::default()).await;
    let (running, admin) = start_service(&service_settings(&t, &sandbox, OPERATOR), OPERATOR).await;
    admin.configure(&["bot", "webhook"]).await;
    attached(&sandbox).await;
    let (_, bot_channel) = target(0);
    let (_, hook_channel) = target(1);

    // A sticker-only message: Discord lets nobody send another guild's sticker, so it arrives
    // as its name and link.
    post_json(
        &sandbox,
        json!({"author": {"id": PROVIDER.to_string(), "username": "provider"},
               "sticker_items": [{"id": "749054660769218631", "name": "Wave", "format_type": 1}]}),
    );
    let sticker = "[sticker: Wave] https://cdn.discordapp.com/stickers/749054660769218631.png";
    assert!(
        until(Duration::from_secs(15), || live(&sandbox, bot_channel)
            == [sticker]
            && live(&sandbox, hook_channel) == [sticker])
        .await,
        "{:?} {:?}",
        live(&sandbox, bot_channel),
        live(&sandbox, hook_channel)
    );

    // A persona Discord refuses ("discord" in a webhook username) arrives under a valid name.
    post_json(
        &sandbox,
        json!({"author": {"id": "700000000000000077", "username": "Discord Signals"}, "content": "BUY 7"}),
    );
    assert!(
        until(Duration::from_secs(15), || live(&sandbox, hook_channel)
            .len()
            == 2)
        .await,
        "{:?}",
        live(&sandbox, hook_channel)
    );
    let copy = messages(&sandbox, hook_channel)
        .into_iter()
        .find(|m| m["content"] == "BUY 7")
        .expect("the copy");
    let shown = copy["author"]["username"].as_str().unwrap_or_default();
    assert!(!shown.to_lowercase().contains("discord"), "{shown}");
    assert_eq!(shown, "Discоrd Signals", "the same letters to the eye");

    // 3,000 characters (a Nitro user's post): more than a bot may send. Until long messages
    // are split, the job ends at once with Discord's error instead of 8 refused retries.
    let long = post_json(
        &sandbox,
        json!({"author": {"id": PROVIDER.to_string(), "username": "provider"}, "content": "x".repeat(3000)}),
    );
    let jobs = || async {
        entities::mirror_jobs::Entity::find()
            .filter(
                entities::mirror_jobs::Column::SourceMessageId
                    .eq(seatgate::domain::snowflake::to_db(long)),
            )
            .all(t.db.conn())
            .await
            .unwrap()
    };
    let start = std::time::Instant::now();
    let ended = loop {
        let js = jobs().await;
        if js.len() == 2 && js.iter().all(|j| j.status == "failed") {
            break js;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "{js:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for j in &ended {
        assert_eq!(j.attempts, 1, "{j:?}");
        let err = j.last_error.as_deref().unwrap_or_default();
        assert!(
            err.starts_with("mirror_payload_rejected: 400 code 50035"),
            "{err}"
        );
        assert!(err.contains("2000 or fewer"), "{err}");
    }
    assert_eq!(
        live(&sandbox, bot_channel).len(),
        2,
        "nothing of it was sent"
    );
    running.shutdown().await;
}

#[actix_web::test]
async fn two_edits_ten_ms_apart_end_on_the_second_everywhere() {
    let t = TestDatabase::empty().await.unwrap();
    let sandbox = start_sandbox(4, RateLimitConfig::disabled()).await;
    let (running, admin) = start_service(&service_settings(&t, &sandbox, OPERATOR), OPERATOR).await;
    admin.configure(&["bot", "bot", "webhook", "webhook"]).await;
    attached(&sandbox).await;
    let channels: Vec<u64> = (0..4).map(|i| target(i).1).collect();
    for round in 0..5 {
        let id = post(&sandbox, &format!("v0 of {round}"));
        let (first, second) = (format!("v1 of {round}"), format!("v2 of {round}"));
        sandbox
            .edit_message(SOURCE_CHANNEL, id, &json!({"content": first}))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        sandbox
            .edit_message(SOURCE_CHANNEL, id, &json!({"content": second}))
            .unwrap();
        let shows_second = || {
            channels.iter().all(|c| {
                live(&sandbox, *c)
                    .iter()
                    .any(|m| m.ends_with(second.as_str()))
            })
        };
        assert!(
            until(Duration::from_secs(15), shows_second).await,
            "{:?}",
            channels
                .iter()
                .map(|c| live(&sandbox, *c))
                .collect::<Vec<_>>()
        );
        // And stays there: no older edit lands after it.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(shows_second(), "round {round}");
    }
    running.shutdown().await;
}
