//! Source messages Discord would refuse as they are, end to end on the sandbox (its limits
//! on): a sticker-only message, a persona whose name Discord forbids, a request Discord
//! refuses, and messages longer than a bot may send.

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
    // Both copies: the bot channel's must not be in flight when the fault below is set.
    assert!(
        until(Duration::from_secs(15), || live(&sandbox, hook_channel)
            .len()
            == 2
            && live(&sandbox, bot_channel).len() == 2)
        .await,
        "{:?} {:?}",
        live(&sandbox, hook_channel),
        live(&sandbox, bot_channel)
    );
    let copy = messages(&sandbox, hook_channel)
        .into_iter()
        .find(|m| m["content"] == "BUY 7")
        .expect("the copy");
    let shown = copy["author"]["username"].as_str().unwrap_or_default();
    assert!(!shown.to_lowercase().contains("discord"), "{shown}");
    assert_eq!(shown, "Discоrd Signals", "the same letters to the eye");

    // A request Discord refuses as malformed (400) ends its job at once with Discord's
    // error, instead of 8 refused retries.
    sandbox.add_fault(seatgate::sandbox::Fault::new(
        "POST",
        "/channels/{id}/messages",
        400,
        1,
    ));
    let refused = post(&sandbox, "refused once");
    let jobs = || async {
        entities::mirror_jobs::Entity::find()
            .filter(
                entities::mirror_jobs::Column::SourceMessageId
                    .eq(seatgate::domain::snowflake::to_db(refused)),
            )
            .filter(
                entities::mirror_jobs::Column::TargetChannelId
                    .eq(seatgate::domain::snowflake::to_db(bot_channel)),
            )
            .all(t.db.conn())
            .await
            .unwrap()
    };
    let start = std::time::Instant::now();
    let ended = loop {
        let js = jobs().await;
        if js.len() == 1 && js[0].status == "failed" {
            break js;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "{js:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(ended[0].attempts, 1, "{:?}", ended[0]);
    let err = ended[0].last_error.as_deref().unwrap_or_default();
    assert!(err.starts_with("mirror_payload_rejected: 400"), "{err}");
    assert!(
        !live(&sandbox, bot_channel).contains(&"refused once".to_owned()),
        "nothing of it was sent"
    );
    // The admin reads why, for that server.
    let listed = admin
        .call(
            reqwest::Method::GET,
            &format!(
                "/api/v1/tenants/{TENANT}/connectors/{CONNECTOR}/servers/{}/failed-jobs",
                target(0).0
            ),
            None,
        )
        .await;
    let items = listed["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 1, "{listed}");
    assert_eq!(
        items[0]["source_message_id"],
        refused.to_string(),
        "{listed}"
    );
    assert_eq!(items[0]["kind"], "send");
    assert_eq!(items[0]["attempts"], 1);
    assert!(
        items[0]["last_error"]
            .as_str()
            .is_some_and(|e| e.starts_with("mirror_payload_rejected: 400")),
        "{listed}"
    );
    // The webhook target's server failed nothing.
    let other = admin
        .call(
            reqwest::Method::GET,
            &format!(
                "/api/v1/tenants/{TENANT}/connectors/{CONNECTOR}/servers/{}/failed-jobs",
                target(1).0
            ),
            None,
        )
        .await;
    assert_eq!(other["items"], json!([]), "{other}");
    running.shutdown().await;
}

/// `n` characters of numbered lines, as a long signal reads.
fn long_text(n: usize, tag: &str) -> String {
    let mut text = String::new();
    let mut i = 0;
    while text.chars().count() < n {
        text.push_str(&format!(
            "{tag} line {i:04}: entry 97,500 target 99,000 stop 96,000\n"
        ));
        i += 1;
    }
    text.chars().take(n).collect()
}

/// A target's live messages, oldest first, joined as the split cut them (at line breaks).
fn joined(sandbox: &seatgate::sandbox::SandboxHandle, channel: u64) -> (usize, String) {
    let parts = live(sandbox, channel);
    (parts.len(), parts.join("\n"))
}

#[actix_web::test]
async fn long_messages_arrive_whole_in_parts_that_edits_and_deletes_follow() {
    let t = TestDatabase::empty().await.unwrap();
    let sandbox = start_sandbox(2, RateLimitConfig::default()).await;
    let (running, admin) = start_service(&service_settings(&t, &sandbox, OPERATOR), OPERATOR).await;
    admin.configure(&["bot", "webhook"]).await;
    attached(&sandbox).await;
    let channels = [target(0).1, target(1).1];
    let every_target = |parts: usize, text: &str| {
        channels
            .iter()
            .all(|c| joined(&sandbox, *c) == (parts, text.to_owned()))
    };
    let shown = || channels.map(|c| joined(&sandbox, c));

    for (n, parts) in [(3000, 2), (4000, 3)] {
        let text = long_text(n, &format!("n{n}"));
        let id = post_json(
            &sandbox,
            json!({"author": {"id": PROVIDER.to_string(), "username": "provider"}, "content": text}),
        );
        assert!(
            until(Duration::from_secs(20), || every_target(parts, &text)).await,
            "{n} characters: {:?}",
            shown()
        );
        for c in channels {
            assert!(live(&sandbox, c).iter().all(|m| m.chars().count() <= 2000));
        }

        // An edit to a short text: the first part shows it, the others go.
        sandbox
            .edit_message(SOURCE_CHANNEL, id, &json!({"content": "closed at 98,000"}))
            .unwrap();
        assert!(
            until(Duration::from_secs(20), || every_target(
                1,
                "closed at 98,000"
            ))
            .await,
            "{:?}",
            shown()
        );
        // Long again: the parts come back after it.
        let again = long_text(n, &format!("again{n}"));
        sandbox
            .edit_message(SOURCE_CHANNEL, id, &json!({"content": again}))
            .unwrap();
        assert!(
            until(Duration::from_secs(20), || every_target(parts, &again)).await,
            "{:?}",
            shown()
        );
        // A delete of the source takes every part.
        sandbox.delete_message(SOURCE_CHANNEL, id).unwrap();
        assert!(
            until(Duration::from_secs(20), || channels
                .iter()
                .all(|c| live(&sandbox, *c).is_empty()))
            .await,
            "{:?}",
            shown()
        );
    }
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
