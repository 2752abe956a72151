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
    know_the_world(&state.directory).await;
    Harness {
        t,
        settings,
        actors,
        state,
    }
}

pub const BOT: u64 = 990_000_000_000_000_001;

/// A whole server config for `PUT .../servers/{guild_id}` (which replaces every field):
/// seat limit 5, mode off, no override, strict, no roles, no notice channel, with `fields`
/// laid over it.
pub fn server_body(fields: Value) -> Value {
    let mut body = serde_json::json!({
        "seat_limit": 5, "enforcement_mode": "off", "override": "none", "stale_grace": false,
        "basic_role_id": null, "advanced_role_id": null, "pro_role_id": null,
        "notify_channel_id": null
    });
    if let (Some(b), Some(f)) = (body.as_object_mut(), fields.as_object()) {
        for (k, v) in f {
            b.insert(k.clone(), v.clone());
        }
    }
    body
}

/// The guilds the admin tests name, each with its channels: `(guild, channels)`. The bot is
/// in all of them and may view, send and manage webhooks everywhere.
pub const WORLD: &[(u64, &[u64])] = &[
    (1, &[10]),
    (111, &[222, 223]),
    (175928847299117063, &[175928847299117064]),
    (500, &[11, 12]),
    (501, &[13]),
    (900, &[9003, 44]),
    (901, &[9013]),
    (1000, &[333, 334, 10003]),
];

/// The target channel of [`seed`]'s mapping into `guild`.
pub fn target_channel(guild: u64) -> u64 {
    guild * 10 + 3
}

/// The world as the gateway would tell it: the sandbox renders each guild's GUILD_CREATE,
/// serenity decodes it, and the directory takes it as the ordered stream hands it over.
pub async fn know_the_world(directory: &seatgate::discord::directory::GuildDirectory) {
    use serenity::model::event::{Event, GuildCreateEvent};
    const VIEW_SEND_HOOKS: u64 = (1 << 10) | (1 << 11) | (1 << 29);
    let guilds: Vec<Value> = WORLD
        .iter()
        .map(|(g, channels)| {
            let channels: Vec<Value> = channels
                .iter()
                .map(|c| serde_json::json!({"id": c.to_string(), "name": format!("ch{c}"), "type": 0}))
                .collect();
            serde_json::json!({
                "id": g.to_string(), "name": format!("Guild {g}"), "owner_id": "700000000000000001",
                "roles": [
                    {"id": g.to_string(), "name": "@everyone", "permissions": VIEW_SEND_HOOKS.to_string()}
                ],
                "channels": channels,
                "members": [{"user": {"id": "700000000000000001", "username": "owner"}, "roles": []}]
            })
        })
        .collect();
    let scenario = seatgate::sandbox::Scenario::from_json(
        &serde_json::json!({"bot": {"id": BOT.to_string(), "username": "seatgate"}, "guilds": guilds}),
    )
    .expect("world scenario");
    let sandbox = seatgate::sandbox::Sandbox::start(seatgate::sandbox::SandboxOptions {
        scenario: Some(scenario),
        ..Default::default()
    })
    .await
    .expect("sandbox");
    directory.set_bot_id(BOT);
    for (g, _) in WORLD {
        let payload = sandbox
            .guild_create_payload(*g)
            .expect("a guild of the world");
        let event: GuildCreateEvent =
            serde_json::from_value(payload).expect("serenity decodes GUILD_CREATE");
        directory.apply(&Event::GuildCreate(event));
    }
    sandbox.shutdown().await;
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
        Some(serde_json::json!({"source_channel_id": "222", "target_guild_id": guild.to_string(), "target_channel_id": target_channel(guild).to_string()})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = send(
        app,
        "PUT",
        &format!("/api/v1/tenants/{tenant}/connectors/c1/servers/{guild}"),
        Some(OPERATOR),
        Some(server_body(
            serde_json::json!({"seat_limit": 5, "enforcement_mode": "enforce"}),
        )),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}
