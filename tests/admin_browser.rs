//! The admin page in headless Chromium, driven over the W3C WebDriver protocol (reqwest
//! against Debian's chromedriver), against the real service started in this process.
//!
//! Needs `chromium` and `chromium-driver` (CI installs them): run with
//! `cargo test --test admin_browser -- --ignored`.
//!
//! Not yet covered: the chip turning to over when the Discord sandbox adds members past the
//! limit and back when they leave. That needs the seat auditor (issue 5) to count live; here
//! the snapshot the auditor would write is written through the store, and the page is shown
//! to follow it.

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use base64::Engine;
use reqwest::Client;
use seatgate::{
    actors::ServerKey,
    app,
    config::{Secret, Settings},
    domain::gate::EnforcementMode,
    store::{now_ms, servers::ServerStore, testing::TestDatabase},
};
use serde_json::{json, Value};

const OPERATOR: &str = "operator-token-for-the-browser-test";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Driver {
    child: Child,
    base: String,
    http: Client,
    session: String,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Driver {
    async fn start() -> Driver {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver on PATH (apt-get install chromium chromium-driver)");
        let http = Client::builder().no_proxy().build().expect("http client");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = http
                .get(format!("{base}/status"))
                .send()
                .await
                .ok()
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let args = vec![
            "--headless".to_owned(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--window-size=1280,1100".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}
        }}});
        let mut driver = Driver {
            child,
            base,
            http,
            session: String::new(),
            _profile: profile,
        };
        let v = driver.post("/session", caps).await;
        driver.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_owned();
        driver
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let v: Value = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("webdriver request")
            .json()
            .await
            .expect("webdriver json");
        v["value"].clone()
    }

    async fn get(&self, path: &str) -> Value {
        let v: Value = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("webdriver request")
            .json()
            .await
            .expect("webdriver json");
        v["value"].clone()
    }

    fn s(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    async fn goto(&self, url: &str) {
        self.post(&self.s("/url"), json!({"url": url})).await;
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .post(
                &self.s("/element"),
                json!({"using": "css selector", "value": css}),
            )
            .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("{css} not found: {v}"))
            .to_owned()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.post(&self.s(&format!("/element/{id}/clear")), json!({}))
            .await;
        self.post(
            &self.s(&format!("/element/{id}/value")),
            json!({"text": text}),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.post(&self.s(&format!("/element/{id}/click")), json!({}))
            .await;
    }

    async fn script(&self, script: &str) -> Value {
        self.post(
            &self.s("/execute/sync"),
            json!({"script": script, "args": []}),
        )
        .await
    }

    async fn text(&self, css: &str) -> String {
        let id = self.find(css).await;
        self.get(&self.s(&format!("/element/{id}/text")))
            .await
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// Waits until the element's text contains `want`.
    async fn wait_text(&self, css: &str, want: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self
                .script(&format!(
                    "const e = document.querySelector({css:?}); return e ? e.textContent : null;"
                ))
                .await;
            let got = got.as_str().unwrap_or("").to_owned();
            if got.contains(want) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{css}: waited for {want:?}, last saw {got:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the page has no request in flight.
    async fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let busy = self
                .script("return document.body.dataset.busy || '0';")
                .await;
            if busy == json!("0") {
                return;
            }
            assert!(Instant::now() < deadline, "page still busy: {busy}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Clicks and waits for the requests the click started.
    async fn click_settled(&self, css: &str) {
        self.click(css).await;
        self.settle().await;
    }

    async fn screenshot(&self) -> Vec<u8> {
        let b64 = self.get(&self.s("/screenshot")).await;
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap_or(""))
            .expect("png")
    }

    async fn quit(&self) {
        let _ = self
            .http
            .delete(format!("{}{}", self.base, self.s("")))
            .send()
            .await;
    }
}

async fn api(http: &Client, base: &str, method: reqwest::Method, path: &str, body: Value) {
    let r = http
        .request(method, format!("{base}{path}"))
        .bearer_auth(OPERATOR)
        .json(&body)
        .send()
        .await
        .expect("api");
    assert!(r.status().is_success(), "{path}: {}", r.status());
}

#[actix_web::test]
#[ignore = "needs chromium and chromedriver; CI runs it with --ignored"]
async fn set_a_limit_and_mode_see_the_snapshot_and_refresh() {
    let t = TestDatabase::new().await.expect("database");
    let settings = Settings {
        database_url: t.url.clone(),
        bind: "127.0.0.1:0".parse().expect("addr"),
        operator_token: Some(Secret::new(OPERATOR)),
        ..Settings::default()
    };
    let running = app::start(&settings).await.expect("service starts");
    let base = format!("http://{}", running.bound);
    let http = Client::builder().no_proxy().build().expect("client");
    api(
        &http,
        &base,
        reqwest::Method::POST,
        "/api/v1/tenants/acme/connectors",
        json!({"connector_id": "news", "name": "Signals", "source_guild_id": "111"}),
    )
    .await;
    api(
        &http,
        &base,
        reqwest::Method::POST,
        "/api/v1/tenants/acme/connectors/news/mappings",
        json!({"source_channel_id": "222", "target_guild_id": "900", "target_channel_id": "333"}),
    )
    .await;

    let d = Driver::start().await;
    d.goto(&format!("{base}/admin")).await;
    d.type_into("#tenant", "acme").await;
    d.type_into("#token", OPERATOR).await;
    d.click_settled("#connect").await;
    d.wait_text("#chip-900", "unconfigured").await;
    let url = d.script("return location.href;").await;
    assert!(
        !url.as_str().unwrap_or("").contains(OPERATOR),
        "token in the URL"
    );

    // Set a limit and a mode, save.
    d.click_settled("#chips a").await;
    d.type_into("#seat_limit", "5").await;
    d.script("document.getElementById('enforcement_mode').value = 'enforce';")
        .await;
    d.type_into("#basic_role_id", "41").await;
    d.click_settled("#save").await;
    d.wait_text("#notice", "Saved").await;
    d.wait_text("#chip-900", "pending").await;
    let key = ServerKey {
        tenant_key: "acme".into(),
        connector_id: "news".into(),
        guild_id: 900,
    };
    assert_eq!(
        running.cache.policy(&key).map(|p| p.mode),
        Some(EnforcementMode::Enforce),
        "the save reached the snapshot cache"
    );
    assert_eq!(d.text("#snap-seats").await, "not counted yet");

    // The auditor writes a snapshot (done through the store until issue 5 lands).
    let store = ServerStore::new(running.db.clone());
    let snap = |used: i64| entities::discord_server_seat_snapshots::Model {
        id: 0,
        tenant_key: String::new(),
        connector_id: String::new(),
        guild_id: 0,
        seats_used: used,
        seat_limit: 5,
        is_over_limit: used > 5,
        checked_at: now_ms(),
        next_check_after: now_ms() + 60_000,
        status: "fresh".into(),
        last_error: None,
        basic_count: 3,
        advanced_count: 1,
        pro_count: 0,
        updated_at: now_ms(),
    };
    store.put_snapshot(&key, snap(4)).await.expect("snapshot");
    d.click_settled("#chips a").await;
    d.wait_text("#snap-seats", "4 of 5").await;
    d.wait_text("#chip-900", "ok").await;
    assert!(d.text("#snap-status").await.starts_with("fresh"));
    assert_eq!(d.text("#snap-tiers").await, "bronze 3, silver 1, gold 0");
    d.wait_text("#members", "not current yet").await;

    // Refresh asks the auditor for a recount.
    d.click_settled("#refresh").await;
    d.wait_text("#notice", "Recount requested").await;

    // Over the limit: the chip and the readout follow the snapshot.
    store.put_snapshot(&key, snap(6)).await.expect("snapshot");
    // History the auditor would have appended: paused, resumed, paused again.
    for (ago, from, to, used) in [
        (90_000, "under", "over", 6),
        (60_000, "over", "under", 5),
        (20_000, "under", "over", 6),
    ] {
        store
            .append_event(
                &key,
                entities::seat_enforcement_events::Model {
                    id: 0,
                    tenant_key: String::new(),
                    connector_id: String::new(),
                    guild_id: 0,
                    from_state: from.into(),
                    to_state: to.into(),
                    seats_used: used,
                    seat_limit: 5,
                    at: now_ms() - ago,
                    cause: "member_added".into(),
                },
            )
            .await
            .expect("event");
    }
    d.click_settled("#chips a").await;
    d.wait_text("#chip-900", "over").await;
    d.wait_text("#snap-seats", "6 of 5").await;
    let pauses = d
        .script("return document.querySelectorAll('#plot .mark-pause').length;")
        .await;
    assert_eq!(pauses, json!(2), "both pauses are marked on the plot");
    let resumes = d
        .script("return document.querySelectorAll('#plot .mark-resume').length;")
        .await;
    assert_eq!(resumes, json!(1), "the resume is marked on the plot");

    let png = d.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"), "screenshot is a PNG");
    if std::env::var("SEATGATE_SAVE_SCREENSHOT").is_ok() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/admin-panel.png");
        std::fs::write(path, &png).expect("screenshot saved");
    }
    d.quit().await;
    running.shutdown().await;
}
