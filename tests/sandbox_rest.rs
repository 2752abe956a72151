//! REST behaviour: auth, Discord's error codes and statuses, the bot's permission checks,
//! `enforce_nonce`, rate limits (headers, bodies, persistence of 429), faults, and the HTTP
//! control surface.

mod common;

use std::time::Duration;

use common::sandbox::*;
use reqwest::StatusCode;
use seatgate::sandbox::{Fault, Limit, RateLimitConfig, Sandbox, SandboxOptions};
use serde_json::{json, Value};
use serenity::all::*;

fn client() -> reqwest::Client {
    no_proxy();
    reqwest::Client::builder().timeout(TIMEOUT).build().unwrap()
}

fn api(sb: &seatgate::sandbox::SandboxHandle, path: &str) -> String {
    format!("{}/api/v10{path}", sb.api_url())
}

/// The Discord error a serenity call failed with: (HTTP status, JSON code).
fn discord_error<T: std::fmt::Debug>(r: serenity::Result<T>) -> (u16, isize) {
    match r {
        Err(serenity::Error::Http(HttpError::UnsuccessfulRequest(e))) => {
            (e.status_code.as_u16(), e.error.code)
        }
        other => panic!("expected a Discord error, got {other:?}"),
    }
}

#[tokio::test]
async fn missing_or_wrong_token_is_401_in_discords_shape() {
    let sb = start().await;
    let c = client();
    for auth in [None, Some("Bot wrong.token.value")] {
        let mut req = c.get(api(&sb, "/users/@me"));
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body, json!({"message": "401: Unauthorized", "code": 0}));
    }
    let resp = c
        .get(api(&sb, "/users/@me"))
        .header("Authorization", format!("Bot {}", sb.bot_token()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // The control surface counted them: two invalid (401) of three, none rate limited.
    let stats_url = format!("{}/stats", sb.control_url());
    let stats = || async {
        c.get(&stats_url)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    assert_eq!(
        stats().await,
        json!({"requests": 3, "rate_limited": 0, "invalid": 2, "cdn_downloads": 0})
    );
    let reset = c.delete(&stats_url).send().await.unwrap();
    assert_eq!(reset.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        stats().await,
        json!({"requests": 0, "rate_limited": 0, "invalid": 0, "cdn_downloads": 0})
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn unknown_things_and_missing_permissions_get_discords_codes() {
    let sb = start().await;
    let http = seatgate::discord::connect::http(sb.api_url(), sb.bot_token());
    let say = |c: u64| {
        let http = &http;
        async move {
            ChannelId::new(c)
                .send_message(http, CreateMessage::new().content("x"))
                .await
        }
    };
    assert_eq!(
        discord_error(say(123_456_789_012_345_678).await),
        (404, 10003)
    );
    assert_eq!(discord_error(say(CATEGORY).await), (400, 50008));
    assert_eq!(
        discord_error(say(HIDDEN).await),
        (403, 50001),
        "cannot see: Missing Access"
    );
    assert_eq!(
        discord_error(say(READONLY).await),
        (403, 50013),
        "can see, cannot send: Missing Permissions"
    );
    assert_eq!(
        discord_error(http.get_guild(GuildId::new(1_234_567_890_123)).await),
        (404, 10004)
    );
    assert_eq!(
        discord_error(
            http.get_member(GuildId::new(GUILD), UserId::new(42_424_242_424_242))
                .await
        ),
        (404, 10007)
    );
    assert_eq!(
        discord_error(
            http.get_message(ChannelId::new(GENERAL), MessageId::new(77_777_777_777))
                .await
        ),
        (404, 10008)
    );
    assert_eq!(
        discord_error(
            http.execute_webhook(
                WebhookId::new(55_555_555_555_555_555),
                None,
                "nope",
                true,
                vec![],
                &json!({"content": "x"})
            )
            .await
        ),
        (404, 10015)
    );
    // MANAGE_WEBHOOKS: granted on `signals` by member overwrite, not on `general`.
    assert_eq!(
        discord_error(
            ChannelId::new(GENERAL)
                .create_webhook(&http, CreateWebhook::new("mirror"))
                .await
        ),
        (403, 50013)
    );
    assert!(ChannelId::new(SIGNALS)
        .create_webhook(&http, CreateWebhook::new("mirror"))
        .await
        .is_ok());
    // MANAGE_ROLES and the role hierarchy: the bot's role (position 5) is above `pro` (2).
    http.add_member_role(
        GuildId::new(GUILD),
        UserId::new(BOB),
        RoleId::new(ROLE_PRO),
        None,
    )
    .await
    .unwrap();
    sb.update_role(GUILD, ROLE_PRO, &json!({"position": 9}))
        .unwrap();
    assert_eq!(
        discord_error(
            http.remove_member_role(
                GuildId::new(GUILD),
                UserId::new(BOB),
                RoleId::new(ROLE_PRO),
                None
            )
            .await
        ),
        (403, 50013)
    );
    sb.update_role(GUILD, ROLE_BOT, &json!({"permissions": "0"}))
        .unwrap();
    assert_eq!(
        discord_error(
            http.add_member_role(
                GuildId::new(GUILD),
                UserId::new(BOB),
                RoleId::new(ROLE_BASIC),
                None
            )
            .await
        ),
        (403, 50013)
    );
    // Permission changes apply at once: the owner grants the bot SEND in `readonly`.
    sb.put_overwrite(
        READONLY,
        BOT,
        &json!({"type": 1, "allow": SEND.to_string(), "deny": "0"}),
    )
    .unwrap();
    assert!(say(READONLY).await.is_ok());
    // Editing someone else's message.
    let m = sb
        .post_message(
            GENERAL,
            &json!({"author": {"id": ALICE.to_string(), "username": "alice"}, "content": "mine"}),
        )
        .unwrap();
    let mid = MessageId::new(m["id"].as_str().unwrap().parse().unwrap());
    assert_eq!(
        discord_error(
            http.edit_message(
                ChannelId::new(GENERAL),
                mid,
                &json!({"content": "no"}),
                vec![]
            )
            .await
        ),
        (403, 50005)
    );
    assert_eq!(
        discord_error(
            http.delete_message(ChannelId::new(GENERAL), mid, None)
                .await
        ),
        (403, 50013)
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_discord_errors_not_panics() {
    let sb = start().await;
    let c = client();
    let auth = format!("Bot {}", sb.bot_token());
    let post = |path: &str, body: &'static str| {
        c.post(api(&sb, path))
            .header("Authorization", auth.clone())
            .header("content-type", "application/json")
            .body(body)
    };
    let cases: Vec<(reqwest::RequestBuilder, u16, u64)> = vec![
        (
            post(&format!("/channels/{GENERAL}/messages"), "{not json"),
            400,
            50109,
        ),
        (
            post(&format!("/channels/{GENERAL}/messages"), "{}"),
            400,
            50006,
        ),
        (
            post(
                &format!("/channels/{GENERAL}/messages"),
                r#"{"content":"x","nonce":"12345678901234567890123456"}"#,
            ),
            400,
            50035,
        ),
        (
            post("/channels/not-a-number/messages", r#"{"content":"x"}"#),
            404,
            10003,
        ),
        (
            c.get(api(&sb, &format!("/guilds/{GUILD}/members?limit=0")))
                .header("Authorization", auth.clone()),
            400,
            50035,
        ),
        (
            c.get(api(&sb, &format!("/guilds/{GUILD}/members?limit=abc")))
                .header("Authorization", auth.clone()),
            400,
            50035,
        ),
        (
            c.get(api(&sb, "/no/such/route"))
                .header("Authorization", auth.clone()),
            404,
            0,
        ),
        (
            c.put(api(&sb, &format!("/channels/{GENERAL}/messages")))
                .header("Authorization", auth.clone()),
            405,
            0,
        ),
    ];
    for (req, status, code) in cases {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["code"], code, "{body}");
        assert!(body["message"].is_string());
    }
    sb.shutdown().await;
}

#[tokio::test]
async fn enforce_nonce_twice_creates_one_message() {
    let sb = start().await;
    let http = seatgate::discord::connect::http(sb.api_url(), sb.bot_token());
    let send = || {
        ChannelId::new(GENERAL).send_message(
            &http,
            CreateMessage::new()
                .content("once")
                .nonce(Nonce::String("mirror-42".into()))
                .enforce_nonce(true),
        )
    };
    let a = send().await.unwrap();
    let b = send().await.unwrap();
    assert_eq!(a.id, b.id, "the second create returns the first message");
    assert_eq!(sb.messages(GENERAL).unwrap().len(), 1);
    // Without enforce_nonce, the same nonce creates another message, as on Discord.
    ChannelId::new(GENERAL)
        .send_message(
            &http,
            CreateMessage::new()
                .content("again")
                .nonce(Nonce::String("mirror-42".into())),
        )
        .await
        .unwrap();
    assert_eq!(sb.messages(GENERAL).unwrap().len(), 2);
    sb.shutdown().await;
}

#[tokio::test]
async fn rate_limited_requests_get_discords_429_and_a_client_ignoring_it_keeps_getting_429() {
    let sb = start_with(scenario(), RateLimitConfig::default()).await;
    let c = client();
    let auth = format!("Bot {}", sb.bot_token());
    let url = api(&sb, &format!("/channels/{GENERAL}/messages"));
    for i in 0..5 {
        let resp = c
            .post(&url)
            .header("Authorization", &auth)
            .json(&json!({"content": format!("m{i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let h = resp.headers();
        assert_eq!(h["x-ratelimit-limit"], "5");
        assert_eq!(h["x-ratelimit-remaining"], (4 - i).to_string().as_str());
        let reset_after: f64 = h["x-ratelimit-reset-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(reset_after > 0.0 && reset_after <= 5.0);
        let reset: f64 = h["x-ratelimit-reset"].to_str().unwrap().parse().unwrap();
        assert!(reset > 1.7e9, "epoch seconds");
        assert!(!h["x-ratelimit-bucket"].is_empty());
    }
    // A client that ignores retry_after keeps getting 429 (and nothing is created).
    for _ in 0..10 {
        let resp = c
            .post(&url)
            .header("Authorization", &auth)
            .json(&json!({"content": "too many"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        let h = resp.headers().clone();
        assert_eq!(h["x-ratelimit-remaining"], "0");
        assert_eq!(h["x-ratelimit-scope"], "user");
        let retry_header: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["message"], "You are being rate limited.");
        assert_eq!(body["global"], false);
        let retry_after = body["retry_after"]
            .as_f64()
            .expect("retry_after is a float");
        assert!(retry_after > 0.0 && retry_after <= 5.0);
        assert!(retry_header >= 1 && retry_header as f64 >= retry_after);
    }
    assert_eq!(sb.messages(GENERAL).unwrap().len(), 5);
    // Another channel has its own bucket.
    let other = api(&sb, &format!("/channels/{SIGNALS}/messages"));
    let resp = c
        .post(&other)
        .header("Authorization", &auth)
        .json(&json!({"content": "ok"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // serenity (ratelimiter disabled against the sandbox) sees the 429 as an error.
    let http = seatgate::discord::connect::http(sb.api_url(), sb.bot_token());
    let r = ChannelId::new(GENERAL).say(&http, "serenity").await;
    assert_eq!(discord_error(r).0, 429);
    sb.shutdown().await;
}

#[tokio::test]
async fn the_global_limit_answers_global_429s() {
    let sb = start_with(
        scenario(),
        RateLimitConfig {
            global: Limit::new(3, Duration::from_secs(30)),
            ..RateLimitConfig::default()
        },
    )
    .await;
    let c = client();
    let auth = format!("Bot {}", sb.bot_token());
    for _ in 0..3 {
        assert_eq!(
            c.get(api(&sb, "/users/@me"))
                .header("Authorization", &auth)
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    let resp = c
        .get(api(&sb, &format!("/guilds/{GUILD}")))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["x-ratelimit-global"], "true");
    assert_eq!(resp.headers()["x-ratelimit-scope"], "global");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["global"], true);
    sb.shutdown().await;
}

#[tokio::test]
async fn injected_faults_answer_the_next_matching_requests_then_stop() {
    let sb = start().await;
    let http = seatgate::discord::connect::http(sb.api_url(), sb.bot_token());
    sb.add_fault(Fault::new("POST", "/channels/{id}/messages", 503, 2));
    sb.add_fault(Fault {
        method: "GET".into(),
        path: "/users/@me".into(),
        status: 429,
        count: 1,
        retry_after: Some(2.5),
        global: Some(true),
        delay_ms: Some(50),
        ..Fault::new("GET", "/users/@me", 429, 1)
    });
    assert_eq!(
        discord_error(ChannelId::new(GENERAL).say(&http, "a").await).0,
        503
    );
    assert_eq!(
        discord_error(ChannelId::new(GENERAL).say(&http, "b").await).0,
        503
    );
    ChannelId::new(GENERAL).say(&http, "c").await.unwrap();
    let c = client();
    let started = std::time::Instant::now();
    let resp = c
        .get(api(&sb, "/users/@me"))
        .header("Authorization", format!("Bot {}", sb.bot_token()))
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "3");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["retry_after"], 2.5);
    assert_eq!(body["global"], true);
    assert!(
        http.get_current_user().await.is_ok(),
        "the fault was used up"
    );
    assert_eq!(sb.messages(GENERAL).unwrap().len(), 1);
    sb.shutdown().await;
}

#[tokio::test]
async fn the_http_control_surface_scripts_state_and_reads_back_messages() {
    let sb = start_with(json!({"guilds": []}), RateLimitConfig::disabled()).await;
    let c = client();
    let ctl = |p: &str| format!("{}{p}", sb.control_url());
    let g = 910_000_000_000_000_001u64;
    let resp = c.post(ctl("/guilds")).json(&json!({
        "id": g.to_string(), "name": "Scripted", "owner_id": "700000000000000001",
        "roles": [{"id": g.to_string(), "name": "@everyone", "permissions": "68608"}],
        "channels": [{"id": "910000000000000002", "name": "chan", "type": 0, "permission_overwrites": []}],
        "members": [{"user": {"id": "700000000000000001", "username": "owner"}, "roles": []}]
    })).send().await.unwrap();
    assert_eq!(resp.status(), 201);
    let check = |resp: reqwest::Response, status: u16| {
        assert_eq!(resp.status().as_u16(), status, "{}", resp.url());
        resp
    };
    check(c.post(ctl(&format!("/guilds/{g}/members"))).json(&json!({"user": {"id": "700000000000000005", "username": "dan", "bot": false}, "roles": []})).send().await.unwrap(), 201);
    let role: Value = check(
        c.post(ctl(&format!("/guilds/{g}/roles")))
            .json(&json!({"name": "pro", "permissions": "1024"}))
            .send()
            .await
            .unwrap(),
        201,
    )
    .json()
    .await
    .unwrap();
    let rid = role["id"].as_str().unwrap().to_owned();
    check(
        c.patch(ctl(&format!("/guilds/{g}/members/700000000000000005")))
            .json(&json!({"roles": [rid]}))
            .send()
            .await
            .unwrap(),
        200,
    );
    check(
        c.patch(ctl(&format!("/guilds/{g}/roles/{rid}")))
            .json(&json!({"name": "gold"}))
            .send()
            .await
            .unwrap(),
        200,
    );
    check(
        c.put(ctl(
            "/channels/910000000000000002/permissions/910000000000000001",
        ))
        .json(&json!({"type": 0, "allow": "0", "deny": "1024"}))
        .send()
        .await
        .unwrap(),
        204,
    );
    check(
        c.delete(ctl(
            "/channels/910000000000000002/permissions/910000000000000001",
        ))
        .send()
        .await
        .unwrap(),
        204,
    );
    let ch: Value = check(
        c.post(ctl(&format!("/guilds/{g}/channels")))
            .json(&json!({"name": "second"}))
            .send()
            .await
            .unwrap(),
        201,
    )
    .json()
    .await
    .unwrap();
    check(
        c.delete(ctl(&format!("/channels/{}", ch["id"].as_str().unwrap())))
            .send()
            .await
            .unwrap(),
        204,
    );
    let m: Value = check(c.post(ctl("/channels/910000000000000002/messages")).json(&json!({"author": {"id": "700000000000000005", "username": "dan"}, "content": "hi", "embeds": [{"title": "t"}]})).send().await.unwrap(), 201).json().await.unwrap();
    let mid = m["id"].as_str().unwrap().to_owned();
    check(
        c.patch(ctl(&format!("/channels/910000000000000002/messages/{mid}")))
            .json(&json!({"content": "hi!"}))
            .send()
            .await
            .unwrap(),
        200,
    );
    // The bot posts with a nonce through REST; a webhook posts too.
    let http = seatgate::discord::connect::http(sb.api_url(), sb.bot_token());
    ChannelId::new(910_000_000_000_000_002)
        .send_message(
            &http,
            CreateMessage::new()
                .content("bot")
                .nonce(Nonce::String("n7".into()))
                .enforce_nonce(true),
        )
        .await
        .unwrap();
    check(
        c.delete(ctl(&format!("/channels/910000000000000002/messages/{mid}")))
            .send()
            .await
            .unwrap(),
        204,
    );
    let log: Vec<Value> = check(
        c.get(ctl("/channels/910000000000000002/messages"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .json()
    .await
    .unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(
        (log[0]["content"].as_str(), log[0]["deleted"].as_bool()),
        (Some("hi!"), Some(true))
    );
    assert!(log[0]["edited_timestamp"].is_string());
    assert_eq!(log[0]["embeds"][0]["title"], "t");
    assert_eq!(
        (log[1]["nonce"].as_str(), log[1]["deleted"].as_bool()),
        (Some("n7"), Some(false))
    );
    assert!(log[1]["webhook_id"].is_null());
    check(
        c.delete(ctl(&format!("/guilds/{g}/members/700000000000000005")))
            .send()
            .await
            .unwrap(),
        204,
    );
    check(
        c.delete(ctl(&format!("/guilds/{g}/roles/{rid}")))
            .send()
            .await
            .unwrap(),
        204,
    );
    check(
        c.post(ctl("/faults"))
            .json(&json!({"method": "GET", "path": "/users/@me", "status": 500, "count": 1}))
            .send()
            .await
            .unwrap(),
        201,
    );
    assert_eq!(discord_error(http.get_current_user().await).0, 500);
    let n: Value = check(
        c.post(ctl("/gateway/disconnect")).send().await.unwrap(),
        200,
    )
    .json()
    .await
    .unwrap();
    assert_eq!(n["sessions"], 0);
    check(
        c.post(ctl("/gateway/invalidate-session"))
            .send()
            .await
            .unwrap(),
        200,
    );
    // Errors in Discord's shape.
    let e: Value = check(
        c.post(ctl("/guilds/1/members"))
            .json(&json!({"user": {"id": "5"}}))
            .send()
            .await
            .unwrap(),
        404,
    )
    .json()
    .await
    .unwrap();
    assert_eq!(e["code"], 10004);
    let e: Value = check(c.post(ctl("/guilds")).body("{").send().await.unwrap(), 400)
        .json()
        .await
        .unwrap();
    assert_eq!(e["code"], 50109);
    sb.shutdown().await;
}

#[tokio::test]
async fn the_sandbox_refuses_non_loopback_binds() {
    for bind in ["0.0.0.0:0", "192.0.2.1:0", "not-an-address"] {
        let err = Sandbox::start(SandboxOptions {
            bind: bind.into(),
            ..SandboxOptions::default()
        })
        .await
        .err()
        .expect("refused");
        assert_eq!(err.code(), seatgate::ErrorCode::ConfigInvalid, "{bind}");
    }
}

#[tokio::test]
async fn a_scenario_without_the_bot_gives_it_only_everyone() {
    let mut s = scenario();
    s["guilds"][0]["members"].as_array_mut().unwrap().pop();
    let sb = start_with(s, RateLimitConfig::disabled()).await;
    let http = seatgate::discord::connect::http(sb.api_url(), sb.bot_token());
    let bot = http
        .get_member(GuildId::new(GUILD), UserId::new(BOT))
        .await
        .unwrap();
    assert!(bot.roles.is_empty());
    // The member overwrite on `signals` still applies to it; `hidden` does not let it in.
    assert!(ChannelId::new(GENERAL).say(&http, "hi").await.is_ok());
    assert_eq!(
        discord_error(ChannelId::new(HIDDEN).say(&http, "hi").await),
        (403, 50001)
    );
    sb.shutdown().await;
}
