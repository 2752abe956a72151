//! `seatgate demo`: the whole service against the built-in Discord sandbox, on SQLite, playing
//! the product's story as an operator would see it: configure through the admin API, mirror
//! signals into two customer servers, pause one when members join past its licence, resume it
//! when they leave (the held signals arrive), and propagate an edit and a delete.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{
    app,
    config::{Secret, Settings},
    error::{AppError, AppResult, ErrorCode},
    sandbox::{RateLimitConfig, Sandbox, SandboxHandle, SandboxOptions, Scenario},
};

const BOT: u64 = 990_000_000_000_000_001;
const PROVIDER: u64 = 700_000_000_000_000_001;
const SOURCE_GUILD: u64 = 810_000_000_000_000_001;
const SOURCE_CHANNEL: u64 = 830_000_000_000_000_001;
/// A tiny PNG (1x1, transparent) standing in for a trading chart.
const CHART: &str = "btc-chart.png";
const CHART_PNG_BASE64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";
const TENANT: &str = "acme";
const CONNECTOR: &str = "signals";

/// One customer server of the story.
#[derive(Debug, Clone, Copy)]
struct Customer {
    name: &'static str,
    guild: u64,
    owner: u64,
    member_role: u64,
    bot_role: u64,
    channel: u64,
    first_member: u64,
    members: u64,
    seat_limit: u64,
    delivery_mode: &'static str,
}

const ALPHA: Customer = Customer {
    name: "Alpha Traders",
    guild: 840_000_000_000_000_001,
    owner: 700_000_000_000_000_101,
    member_role: 850_000_000_000_000_001,
    bot_role: 850_000_000_000_000_009,
    channel: 860_000_000_000_000_001,
    first_member: 710_000_000_000_000_000,
    members: 2,
    seat_limit: 3,
    delivery_mode: "bot",
};

const BETA: Customer = Customer {
    name: "Beta Capital",
    guild: 840_000_000_000_000_002,
    owner: 700_000_000_000_000_102,
    member_role: 850_000_000_000_000_101,
    bot_role: 850_000_000_000_000_109,
    channel: 860_000_000_000_000_101,
    first_member: 720_000_000_000_000_000,
    members: 3,
    seat_limit: 10,
    delivery_mode: "webhook",
};

const VIEW_CHANNEL: u64 = 1 << 10;
const SEND_MESSAGES: u64 = 1 << 11;
const READ_HISTORY: u64 = 1 << 16;
const MANAGE_WEBHOOKS: u64 = 1 << 29;

fn customer_guild(c: &Customer) -> Value {
    let mut members = vec![
        json!({"user": {"id": c.owner.to_string(), "username": format!("{}-owner", c.name.split(' ').next().unwrap_or("c").to_lowercase())}, "roles": []}),
    ];
    for i in 0..c.members {
        members.push(json!({"user": {"id": (c.first_member + i).to_string(), "username": format!("member{i}")}, "roles": [c.member_role.to_string()]}));
    }
    members.push(json!({"user": {"id": BOT.to_string(), "username": "seatgate", "bot": true}, "roles": [c.bot_role.to_string()]}));
    let bot_perms = VIEW_CHANNEL | SEND_MESSAGES | READ_HISTORY | MANAGE_WEBHOOKS;
    json!({
        "id": c.guild.to_string(), "name": c.name, "owner_id": c.owner.to_string(),
        "roles": [
            {"id": c.guild.to_string(), "name": "@everyone", "permissions": (VIEW_CHANNEL | READ_HISTORY).to_string(), "position": 0},
            {"id": c.member_role.to_string(), "name": "subscriber", "permissions": "0", "position": 1},
            {"id": c.bot_role.to_string(), "name": "seatgate", "permissions": bot_perms.to_string(), "position": 5}
        ],
        "channels": [
            {"id": (c.channel + 50).to_string(), "name": "general", "type": 0, "permission_overwrites": []},
            {"id": c.channel.to_string(), "name": "signals", "type": 0, "permission_overwrites": [
                {"id": c.guild.to_string(), "type": 0, "allow": "0", "deny": VIEW_CHANNEL.to_string()},
                {"id": c.member_role.to_string(), "type": 0, "allow": VIEW_CHANNEL.to_string(), "deny": "0"},
                {"id": c.bot_role.to_string(), "type": 0, "allow": (VIEW_CHANNEL | SEND_MESSAGES).to_string(), "deny": "0"}
            ]}
        ],
        "members": members
    })
}

fn scenario() -> AppResult<Scenario> {
    let v = json!({
        "bot": {"id": BOT.to_string(), "username": "seatgate"},
        "guilds": [
            {
                "id": SOURCE_GUILD.to_string(), "name": "Signal Provider", "owner_id": PROVIDER.to_string(),
                "roles": [{"id": SOURCE_GUILD.to_string(), "name": "@everyone", "permissions": (VIEW_CHANNEL | READ_HISTORY).to_string(), "position": 0}],
                "channels": [{"id": SOURCE_CHANNEL.to_string(), "name": "announcements", "type": 0, "permission_overwrites": []}],
                "members": [{"user": {"id": PROVIDER.to_string(), "username": "provider"}, "roles": []}]
            },
            customer_guild(&ALPHA),
            customer_guild(&BETA)
        ]
    });
    Scenario::from_json(&v)
        .map_err(|e| AppError::new(ErrorCode::Internal, format!("demo scenario: {}", e.message)))
}

/// What the story measured.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    pub lines: Vec<String>,
    pub delivery_ms: Vec<f64>,
    pub join_to_pause_ms: f64,
    pub leave_to_resume_ms: f64,
}

/// The demo failed at a named step.
#[derive(Debug)]
pub struct StepFailed {
    pub step: &'static str,
    pub why: String,
}

impl std::fmt::Display for StepFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "step '{}' failed: {}", self.step, self.why)
    }
}

struct Story {
    started: Instant,
    timeline: Timeline,
    sandbox: SandboxHandle,
    api: String,
    client: reqwest::Client,
    operator: String,
    running: app::Running,
}

fn fail(step: &'static str, why: impl Into<String>) -> StepFailed {
    StepFailed {
        step,
        why: why.into(),
    }
}

impl Story {
    fn say(&mut self, line: String) {
        let at = self.started.elapsed().as_secs_f64();
        let line = format!("[{at:7.3}s] {line}");
        println!("{line}");
        self.timeline.lines.push(line);
    }

    async fn call(
        &self,
        step: &'static str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, StepFailed> {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(&self.operator);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| fail(step, format!("admin API unreachable: {e}")))?;
        let status = resp.status();
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(fail(step, format!("{path} answered {status}: {value}")));
        }
        Ok(value)
    }

    fn live_messages(&self, channel: u64) -> Vec<Value> {
        self.sandbox
            .messages(channel)
            .unwrap_or_default()
            .into_iter()
            .filter(|m| !m["deleted"].as_bool().unwrap_or(false))
            .collect()
    }

    fn shows(&self, channel: u64, text: &str) -> bool {
        self.live_messages(channel)
            .iter()
            .any(|m| m["content"].as_str() == Some(text))
    }

    /// The channel shows `text` with `file` uploaded to that channel (a copy, not a link to
    /// the source's file).
    fn shows_with_file(&self, channel: u64, text: &str, file: &str) -> bool {
        let own = format!("/attachments/{channel}/");
        self.live_messages(channel).iter().any(|m| {
            m["content"].as_str() == Some(text)
                && m["attachments"].as_array().is_some_and(|a| {
                    a.iter().any(|f| {
                        f["filename"] == file && f["url"].as_str().is_some_and(|u| u.contains(&own))
                    })
                })
        })
    }

    async fn until(
        &self,
        step: &'static str,
        what: &str,
        limit: Duration,
        mut check: impl FnMut(&Self) -> bool,
    ) -> Result<Duration, StepFailed> {
        let start = Instant::now();
        loop {
            if check(self) {
                return Ok(start.elapsed());
            }
            if start.elapsed() > limit {
                return Err(fail(
                    step,
                    format!("timed out after {limit:?} waiting for {what}"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn snapshot(&self, c: &Customer) -> Option<Value> {
        let path = format!(
            "/api/v1/tenants/{TENANT}/connectors/{CONNECTOR}/servers/{}/snapshot",
            c.guild
        );
        self.call("snapshot", reqwest::Method::GET, &path, None)
            .await
            .ok()
    }

    async fn until_snapshot(
        &self,
        step: &'static str,
        c: &Customer,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Result<Duration, StepFailed> {
        let start = Instant::now();
        loop {
            if let Some(s) = self.snapshot(c).await {
                if check(&s) {
                    return Ok(start.elapsed());
                }
            }
            if start.elapsed() > Duration::from_secs(20) {
                return Err(fail(
                    step,
                    format!("timed out waiting for {}'s snapshot: {what}", c.name),
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn post(&self, step: &'static str, text: &str) -> Result<(u64, Instant), StepFailed> {
        self.post_with(step, text, json!([]))
    }

    fn post_with(
        &self,
        step: &'static str,
        text: &str,
        attachments: Value,
    ) -> Result<(u64, Instant), StepFailed> {
        let msg = self
            .sandbox
            .post_message(SOURCE_CHANNEL, &json!({"author": {"id": PROVIDER.to_string(), "username": "provider"}, "content": text, "attachments": attachments}))
            .map_err(|e| fail(step, format!("sandbox refused the post: {e:?}")))?;
        let id = msg["id"]
            .as_str()
            .and_then(crate::domain::snowflake::parse)
            .ok_or_else(|| fail(step, "posted message has no id"))?;
        Ok((id, Instant::now()))
    }
}

/// Runs the story against a fresh sandbox and a service on `database_url`.
pub async fn run_story(database_url: &str) -> Result<Timeline, StepFailed> {
    run_story_then(database_url, false).await
}

/// Runs the story; with `keep_running`, leaves the sandbox and the service up afterwards
/// until SIGINT/SIGTERM, for a person to explore.
pub async fn run_story_then(
    database_url: &str,
    keep_running: bool,
) -> Result<Timeline, StepFailed> {
    let sandbox = Sandbox::start(SandboxOptions {
        scenario: Some(scenario().map_err(|e| fail("start the sandbox", e.to_string()))?),
        rate_limits: RateLimitConfig::default(),
        ..Default::default()
    })
    .await
    .map_err(|e| fail("start the sandbox", e.to_string()))?;
    let operator = format!("demo-{}", uuid::Uuid::new_v4().simple());
    let settings = Settings {
        database_url: database_url.to_owned(),
        bind: "127.0.0.1:0"
            .parse()
            .map_err(|_| fail("start the service", "bad bind"))?,
        discord_token: Some(Secret::new(sandbox.bot_token())),
        discord_api_url: sandbox.api_url().to_owned(),
        operator_token: Some(Secret::new(operator.clone())),
        ..Settings::default()
    };
    let running = app::start(&settings)
        .await
        .map_err(|e| fail("start the service", e.to_string()))?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| fail("start the service", e.to_string()))?;
    let api = format!("http://{}", running.bound);
    let mut story = Story {
        started: Instant::now(),
        timeline: Timeline::default(),
        sandbox,
        api,
        client,
        operator,
        running,
    };
    let result = play(&mut story).await;
    if keep_running && result.is_ok() {
        println!();
        println!("service left running (Ctrl-C to stop):");
        println!(
            "  admin page and API: {}/  (operator token: {})",
            story.api, story.operator
        );
        println!("  sandbox control:    {}", story.sandbox.control_url());
        app::wait_for_stop_signal().await;
    }
    let Story {
        timeline,
        sandbox,
        running,
        ..
    } = story;
    running.shutdown().await;
    sandbox.shutdown().await;
    result.map(|()| timeline)
}

async fn play(s: &mut Story) -> Result<(), StepFailed> {
    use reqwest::Method;
    let api_url = s.sandbox.api_url().to_owned();
    s.say(format!(
        "sandbox Discord on {api_url}; admin API on {}",
        s.api
    ));

    // An operator configures the tenant through the admin API.
    let step = "configure the connector";
    s.call(step, Method::POST, &format!("/api/v1/tenants/{TENANT}/connectors"), Some(json!({"connector_id": CONNECTOR, "name": "Signals", "source_guild_id": SOURCE_GUILD.to_string()}))).await?;
    for c in [&ALPHA, &BETA] {
        s.call(step, Method::POST, &format!("/api/v1/tenants/{TENANT}/connectors/{CONNECTOR}/mappings"), Some(json!({
            "source_channel_id": SOURCE_CHANNEL.to_string(), "target_guild_id": c.guild.to_string(),
            "target_channel_id": c.channel.to_string(), "delivery_mode": c.delivery_mode
        }))).await?;
        s.call(
            step,
            Method::PUT,
            &format!(
                "/api/v1/tenants/{TENANT}/connectors/{CONNECTOR}/servers/{}",
                c.guild
            ),
            // PUT replaces the whole config: every field given.
            Some(json!({
                "seat_limit": c.seat_limit, "enforcement_mode": "enforce", "override": "none",
                "stale_grace": false, "basic_role_id": null, "advanced_role_id": null,
                "pro_role_id": null, "notify_channel_id": null
            })),
        )
        .await?;
        s.say(format!(
            "configured {} ({} delivery): seat limit {}, enforce",
            c.name, c.delivery_mode, c.seat_limit
        ));
    }

    let step = "first seat count";
    for c in [&ALPHA, &BETA] {
        let seats = 1 + c.members;
        let took = s
            .until_snapshot(step, c, "counted", |v| {
                v["seats_used"].as_u64() == Some(seats) && v["status"] == "fresh"
            })
            .await?;
        s.say(format!(
            "{}: {seats} of {} seats used (counted in {} ms)",
            c.name,
            c.seat_limit,
            took.as_millis()
        ));
    }

    let step = "mirror signals under the limit";
    let mut signals = Vec::new();
    for i in 1..=3 {
        let text = format!("Signal #{i}: BUY BTC @ {}", 60_000 + i * 100);
        // The first signal carries a chart, which each server gets as its own upload.
        let chart = (i == 1).then_some(CHART);
        let attachments = match chart {
            Some(name) => json!([{"filename": name, "content_base64": CHART_PNG_BASE64}]),
            None => json!([]),
        };
        let (id, at) = s.post_with(step, &text, attachments)?;
        s.until(
            step,
            "both servers show the signal",
            Duration::from_secs(15),
            |s| match chart {
                Some(name) => {
                    s.shows_with_file(ALPHA.channel, &text, name)
                        && s.shows_with_file(BETA.channel, &text, name)
                }
                None => s.shows(ALPHA.channel, &text) && s.shows(BETA.channel, &text),
            },
        )
        .await?;
        let ms = at.elapsed().as_secs_f64() * 1000.0;
        s.timeline.delivery_ms.push(ms);
        match chart {
            Some(name) => s.say(format!(
                "\"{text}\" with {name} mirrored to both servers in {ms:.1} ms (the chart uploaded to each)"
            )),
            None => s.say(format!("\"{text}\" mirrored to both servers in {ms:.1} ms")),
        }
        signals.push((id, text));
    }

    let step = "members join Alpha past its limit";
    let joined: Vec<u64> = (0..2).map(|i| ALPHA.first_member + 100 + i).collect();
    let join_at = Instant::now();
    for uid in &joined {
        s.sandbox
            .add_member(ALPHA.guild, &json!({"user": {"id": uid.to_string(), "username": format!("newcomer{uid}")}, "roles": [ALPHA.member_role.to_string()]}))
            .map_err(|e| fail(step, format!("{e:?}")))?;
    }
    s.until_snapshot(step, &ALPHA, "over the limit", |v| {
        v["is_over_limit"] == true
    })
    .await?;
    s.timeline.join_to_pause_ms = join_at.elapsed().as_secs_f64() * 1000.0;
    // The pause comes with the first join past the limit; the count is printed once both
    // joins are in.
    let both_in = 1 + ALPHA.members + joined.len() as u64;
    s.until_snapshot(step, &ALPHA, "both joins counted", |v| {
        v["seats_used"].as_u64() == Some(both_in)
    })
    .await?;
    let over = s.snapshot(&ALPHA).await.unwrap_or(Value::Null);
    s.say(format!(
        "2 members joined {}: {} of {} seats, paused {:.0} ms after the joins",
        ALPHA.name, over["seats_used"], ALPHA.seat_limit, s.timeline.join_to_pause_ms
    ));

    let step = "Alpha is held while Beta keeps receiving";
    let mut held = Vec::new();
    for i in 4..=5 {
        let text = format!("Signal #{i}: SELL ETH @ {}", 3_000 + i * 10);
        let (_, at) = s.post(step, &text)?;
        s.until(
            step,
            "Beta shows the signal",
            Duration::from_secs(15),
            |s| s.shows(BETA.channel, &text),
        )
        .await?;
        s.say(format!(
            "\"{text}\" mirrored to {} in {:.1} ms",
            BETA.name,
            at.elapsed().as_secs_f64() * 1000.0
        ));
        held.push(text);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    if held.iter().any(|t| s.shows(ALPHA.channel, t)) {
        return Err(fail(step, "a signal reached the paused server"));
    }
    let codes = held_codes(s).await.map_err(|e| fail(step, e.to_string()))?;
    if !codes
        .iter()
        .any(|c| c == ErrorCode::SeatLimitExceeded.as_str())
    {
        return Err(fail(
            step,
            format!("held jobs do not show seat_limit_exceeded: {codes:?}"),
        ));
    }
    s.say(format!(
        "{} received nothing; its {} held jobs show {}",
        ALPHA.name,
        codes.len(),
        ErrorCode::SeatLimitExceeded
    ));

    let step = "members leave and Alpha resumes";
    let leave_at = Instant::now();
    for uid in &joined {
        s.sandbox
            .remove_member(ALPHA.guild, *uid)
            .map_err(|e| fail(step, format!("{e:?}")))?;
    }
    s.until(
        step,
        "the held signals arrive in Alpha",
        Duration::from_secs(15),
        |s| held.iter().all(|t| s.shows(ALPHA.channel, t)),
    )
    .await?;
    s.timeline.leave_to_resume_ms = leave_at.elapsed().as_secs_f64() * 1000.0;
    s.say(format!("2 members left {}: back to {} of {} seats; the held signals arrived {:.0} ms after the leaves", ALPHA.name, 1 + ALPHA.members, ALPHA.seat_limit, s.timeline.leave_to_resume_ms));
    let order: Vec<String> = s
        .live_messages(ALPHA.channel)
        .iter()
        .filter_map(|m| m["content"].as_str().map(str::to_owned))
        .collect();
    let pos = |t: &str| order.iter().position(|o| o == t);
    if pos(&held[0]) > pos(&held[1]) {
        return Err(fail(
            step,
            format!("held signals arrived out of order: {order:?}"),
        ));
    }

    let step = "an edit propagates";
    let (first_id, first_text) = signals[0].clone();
    let edited = format!("{first_text} (target hit)");
    s.sandbox
        .edit_message(SOURCE_CHANNEL, first_id, &json!({"content": edited}))
        .map_err(|e| fail(step, format!("{e:?}")))?;
    let took = s
        .until(
            step,
            "both servers show the edit",
            Duration::from_secs(15),
            |s| s.shows(ALPHA.channel, &edited) && s.shows(BETA.channel, &edited),
        )
        .await?;
    s.say(format!(
        "edit of signal #1 reached both servers in {} ms",
        took.as_millis()
    ));

    let step = "a delete propagates";
    let (second_id, second_text) = signals[1].clone();
    s.sandbox
        .delete_message(SOURCE_CHANNEL, second_id)
        .map_err(|e| fail(step, format!("{e:?}")))?;
    let took = s
        .until(
            step,
            "both servers drop the message",
            Duration::from_secs(15),
            |s| !s.shows(ALPHA.channel, &second_text) && !s.shows(BETA.channel, &second_text),
        )
        .await?;
    s.say(format!(
        "delete of signal #2 reached both servers in {} ms",
        took.as_millis()
    ));

    let step = "each message exactly once";
    for c in [&ALPHA, &BETA] {
        let contents: Vec<String> = s
            .live_messages(c.channel)
            .iter()
            .filter_map(|m| m["content"].as_str().map(str::to_owned))
            .collect();
        let mut unique = contents.clone();
        unique.sort();
        unique.dedup();
        if unique.len() != contents.len() || contents.len() != 4 {
            return Err(fail(step, format!("{} shows {contents:?}", c.name)));
        }
    }
    let events = s
        .call(
            step,
            Method::GET,
            &format!(
                "/api/v1/tenants/{TENANT}/connectors/{CONNECTOR}/servers/{}/events",
                ALPHA.guild
            ),
            None,
        )
        .await?;
    s.say(format!(
        "both servers show 4 messages, each once; {}'s pause/resume history: {}",
        ALPHA.name,
        summarize_events(&events)
    ));
    Ok(())
}

fn summarize_events(events: &Value) -> String {
    let list = events.get("items").and_then(|e| e.as_array());
    list.map(|l| {
        l.iter()
            .rev()
            .map(|e| {
                format!(
                    "{}->{}",
                    e["from_state"].as_str().unwrap_or("?"),
                    e["to_state"].as_str().unwrap_or("?")
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    })
    .unwrap_or_else(|| events.to_string())
}

/// The last_error of Alpha's pending mirror jobs.
async fn held_codes(s: &Story) -> AppResult<Vec<String>> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let rows = entities::mirror_jobs::Entity::find()
        .filter(
            entities::mirror_jobs::Column::TargetGuildId
                .eq(crate::domain::snowflake::to_db(ALPHA.guild)),
        )
        .filter(entities::mirror_jobs::Column::Status.eq("pending"))
        .all(s.running.db.conn())
        .await?;
    Ok(rows.into_iter().filter_map(|r| r.last_error).collect())
}

/// `seatgate demo`: prints the timeline, exits 0, or names the failed step.
pub fn demo_blocking(settings: Settings, keep_running: bool) -> AppResult<()> {
    let dir = tempfile::tempdir()?;
    let default_url = Settings::default().database_url;
    let url = if settings.database_url == default_url {
        format!("sqlite://{}?mode=rwc", dir.path().join("demo.db").display())
    } else {
        settings.database_url.clone()
    };
    let outcome = app::actix_system().block_on(async move {
        println!(
            "seatgate demo: the service against the built-in Discord sandbox (database: {})",
            if url.starts_with("sqlite") {
                "SQLite"
            } else {
                "PostgreSQL"
            }
        );
        run_story_then(&url, keep_running).await
    });
    match outcome {
        Ok(t) => {
            let mut d = t.delivery_ms.clone();
            d.sort_by(|a, b| a.total_cmp(b));
            println!(
                "demo ok: {} steps; signal delivery {:.1}-{:.1} ms; join->pause {:.0} ms; leave->resume {:.0} ms",
                t.lines.len(),
                d.first().copied().unwrap_or_default(),
                d.last().copied().unwrap_or_default(),
                t.join_to_pause_ms,
                t.leave_to_resume_ms
            );
            Ok(())
        }
        Err(e) => Err(AppError::new(ErrorCode::Internal, format!("demo {e}"))),
    }
}
