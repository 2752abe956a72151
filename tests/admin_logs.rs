//! Log lines of the admin API: config changes and refresh requests are logged with the
//! `[admin/discord-bot]` prefix and the server key, and no token ever reaches the log.

mod admin_support;

use actix_web::http::StatusCode;
use admin_support::*;
use seatgate::telemetry::CapturedLines;
use serde_json::json;

#[actix_web::test]
async fn config_changes_and_refreshes_are_logged_and_tokens_never_are() {
    let buf = CapturedLines::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(buf.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let h = harness().await;
    let app = app!(h.state);
    seed(&app, "acme", 900).await;
    let tok = send(
        &app,
        "POST",
        "/api/v1/tenants/acme/tokens",
        Some(OPERATOR),
        None,
    )
    .await;
    let token = tok.body["token"].as_str().unwrap().to_owned();
    let url = "/api/v1/tenants/acme/connectors/c1/servers/900";
    let r = send(
        &app,
        "PUT",
        url,
        Some(&token),
        Some(server_body(json!({"seat_limit": 7}))),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = send(&app, "POST", &format!("{url}/audit"), Some(&token), None).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let wrong = "sgt_0000000000000000000000000000000000000000000000000000000000000000";
    let r = send(&app, "GET", url, Some(wrong), None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = send(&app, "DELETE", url, Some(OPERATOR), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);

    let log = buf.text();
    for needle in [
        "[admin/discord-bot] server config saved",
        "[admin/discord-bot] refresh requested",
        "[admin/discord-bot] server config cleared",
        "[admin/discord-bot] mapping created",
        "acme/c1/900",
    ] {
        assert!(log.contains(needle), "{needle:?} not logged:\n{log}");
    }
    for secret in [OPERATOR, token.as_str(), wrong] {
        assert!(!log.contains(secret), "a token reached the log");
    }
}
