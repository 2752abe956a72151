//! The admin API against the whole service on the Discord sandbox: the counted members come
//! from the auditor's live index, and /metrics shows the series the auditor and the gate
//! record (a blocked job, the time from pause to resume).

mod admin_support;

use std::time::Duration;

use admin_support::live::{
    until, Live, BRONZE, CHANNEL, GOLD, MEMBERS, OUTSIDER, OWNER, SEATS, SUBSCRIBER,
};
use admin_support::server_body;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const OPERATOR: &str = "operator-token-for-the-live-tests";
const JOINERS: [u64; 2] = [720_000_000_000_000_001, 720_000_000_000_000_002];

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m["user_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[actix_web::test]
async fn seats_follow_the_sandbox_and_metrics_show_blocks_and_resumes() {
    let live = Live::start(OPERATOR).await;
    live.connector().await;
    let path = live.server_path();
    let (s, v) = live
        .call(
            Method::PUT,
            &path,
            Some(server_body(
                json!({"seat_limit": SEATS, "enforcement_mode": "enforce",
                        "basic_role_id": BRONZE.to_string(), "pro_role_id": GOLD.to_string()}),
            )),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");

    // The config change makes the auditor recount from the sandbox: the counted members
    // appear, each with the tier roles it holds; the outsider and the bot are not counted.
    let seats = format!("{path}/seats");
    until("the counted members", Duration::from_secs(20), || async {
        let (s, v) = live.call(Method::GET, &seats, None).await;
        s == StatusCode::OK && v["total"] == json!(SEATS)
    })
    .await;
    let (_, page) = live.call(Method::GET, &seats, None).await;
    let mut want: Vec<(u64, &str, Vec<&str>)> = vec![
        (OWNER, "none", vec![]),
        (MEMBERS[0], "basic", vec!["basic"]),
        (MEMBERS[1], "pro", vec!["pro"]),
        (MEMBERS[2], "none", vec![]),
    ];
    want.sort_by_key(|w| w.0);
    let got: Vec<(u64, String, Vec<String>)> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|m| {
            (
                m["user_id"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0),
                m["tier"].as_str().unwrap_or("?").to_owned(),
                m["tiers"]
                    .as_array()
                    .map(|t| {
                        t.iter()
                            .filter_map(|x| x.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
            )
        })
        .collect();
    let want: Vec<(u64, String, Vec<String>)> = want
        .into_iter()
        .map(|(id, t, ts)| {
            (
                id,
                t.to_owned(),
                ts.into_iter().map(str::to_owned).collect(),
            )
        })
        .collect();
    assert_eq!(got, want, "{page}");
    // Why each one holds a seat: the owner by ownership, the subscribers through the
    // subscriber role's allow on #signals (@everyone is denied there).
    for m in page["items"].as_array().expect("items") {
        let owner = m["user_id"] == json!(OWNER.to_string());
        let want = if owner {
            json!([{"channel_id": CHANNEL.to_string(), "channel_name": "signals",
                    "via": "owner", "role_id": null, "role_name": null}])
        } else {
            json!([{"channel_id": CHANNEL.to_string(), "channel_name": "signals",
                    "via": "role_overwrite", "role_id": SUBSCRIBER.to_string(),
                    "role_name": "subscriber"}])
        };
        assert_eq!(m["reasons"], want, "{m}");
    }
    assert_eq!(
        page["reasons_summary"],
        json!([
            {"channel_id": CHANNEL.to_string(), "channel_name": "signals", "via": "role_overwrite",
             "role_id": SUBSCRIBER.to_string(), "role_name": "subscriber", "members": 3},
            {"channel_id": CHANNEL.to_string(), "channel_name": "signals", "via": "owner",
             "role_id": null, "role_name": null, "members": 1}
        ]),
        "{page}"
    );
    assert_eq!(page["complete"], json!(true));
    assert_eq!(page["next_after"], Value::Null);
    assert!(!ids(&page).contains(&OUTSIDER.to_string()));

    // Pages of two, in id order, chained by next_after.
    let (s, first) = live
        .call(Method::GET, &format!("{seats}?limit=2"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{first}");
    assert_eq!(ids(&first), ids(&page)[..2].to_vec());
    let after = first["next_after"]
        .as_str()
        .expect("next_after on a full page");
    assert_eq!(after, ids(&page)[1]);
    let (_, second) = live
        .call(Method::GET, &format!("{seats}?limit=2&after={after}"), None)
        .await;
    assert_eq!(ids(&second), ids(&page)[2..].to_vec());
    assert_eq!(second["next_after"], Value::Null, "{second}");
    assert_eq!(second["total"], json!(SEATS));

    let blocked = r#"seatgate_mirror_jobs_blocked_total{reason="seat_limit_exceeded"}"#;
    let resumes = "seatgate_pause_to_resume_seconds_count";
    let blocked_before = live.metric(blocked).await;
    let resumes_before = live.metric(resumes).await;
    // The seats above come from the live index; the config-change audit job that recounts
    // may still be finishing.
    let mut audits_ok = 0.0;
    for _ in 0..100 {
        audits_ok = live
            .metric(r#"seatgate_seat_audits_total{result="ok"}"#)
            .await;
        if audits_ok >= 1.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        audits_ok >= 1.0,
        "the recount after the config change is counted"
    );

    // Two subscribers join: they are counted at once and the server goes over its limit.
    for uid in JOINERS {
        live.join(uid);
    }
    until("the joiners counted", Duration::from_secs(10), || async {
        let (_, v) = live.call(Method::GET, &seats, None).await;
        let list = ids(&v);
        v["total"] == json!(SEATS + 2) && JOINERS.iter().all(|j| list.contains(&j.to_string()))
    })
    .await;
    until(
        "the snapshot over the limit",
        Duration::from_secs(10),
        || async {
            let (_, v) = live
                .call(Method::GET, &format!("{path}/snapshot"), None)
                .await;
            v["is_over_limit"] == json!(true)
        },
    )
    .await;

    // A signal posted while over is held by the gate, and /metrics counts the block.
    let text = "held while over the limit";
    live.post(text);
    until(
        "the block counted in /metrics",
        Duration::from_secs(10),
        || async { live.metric(blocked).await > blocked_before },
    )
    .await;
    assert!(
        !live.delivered(text),
        "a held signal reached the paused server"
    );

    // They leave: the server resumes, the held signal arrives, and the pause is measured.
    for uid in JOINERS {
        live.leave(uid);
    }
    until(
        "the held signal delivered",
        Duration::from_secs(15),
        || async { live.delivered(text) },
    )
    .await;
    until(
        "the resume measured in /metrics",
        Duration::from_secs(10),
        || async { live.metric(resumes).await > resumes_before },
    )
    .await;
    let (_, v) = live.call(Method::GET, &seats, None).await;
    assert_eq!(v["total"], json!(SEATS), "{v}");
    live.stop().await;
}

#[actix_web::test]
async fn metrics_name_the_series_the_actors_record() {
    let live = Live::start(OPERATOR).await;
    let text = live
        .http
        .get(format!("{}/metrics", live.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    for series in [
        r#"seatgate_seat_audits_total{result="ok"}"#,
        r#"seatgate_seat_audits_total{result="failed"}"#,
        "seatgate_seat_audit_drift_total",
        r#"seatgate_mirror_jobs_blocked_total{reason="seat_limit_exceeded"}"#,
        r#"seatgate_mirror_jobs_blocked_total{reason="seat_check_pending"}"#,
        r#"seatgate_snapshots{status="fresh"}"#,
        "seatgate_kill_switch",
    ] {
        assert!(
            admin_support::live::metric_value(&text, series).is_some(),
            "{series} missing from /metrics:\n{text}"
        );
    }
    for gone in ["seatgate_audits_total", "outcome="] {
        assert!(!text.contains(gone), "stale name {gone} still in /metrics");
    }
    live.stop().await;
}
