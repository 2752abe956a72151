//! Shared harness of the admin API tests: a fresh database on the backend the environment
//! selects, the real actors, and the real actix-web app (no mocks of the store).
#![allow(dead_code)]

pub mod live;

use actix_web::{
    body::MessageBody,
    dev::{Service, ServiceResponse},
    http::StatusCode,
    test,
};
use entities::{discord_server_seat_snapshots, seat_enforcement_events};
use seatgate::{
    actors::ServerKey,
    app::{admin_state, start_actors, Actors},
    config::{Secret, Settings},
    http::AppState,
    store::{now_ms, servers::ServerStore, testing::TestDatabase},
};
use serde_json::Value;

pub const OPERATOR: &str = "operator-token-for-tests-0123456789";

pub struct Harness {
    pub t: TestDatabase,
    pub settings: Settings,
    pub actors: Actors,
    pub state: AppState,
}

pub fn settings() -> Settings {
    Settings {
        operator_token: Some(Secret::new(OPERATOR)),
        ..Settings::default()
    }
}

pub async fn harness() -> Harness {
    let t = TestDatabase::new().await.expect("test database");
    let settings = settings();
    let actors = start_actors(&t.db, &settings);
    let state = admin_state(&t.db, &settings, &actors)
        .await
        .expect("admin state");
    Harness {
        t,
        settings,
        actors,
        state,
    }
}

/// Builds the app over `state`.
#[macro_export]
macro_rules! app {
    ($state:expr) => {
        actix_web::test::init_service(
            actix_web::App::new().configure(seatgate::http::configure($state.clone())),
        )
        .await
    };
}

pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

/// Sends one request; `body` is sent as JSON when given.
pub async fn send<S, B>(
    app: &S,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Reply
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let mut req = test::TestRequest::default()
        .method(method.parse().expect("method"))
        .uri(path);
    if let Some(token) = token {
        req = req.insert_header(("Authorization", format!("Bearer {token}")));
    }
    if let Some(body) = body {
        req = req.set_json(body);
    }
    let resp = test::call_service(app, req.to_request()).await;
    let status = resp.status();
    let bytes = test::read_body(resp).await;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply { status, body, text }
}

/// Sends a raw body with the given content type.
pub async fn send_raw<S, B>(
    app: &S,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Reply
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let mut req = test::TestRequest::default()
        .method(method.parse().expect("method"))
        .uri(path)
        .insert_header(("Authorization", format!("Bearer {OPERATOR}")));
    if let Some(ct) = content_type {
        req = req.insert_header(("Content-Type", ct));
    }
    let resp = test::call_service(app, req.set_payload(body).to_request()).await;
    let status = resp.status();
    let bytes = test::read_body(resp).await;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply { status, body, text }
}

pub fn key(tenant: &str, connector: &str, guild: u64) -> ServerKey {
    ServerKey {
        tenant_key: tenant.into(),
        connector_id: connector.into(),
        guild_id: guild,
    }
}

/// Writes a snapshot as the auditor would.
pub async fn put_snapshot(
    state: &AppState,
    key: &ServerKey,
    used: i64,
    limit: i64,
    checked_at: i64,
    last_error: Option<&str>,
    status: &str,
) {
    ServerStore::new(state.db.clone())
        .put_snapshot(
            key,
            discord_server_seat_snapshots::Model {
                id: 0,
                tenant_key: String::new(),
                connector_id: String::new(),
                guild_id: 0,
                seats_used: used,
                seat_limit: limit,
                is_over_limit: used > limit,
                checked_at,
                next_check_after: checked_at + 60_000,
                status: status.into(),
                last_error: last_error.map(str::to_owned),
                basic_count: 1,
                advanced_count: 2,
                pro_count: 0,
                updated_at: now_ms(),
                members_counted: None,
                member_count: None,
            },
        )
        .await
        .expect("snapshot written");
}

pub async fn put_event(
    state: &AppState,
    key: &ServerKey,
    from: &str,
    to: &str,
    used: i64,
    at: i64,
) {
    ServerStore::new(state.db.clone())
        .append_event(
            key,
            seat_enforcement_events::Model {
                id: 0,
                tenant_key: String::new(),
                connector_id: String::new(),
                guild_id: 0,
                from_state: from.into(),
                to_state: to.into(),
                seats_used: used,
                seat_limit: 5,
                at,
                cause: "member_added".into(),
            },
        )
        .await
        .expect("event written");
}

/// The tenant-scoped fixture: a connector `c1` of `tenant` with a mapping into `guild` and a
/// server config for it.
pub async fn seed<S, B>(app: &S, tenant: &str, guild: u64)
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let r = send(
        app,
        "POST",
        &format!("/api/v1/tenants/{tenant}/connectors"),
        Some(OPERATOR),
        Some(serde_json::json!({"connector_id": "c1", "name": format!("{tenant} news"), "source_guild_id": "111"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = send(
        app,
        "POST",
        &format!("/api/v1/tenants/{tenant}/connectors/c1/mappings"),
        Some(OPERATOR),
        Some(serde_json::json!({"source_channel_id": "222", "target_guild_id": guild.to_string(), "target_channel_id": "333"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = send(
        app,
        "PUT",
        &format!("/api/v1/tenants/{tenant}/connectors/c1/servers/{guild}"),
        Some(OPERATOR),
        Some(serde_json::json!({"seat_limit": 5, "enforcement_mode": "enforce"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}
