//! Messages posted back to back arrive in every target in the order they were posted:
//! serenity runs each MESSAGE_CREATE handler in a task of its own, and ingest records them
//! in the gateway's order anyway (`gateway_ingest::create_order`), with the sandbox's limits
//! off so that nothing slows the race down.

mod mirror_support;

use std::time::Duration;

use seatgate::{sandbox::RateLimitConfig, store::testing::TestDatabase};

use mirror_support::*;

const OPERATOR: &str = "order-test-operator";

#[actix_web::test]
async fn messages_posted_back_to_back_arrive_in_order_on_every_target() {
    let t = TestDatabase::empty().await.unwrap();
    let sandbox = start_sandbox(4, RateLimitConfig::disabled()).await;
    let settings = service_settings(&t, &sandbox, OPERATOR);
    let (running, admin) = start_service(&settings, OPERATOR).await;
    admin.configure(&["bot", "bot", "webhook", "webhook"]).await;
    attached(&sandbox).await;
    // A first message, until one is mirrored: the session is identified and the webhooks
    // are made.
    let mut probes = Vec::new();
    for i in 0.. {
        assert!(i < 50, "nothing is mirrored");
        let probe = format!("probe {i}");
        post(&sandbox, &probe);
        probes.push(probe);
        if until(Duration::from_secs(1), || {
            (0..4).all(|k| !live(&sandbox, target(k).1).is_empty())
        })
        .await
        {
            break;
        }
    }
    for round in 0..3 {
        let expected: Vec<String> = (0..40).map(|i| format!("r{round} {i:02}")).collect();
        for text in &expected {
            post(&sandbox, text);
        }
        let shown = |k: u64| -> Vec<String> {
            live(&sandbox, target(k).1)
                .into_iter()
                .filter(|c| c.starts_with(&format!("r{round} ")))
                .collect()
        };
        let all_there = until(Duration::from_secs(30), || {
            (0..4).all(|k| shown(k).len() == expected.len())
        })
        .await;
        let got: Vec<Vec<String>> = (0..4).map(shown).collect();
        assert!(all_there, "round {round}: not every copy arrived: {got:?}");
        for (k, g) in got.iter().enumerate() {
            assert_eq!(g, &expected, "round {round}: target {k} out of order");
        }
    }
    running.shutdown().await;
}

/// Ingest remembers a channel it found to be a source; a mapping removed meanwhile is still
/// the end of mirroring at once: the next message finds no mapping and writes nothing.
#[actix_web::test]
async fn a_message_after_its_channels_mapping_was_removed_is_not_mirrored() {
    let t = TestDatabase::empty().await.unwrap();
    let sandbox = start_sandbox(1, RateLimitConfig::disabled()).await;
    let settings = service_settings(&t, &sandbox, OPERATOR);
    let (running, admin) = start_service(&settings, OPERATOR).await;
    admin.configure(&["bot"]).await;
    attached(&sandbox).await;
    let channel = target(0).1;
    for i in 0.. {
        assert!(i < 50, "nothing is mirrored");
        post(&sandbox, &format!("probe {i}"));
        if until(Duration::from_secs(1), || {
            !live(&sandbox, channel).is_empty()
        })
        .await
        {
            break;
        }
    }
    let mapping = admin.mappings().await[0]["mapping_id"].clone();
    let mapping = mapping
        .as_str()
        .map(str::to_owned)
        .unwrap_or(mapping.to_string());
    admin
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/tenants/{TENANT}/connectors/{CONNECTOR}/mappings/{mapping}"),
            None,
        )
        .await;
    post(&sandbox, "after the mapping went");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let shown = live(&sandbox, channel);
    assert!(
        !shown.iter().any(|c| c == "after the mapping went"),
        "mirrored after its mapping was removed: {shown:?}"
    );
    running.shutdown().await;
}
