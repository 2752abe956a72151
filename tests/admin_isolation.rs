//! Tenant isolation: every tenant-scoped route, called with another tenant's token, answers
//! 404 as if the resource did not exist and carries none of its data; operator-only routes
//! answer 403 to any tenant token.

mod admin_support;

use actix_web::http::StatusCode;
use admin_support::*;
use seatgate::store::now_ms;
use serde_json::json;

#[actix_web::test]
async fn a_foreign_tenant_token_sees_nothing_of_another_tenant() {
    let h = harness().await;
    let app = app!(h.state);
    seed(&app, "acme", 900).await;
    seed(&app, "globex", 901).await;
    put_snapshot(
        &h.state,
        &key("acme", "c1", 900),
        4,
        5,
        now_ms(),
        None,
        "fresh",
    )
    .await;
    put_event(&h.state, &key("acme", "c1", 900), "under", "over", 6, 1_000).await;
    let mapping = send(
        &app,
        "GET",
        "/api/v1/tenants/acme/connectors/c1/mappings",
        Some(OPERATOR),
        None,
    )
    .await;
    let mapping_id = mapping.body["items"][0]["mapping_id"].as_i64().unwrap();
    let acme_token = send(
        &app,
        "POST",
        "/api/v1/tenants/acme/tokens",
        Some(OPERATOR),
        None,
    )
    .await;
    let acme_token_id = acme_token.body["token_id"].as_i64().unwrap();
    let globex = send(
        &app,
        "POST",
        "/api/v1/tenants/globex/tokens",
        Some(OPERATOR),
        None,
    )
    .await;
    let globex = globex.body["token"].as_str().unwrap().to_owned();

    let c = "/api/v1/tenants/acme/connectors/c1";
    let m = format!("{c}/mappings/{mapping_id}");
    let s = format!("{c}/servers/900");
    let put_server = server_body(json!({"seat_limit": 1}));
    let tenant_scoped: Vec<(&str, String, Option<serde_json::Value>)> = vec![
        ("GET", "/api/v1/tenants/acme/connectors".into(), None),
        (
            "POST",
            "/api/v1/tenants/acme/connectors".into(),
            Some(json!({"connector_id": "c9", "name": "x", "source_guild_id": "1"})),
        ),
        ("GET", c.into(), None),
        ("PUT", c.into(), Some(json!({"name": "stolen"}))),
        ("DELETE", c.into(), None),
        ("GET", format!("{c}/mappings"), None),
        (
            "POST",
            format!("{c}/mappings"),
            Some(
                json!({"source_channel_id": "1", "target_guild_id": "2", "target_channel_id": "3"}),
            ),
        ),
        ("GET", m.clone(), None),
        ("PUT", m.clone(), Some(json!({"enabled": false}))),
        ("DELETE", m.clone(), None),
        ("GET", format!("{c}/servers"), None),
        ("GET", s.clone(), None),
        ("PUT", s.clone(), Some(put_server)),
        ("DELETE", s.clone(), None),
        ("GET", format!("{s}/snapshot"), None),
        ("POST", format!("{s}/audit"), None),
        ("GET", format!("{s}/seats"), None),
        ("GET", format!("{s}/events"), None),
        ("GET", format!("{s}/failed-jobs"), None),
    ];
    let secrets = ["acme news", "900", "222", "333", "111"];
    for (method, path, body) in &tenant_scoped {
        let r = send(&app, method, path, Some(&globex), body.clone()).await;
        assert_eq!(
            r.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {}",
            r.text
        );
        assert_eq!(r.code(), "not_found", "{method} {path}");
        for s in secrets {
            assert!(
                !r.text.contains(s),
                "{method} {path} leaked {s:?}: {}",
                r.text
            );
        }
    }
    let operator_only: Vec<(&str, String, Option<serde_json::Value>)> = vec![
        ("POST", "/api/v1/tenants/acme/tokens".into(), None),
        ("GET", "/api/v1/tenants/acme/tokens".into(), None),
        (
            "DELETE",
            format!("/api/v1/tenants/acme/tokens/{acme_token_id}"),
            None,
        ),
        ("POST", "/api/v1/tenants/globex/tokens".into(), None),
        ("GET", "/api/v1/enforcement".into(), None),
        (
            "PUT",
            "/api/v1/enforcement".into(),
            Some(json!({"kill_switch": true})),
        ),
        ("GET", "/api/v1/queues".into(), None),
    ];
    for (method, path, body) in &operator_only {
        let r = send(&app, method, path, Some(&globex), body.clone()).await;
        assert_eq!(
            r.status,
            StatusCode::FORBIDDEN,
            "{method} {path}: {}",
            r.text
        );
        assert_eq!(r.code(), "forbidden");
        assert!(!r.text.contains("token_id"), "{}", r.text);
    }

    // Nothing changed: acme's data is intact, and the kill switch is still off.
    let r = send(&app, "GET", c, Some(OPERATOR), None).await;
    assert_eq!(r.body["name"], "acme news");
    let r = send(&app, "GET", &s, Some(OPERATOR), None).await;
    assert_eq!(r.body["seat_limit"], 5);
    let r = send(&app, "GET", &format!("{c}/mappings"), Some(OPERATOR), None).await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    assert!(!h.state.cache.kill_switch());
    // And the same token does reach its own tenant.
    let r = send(
        &app,
        "GET",
        "/api/v1/tenants/globex/connectors/c1/servers/901",
        Some(&globex),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}
