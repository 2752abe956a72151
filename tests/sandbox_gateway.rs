//! The gateway wire protocol, spoken by a raw WebSocket client: authentication, heartbeats,
//! intents, large guilds, RESUME replay, INVALID_SESSION, opcode 8 and shards.

mod common;

use common::sandbox::*;
use seatgate::sandbox::RateLimitConfig;
use serde_json::{json, Value};

const GUILDS: u64 = 1 << 0;
const GUILD_MEMBERS: u64 = 1 << 1;
const GUILD_MESSAGES: u64 = 1 << 9;

fn alice_says(content: &str) -> Value {
    json!({"author": {"id": ALICE.to_string(), "username": "alice"}, "content": content})
}

#[tokio::test]
async fn a_wrong_token_is_closed_with_4004() {
    let sb = start().await;
    let mut gw = RawGateway::connect(sb.gateway_url()).await;
    gw.send(json!({"op": 2, "d": {"token": "Bot nope.nope.nope", "intents": 0, "properties": {}}}))
        .await;
    assert!(matches!(gw.frame().await, Frame::Closed(Some(4004))));
    sb.shutdown().await;
}

#[tokio::test]
async fn protocol_errors_close_with_discords_codes() {
    let sb = start().await;
    let mut gw = RawGateway::connect(sb.gateway_url()).await;
    gw.send(json!({"op": 8, "d": {"guild_id": GUILD.to_string(), "query": "", "limit": 0}}))
        .await;
    assert!(
        matches!(gw.frame().await, Frame::Closed(Some(4003))),
        "op 8 before IDENTIFY"
    );
    let mut gw = RawGateway::connect(sb.gateway_url()).await;
    gw.send(json!({"op": 99, "d": null})).await;
    assert!(matches!(gw.frame().await, Frame::Closed(Some(4001))));
    let mut gw = RawGateway::connect(sb.gateway_url()).await;
    gw.identify(sb.bot_token(), ALL_INTENTS).await;
    gw.send(json!({"op": 2, "d": {"token": sb.bot_token(), "intents": 0}}))
        .await;
    loop {
        match gw.frame().await {
            Frame::Closed(code) => {
                assert_eq!(code, Some(4005));
                break;
            }
            Frame::Payload(_) => {}
        }
    }
    sb.shutdown().await;
}

#[tokio::test]
async fn heartbeats_are_acknowledged() {
    let sb = start().await;
    let mut gw = RawGateway::connect(sb.gateway_url()).await;
    gw.send(json!({"op": 1, "d": null})).await;
    assert_eq!(gw.payload().await["op"], 11);
    gw.identify(sb.bot_token(), ALL_INTENTS).await;
    gw.dispatch_named("GUILD_CREATE").await;
    gw.send(json!({"op": 1, "d": gw.seq})).await;
    assert_eq!(gw.payload().await["op"], 11);
    sb.shutdown().await;
}

#[tokio::test]
async fn member_events_need_guild_members_and_content_needs_message_content() {
    let sb = start().await;
    let mut gw = RawGateway::connect(sb.gateway_url()).await;
    gw.identify(sb.bot_token(), GUILDS | GUILD_MESSAGES).await;
    let gc = gw.dispatch_named("GUILD_CREATE").await;
    let members = gc["d"]["members"].as_array().unwrap();
    assert_eq!(
        members.len(),
        1,
        "without GUILD_MEMBERS only the bot's own member"
    );
    assert!(id_eq(&members[0]["user"]["id"], BOT));
    assert_eq!(gc["d"]["member_count"], 4);

    sb.add_member(
        GUILD,
        &json!({"user": {"id": "700000000000000050", "username": "eve"}, "roles": []}),
    )
    .unwrap();
    sb.post_message(GENERAL, &alice_says("secret")).unwrap();
    let m = gw.dispatch().await;
    assert_eq!(
        m["t"], "MESSAGE_CREATE",
        "GUILD_MEMBER_ADD must not reach a session without GUILD_MEMBERS"
    );
    assert_eq!(
        m["d"]["content"], "",
        "no MESSAGE_CONTENT: content is empty"
    );
    // The bot's own messages keep their content.
    let http = seatgate::discord::connect::http(sb.api_url(), sb.bot_token());
    serenity::all::ChannelId::new(GENERAL)
        .say(&http, "mine")
        .await
        .unwrap();
    assert_eq!(gw.dispatch().await["d"]["content"], "mine");

    let mut only_guilds = RawGateway::connect(sb.gateway_url()).await;
    only_guilds.identify(sb.bot_token(), GUILDS).await;
    only_guilds.dispatch_named("GUILD_CREATE").await;
    sb.post_message(GENERAL, &alice_says("unseen")).unwrap();
    sb.create_role(GUILD, &json!({"name": "marker"})).unwrap();
    assert_eq!(
        only_guilds.dispatch().await["t"],
        "GUILD_ROLE_CREATE",
        "no GUILD_MESSAGES: no MESSAGE_CREATE"
    );

    let mut members = RawGateway::connect(sb.gateway_url()).await;
    members
        .identify(sb.bot_token(), GUILDS | GUILD_MEMBERS)
        .await;
    members.dispatch_named("GUILD_CREATE").await;
    sb.remove_member(GUILD, 700_000_000_000_000_050).unwrap();
    assert_eq!(members.dispatch().await["t"], "GUILD_MEMBER_REMOVE");
    sb.shutdown().await;
}

#[tokio::test]
async fn large_guilds_come_without_their_member_list() {
    let sb = start().await;
    sb.bulk_add_members(GUILD, 600_000_000_000_000_000, 300)
        .unwrap();
    let mut gw = RawGateway::connect(sb.gateway_url()).await;
    gw.identify(sb.bot_token(), ALL_INTENTS).await; // large_threshold 250, as serenity sends
    let gc = gw.dispatch_named("GUILD_CREATE").await;
    assert_eq!(gc["d"]["large"], true);
    assert_eq!(gc["d"]["member_count"], 304);
    assert_eq!(gc["d"]["members"].as_array().unwrap().len(), 1);
    sb.shutdown().await;
}

#[tokio::test]
async fn resume_replays_exactly_the_missed_events_then_resumed() {
    let sb = start().await;
    let mut gw = RawGateway::connect(sb.gateway_url()).await;
    gw.identify(sb.bot_token(), ALL_INTENTS).await;
    gw.dispatch_named("GUILD_CREATE").await;
    for i in 0..3 {
        sb.post_message(GENERAL, &alice_says(&format!("m{i}")))
            .unwrap();
    }
    assert_eq!(gw.dispatch().await["d"]["content"], "m0");
    let (sid, seq) = (gw.session_id.clone().unwrap(), gw.seq);
    assert_eq!(sb.drop_gateway_connections(), 1);
    sb.post_message(GENERAL, &alice_says("m3")).unwrap();
    gw.close().await;

    let mut again = RawGateway::connect(sb.gateway_url()).await;
    again.seq = seq;
    again.send(json!({"op": 6, "d": {"token": format!("Bot {}", sb.bot_token()), "session_id": sid, "seq": seq}})).await;
    for expected in ["m1", "m2", "m3"] {
        let d = again.dispatch().await;
        assert_eq!(
            (d["t"].as_str(), d["d"]["content"].as_str()),
            (Some("MESSAGE_CREATE"), Some(expected))
        );
    }
    assert_eq!(again.dispatch().await["t"], "RESUMED");
    sb.post_message(GENERAL, &alice_says("live")).unwrap();
    assert_eq!(again.dispatch().await["d"]["content"], "live");

    // An unknown session cannot resume.
    let mut stranger = RawGateway::connect(sb.gateway_url()).await;
    stranger
        .send(json!({"op": 6, "d": {"token": sb.bot_token(), "session_id": "nope", "seq": 1}}))
        .await;
    let inv = stranger.payload().await;
    assert_eq!(
        (inv["op"].as_u64(), inv["d"].as_bool()),
        (Some(9), Some(false))
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn invalidated_sessions_get_op_9_and_may_identify_again() {
    let sb = start().await;
    let mut gw = RawGateway::connect(sb.gateway_url()).await;
    gw.identify(sb.bot_token(), ALL_INTENTS).await;
    gw.dispatch_named("GUILD_CREATE").await;
    let old = gw.session_id.clone().unwrap();
    assert_eq!(sb.invalidate_sessions(), 1);
    let inv = gw.payload().await;
    assert_eq!(
        (inv["op"].as_u64(), inv["d"].as_bool()),
        (Some(9), Some(false))
    );
    gw.seq = 0;
    let ready = gw.identify(sb.bot_token(), ALL_INTENTS).await;
    assert_ne!(ready["d"]["session_id"].as_str(), Some(old.as_str()));
    gw.dispatch_named("GUILD_CREATE").await;
    // The old session is gone for RESUME.
    let mut late = RawGateway::connect(sb.gateway_url()).await;
    late.send(json!({"op": 6, "d": {"token": sb.bot_token(), "session_id": old, "seq": 2}}))
        .await;
    assert_eq!(late.payload().await["op"], 9);
    sb.shutdown().await;
}

#[tokio::test]
async fn opcode_8_answers_with_chunks_queries_and_user_ids() {
    let sb = start_with(scenario(), RateLimitConfig::disabled()).await;
    sb.bulk_add_members(GUILD, 600_000_000_000_000_000, 2_500)
        .unwrap();
    let mut gw = RawGateway::connect(sb.gateway_url()).await;
    gw.identify(sb.bot_token(), ALL_INTENTS).await;
    gw.dispatch_named("GUILD_CREATE").await;

    gw.send(json!({"op": 8, "d": {"guild_id": GUILD.to_string(), "query": "", "limit": 0, "nonce": "all"}})).await;
    let mut total = 0;
    for i in 0..3 {
        let c = gw.dispatch_named("GUILD_MEMBERS_CHUNK").await;
        assert_eq!(
            (
                c["d"]["chunk_index"].as_u64(),
                c["d"]["chunk_count"].as_u64()
            ),
            (Some(i), Some(3))
        );
        assert_eq!(c["d"]["nonce"], "all");
        let n = c["d"]["members"].as_array().unwrap().len();
        assert!(n <= 1000);
        total += n;
    }
    assert_eq!(total, 2_504);

    gw.send(json!({"op": 8, "d": {"guild_id": GUILD.to_string(), "query": "AL", "limit": 10, "nonce": "q"}})).await;
    let c = gw.dispatch_named("GUILD_MEMBERS_CHUNK").await;
    let names: Vec<&str> = c["d"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user"]["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["alice"]);

    gw.send(json!({"op": 8, "d": {"guild_id": GUILD.to_string(), "user_ids": [BOB.to_string(), "123456789012345"], "nonce": "ids"}})).await;
    let c = gw.dispatch_named("GUILD_MEMBERS_CHUNK").await;
    assert_eq!(c["d"]["members"].as_array().unwrap().len(), 1);
    assert_eq!(c["d"]["not_found"], json!(["123456789012345"]));
    sb.shutdown().await;
}

#[tokio::test]
async fn a_client_closing_with_1000_ends_its_session_but_4000_keeps_it() {
    let sb = start().await;
    for (code, resumable) in [(4000u16, true), (1000, false)] {
        let mut gw = RawGateway::connect(sb.gateway_url()).await;
        gw.identify(sb.bot_token(), ALL_INTENTS).await;
        gw.dispatch_named("GUILD_CREATE").await;
        let (sid, seq) = (gw.session_id.clone().unwrap(), gw.seq);
        gw.close_with(code).await;
        let mut again = RawGateway::connect(sb.gateway_url()).await;
        again.seq = seq;
        again
            .send(json!({"op": 6, "d": {"token": sb.bot_token(), "session_id": sid, "seq": seq}}))
            .await;
        let answer = again.payload().await;
        if resumable {
            assert_eq!(answer["t"], "RESUMED", "close {code}: {answer}");
        } else {
            assert_eq!(answer["op"], 9, "close {code}: {answer}");
        }
    }
    sb.shutdown().await;
}

/// Two guilds, one on each of two shards (`(guild_id >> 22) % 2`).
fn sharded_scenario() -> (Value, [u64; 2], [u64; 2]) {
    let guilds = [10u64 << 22, 11u64 << 22];
    let channels = [guilds[0] + 1, guilds[1] + 1];
    let guild = |g: u64, c: u64| {
        json!({"id": g.to_string(), "name": format!("g{g}"), "owner_id": OWNER.to_string(),
               "roles": [{"id": g.to_string(), "name": "@everyone", "permissions": "68608", "position": 0}],
               "channels": [{"id": c.to_string(), "name": "general", "type": 0}],
               "members": [{"user": {"id": OWNER.to_string(), "username": "owner"}, "roles": []},
                           {"user": {"id": ALICE.to_string(), "username": "alice"}, "roles": []},
                           {"user": {"id": BOT.to_string(), "username": "seatgate", "bot": true}, "roles": []}]})
    };
    let v = json!({
        "bot": {"id": BOT.to_string(), "username": "seatgate"},
        "shards": 2,
        "guilds": [guild(guilds[0], channels[0]), guild(guilds[1], channels[1])]
    });
    (v, guilds, channels)
}

fn guild_ids(ready: &Value) -> Vec<String> {
    ready["d"]["guilds"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|g| g["id"].as_str().unwrap_or("?").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn get_json(request: reqwest::RequestBuilder) -> Value {
    request.send().await.unwrap().json().await.unwrap()
}

async fn next_message(gw: &mut RawGateway) -> String {
    gw.dispatch_named("MESSAGE_CREATE").await["d"]["content"]
        .as_str()
        .unwrap_or("?")
        .to_owned()
}

#[tokio::test]
async fn shards_get_their_guilds_and_a_second_session_of_a_shard_gets_them_too() {
    let (scenario, guilds, channels) = sharded_scenario();
    let sb = start_with(scenario, RateLimitConfig::disabled()).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let bot = get_json(
        http.get(format!("{}/api/v10/gateway/bot", sb.api_url()))
            .header("Authorization", format!("Bot {}", sb.bot_token())),
    )
    .await;
    assert_eq!(bot["shards"], 2, "{bot}");

    let intents = GUILDS | GUILD_MESSAGES | (1 << 15); // MESSAGE_CONTENT
    let mut zero = RawGateway::connect(sb.gateway_url()).await;
    let ready = zero.identify_shard(sb.bot_token(), intents, [0, 2]).await;
    assert_eq!(guild_ids(&ready), [guilds[0].to_string()]);
    assert_eq!(ready["d"]["shard"], json!([0, 2]));
    let mut zero_again = RawGateway::connect(sb.gateway_url()).await;
    zero_again
        .identify_shard(sb.bot_token(), intents, [0, 2])
        .await;
    let mut one = RawGateway::connect(sb.gateway_url()).await;
    let ready = one.identify_shard(sb.bot_token(), intents, [1, 2]).await;
    assert_eq!(guild_ids(&ready), [guilds[1].to_string()]);

    let sessions = get_json(http.get(format!("{}/gateway/sessions", sb.control_url()))).await;
    let mut shards: Vec<Value> = sessions
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert!(s["session_id"].is_string(), "{s}");
            s["shard"].clone()
        })
        .collect();
    shards.sort_by_key(|s| s.to_string());
    assert_eq!(shards, [json!([0, 2]), json!([0, 2]), json!([1, 2])]);

    // Each message reaches the sessions of its guild's shard only: shard 1's first message is
    // the one posted second, shard 0's second is the third.
    sb.post_message(channels[0], &alice_says("on zero"))
        .unwrap();
    sb.post_message(channels[1], &alice_says("on one")).unwrap();
    sb.post_message(channels[0], &alice_says("zero again"))
        .unwrap();
    for gw in [&mut zero, &mut zero_again] {
        assert_eq!(next_message(gw).await, "on zero");
        assert_eq!(next_message(gw).await, "zero again");
    }
    assert_eq!(next_message(&mut one).await, "on one");
    zero.close().await;
    sb.shutdown().await;
}
