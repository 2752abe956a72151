//! A real serenity client, built with `seatgate::discord::connect` like the service, against
//! the sandbox: READY and a full cache, each dispatch kind through an EventHandler, REST
//! writes, member paging over REST and opcode 8, RESUME after a drop, re-IDENTIFY after
//! INVALID_SESSION.

mod common;

use std::time::Duration;

use common::sandbox::bot::Bot;
use common::sandbox::*;
use serde_json::json;
use serenity::all::*;

async fn ready_bot(sb: &seatgate::sandbox::SandboxHandle) -> Bot {
    let mut bot = Bot::start(sb.api_url(), sb.bot_token()).await;
    wait_for(&mut bot.events, "ready", |_| true).await;
    wait_for(&mut bot.events, "guild_create", |g| id_eq(&g["id"], GUILD)).await;
    bot
}

#[tokio::test]
async fn serenity_client_gets_ready_and_a_full_guild_cache() {
    let sb = start().await;
    let bot = ready_bot(&sb).await;
    let guild = bot
        .cache
        .guild(GuildId::new(GUILD))
        .expect("guild cached")
        .clone();
    assert_eq!(guild.roles.len(), 4);
    assert_eq!(guild.channels.len(), 6);
    assert_eq!(guild.members.len(), 4);
    assert_eq!(guild.owner_id.get(), OWNER);
    let signals = &guild.channels[&ChannelId::new(SIGNALS)];
    assert_eq!(signals.permission_overwrites.len(), 3);
    // serenity's own permission algorithm agrees with the sandbox's (twilight) view.
    let can_view = |user: u64, channel: u64| {
        let member = &guild.members[&UserId::new(user)];
        guild
            .user_permissions_in(&guild.channels[&ChannelId::new(channel)], member)
            .view_channel()
    };
    assert!(can_view(ALICE, SIGNALS));
    assert!(!can_view(BOB, SIGNALS));
    assert!(can_view(BOT, SIGNALS));
    assert!(!can_view(BOT, HIDDEN));
    bot.stop().await;
    sb.shutdown().await;
}

#[tokio::test]
async fn serenity_client_receives_each_dispatch_kind() {
    let sb = start().await;
    let mut bot = ready_bot(&sb).await;
    let ev = &mut bot.events;
    let carol = 700_000_000_000_000_020u64;

    sb.add_member(
        GUILD,
        &json!({"user": {"id": carol.to_string(), "username": "carol"}, "roles": []}),
    )
    .unwrap();
    wait_for(ev, "guild_member_addition", |m| {
        id_eq(&m["user"]["id"], carol)
    })
    .await;
    sb.update_member(GUILD, carol, &json!({"roles": [ROLE_PRO.to_string()]}))
        .unwrap();
    wait_for(ev, "guild_member_update", |m| {
        id_eq(&m["roles"][0], ROLE_PRO)
    })
    .await;
    sb.remove_member(GUILD, carol).unwrap();
    wait_for(ev, "guild_member_removal", |m| {
        id_eq(&m["user"]["id"], carol)
    })
    .await;

    let role = sb.create_role(GUILD, &json!({"name": "gold"})).unwrap();
    let role_id: u64 = role["id"].as_str().unwrap().parse().unwrap();
    wait_for(ev, "guild_role_create", |r| r["name"] == "gold").await;
    sb.update_role(GUILD, role_id, &json!({"name": "platinum"}))
        .unwrap();
    wait_for(ev, "guild_role_update", |r| r["name"] == "platinum").await;
    sb.delete_role(GUILD, role_id).unwrap();
    wait_for(ev, "guild_role_delete", |r| id_eq(&r["role_id"], role_id)).await;

    let ch = sb.create_channel(GUILD, &json!({"name": "fresh"})).unwrap();
    let ch_id: u64 = ch["id"].as_str().unwrap().parse().unwrap();
    wait_for(ev, "channel_create", |c| c["name"] == "fresh").await;
    sb.put_overwrite(
        ch_id,
        GUILD,
        &json!({"type": 0, "allow": "0", "deny": VIEW.to_string()}),
    )
    .unwrap();
    wait_for(ev, "channel_update", |c| {
        c["permission_overwrites"]
            .as_array()
            .is_some_and(|o| o.len() == 1)
    })
    .await;
    sb.delete_channel(ch_id).unwrap();
    wait_for(ev, "channel_delete", |c| id_eq(&c["id"], ch_id)).await;

    let m = sb.post_message(GENERAL, &json!({"author": {"id": ALICE.to_string(), "username": "alice"}, "content": "source says hi"})).unwrap();
    let mid: u64 = m["id"].as_str().unwrap().parse().unwrap();
    wait_for(ev, "message", |m| m["content"] == "source says hi").await;
    sb.edit_message(GENERAL, mid, &json!({"content": "source edited"}))
        .unwrap();
    wait_for(ev, "message_update", |m| m["content"] == "source edited").await;
    sb.delete_message(GENERAL, mid).unwrap();
    wait_for(ev, "message_delete", |m| id_eq(&m["id"], mid)).await;

    sb.remove_guild(GUILD).unwrap();
    wait_for(ev, "guild_delete", |g| id_eq(&g["id"], GUILD)).await;
    bot.stop().await;
    sb.shutdown().await;
}

#[tokio::test]
async fn serenity_http_posts_edits_and_deletes_messages() {
    let sb = start().await;
    let mut bot = ready_bot(&sb).await;
    let channel = ChannelId::new(GENERAL);
    let mut sent = channel
        .send_message(
            &bot.http,
            CreateMessage::new()
                .content("mirrored")
                .nonce(Nonce::String("job-1".into()))
                .enforce_nonce(true),
        )
        .await
        .unwrap();
    wait_for(&mut bot.events, "message", |m| m["content"] == "mirrored").await;
    sent.edit(&bot.http, EditMessage::new().content("mirrored, edited"))
        .await
        .unwrap();
    wait_for(&mut bot.events, "message_update", |m| {
        m["content"] == "mirrored, edited"
    })
    .await;
    sent.delete(&bot.http).await.unwrap();
    wait_for(&mut bot.events, "message_delete", |m| {
        m["id"] == sent.id.to_string()
    })
    .await;

    let log = sb.messages(GENERAL).unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["content"], "mirrored, edited");
    assert_eq!(log[0]["nonce"], "job-1");
    assert_eq!(log[0]["deleted"], true);
    assert!(log[0]["edited_timestamp"].is_string());
    assert_eq!(log[0]["author"]["id"], BOT.to_string());
    bot.stop().await;
    sb.shutdown().await;
}

#[tokio::test]
async fn serenity_pages_members_over_rest_and_over_opcode_8() {
    let sb = start().await;
    let first = 600_000_000_000_000_000u64;
    sb.bulk_add_members(GUILD, first, 2_500).unwrap();
    let mut bot = ready_bot(&sb).await;
    let guild = GuildId::new(GUILD);

    // REST: serenity's members_iter pages with limit=1000&after=last id.
    let mut ids = Vec::new();
    {
        use futures_util::StreamExt;
        let mut it = guild.members_iter(&bot.http).boxed();
        while let Some(m) = it.next().await {
            ids.push(m.unwrap().user.id.get());
        }
    }
    assert_eq!(ids.len(), 2_504);
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "pages are ordered by id"
    );

    // Opcode 8 through the shard messenger: 3 chunks of at most 1000, nonce echoed.
    bot.context().shard.chunk_guild(
        guild,
        None,
        false,
        ChunkGuildFilter::None,
        Some("page-all".into()),
    );
    let mut got = std::collections::BTreeSet::new();
    let mut indexes = std::collections::BTreeSet::new();
    while indexes.len() < 3 {
        let c = wait_for(&mut bot.events, "guild_members_chunk", |c| {
            c["nonce"] == "page-all"
        })
        .await;
        assert_eq!(c["chunk_count"], 3);
        let n = c["ids"].as_array().unwrap().len();
        assert!(n <= 1000);
        indexes.insert(c["chunk_index"].as_u64().unwrap());
        got.extend(
            c["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap()),
        );
    }
    assert_eq!(got.len(), 2_504);
    assert_eq!(
        bot.cache.guild(guild).unwrap().members.len(),
        2_504,
        "chunks fill serenity's cache"
    );
    bot.stop().await;
    sb.shutdown().await;
}

#[tokio::test]
async fn serenity_resumes_after_a_dropped_connection_without_missing_an_event() {
    let sb = start().await;
    let mut bot = ready_bot(&sb).await;
    assert_eq!(sb.drop_gateway_connections(), 1);
    // Posted while the client is away: replayed on RESUME.
    for i in 0..5 {
        sb.post_message(GENERAL, &json!({"author": {"id": ALICE.to_string(), "username": "alice"}, "content": format!("while away {i}")})).unwrap();
    }
    let mut resumed = false;
    let mut contents = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while contents.len() < 5 {
        let (name, detail) = tokio::time::timeout_at(deadline, bot.events.recv())
            .await
            .expect("events within 20 s")
            .unwrap();
        match name.as_str() {
            "ready" => panic!("the client re-identified instead of resuming"),
            "resume" => resumed = true,
            "message" => contents.push(detail["content"].as_str().unwrap().to_owned()),
            _ => {}
        }
    }
    let expected: Vec<String> = (0..5).map(|i| format!("while away {i}")).collect();
    assert_eq!(
        contents, expected,
        "every missed event, in order, exactly once"
    );
    if !resumed {
        wait_for(&mut bot.events, "resume", |_| true).await;
    }
    // And the resumed session keeps receiving live events.
    sb.post_message(GENERAL, &json!({"author": {"id": ALICE.to_string(), "username": "alice"}, "content": "after resume"})).unwrap();
    wait_for(&mut bot.events, "message", |m| {
        m["content"] == "after resume"
    })
    .await;
    bot.stop().await;
    sb.shutdown().await;
}

#[tokio::test]
async fn serenity_reidentifies_after_invalid_session() {
    let sb = start().await;
    let mut bot = ready_bot(&sb).await;
    let first = bot.context().shard_id;
    assert_eq!(sb.invalidate_sessions(), 1);
    // serenity restarts the shard (its queue waits up to 5 s between boots) and IDENTIFYs.
    let ready = wait_for(&mut bot.events, "ready", |_| true).await;
    assert_eq!(ready["guilds"], 1);
    wait_for(&mut bot.events, "guild_create", |g| id_eq(&g["id"], GUILD)).await;
    assert_eq!(bot.context().shard_id, first);
    sb.post_message(GENERAL, &json!({"author": {"id": ALICE.to_string(), "username": "alice"}, "content": "after re-identify"})).unwrap();
    wait_for(&mut bot.events, "message", |m| {
        m["content"] == "after re-identify"
    })
    .await;
    bot.stop().await;
    sb.shutdown().await;
}

#[tokio::test]
async fn the_client_builder_refuses_to_fall_back_to_discords_gateway() {
    no_proxy();
    // A loopback port with nothing behind it: GET /gateway fails and serenity would fall back
    // to wss://gateway.discord.gg.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let api_url = format!("http://127.0.0.1:{port}");
    let builder = seatgate::discord::connect::client_builder(&api_url, "1.sandbox.token");
    let err = seatgate::discord::connect::build_client(builder, &api_url)
        .await
        .err()
        .expect("refused");
    assert_eq!(err.code(), seatgate::ErrorCode::DiscordUnavailable);
    assert!(
        err.message().contains("gateway.discord.gg"),
        "{}",
        err.message()
    );
}
