//! The admin API through actix-web's test service, on a real database (SQLite, or
//! PostgreSQL with SEATGATE_TEST_DATABASE=postgres) with the real actors running.

mod admin_support;

use actix_web::http::StatusCode;
use admin_support::*;
use entities::{connector_mappings, discord_seat_audit_jobs, tenant_tokens};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, Set};
use seatgate::{
    actors::seat_auditor::audit_dedupe_key,
    app::{admin_state, start_actors},
    domain::gate::{EnforcementMode, OverrideMode},
    store::{now_ms, tokens::hash_token},
};
use serde_json::{json, Value};

const T: &str = "/api/v1/tenants/acme";
const C: &str = "/api/v1/tenants/acme/connectors/c1";

async fn audit_jobs_for(h: &Harness, guild: u64) -> Vec<discord_seat_audit_jobs::Model> {
    discord_seat_audit_jobs::Entity::find()
        .filter(
            discord_seat_audit_jobs::Column::DedupeKey
                .eq(audit_dedupe_key(&key("acme", "c1", guild))),
        )
        .all(h.t.db.conn())
        .await
        .unwrap()
}

#[actix_web::test]
async fn requests_without_or_with_a_wrong_token_get_401_with_their_codes() {
    let h = harness().await;
    let app = app!(h.state);
    let r = send(&app, "GET", &format!("{T}/connectors"), None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.code(), "auth_required");
    let r = send(&app, "GET", &format!("{T}/connectors"), Some("nope"), None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.code(), "auth_invalid");
    assert!(
        !r.text.contains("nope"),
        "the presented token is echoed: {}",
        r.text
    );
    let req = actix_web::test::TestRequest::get()
        .uri(&format!("{T}/connectors"))
        .insert_header(("Authorization", format!("Basic {OPERATOR}")))
        .to_request();
    let resp = actix_web::test::call_service(&app, req).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let r = send(
        &app,
        "GET",
        &format!("{T}/connectors"),
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["items"], json!([]));
}

#[actix_web::test]
async fn tenant_tokens_are_shown_once_stored_hashed_scoped_and_revocable() {
    let h = harness().await;
    let app = app!(h.state);
    let r = send(&app, "POST", &format!("{T}/tokens"), Some(OPERATOR), None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let token = r.body["token"].as_str().unwrap().to_owned();
    let token_id = r.body["token_id"].as_i64().unwrap();
    assert!(
        token.starts_with("sgt_") && token.len() == 4 + 64,
        "{token}"
    );

    let rows = tenant_tokens::Entity::find()
        .all(h.t.db.conn())
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].token_hash, hash_token(&token));
    assert_ne!(rows[0].token_hash, token);

    let r = send(&app, "GET", &format!("{T}/tokens"), Some(OPERATOR), None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["items"][0]["token_id"], json!(token_id));
    assert!(!r.text.contains(&token) && !r.text.contains(&hash_token(&token)));

    // The tenant token reaches its tenant, but not operator routes.
    let r = send(&app, "GET", &format!("{T}/connectors"), Some(&token), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = send(&app, "POST", &format!("{T}/tokens"), Some(&token), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.code(), "forbidden");

    let r = send(
        &app,
        "DELETE",
        &format!("{T}/tokens/abc"),
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "validation_failed")
    );
    let r = send(
        &app,
        "DELETE",
        &format!("/api/v1/tenants/other/tokens/{token_id}"),
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "not_found"),
        "another tenant's token id"
    );
    let r = send(
        &app,
        "DELETE",
        &format!("{T}/tokens/{token_id}"),
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = send(&app, "GET", &format!("{T}/connectors"), Some(&token), None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "auth_invalid")
    );
    let r = send(
        &app,
        "POST",
        "/api/v1/tenants/bad%20key/tokens",
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "tenant_key_invalid")
    );
}

#[actix_web::test]
async fn connectors_crud_and_validation_codes() {
    let h = harness().await;
    let app = app!(h.state);
    let body =
        json!({"connector_id": "c1", "name": "  News  ", "source_guild_id": "175928847299117063"});
    let r = send(
        &app,
        "POST",
        &format!("{T}/connectors"),
        Some(OPERATOR),
        Some(body.clone()),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["name"], "News");
    assert_eq!(r.body["source_guild_id"], "175928847299117063");
    assert_eq!(r.body["enabled"], true);
    let r = send(
        &app,
        "POST",
        &format!("{T}/connectors"),
        Some(OPERATOR),
        Some(body),
    )
    .await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "conflict"));

    for (body, code) in [
        (
            json!({"connector_id": "has space", "name": "n", "source_guild_id": "1"}),
            "connector_id_invalid",
        ),
        (
            json!({"connector_id": "c2", "name": "n", "source_guild_id": "0"}),
            "guild_id_invalid",
        ),
        (
            json!({"connector_id": "c2", "name": "n", "source_guild_id": "99999999999999999999"}),
            "guild_id_invalid",
        ),
        (
            json!({"connector_id": "c2", "name": "   ", "source_guild_id": "1"}),
            "validation_failed",
        ),
        (
            json!({"connector_id": "c2", "name": "n", "source_guild_id": 1}),
            "invalid_json",
        ),
        (json!({"connector_id": "c2", "name": "n"}), "invalid_json"),
    ] {
        let r = send(
            &app,
            "POST",
            &format!("{T}/connectors"),
            Some(OPERATOR),
            Some(body.clone()),
        )
        .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, code),
            "{body}: {}",
            r.text
        );
    }

    let r = send(
        &app,
        "GET",
        &format!("{T}/connectors"),
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    let r = send(
        &app,
        "PATCH",
        C,
        Some(OPERATOR),
        Some(json!({"name": "Renamed", "enabled": false})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = send(&app, "GET", C, Some(OPERATOR), None).await;
    assert_eq!(
        (
            r.body["name"].as_str(),
            r.body["enabled"].as_bool(),
            r.body["source_guild_id"].as_str()
        ),
        (Some("Renamed"), Some(false), Some("175928847299117063")),
        "PATCH changes only the fields given"
    );
    // PUT replaces the whole connector: a field left out is named, and nothing changes.
    let r = send(
        &app,
        "PUT",
        C,
        Some(OPERATOR),
        Some(json!({"name": "Whole", "enabled": true})),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "field_required"),
        "{}",
        r.text
    );
    assert!(r.text.contains("source_guild_id"), "{}", r.text);
    let r = send(&app, "GET", C, Some(OPERATOR), None).await;
    assert_eq!(r.body["name"], "Renamed");
    let r = send(
        &app,
        "PUT",
        C,
        Some(OPERATOR),
        Some(json!({"name": "Whole", "enabled": true, "source_guild_id": "175928847299117063"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        (r.body["name"].as_str(), r.body["enabled"].as_bool()),
        (Some("Whole"), Some(true))
    );
    let r = send(
        &app,
        "PATCH",
        C,
        Some(OPERATOR),
        Some(json!({"source_guild_id": "x"})),
    )
    .await;
    assert_eq!(r.code(), "guild_id_invalid");
    let r = send(&app, "DELETE", C, Some(OPERATOR), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = send(&app, "GET", C, Some(OPERATOR), None).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
}

#[actix_web::test]
async fn malformed_bodies_get_400_or_413_with_a_code_never_500() {
    let h = harness().await;
    let app = app!(h.state);
    seed(&app, "acme", 900).await;
    let url = format!("{C}/servers/900");
    let cases: Vec<(Option<&str>, Vec<u8>, StatusCode, &str)> = vec![
        (
            Some("application/json"),
            b"{\"seat_limit\": ".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            Some("application/json"),
            b"[1,2,3]".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            Some("application/json"),
            b"".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            Some("text/plain"),
            b"{\"seat_limit\": 1}".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            None,
            b"{\"seat_limit\": 1}".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            Some("application/json"),
            format!(
                "{{\"seat_limit\": 1, \"pad\": \"{}\"}}",
                "x".repeat(70 * 1024)
            )
            .into_bytes(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
    ];
    for (ct, body, status, code) in cases {
        let r = send_raw(&app, "PUT", &url, ct, body).await;
        assert_eq!((r.status, r.code()), (status, code), "{ct:?}: {}", r.text);
    }
    let r = send(
        &app,
        "GET",
        &format!("{url}/events?limit=abc"),
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "validation_failed")
    );
    let r = send(
        &app,
        "GET",
        &format!("{url}/events?limit=0"),
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "validation_failed")
    );
    let r = send(&app, "GET", "/api/v1/nothing-here", Some(OPERATOR), None).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
}

#[actix_web::test]
async fn mappings_crud_validation_broken_state_and_reaudit() {
    let h = harness().await;
    let app = app!(h.state);
    let r = send(
        &app,
        "POST",
        &format!("{T}/connectors"),
        Some(OPERATOR),
        Some(json!({"connector_id": "c1", "name": "n", "source_guild_id": "1"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let url = format!("{C}/mappings");
    let r = send(
        &app,
        "POST",
        &url,
        Some(OPERATOR),
        Some(
            json!({"source_channel_id": "10", "target_guild_id": "500", "target_channel_id": "11"}),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["delivery_mode"], "bot");
    assert_eq!(r.body["broken"], false);
    let id = r.body["mapping_id"].as_i64().unwrap();
    let jobs = audit_jobs_for(&h, 500).await;
    assert_eq!(
        jobs.len(),
        1,
        "a mapping change asks for a recount of its target server"
    );
    assert_eq!(jobs[0].reason, "config_changed");

    for (body, code) in [
        (
            json!({"source_channel_id": "x", "target_guild_id": "500", "target_channel_id": "11"}),
            "snowflake_invalid",
        ),
        (
            json!({"source_channel_id": "10", "target_guild_id": "-5", "target_channel_id": "11"}),
            "guild_id_invalid",
        ),
        (
            json!({"source_channel_id": "10", "target_guild_id": "500", "target_channel_id": "18446744073709551616"}),
            "snowflake_invalid",
        ),
        (
            json!({"source_channel_id": "10", "target_guild_id": "500", "target_channel_id": "11", "delivery_mode": "pigeon"}),
            "invalid_json",
        ),
    ] {
        let r = send(&app, "POST", &url, Some(OPERATOR), Some(body.clone())).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, code),
            "{body}: {}",
            r.text
        );
    }

    // Discord marked the target broken: the API shows it, and an edit clears it.
    let row = connector_mappings::Entity::find_by_id(id)
        .one(h.t.db.conn())
        .await
        .unwrap()
        .unwrap();
    let mut active = row.into_active_model();
    active.broken_code = Set(Some("discord_missing_access".into()));
    active.broken_at = Set(Some(now_ms()));
    active.update(h.t.db.conn()).await.unwrap();
    let r = send(&app, "GET", &format!("{url}/{id}"), Some(OPERATOR), None).await;
    assert_eq!(
        (r.body["broken"].as_bool(), r.body["broken_code"].as_str()),
        (Some(true), Some("discord_missing_access"))
    );
    // Another guild with the same channel: the channel is not in it.
    let r = send(
        &app,
        "PATCH",
        &format!("{url}/{id}"),
        Some(OPERATOR),
        Some(json!({"delivery_mode": "webhook", "target_guild_id": "501"})),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "channel_not_in_guild"),
        "{}",
        r.text
    );
    let r = send(
        &app,
        "PATCH",
        &format!("{url}/{id}"),
        Some(OPERATOR),
        Some(json!({"delivery_mode": "webhook", "target_guild_id": "501", "target_channel_id": "13"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        (r.body["broken"].as_bool(), r.body["delivery_mode"].as_str()),
        (Some(false), Some("webhook"))
    );
    assert_eq!(
        audit_jobs_for(&h, 501).await.len(),
        1,
        "the new target server is recounted"
    );
    let r = send(
        &app,
        "PATCH",
        &format!("{url}/{id}"),
        Some(OPERATOR),
        Some(json!({"target_channel_id": "abc"})),
    )
    .await;
    assert_eq!(r.code(), "snowflake_invalid");
    let r = send(
        &app,
        "PUT",
        &format!("{url}/{id}"),
        Some(OPERATOR),
        Some(json!({"source_channel_id": "10", "target_guild_id": "501", "target_channel_id": "13", "delivery_mode": "bot"})),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "field_required"),
        "PUT names the field left out: {}",
        r.text
    );
    assert!(r.text.contains("enabled"), "{}", r.text);
    let r = send(&app, "GET", &url, Some(OPERATOR), None).await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    let r = send(
        &app,
        "GET",
        &format!("{url}/99999999999999999999"),
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "validation_failed")
    );
    let r = send(&app, "DELETE", &format!("{url}/{id}"), Some(OPERATOR), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = send(&app, "DELETE", &format!("{url}/{id}"), Some(OPERATOR), None).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
}

#[actix_web::test]
async fn server_config_validation_codes() {
    let h = harness().await;
    let app = app!(h.state);
    seed(&app, "acme", 900).await;
    let url = format!("{C}/servers/900");
    for (body, code) in [
        (json!({}), "seat_limit_required"),
        (
            server_body(json!({"seat_limit": null})),
            "seat_limit_required",
        ),
        (server_body(json!({"seat_limit": -1})), "seat_limit_invalid"),
        (
            server_body(json!({"seat_limit": 2.5})),
            "seat_limit_invalid",
        ),
        (
            server_body(json!({"seat_limit": "10"})),
            "seat_limit_invalid",
        ),
        (
            server_body(json!({"seat_limit": 1e30})),
            "seat_limit_invalid",
        ),
        (
            server_body(json!({"seat_limit": 5, "basic_role_id": "role"})),
            "snowflake_invalid",
        ),
        (
            server_body(json!({"seat_limit": 5, "pro_role_id": 42})),
            "snowflake_invalid",
        ),
        (
            server_body(json!({"seat_limit": 5, "notify_channel_id": "0"})),
            "snowflake_invalid",
        ),
        (
            server_body(json!({"seat_limit": 5, "enforcement_mode": "strict"})),
            "invalid_json",
        ),
        (
            server_body(json!({"seat_limit": 5, "override": "maybe"})),
            "invalid_json",
        ),
        (
            server_body(json!({"seat_limit": 5, "stale_grace": "yes"})),
            "invalid_json",
        ),
    ] {
        let r = send(&app, "PUT", &url, Some(OPERATOR), Some(body.clone())).await;
        // A missing field is 422; a malformed one 400.
        let status = if code == "seat_limit_required" {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::BAD_REQUEST
        };
        assert_eq!((r.status, r.code()), (status, code), "{body}: {}", r.text);
    }
    // PUT replaces the whole config: each field left out is named.
    for field in [
        "enforcement_mode",
        "override",
        "stale_grace",
        "basic_role_id",
        "notify_channel_id",
    ] {
        let mut body = server_body(json!({"seat_limit": 9}));
        body.as_object_mut().unwrap().remove(field);
        let r = send(&app, "PUT", &url, Some(OPERATOR), Some(body)).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, "field_required"),
            "{field}: {}",
            r.text
        );
        assert!(r.text.contains(field), "{field}: {}", r.text);
    }
    let r = send(&app, "GET", &url, Some(OPERATOR), None).await;
    assert_eq!(
        (
            r.body["seat_limit"].as_i64(),
            r.body["enforcement_mode"].as_str()
        ),
        (Some(5), Some("enforce")),
        "a refused PUT changed nothing"
    );
    // PATCH changes only what it names; null clears a role.
    let r = send(
        &app,
        "PATCH",
        &url,
        Some(OPERATOR),
        Some(json!({"seat_limit": 8, "pro_role_id": "43"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        (
            r.body["seat_limit"].as_i64(),
            r.body["enforcement_mode"].as_str(),
            r.body["pro_role_id"].as_str()
        ),
        (Some(8), Some("enforce"), Some("43"))
    );
    let r = send(
        &app,
        "PATCH",
        &url,
        Some(OPERATOR),
        Some(json!({"pro_role_id": null})),
    )
    .await;
    assert_eq!(r.body["pro_role_id"], Value::Null, "{}", r.text);
    assert_eq!(r.body["seat_limit"], 8);
    let r = send(
        &app,
        "PATCH",
        &format!("{C}/servers/901"),
        Some(OPERATOR),
        Some(json!({"seat_limit": 1})),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "PATCH needs a config: {}",
        r.text
    );
    // The notice channel must be a channel of this server.
    let r = send(
        &app,
        "PATCH",
        &url,
        Some(OPERATOR),
        Some(json!({"notify_channel_id": "9013"})),
    )
    .await;
    assert_eq!(r.code(), "channel_not_in_guild", "{}", r.text);
    let r = send(
        &app,
        "PATCH",
        &url,
        Some(OPERATOR),
        Some(json!({"notify_channel_id": "8888"})),
    )
    .await;
    assert_eq!(r.code(), "channel_unknown", "{}", r.text);
    let r = send(
        &app,
        "PUT",
        &format!("{C}/servers/abc"),
        Some(OPERATOR),
        Some(server_body(json!({"seat_limit": 1}))),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "guild_id_invalid")
    );
    let r = send(
        &app,
        "GET",
        &format!("{C}/servers/18446744073709551616"),
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "guild_id_invalid")
    );
    let r = send(
        &app,
        "PUT",
        "/api/v1/tenants/acme/connectors/nope/servers/900",
        Some(OPERATOR),
        Some(server_body(json!({"seat_limit": 1}))),
    )
    .await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
}

#[actix_web::test]
async fn server_config_upsert_reaches_the_cache_and_the_auditor_and_clear_removes_it() {
    let h = harness().await;
    let app = app!(h.state);
    seed(&app, "acme", 900).await;
    let url = format!("{C}/servers/900");
    let k = key("acme", "c1", 900);
    let policy = h.state.cache.policy(&k).expect("policy cached by the PUT");
    assert_eq!(policy.mode, EnforcementMode::Enforce);

    let r = send(&app, "PUT", &url, Some(OPERATOR), Some(server_body(json!({
        "seat_limit": 0, "enforcement_mode": "shadow", "override": "block", "stale_grace": true,
        "basic_role_id": " 41 ", "advanced_role_id": "", "pro_role_id": "43", "notify_channel_id": "44"
    })))).await;
    assert_eq!(r.status, StatusCode::OK, "second PUT updates: {}", r.text);
    let r = send(&app, "GET", &url, Some(OPERATOR), None).await;
    assert_eq!(r.body["seat_limit"], 0);
    assert_eq!(r.body["enforcement_mode"], "shadow");
    assert_eq!(r.body["override"], "block");
    assert_eq!(r.body["stale_grace"], true);
    assert_eq!(r.body["basic_role_id"], "41");
    assert_eq!(r.body["advanced_role_id"], serde_json::Value::Null);
    assert_eq!(r.body["pro_role_id"], "43");
    assert_eq!(r.body["notify_channel_id"], "44");
    let policy = h.state.cache.policy(&k).unwrap();
    assert_eq!(
        (policy.mode, policy.override_mode, policy.stale_grace),
        (EnforcementMode::Shadow, OverrideMode::Block, true)
    );
    let jobs = audit_jobs_for(&h, 900).await;
    assert_eq!(
        jobs.len(),
        1,
        "config changes ask for an audit, deduplicated per server"
    );
    assert_eq!(jobs[0].status, "pending");

    let r = send(&app, "DELETE", &url, Some(OPERATOR), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(
        h.state.cache.policy(&k).is_none(),
        "clear removes the policy from the cache"
    );
    let r = send(&app, "GET", &url, Some(OPERATOR), None).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
    let r = send(&app, "DELETE", &url, Some(OPERATOR), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[actix_web::test]
async fn snapshot_missing_then_fresh_and_the_chips_follow_it() {
    let h = harness().await;
    let app = app!(h.state);
    seed(&app, "acme", 900).await;
    let k = key("acme", "c1", 900);
    let r = send(
        &app,
        "GET",
        &format!("{C}/servers/900/snapshot"),
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "seat_snapshot_missing")
    );
    let chip = |r: &Reply| {
        r.body["items"][0]["seat_status"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    let r = send(&app, "GET", &format!("{C}/servers"), Some(OPERATOR), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(chip(&r), "pending");

    let now = now_ms();
    put_snapshot(&h.state, &k, 4, 5, now, None, "fresh").await;
    let r = send(
        &app,
        "GET",
        &format!("{C}/servers/900/snapshot"),
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        (r.body["seats_used"].as_i64(), r.body["seat_limit"].as_i64()),
        (Some(4), Some(5))
    );
    assert_eq!(r.body["status"], "fresh");
    assert_eq!(
        r.body["tiers"],
        json!({"basic": 1, "advanced": 2, "pro": 0})
    );
    let r = send(&app, "GET", &format!("{C}/servers"), Some(OPERATOR), None).await;
    assert_eq!(chip(&r), "ok");

    put_snapshot(&h.state, &k, 6, 5, now, None, "fresh").await;
    let r = send(&app, "GET", &format!("{C}/servers"), Some(OPERATOR), None).await;
    assert_eq!(chip(&r), "over");
    assert_eq!(r.body["items"][0]["config"]["seat_limit"], 5);

    // Ten minutes old: expired by the default windows (90 s / 5 min) even if stored fresh.
    put_snapshot(&h.state, &k, 4, 5, now - 600_000, None, "fresh").await;
    let r = send(
        &app,
        "GET",
        &format!("{C}/servers/900/snapshot"),
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(r.body["status"], "expired");
    let r = send(&app, "GET", &format!("{C}/servers"), Some(OPERATOR), None).await;
    assert_eq!(chip(&r), "pending");

    put_snapshot(
        &h.state,
        &k,
        4,
        5,
        now,
        Some("seat_audit_failed"),
        "expired",
    )
    .await;
    let r = send(&app, "GET", &format!("{C}/servers"), Some(OPERATOR), None).await;
    assert_eq!(chip(&r), "failed");
    assert_eq!(
        r.body["items"][0]["snapshot"]["last_error"],
        "seat_audit_failed"
    );

    // A guild that is only a mapping target shows up unconfigured.
    let r = send(&app, "POST", &format!("{C}/mappings"), Some(OPERATOR),
        Some(json!({"source_channel_id": "222", "target_guild_id": "900", "target_channel_id": "9003"}))).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "conflict"),
        "same source and target channel twice"
    );
    let r = send(&app, "POST", &format!("{C}/mappings"), Some(OPERATOR),
        Some(json!({"source_channel_id": "222", "target_guild_id": "1000", "target_channel_id": "334"}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = send(&app, "GET", &format!("{C}/servers"), Some(OPERATOR), None).await;
    assert_eq!(r.body["items"][1]["guild_id"], "1000");
    assert_eq!(r.body["items"][1]["seat_status"], "unconfigured");
}

#[actix_web::test]
async fn refresh_is_accepted_and_deduplicated_per_server() {
    let h = harness().await;
    let app = app!(h.state);
    seed(&app, "acme", 900).await;
    let url = format!("{C}/servers/900/audit");
    let first = send(&app, "POST", &url, Some(OPERATOR), None).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.text);
    assert_eq!(
        first.body["deduped"], true,
        "the PUT in seed already queued one"
    );
    let second = send(&app, "POST", &url, Some(OPERATOR), None).await;
    assert_eq!(second.body["job_id"], first.body["job_id"]);
    assert_eq!(audit_jobs_for(&h, 900).await.len(), 1);
    // Once the pending job is done, a refresh queues a new one.
    discord_seat_audit_jobs::Entity::update_many()
        .col_expr(
            discord_seat_audit_jobs::Column::Status,
            sea_orm::sea_query::Expr::value("done"),
        )
        .exec(h.t.db.conn())
        .await
        .unwrap();
    let third = send(&app, "POST", &url, Some(OPERATOR), None).await;
    assert_eq!(third.body["deduped"], false);
    assert_ne!(third.body["job_id"], first.body["job_id"]);
    let r = send(
        &app,
        "POST",
        &format!("{C}/servers/901/audit"),
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "not_found"),
        "no config, nothing to audit"
    );
}

#[actix_web::test]
async fn seats_without_a_live_index_answer_pending_and_events_page_newest_first() {
    let h = harness().await;
    let app = app!(h.state);
    seed(&app, "acme", 900).await;
    // No Discord connection here: the auditor never receives guild 900, so it has no index.
    let r = send(
        &app,
        "GET",
        &format!("{C}/servers/900/seats"),
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "seat_check_pending"),
        "{}",
        r.text
    );
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("no live count"),
        "{}",
        r.text
    );
    // Validation comes before the auditor is asked; an unconfigured server is absent.
    for (query, code) in [
        ("?limit=0", "validation_failed"),
        ("?limit=501", "validation_failed"),
        ("?limit=x", "validation_failed"),
        ("?after=0", "snowflake_invalid"),
        ("?after=abc", "snowflake_invalid"),
    ] {
        let r = send(
            &app,
            "GET",
            &format!("{C}/servers/900/seats{query}"),
            Some(OPERATOR),
            None,
        )
        .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, code),
            "{query}: {}",
            r.text
        );
    }
    let r = send(
        &app,
        "GET",
        &format!("{C}/servers/901/seats"),
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));

    let r = send(
        &app,
        "GET",
        &format!("{C}/servers/900/events"),
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(r.body, json!({"items": [], "next_before": null}));
    let k = key("acme", "c1", 900);
    put_event(&h.state, &k, "under", "over", 6, 1_000).await;
    put_event(&h.state, &k, "over", "under", 5, 2_000).await;
    put_event(&h.state, &k, "under", "over", 7, 3_000).await;
    put_event(&h.state, &key("acme", "c1", 901), "under", "over", 9, 4_000).await;
    let r = send(
        &app,
        "GET",
        &format!("{C}/servers/900/events?limit=2"),
        Some(OPERATOR),
        None,
    )
    .await;
    let ats: Vec<i64> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["at"].as_i64().unwrap())
        .collect();
    assert_eq!(ats, vec![3_000, 2_000]);
    let before = r.body["next_before"].as_i64().unwrap();
    let r = send(
        &app,
        "GET",
        &format!("{C}/servers/900/events?limit=2&before={before}"),
        Some(OPERATOR),
        None,
    )
    .await;
    let ats: Vec<i64> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["at"].as_i64().unwrap())
        .collect();
    assert_eq!(ats, vec![1_000]);
    assert_eq!(r.body["next_before"], serde_json::Value::Null);
    assert_eq!(r.body["items"][0]["to_state"], "over");
}

#[actix_web::test]
async fn kill_switch_is_operator_only_persisted_and_reloaded_at_start() {
    let h = harness().await;
    let app = app!(h.state);
    let r = send(&app, "GET", "/api/v1/enforcement", Some(OPERATOR), None).await;
    assert_eq!(r.body, json!({"kill_switch": false}));
    let r = send(
        &app,
        "PUT",
        "/api/v1/enforcement",
        Some(OPERATOR),
        Some(json!({"kill_switch": "on"})),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_json")
    );
    let r = send(
        &app,
        "PUT",
        "/api/v1/enforcement",
        Some(OPERATOR),
        Some(json!({"kill_switch": true})),
    )
    .await;
    assert_eq!(r.body, json!({"kill_switch": true}));
    assert!(
        h.state.cache.kill_switch(),
        "the cache (and so the gate) sees it at once"
    );
    seed(&app, "acme", 900).await;

    let tok = send(&app, "POST", &format!("{T}/tokens"), Some(OPERATOR), None).await;
    let tok = tok.body["token"].as_str().unwrap().to_owned();
    let r = send(
        &app,
        "PUT",
        "/api/v1/enforcement",
        Some(&tok),
        Some(json!({"kill_switch": false})),
    )
    .await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "forbidden"));

    // A restart loads the kill switch and every server policy back into a new cache.
    let actors = start_actors(&h.t.db, &h.settings);
    assert!(!actors.cache.kill_switch());
    let state = admin_state(&h.t.db, &h.settings, &actors).await.unwrap();
    assert!(state.cache.kill_switch());
    assert_eq!(
        state.cache.policy(&key("acme", "c1", 900)).map(|p| p.mode),
        Some(EnforcementMode::Enforce)
    );
}

#[actix_web::test]
async fn queues_and_metrics_report_the_audit_backlog() {
    let h = harness().await;
    let app = app!(h.state);
    seed(&app, "acme", 900).await;
    let r = send(&app, "GET", "/api/v1/queues", Some(OPERATOR), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let audit = r.body["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "audit")
        .unwrap()
        .clone();
    assert_eq!(audit["pending"], 1);
    assert!(audit["oldest_due_age_ms"].as_i64().unwrap() >= 0);
    let mirror = r.body["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "mirror")
        .unwrap()
        .clone();
    assert_eq!(mirror["pending"], 0);

    put_snapshot(
        &h.state,
        &key("acme", "c1", 900),
        1,
        5,
        now_ms(),
        None,
        "fresh",
    )
    .await;
    let r = send(&app, "GET", "/metrics", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    // Tests share one process-wide recorder: values are what the last scrape set, so look
    // for the metric names and the shape rather than for one test's numbers.
    for needle in [
        "seatgate_queue_depth{queue=\"audit\",status=\"pending\"}",
        "seatgate_snapshots{status=\"fresh\"}",
        "seatgate_seat_audits_total{result=\"failed\"}",
        "seatgate_seat_audit_drift_total",
        "seatgate_mirror_jobs_blocked_total{reason=\"seat_limit_exceeded\"}",
        "seatgate_kill_switch",
    ] {
        assert!(r.text.contains(needle), "{needle} missing from\n{}", r.text);
    }
    assert!(!r.text.contains(OPERATOR));
}

#[actix_web::test]
async fn the_page_is_served_self_contained_without_a_token() {
    let h = harness().await;
    let app = app!(h.state);
    for path in ["/", "/admin"] {
        let r = send(&app, "GET", path, None, None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert!(r.text.contains("src=\"/admin/app.js\""), "{path}");
        assert!(r.text.contains("href=\"/admin/style.css\""), "{path}");
        assert!(
            r.text.contains("Bronze role")
                && r.text.contains("Gold role")
                && r.text.contains("id=\"map-target\"")
        );
    }
    for path in ["/admin/app.js", "/admin/style.css"] {
        let r = send(&app, "GET", path, None, None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        // Works offline: nothing is fetched from another origin (the SVG namespace is a name,
        // not a fetch).
        let text = r.text.replace("http://www.w3.org/2000/svg", "");
        let external =
            text.contains("http://") || text.contains("https://") || text.contains("url(");
        assert!(!external, "{path} references another origin");
    }
    let js = send(&app, "GET", "/admin/app.js", None, None).await.text;
    assert!(js.contains("sessionStorage") && js.contains("Authorization"));
    assert!(
        !js.contains("localStorage"),
        "the token must not outlive the tab"
    );
}

#[actix_web::test]
async fn deleting_a_connector_drops_its_servers_from_the_cache_and_the_database() {
    let h = harness().await;
    let app = app!(h.state);
    seed(&app, "acme", 900).await;
    let k = key("acme", "c1", 900);
    assert!(h.state.cache.policy(&k).is_some());
    put_event(&h.state, &k, "under", "over", 6, 1_000).await;
    let r = send(&app, "DELETE", C, Some(OPERATOR), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(
        h.state.cache.policy(&k).is_none(),
        "the gate no longer sees a policy"
    );
    let r = send(&app, "GET", &format!("{C}/servers"), Some(OPERATOR), None).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
    let r = send(&app, "GET", C, Some(OPERATOR), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "gone from the API");
    // Kept for the operator: the history stays readable, the mapping stays for the links.
    let r = send(
        &app,
        "GET",
        &format!("{C}/servers/900/events"),
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    let kept = connector_mappings::Entity::find()
        .all(h.t.db.conn())
        .await
        .unwrap();
    assert!(kept.len() == 1 && kept[0].deleted_at.is_some(), "{kept:?}");
    let r = send(
        &app,
        "POST",
        &format!("{T}/connectors"),
        Some(OPERATOR),
        Some(json!({"connector_id": "c1", "name": "again", "source_guild_id": "111"})),
    )
    .await;
    assert_eq!(r.code(), "conflict", "its id is kept: {}", r.text);
    // Purged: everything at once.
    let r = send(
        &app,
        "DELETE",
        &format!("{C}?purge=true"),
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let left = entities::discord_server_configs::Entity::find()
        .all(h.t.db.conn())
        .await
        .unwrap();
    assert!(
        left.is_empty(),
        "server configs purged with their connector"
    );
    let left = connector_mappings::Entity::find()
        .all(h.t.db.conn())
        .await
        .unwrap();
    assert!(left.is_empty(), "mappings purged with their connector");
    let left = entities::seat_enforcement_events::Entity::find()
        .all(h.t.db.conn())
        .await
        .unwrap();
    assert!(left.is_empty(), "history purged");
    let r = send(
        &app,
        "GET",
        &format!("{C}/servers/900/events"),
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
