//! The admin page in headless Chromium, driven over the W3C WebDriver protocol (reqwest
//! against Debian's chromedriver), against the whole service started in this process on the
//! Discord sandbox (as `seatgate demo` runs it): the seat auditor counts real gateway events.
//!
//! Needs `chromium` and `chromium-driver` (CI installs them): run with
//! `cargo test --test admin_browser -- --ignored`. `SEATGATE_SAVE_SCREENSHOT=1` also writes
//! `docs/admin-panel.png`.

mod admin_support;

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use admin_support::live::{
    Live, BRONZE, CONNECTOR, GOLD, GOLD_NICK, GUILD, MEMBERS, OUTSIDER, SEATS, TENANT,
};
use base64::Engine;
use reqwest::Client;
use seatgate::{actors::ServerKey, domain::gate::EnforcementMode};
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
            "--window-size=1280,1800".into(),
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

    /// Waits until the element's text contains `want` (the page refreshes itself every 2 s).
    async fn wait_text(&self, css: &str, want: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
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

    /// Picks the option of `select` whose label starts with `label`, as a user clicks it
    /// (the lists load after the panel opens: waits for it).
    async fn pick(&self, select: &str, label: &str) {
        let find = format!(
            "const o = Array.from(document.querySelectorAll({sel})).find((o) => o.textContent.trim().startsWith({label})); return o ? o.value : null;",
            sel = serde_json::to_string(&format!("{select} option")).expect("css"),
            label = serde_json::to_string(label).expect("label"),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        let value = loop {
            if let Some(v) = self.script(&find).await.as_str() {
                break v.to_owned();
            }
            let offered = self
                .script(&format!(
                    "return Array.from(document.querySelectorAll({})).map((o) => o.textContent);",
                    serde_json::to_string(&format!("{select} option")).expect("css")
                ))
                .await;
            assert!(
                Instant::now() < deadline,
                "{select} offers no {label}: {offered}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        self.click(&format!("{select} option[value=\"{value}\"]"))
            .await;
        self.settle().await;
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

#[actix_web::test]
#[ignore = "needs chromium and chromedriver; CI runs it with --ignored"]
async fn the_chip_follows_members_joining_and_leaving_in_the_sandbox() {
    let live = Live::start(OPERATOR).await;
    live.connector_only().await;
    let chip = format!("#chip-{GUILD}");

    let d = Driver::start().await;
    d.goto(&format!("{}/admin", live.base)).await;
    d.type_into("#tenant", TENANT).await;
    d.type_into("#token", OPERATOR).await;
    d.click_settled("#connect").await;
    let url = d.script("return location.href;").await;
    assert!(
        !url.as_str().unwrap_or("").contains(OPERATOR),
        "token in the URL"
    );

    // The customer's server, by name, among the guilds the bot is in; then the mapping from
    // the provider's channel to its signals channel, both picked by name.
    d.pick("#guild", "Alpha Traders").await;
    d.wait_text("#panel-guild-name", "Alpha Traders").await;
    d.pick("#map-source", "#announcements").await;
    d.pick("#map-target", "#signals").await;
    d.click_settled("#map-add").await;
    d.wait_text("#notice", "Mapping added: #announcements → #signals")
        .await;
    d.wait_text("#mappings", "#announcements → #signals (as the bot)")
        .await;
    d.wait_text(&chip, "unconfigured").await;

    // Set a limit (exactly the members who can see the mapped channel) and a mode, the tier
    // roles and the notice channel picked by name, and save.
    d.type_into("#seat_limit", &SEATS.to_string()).await;
    d.script("document.getElementById('enforcement_mode').value = 'enforce';")
        .await;
    d.pick("#basic_role_id", "bronze").await;
    d.pick("#pro_role_id", "gold").await;
    d.pick("#notify_channel_id", "#general").await;
    d.click_settled("#save").await;
    d.wait_text("#notice", "Saved").await;
    let (_, cfg) = live
        .call(reqwest::Method::GET, &live.server_path(), None)
        .await;
    assert_eq!(
        (
            cfg["basic_role_id"].clone(),
            cfg["pro_role_id"].clone(),
            cfg["notify_channel_id"].clone()
        ),
        (
            json!(BRONZE.to_string()),
            json!(GOLD.to_string()),
            json!((admin_support::live::CHANNEL + 50).to_string())
        ),
        "the picks saved as ids: {cfg}"
    );
    let key = ServerKey {
        tenant_key: TENANT.into(),
        connector_id: CONNECTOR.into(),
        guild_id: GUILD,
    };
    assert_eq!(
        live.running.cache.policy(&key).map(|p| p.mode),
        Some(EnforcementMode::Enforce),
        "the save reached the snapshot cache"
    );

    // The auditor recounts from the sandbox; the page follows without a reload.
    d.wait_text(&chip, "ok").await;
    // The operator sees which process runs the gateway's shard: this one, the only one.
    d.wait_text("#shards", "0 of 1").await;
    d.wait_text("#shards", "(this process)").await;
    d.wait_text("#shards-answered", "One process runs every shard")
        .await;
    d.wait_text("#snap-seats", &format!("{SEATS} of {SEATS}"))
        .await;
    assert!(d.text("#snap-status").await.starts_with("fresh"));
    d.wait_text("#snap-tiers", "bronze 1, silver 0, gold 1")
        .await;
    d.wait_text("#members-total", &format!("{SEATS} counted"))
        .await;
    let listed = d
        .script("return Array.from(document.querySelectorAll('#members li[data-user]')).map(li => li.dataset.user);")
        .await;
    let mut want: Vec<String> = MEMBERS.iter().map(u64::to_string).collect();
    want.push(admin_support::live::OWNER.to_string());
    want.sort();
    assert_eq!(listed, json!(want), "the counted members, in id order");
    let members = d.text("#members").await;
    assert!(
        members.contains("bronze") && members.contains("gold"),
        "{members}"
    );
    assert!(!members.contains(&OUTSIDER.to_string()), "{members}");
    // Names, not only ids: the gold subscriber's nickname, the others' usernames.
    assert!(
        members.contains(GOLD_NICK) && members.contains(&format!("u{}", MEMBERS[0])),
        "{members}"
    );
    // A search by name narrows the list, and clearing it brings them all back.
    d.type_into("#members-q", "goldie").await;
    d.click_settled("#members-find").await;
    d.wait_text("#members-total", "1 match").await;
    let found = d
        .script("return Array.from(document.querySelectorAll('#members li[data-user]')).map(li => li.dataset.user);")
        .await;
    assert_eq!(found, json!([MEMBERS[1].to_string()]));
    d.type_into("#members-q", "").await;
    d.click_settled("#members-find").await;
    d.wait_text("#members-total", &format!("{SEATS} counted"))
        .await;
    // Why: the three subscribers through the subscriber role's allow on #signals (the
    // sandbox guild denies @everyone there), the owner by ownership.
    let why = d.text("#members-why").await;
    assert!(
        why.contains("3 members see #signals through role subscriber")
            && why.contains("1 member sees #signals as the server's owner"),
        "{why}"
    );

    // Refresh asks the auditor for a recount.
    d.click_settled("#refresh").await;
    d.wait_text("#notice", "Recount requested").await;

    // Two subscribers join in the sandbox: past the limit, the chip turns over.
    let joiners = [720_000_000_000_000_001u64, 720_000_000_000_000_002];
    for uid in joiners {
        live.join(uid);
    }
    d.wait_text(&chip, "over").await;
    d.wait_text("#snap-seats", &format!("{} of {SEATS}", SEATS + 2))
        .await;
    d.wait_text("#members-total", &format!("{} counted", SEATS + 2))
        .await;
    d.wait_text("#snap-status", "over the limit").await;
    let pauses = d
        .script("return document.querySelectorAll('#plot .mark-pause').length;")
        .await;
    assert_eq!(pauses, json!(1), "the pause is marked on the plot");
    let resumes_while_over = d
        .script("return document.querySelectorAll('#plot .mark-resume').length;")
        .await
        .as_u64()
        .unwrap_or(0);

    let png = d.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"), "screenshot is a PNG");
    if std::env::var("SEATGATE_SAVE_SCREENSHOT").is_ok() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/admin-panel.png");
        std::fs::write(path, &png).expect("screenshot saved");
    }

    // They leave: back under the limit, the chip turns ok again.
    for uid in joiners {
        live.leave(uid);
    }
    d.wait_text(&chip, "ok").await;
    d.wait_text("#snap-seats", &format!("{SEATS} of {SEATS}"))
        .await;
    d.wait_text("#members-total", &format!("{SEATS} counted"))
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let resumes = d
            .script("return document.querySelectorAll('#plot .mark-resume').length;")
            .await;
        if resumes == json!(resumes_while_over + 1) {
            break;
        }
        assert!(Instant::now() < deadline, "resume not marked: {resumes}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    d.quit().await;
    live.stop().await;
}
