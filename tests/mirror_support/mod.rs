//! Shared by the mirroring end-to-end tests: a scenario with one source channel and customer
//! guilds, the admin API calls an operator makes, and reads of what the sandbox holds.
#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use seatgate::{
    app,
    config::{Secret, Settings},
    sandbox::{RateLimitConfig, Sandbox, SandboxHandle, SandboxOptions, Scenario},
    store::testing::TestDatabase,
};
use serde_json::{json, Value};

pub const BOT: u64 = 990_000_000_000_000_001;
pub const PROVIDER: u64 = 700_000_000_000_000_001;
pub const SOURCE_GUILD: u64 = 810_000_000_000_000_001;
pub const SOURCE_CHANNEL: u64 = 830_000_000_000_000_001;
pub const TENANT: &str = "acme";
pub const CONNECTOR: &str = "signals";

const VIEW: u64 = 1 << 10;
const SEND: u64 = 1 << 11;
const READ_HISTORY: u64 = 1 << 16;
const MANAGE_WEBHOOKS: u64 = 1 << 29;

/// Customer guild `i` (0-based): its guild id and its one mirrored channel. Consecutive
/// guilds are on consecutive shards (`(id >> 22) % shards`), as guilds made at different
/// times are.
pub fn target(i: u64) -> (u64, u64) {
    (
        840_000_000_000_000_000 + (i << 22),
        860_000_000_000_000_000 + i,
    )
}

/// A TCP port nothing listens on now, for a process the test starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub fn no_proxy() {
    std::env::set_var("NO_PROXY", "127.0.0.1,localhost");
    std::env::set_var("no_proxy", "127.0.0.1,localhost");
}

/// A source guild and `targets` customer guilds; the bot may view, send and manage webhooks in
/// every customer channel.
pub fn scenario(targets: u64) -> Value {
    let mut guilds = vec![json!({
        "id": SOURCE_GUILD.to_string(), "name": "Signal Provider", "owner_id": PROVIDER.to_string(),
        "roles": [{"id": SOURCE_GUILD.to_string(), "name": "@everyone", "permissions": (VIEW | READ_HISTORY).to_string(), "position": 0}],
        "channels": [{"id": SOURCE_CHANNEL.to_string(), "name": "announcements", "type": 0}],
        "members": [{"user": {"id": PROVIDER.to_string(), "username": "provider"}, "roles": []}]
    })];
    for i in 0..targets {
        let (guild, channel) = target(i);
        let bot_role = 850_000_000_000_000_000 + i;
        guilds.push(json!({
            "id": guild.to_string(), "name": format!("Customer {i}"), "owner_id": (701_000_000_000_000_000 + i).to_string(),
            "roles": [
                {"id": guild.to_string(), "name": "@everyone", "permissions": (VIEW | READ_HISTORY).to_string(), "position": 0},
                {"id": bot_role.to_string(), "name": "seatgate", "permissions": (VIEW | SEND | READ_HISTORY | MANAGE_WEBHOOKS).to_string(), "position": 5}
            ],
            "channels": [{"id": channel.to_string(), "name": "signals", "type": 0}],
            "members": [
                {"user": {"id": (701_000_000_000_000_000 + i).to_string(), "username": format!("owner{i}")}, "roles": []},
                {"user": {"id": BOT.to_string(), "username": "seatgate", "bot": true}, "roles": [bot_role.to_string()]}
            ]
        }));
    }
    json!({"bot": {"id": BOT.to_string(), "username": "seatgate"}, "guilds": guilds})
}

/// A whole server config for `PUT .../servers/{guild_id}` (which replaces every field):
/// mode off, no override, strict, no roles, no notice channel, with `fields` laid over it.
pub fn server_config(fields: Value) -> Value {
    let mut body = json!({
        "seat_limit": 1000, "enforcement_mode": "off", "override": "none", "stale_grace": false,
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

pub struct Admin {
    pub api: String,
    pub operator: String,
    pub client: reqwest::Client,
}

impl Admin {
    pub fn new(api: String, operator: String) -> Admin {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("reqwest client");
        Admin {
            api,
            operator,
            client,
        }
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(&self.operator);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("admin API reachable");
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }

    /// Calls as `token` (the operator's when `None`) and returns the status and body, whatever
    /// they are.
    pub async fn try_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (reqwest::StatusCode, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(token.unwrap_or(&self.operator));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("admin API reachable");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Waits until `/healthz` answers (the service is up).
    pub async fn wait_up(&self, limit: Duration) {
        let start = Instant::now();
        loop {
            if let Ok(r) = self
                .client
                .get(format!("{}/healthz", self.api))
                .send()
                .await
            {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(start.elapsed() < limit, "service not up after {limit:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// One connector with a mapping per (target index, delivery mode).
    pub async fn configure(&self, modes: &[&str]) {
        use reqwest::Method;
        self.call(
            Method::POST,
            &format!("/api/v1/tenants/{TENANT}/connectors"),
            Some(json!({"connector_id": CONNECTOR, "name": "Signals", "source_guild_id": SOURCE_GUILD.to_string()})),
        )
        .await;
        for (i, mode) in modes.iter().enumerate() {
            let (guild, channel) = target(i as u64);
            self.call(
                Method::POST,
                &format!("/api/v1/tenants/{TENANT}/connectors/{CONNECTOR}/mappings"),
                Some(json!({
                    "source_channel_id": SOURCE_CHANNEL.to_string(), "target_guild_id": guild.to_string(),
                    "target_channel_id": channel.to_string(), "delivery_mode": mode
                })),
            )
            .await;
        }
    }

    /// The service's `/metrics` text (no token needed).
    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.api))
            .send()
            .await
            .expect("/metrics answers")
            .text()
            .await
            .expect("/metrics text")
    }

    pub async fn mappings(&self) -> Vec<Value> {
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/tenants/{TENANT}/connectors/{CONNECTOR}/mappings"),
                None,
            )
            .await;
        v["items"].as_array().cloned().unwrap_or_default()
    }
}

/// Posts `content` in the source channel as the provider; returns the message id.
pub fn post(sandbox: &SandboxHandle, content: &str) -> u64 {
    post_in(sandbox, SOURCE_CHANNEL, content)
}

/// Posts `content` in `channel` as the provider (a member of no guild: the sandbox does not
/// ask); returns the message id.
pub fn post_in(sandbox: &SandboxHandle, channel: u64, content: &str) -> u64 {
    let m = sandbox
        .post_message(
            channel,
            &json!({"author": {"id": PROVIDER.to_string(), "username": "provider"}, "content": content}),
        )
        .expect("sandbox accepts the post");
    m["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("message id")
}

/// Contents of the messages a channel shows (deleted ones left out), in posting order.
pub fn live(sandbox: &SandboxHandle, channel: u64) -> Vec<String> {
    sandbox
        .messages(channel)
        .unwrap_or_default()
        .into_iter()
        .filter(|m| !m["deleted"].as_bool().unwrap_or(false))
        .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Sorted contents; equal to the expected sorted list means each message exactly once.
pub fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Polls `check` every 20 ms until it holds or `limit` passes; returns whether it held.
pub async fn until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if check() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A sandbox with the source guild and `targets` customer guilds.
pub async fn start_sandbox(targets: u64, rate_limits: RateLimitConfig) -> SandboxHandle {
    no_proxy();
    Sandbox::start(SandboxOptions {
        scenario: Some(Scenario::from_json(&scenario(targets)).expect("scenario")),
        rate_limits,
        ..SandboxOptions::default()
    })
    .await
    .expect("sandbox starts")
}

/// The service on `t` against `sandbox`, retrying failed jobs within seconds.
pub fn service_settings(t: &TestDatabase, sandbox: &SandboxHandle, operator: &str) -> Settings {
    Settings {
        database_url: t.url.clone(),
        bind: "127.0.0.1:0".parse().expect("bind address"),
        discord_token: Some(Secret::new(sandbox.bot_token())),
        discord_api_url: sandbox.api_url().to_owned(),
        operator_token: Some(Secret::new(operator.to_owned())),
        queue_backoff_base_secs: 1,
        queue_backoff_cap_secs: 2,
        ..Settings::default()
    }
}

/// Starts the service; its admin API, called as `operator`.
/// `settings` with shard leases, as two processes would run them: `instance-a` and
/// `instance-b`.
pub fn leased_pair(mut settings: Settings) -> (Settings, Settings) {
    settings.shard_leases = true;
    let mut a = settings.clone();
    a.worker_id = Some("instance-a".into());
    let mut b = settings;
    b.worker_id = Some("instance-b".into());
    (a, b)
}

pub async fn start_service(settings: &Settings, operator: &str) -> (app::Running, Admin) {
    let running = app::start(settings).await.expect("service starts");
    let admin = Admin::new(format!("http://{}", running.bound), operator.into());
    (running, admin)
}

/// Waits until the service's gateway session is attached to the sandbox.
pub async fn attached(sandbox: &SandboxHandle) {
    assert!(
        until(Duration::from_secs(20), || sandbox.connected_sessions()
            == 1)
        .await,
        "the service never attached to the gateway"
    );
}

/// A sandbox with the source guild and `targets` customer guilds whose `GET /gateway/bot`
/// recommends `shards`, its rate limits off.
pub async fn sandbox_recommending(shards: u64, targets: u64) -> SandboxHandle {
    no_proxy();
    Sandbox::start(SandboxOptions {
        scenario: Some(Scenario::from_json(&scenario(targets)).expect("scenario")),
        shards: Some(shards),
        rate_limits: RateLimitConfig::disabled(),
        ..SandboxOptions::default()
    })
    .await
    .expect("sandbox starts")
}

pub async fn get_json(url: String) -> Value {
    reqwest::get(url)
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON")
}

/// Live sessions per shard `[id, total]`, from the sandbox's control API.
pub async fn sessions_per_shard(sandbox: &SandboxHandle) -> BTreeMap<(u64, u64), usize> {
    let sessions = get_json(format!("{}/gateway/sessions", sandbox.control_url())).await;
    let mut per_shard = BTreeMap::new();
    for s in sessions.as_array().into_iter().flatten() {
        let shard = (
            s["shard"][0].as_u64().unwrap_or(99),
            s["shard"][1].as_u64().unwrap_or(99),
        );
        *per_shard.entry(shard).or_insert(0) += 1;
    }
    per_shard
}

/// Until the sandbox sees exactly one session on each of `total` shards (serenity waits 5 s
/// between IDENTIFYs).
pub async fn one_session_per_shard(sandbox: &SandboxHandle, total: u64) {
    let want: BTreeMap<(u64, u64), usize> = (0..total).map(|id| ((id, total), 1)).collect();
    let start = std::time::Instant::now();
    loop {
        let got = sessions_per_shard(sandbox).await;
        if got == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(45),
            "sessions per shard: {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until every target channel shows exactly `expected` (sorted), each once; panics
/// with what they show after `limit`.
pub async fn every_target_shows(
    sandbox: &SandboxHandle,
    targets: &[u64],
    expected: &[String],
    limit: Duration,
) {
    assert!(
        until(limit, || targets
            .iter()
            .all(|c| sorted(live(sandbox, *c)) == expected))
        .await,
        "{:?}",
        targets
            .iter()
            .map(|c| live(sandbox, *c))
            .collect::<Vec<_>>()
    );
}
