//! The whole service against the Discord sandbox in this process, as `seatgate demo` runs it:
//! the auditor counts real gateway events, the gate delivers through the sandbox's REST API.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use seatgate::{
    app,
    config::{Secret, Settings},
    sandbox::{RateLimitConfig, Sandbox, SandboxHandle, SandboxOptions, Scenario},
    store::testing::TestDatabase,
};
use serde_json::{json, Value};

pub const TENANT: &str = "acme";
pub const CONNECTOR: &str = "signals";
pub const BOT: u64 = 990_000_000_000_000_001;
pub const PROVIDER: u64 = 700_000_000_000_000_001;
pub const SOURCE_GUILD: u64 = 810_000_000_000_000_001;
pub const SOURCE_CHANNEL: u64 = 830_000_000_000_000_001;
pub const GUILD: u64 = 840_000_000_000_000_001;
pub const OWNER: u64 = 700_000_000_000_000_101;
pub const SUBSCRIBER: u64 = 850_000_000_000_000_001;
pub const BRONZE: u64 = 850_000_000_000_000_002;
pub const GOLD: u64 = 850_000_000_000_000_003;
pub const BOT_ROLE: u64 = 850_000_000_000_000_009;
pub const CHANNEL: u64 = 860_000_000_000_000_001;
/// Subscribers: the first holds bronze, the second gold, the third no tier.
pub const MEMBERS: [u64; 3] = [
    710_000_000_000_000_001,
    710_000_000_000_000_002,
    710_000_000_000_000_003,
];
/// The server nickname of the gold subscriber (`MEMBERS[1]`).
pub const GOLD_NICK: &str = "Goldie";
/// In the guild without the subscriber role: cannot see the mapped channel.
pub const OUTSIDER: u64 = 710_000_000_000_000_009;
/// Owner and the three subscribers.
pub const SEATS: u64 = 4;

const VIEW: u64 = 1 << 10;
const SEND: u64 = 1 << 11;
const HISTORY: u64 = 1 << 16;

fn scenario() -> Scenario {
    let member = |id: u64, roles: &[u64]| {
        let mut m = json!({"user": {"id": id.to_string(), "username": format!("u{id}")},
               "roles": roles.iter().map(|r| r.to_string()).collect::<Vec<_>>()});
        if id == MEMBERS[1] {
            m["nick"] = json!(GOLD_NICK);
        }
        m
    };
    let v = json!({
        "bot": {"id": BOT.to_string(), "username": "seatgate"},
        "guilds": [
            {
                "id": SOURCE_GUILD.to_string(), "name": "Signal Provider", "owner_id": PROVIDER.to_string(),
                "roles": [{"id": SOURCE_GUILD.to_string(), "name": "@everyone", "permissions": (VIEW | HISTORY).to_string(), "position": 0}],
                "channels": [{"id": SOURCE_CHANNEL.to_string(), "name": "announcements", "type": 0, "permission_overwrites": []}],
                "members": [member(PROVIDER, &[])]
            },
            {
                "id": GUILD.to_string(), "name": "Alpha Traders", "owner_id": OWNER.to_string(),
                "roles": [
                    {"id": GUILD.to_string(), "name": "@everyone", "permissions": (VIEW | HISTORY).to_string(), "position": 0},
                    {"id": SUBSCRIBER.to_string(), "name": "subscriber", "permissions": "0", "position": 1},
                    {"id": BRONZE.to_string(), "name": "bronze", "permissions": "0", "position": 2},
                    {"id": GOLD.to_string(), "name": "gold", "permissions": "0", "position": 3},
                    {"id": BOT_ROLE.to_string(), "name": "seatgate", "permissions": (VIEW | SEND | HISTORY).to_string(), "position": 5}
                ],
                "channels": [
                    {"id": (CHANNEL + 50).to_string(), "name": "general", "type": 0, "permission_overwrites": []},
                    {"id": CHANNEL.to_string(), "name": "signals", "type": 0, "permission_overwrites": [
                        {"id": GUILD.to_string(), "type": 0, "allow": "0", "deny": VIEW.to_string()},
                        {"id": SUBSCRIBER.to_string(), "type": 0, "allow": VIEW.to_string(), "deny": "0"},
                        {"id": BOT_ROLE.to_string(), "type": 0, "allow": (VIEW | SEND).to_string(), "deny": "0"}
                    ]}
                ],
                "members": [
                    member(OWNER, &[]),
                    member(MEMBERS[0], &[SUBSCRIBER, BRONZE]),
                    member(MEMBERS[1], &[SUBSCRIBER, GOLD]),
                    member(MEMBERS[2], &[SUBSCRIBER]),
                    member(OUTSIDER, &[BRONZE]),
                    {"user": {"id": BOT.to_string(), "username": "seatgate", "bot": true}, "roles": [BOT_ROLE.to_string()]}
                ]
            }
        ]
    });
    Scenario::from_json(&v).unwrap_or_else(|e| panic!("scenario: {}", e.message))
}

pub struct Live {
    pub sandbox: SandboxHandle,
    pub running: app::Running,
    pub base: String,
    pub http: reqwest::Client,
    operator: String,
    _db: TestDatabase,
}

impl Live {
    /// A fresh database, the sandbox, and the service connected to it.
    pub async fn start(operator: &str) -> Live {
        let db = TestDatabase::new().await.expect("test database");
        let sandbox = Sandbox::start(SandboxOptions {
            scenario: Some(scenario()),
            rate_limits: RateLimitConfig::default(),
            ..Default::default()
        })
        .await
        .expect("sandbox starts");
        let settings = Settings {
            database_url: db.url.clone(),
            bind: "127.0.0.1:0".parse().expect("addr"),
            discord_token: Some(Secret::new(sandbox.bot_token())),
            discord_api_url: sandbox.api_url().to_owned(),
            operator_token: Some(Secret::new(operator)),
            ..Settings::default()
        };
        let running = app::start(&settings).await.expect("service starts");
        let base = format!("http://{}", running.bound);
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        Live {
            sandbox,
            running,
            base,
            http,
            operator: operator.to_owned(),
            _db: db,
        }
    }

    pub async fn stop(self) {
        self.running.shutdown().await;
        self.sandbox.shutdown().await;
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.operator);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("admin API reachable");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// The connector and its one mapping (source channel -> the customer's signals channel).
    pub async fn connector(&self) {
        self.connector_only().await;
        let (s, v) = self
            .call(
                Method::POST,
                &format!("/api/v1/tenants/{TENANT}/connectors/{CONNECTOR}/mappings"),
                Some(json!({"source_channel_id": SOURCE_CHANNEL.to_string(), "target_guild_id": GUILD.to_string(), "target_channel_id": CHANNEL.to_string()})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }

    /// The connector alone: its mappings are made elsewhere (the admin page, in its test).
    pub async fn connector_only(&self) {
        let (s, v) = self
            .call(
                Method::POST,
                &format!("/api/v1/tenants/{TENANT}/connectors"),
                Some(json!({"connector_id": CONNECTOR, "name": "Signals", "source_guild_id": SOURCE_GUILD.to_string()})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }

    pub fn server_path(&self) -> String {
        format!("/api/v1/tenants/{TENANT}/connectors/{CONNECTOR}/servers/{GUILD}")
    }

    /// A subscriber joins the customer guild (sees the mapped channel).
    pub fn join(&self, user_id: u64) {
        self.sandbox
            .add_member(
                GUILD,
                &json!({"user": {"id": user_id.to_string(), "username": format!("new{user_id}")}, "roles": [SUBSCRIBER.to_string()]}),
            )
            .unwrap_or_else(|e| panic!("sandbox add_member: {e:?}"));
    }

    pub fn leave(&self, user_id: u64) {
        self.sandbox
            .remove_member(GUILD, user_id)
            .unwrap_or_else(|e| panic!("sandbox remove_member: {e:?}"));
    }

    /// Posts into the source channel; returns nothing the test needs but the content.
    pub fn post(&self, text: &str) {
        self.sandbox
            .post_message(
                SOURCE_CHANNEL,
                &json!({"author": {"id": PROVIDER.to_string(), "username": "provider"}, "content": text}),
            )
            .unwrap_or_else(|e| panic!("sandbox post: {e:?}"));
    }

    /// Does the customer's mapped channel show a message with this content?
    pub fn delivered(&self, text: &str) -> bool {
        self.sandbox
            .messages(CHANNEL)
            .unwrap_or_default()
            .iter()
            .any(|m| {
                m["content"].as_str() == Some(text) && !m["deleted"].as_bool().unwrap_or(false)
            })
    }

    /// One sample of a series from /metrics (`name` with its `{labels}` as rendered), or 0.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics reachable")
            .text()
            .await
            .unwrap_or_default();
        metric_value(&text, series).unwrap_or(0.0)
    }
}

/// The value of `series` (a name with its rendered labels) in Prometheus text.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Polls `check` every 50 ms until it holds; panics with `what` after `limit`.
pub async fn until<F, Fut>(what: &str, limit: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
