//! Contract tests: every payload the sandbox emits is decoded by serenity 0.12.5's own model
//! types. A missing required key turns a dispatch into `Event::Unknown` (silently, in serenity),
//! and a malformed channel is dropped from `guild.channels`; both fail here.

mod common;

use std::collections::BTreeSet;

use common::sandbox::*;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use serenity::all::*;

/// Decodes `frame` as serenity does (GatewayEvent -> Event), fails on `Event::Unknown`, and
/// decodes `d` into the event's own struct to surface the real serde error if any.
fn decode(frame: &Value) -> Event {
    let t = frame["t"].as_str().expect("dispatch without t").to_owned();
    let d = frame["d"].clone();
    fn strict<T: DeserializeOwned>(t: &str, d: Value) {
        if let Err(e) = serde_json::from_value::<T>(d.clone()) {
            panic!("{t} does not decode into serenity's model: {e}\npayload: {d}");
        }
    }
    match t.as_str() {
        "READY" => strict::<ReadyEvent>(&t, d),
        "RESUMED" => strict::<ResumedEvent>(&t, d),
        "GUILD_CREATE" => strict::<GuildCreateEvent>(&t, d),
        "GUILD_DELETE" => strict::<GuildDeleteEvent>(&t, d),
        "GUILD_UPDATE" => strict::<GuildUpdateEvent>(&t, d),
        "GUILD_MEMBER_ADD" => strict::<GuildMemberAddEvent>(&t, d),
        "GUILD_MEMBER_UPDATE" => strict::<GuildMemberUpdateEvent>(&t, d),
        "GUILD_MEMBER_REMOVE" => strict::<GuildMemberRemoveEvent>(&t, d),
        "GUILD_MEMBERS_CHUNK" => strict::<GuildMembersChunkEvent>(&t, d),
        "GUILD_ROLE_CREATE" => strict::<GuildRoleCreateEvent>(&t, d),
        "GUILD_ROLE_UPDATE" => strict::<GuildRoleUpdateEvent>(&t, d),
        "GUILD_ROLE_DELETE" => strict::<GuildRoleDeleteEvent>(&t, d),
        "CHANNEL_CREATE" => strict::<ChannelCreateEvent>(&t, d),
        "CHANNEL_UPDATE" => strict::<ChannelUpdateEvent>(&t, d),
        "CHANNEL_DELETE" => strict::<ChannelDeleteEvent>(&t, d),
        "MESSAGE_CREATE" => strict::<MessageCreateEvent>(&t, d),
        "MESSAGE_UPDATE" => strict::<MessageUpdateEvent>(&t, d),
        "MESSAGE_DELETE" => strict::<MessageDeleteEvent>(&t, d),
        "WEBHOOKS_UPDATE" => strict::<WebhookUpdateEvent>(&t, d),
        other => panic!("the sandbox emitted {other}, which this contract test does not know"),
    }
    match serde_json::from_value::<GatewayEvent>(frame.clone()) {
        Ok(GatewayEvent::Dispatch(_, Event::Unknown(u))) => {
            panic!("{t} became Event::Unknown in serenity: {u:?}")
        }
        Ok(GatewayEvent::Dispatch(_, ev)) => ev,
        Ok(other) => panic!("{t} decoded as {other:?}"),
        Err(e) => panic!("{t} is not a gateway event: {e}"),
    }
}

#[tokio::test]
async fn every_gateway_dispatch_decodes_with_serenitys_models() {
    let sb = start().await;
    let mut gw = RawGateway::connect(sb.gateway_url()).await;
    const GUILD_WEBHOOKS: u64 = 1 << 5;
    let ready = gw
        .identify(sb.bot_token(), ALL_INTENTS | GUILD_WEBHOOKS)
        .await;
    let mut seen = BTreeSet::new();
    let mut check = |frame: &Value| -> Event {
        seen.insert(frame["t"].as_str().unwrap().to_owned());
        decode(frame)
    };

    match check(&ready) {
        Event::Ready(r) => {
            assert_eq!(r.ready.user.id.get(), BOT);
            assert_eq!(r.ready.guilds.len(), 1);
            assert_eq!(r.ready.application.id.get(), BOT);
        }
        other => panic!("{other:?}"),
    }
    let gc = gw.dispatch().await;
    match check(&gc) {
        Event::GuildCreate(e) => {
            let g = e.guild;
            assert_eq!(g.id.get(), GUILD);
            assert_eq!(g.channels.len(), 6, "a channel was dropped by serenity");
            assert_eq!(g.roles.len(), 4);
            assert_eq!(g.members.len(), 4);
            let signals = &g.channels[&ChannelId::new(SIGNALS)];
            assert_eq!(signals.permission_overwrites.len(), 3);
            assert!(signals.permission_overwrites.iter().any(|o| o.kind
                == PermissionOverwriteType::Member(UserId::new(BOT))
                && o.allow.contains(Permissions::VIEW_CHANNEL)));
            assert!(signals.permission_overwrites.iter().any(|o| o.kind
                == PermissionOverwriteType::Role(RoleId::new(GUILD))
                && o.deny.contains(Permissions::VIEW_CHANNEL)));
            assert_eq!(g.channels[&ChannelId::new(VOICE)].kind, ChannelType::Voice);
            assert_eq!(
                g.channels[&ChannelId::new(CATEGORY)].kind,
                ChannelType::Category
            );
            assert_eq!(g.member_count, 4);
        }
        other => panic!("{other:?}"),
    }

    let carol = 700_000_000_000_000_010u64;
    sb.add_member(GUILD, &json!({"user": {"id": carol.to_string(), "username": "carol"}, "roles": [ROLE_BASIC.to_string()]})).unwrap();
    assert!(
        matches!(check(&gw.dispatch().await), Event::GuildMemberAdd(e) if e.member.user.id.get() == carol && e.member.guild_id.get() == GUILD)
    );
    sb.update_member(GUILD, carol, &json!({"roles": [ROLE_PRO.to_string()]}))
        .unwrap();
    assert!(
        matches!(check(&gw.dispatch().await), Event::GuildMemberUpdate(e) if e.roles == vec![RoleId::new(ROLE_PRO)])
    );
    sb.remove_member(GUILD, carol).unwrap();
    assert!(
        matches!(check(&gw.dispatch().await), Event::GuildMemberRemove(e) if e.user.id.get() == carol)
    );

    let role = sb
        .create_role(GUILD, &json!({"name": "gold", "permissions": "1024"}))
        .unwrap();
    let role_id: u64 = role["id"].as_str().unwrap().parse().unwrap();
    assert!(
        matches!(check(&gw.dispatch().await), Event::GuildRoleCreate(e) if e.role.name == "gold" && e.role.permissions == Permissions::VIEW_CHANNEL)
    );
    sb.update_role(GUILD, role_id, &json!({"permissions": "0"}))
        .unwrap();
    assert!(
        matches!(check(&gw.dispatch().await), Event::GuildRoleUpdate(e) if e.role.permissions.is_empty())
    );
    sb.delete_role(GUILD, role_id).unwrap();
    assert!(
        matches!(check(&gw.dispatch().await), Event::GuildRoleDelete(e) if e.role_id.get() == role_id)
    );

    let ch = sb
        .create_channel(GUILD, &json!({"name": "new", "type": 0}))
        .unwrap();
    let ch_id: u64 = ch["id"].as_str().unwrap().parse().unwrap();
    assert!(
        matches!(check(&gw.dispatch().await), Event::ChannelCreate(e) if e.channel.id.get() == ch_id)
    );
    sb.put_overwrite(
        ch_id,
        ROLE_BASIC,
        &json!({"type": 0, "allow": "0", "deny": "1024"}),
    )
    .unwrap();
    match check(&gw.dispatch().await) {
        Event::ChannelUpdate(e) => {
            let c = e.channel;
            assert_eq!(c.permission_overwrites.len(), 1);
            assert_eq!(
                c.permission_overwrites[0].kind,
                PermissionOverwriteType::Role(RoleId::new(ROLE_BASIC))
            );
        }
        other => panic!("{other:?}"),
    }
    sb.delete_channel(ch_id).unwrap();
    assert!(
        matches!(check(&gw.dispatch().await), Event::ChannelDelete(e) if e.channel.id.get() == ch_id)
    );

    let msg = sb.post_message(GENERAL, &json!({"author": {"id": ALICE.to_string(), "username": "alice"}, "content": "hello", "embeds": [{"title": "t"}]})).unwrap();
    let msg_id: u64 = msg["id"].as_str().unwrap().parse().unwrap();
    match check(&gw.dispatch().await) {
        Event::MessageCreate(e) => {
            assert_eq!(e.message.content, "hello");
            assert_eq!(e.message.embeds.len(), 1);
            assert_eq!(e.message.guild_id.map(|g| g.get()), Some(GUILD));
            assert_eq!(
                e.message.member.as_ref().map(|m| m.roles.clone()),
                Some(vec![RoleId::new(ROLE_PRO)])
            );
        }
        other => panic!("{other:?}"),
    }
    sb.edit_message(GENERAL, msg_id, &json!({"content": "edited"}))
        .unwrap();
    assert!(
        matches!(check(&gw.dispatch().await), Event::MessageUpdate(e) if e.content.as_deref() == Some("edited") && e.edited_timestamp.is_some())
    );
    sb.delete_message(GENERAL, msg_id).unwrap();
    assert!(
        matches!(check(&gw.dispatch().await), Event::MessageDelete(e) if e.message_id.get() == msg_id)
    );

    // A webhook message as MESSAGE_CREATE.
    let http = seatgate::discord::connect::http(sb.api_url(), sb.bot_token());
    let hook = ChannelId::new(SIGNALS)
        .create_webhook(&http, CreateWebhook::new("mirror"))
        .await
        .unwrap();
    assert!(
        matches!(check(&gw.dispatch().await), Event::WebhookUpdate(e) if e.channel_id.get() == SIGNALS)
    );
    hook.execute(
        &http,
        true,
        ExecuteWebhook::new().content("via hook").username("Source"),
    )
    .await
    .unwrap();
    match check(&gw.dispatch().await) {
        Event::MessageCreate(e) => {
            assert_eq!(e.message.webhook_id, Some(hook.id));
            assert_eq!(e.message.author.name, "Source");
        }
        other => panic!("{other:?}"),
    }

    gw.send(json!({"op": 8, "d": {"guild_id": GUILD.to_string(), "query": "", "limit": 0, "presences": false, "nonce": "n-1"}})).await;
    match check(&gw.dispatch().await) {
        Event::GuildMembersChunk(e) => {
            assert_eq!(e.members.len(), 4);
            assert_eq!(e.nonce.as_deref(), Some("n-1"));
            assert_eq!((e.chunk_index, e.chunk_count), (0, 1));
        }
        other => panic!("{other:?}"),
    }

    let other_guild = 880_000_000_000_000_001u64;
    sb.add_guild(
        &json!({"id": other_guild.to_string(), "name": "Other", "owner_id": OWNER.to_string(),
        "channels": [{"id": "880000000000000002", "name": "x", "type": 0}]}),
    )
    .unwrap();
    match check(&gw.dispatch().await) {
        Event::GuildCreate(e) => {
            assert_eq!(e.guild.id.get(), other_guild);
            assert_eq!(e.guild.channels.len(), 1);
            assert_eq!(e.guild.roles.len(), 1, "@everyone is added by default");
            assert!(
                e.guild.members.contains_key(&UserId::new(BOT)),
                "the bot joins every guild"
            );
        }
        other => panic!("{other:?}"),
    }
    sb.update_guild(
        other_guild,
        &json!({"name": "Renamed", "owner_id": BOT.to_string()}),
    )
    .unwrap();
    match check(&gw.dispatch().await) {
        Event::GuildUpdate(e) => {
            assert_eq!(e.guild.owner_id.get(), BOT);
            assert_eq!(e.guild.name, "Renamed");
        }
        other => panic!("{other:?}"),
    }
    sb.start_outage(other_guild).unwrap();
    assert!(
        matches!(check(&gw.dispatch().await), Event::GuildDelete(e) if e.guild.id.get() == other_guild && e.guild.unavailable)
    );
    sb.end_outage(other_guild).unwrap();
    assert!(
        matches!(check(&gw.dispatch().await), Event::GuildCreate(e) if e.guild.id.get() == other_guild)
    );
    sb.remove_guild(other_guild).unwrap();
    assert!(
        matches!(check(&gw.dispatch().await), Event::GuildDelete(e) if e.guild.id.get() == other_guild && !e.guild.unavailable)
    );

    // RESUMED after a dropped connection.
    let session_id = gw.session_id.clone().unwrap();
    let seq = gw.seq;
    sb.drop_gateway_connections();
    gw.close().await;
    let mut gw2 = RawGateway::connect(sb.gateway_url()).await;
    gw2.seq = seq;
    gw2.send(json!({"op": 6, "d": {"token": format!("Bot {}", sb.bot_token()), "session_id": session_id, "seq": seq}})).await;
    check(&gw2.dispatch().await);

    let expected: BTreeSet<String> = [
        "READY",
        "RESUMED",
        "GUILD_CREATE",
        "GUILD_DELETE",
        "GUILD_UPDATE",
        "GUILD_MEMBER_ADD",
        "GUILD_MEMBER_UPDATE",
        "GUILD_MEMBER_REMOVE",
        "GUILD_MEMBERS_CHUNK",
        "GUILD_ROLE_CREATE",
        "GUILD_ROLE_UPDATE",
        "GUILD_ROLE_DELETE",
        "CHANNEL_CREATE",
        "CHANNEL_UPDATE",
        "CHANNEL_DELETE",
        "MESSAGE_CREATE",
        "MESSAGE_UPDATE",
        "MESSAGE_DELETE",
        "WEBHOOKS_UPDATE",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(seen, expected);
    sb.shutdown().await;
}

/// Each REST route, called through serenity's own `Http` (built by `discord::connect`), which
/// decodes the response into serenity's models: a missing key is an error here.
#[tokio::test]
async fn every_rest_response_decodes_with_serenitys_models() {
    let sb = start().await;
    let http = seatgate::discord::connect::http(sb.api_url(), sb.bot_token());
    let guild = GuildId::new(GUILD);

    let gw = http.get_gateway().await.unwrap();
    assert_eq!(gw.url, sb.gateway_url());
    let bot_gw = http.get_bot_gateway().await.unwrap();
    assert_eq!((bot_gw.url.as_str(), bot_gw.shards), (sb.gateway_url(), 1));
    let me = http.get_current_user().await.unwrap();
    assert_eq!(
        (me.id.get(), me.bot, me.name.as_str()),
        (BOT, true, "seatgate")
    );

    let g = http.get_guild(guild).await.unwrap();
    assert_eq!((g.id, g.owner_id.get(), g.roles.len()), (guild, OWNER, 4));
    let channels = http.get_channels(guild).await.unwrap();
    assert_eq!(channels.len(), 6);
    assert_eq!(http.get_guild_roles(guild).await.unwrap().len(), 4);
    let members = http
        .get_guild_members(guild, Some(1000), None)
        .await
        .unwrap();
    let ids: Vec<u64> = members.iter().map(|m| m.user.id.get()).collect();
    assert_eq!(
        ids,
        vec![OWNER, ALICE, BOB, BOT],
        "members are ordered by id"
    );
    let alice = http.get_member(guild, UserId::new(ALICE)).await.unwrap();
    assert_eq!(alice.roles, vec![RoleId::new(ROLE_PRO)]);
    match http.get_channel(ChannelId::new(SIGNALS)).await.unwrap() {
        Channel::Guild(c) => assert_eq!(c.permission_overwrites.len(), 3),
        other => panic!("{other:?}"),
    }

    let sent = ChannelId::new(GENERAL)
        .send_message(&http, CreateMessage::new().content("one"))
        .await
        .unwrap();
    assert_eq!((sent.author.id.get(), sent.content.as_str()), (BOT, "one"));
    let got = http
        .get_message(ChannelId::new(GENERAL), sent.id)
        .await
        .unwrap();
    assert_eq!(got.id, sent.id);
    let listed = ChannelId::new(GENERAL)
        .messages(&http, GetMessages::new().limit(10))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    let mut edited = sent.clone();
    edited
        .edit(&http, EditMessage::new().content("two"))
        .await
        .unwrap();
    assert_eq!(edited.content, "two");
    assert!(edited.edited_timestamp.is_some());
    edited.delete(&http).await.unwrap();

    let hook = ChannelId::new(SIGNALS)
        .create_webhook(&http, CreateWebhook::new("mirror"))
        .await
        .unwrap();
    assert!(hook.token.is_some());
    assert_eq!(
        ChannelId::new(SIGNALS).webhooks(&http).await.unwrap().len(),
        1
    );
    let by_token = Webhook::from_url(&http, &hook.url().unwrap())
        .await
        .unwrap();
    assert_eq!(by_token.id, hook.id);
    let by_id = http.get_webhook(hook.id).await.unwrap();
    assert_eq!(by_id.channel_id, Some(ChannelId::new(SIGNALS)));
    let hm = hook
        .execute(
            &http,
            true,
            ExecuteWebhook::new()
                .content("w")
                .username("Src")
                .avatar_url("https://example.invalid/a.png"),
        )
        .await
        .unwrap()
        .expect("wait=true returns the message");
    assert_eq!(hm.webhook_id, Some(hook.id));
    assert_eq!(hm.author.name, "Src");
    let hm2 = hook
        .edit_message(&http, hm.id, EditWebhookMessage::new().content("w2"))
        .await
        .unwrap();
    assert_eq!(hm2.content, "w2");
    let fetched = hook.get_message(&http, None, hm.id).await.unwrap();
    assert_eq!(fetched.content, "w2");
    hook.delete_message(&http, None, hm.id).await.unwrap();
    // Without wait the webhook answers 204.
    assert!(hook
        .execute(&http, false, ExecuteWebhook::new().content("nowait"))
        .await
        .unwrap()
        .is_none());

    http.add_member_role(guild, UserId::new(BOB), RoleId::new(ROLE_PRO), None)
        .await
        .unwrap();
    assert!(http
        .get_member(guild, UserId::new(BOB))
        .await
        .unwrap()
        .roles
        .contains(&RoleId::new(ROLE_PRO)));
    http.remove_member_role(guild, UserId::new(BOB), RoleId::new(ROLE_PRO), None)
        .await
        .unwrap();
    assert!(!http
        .get_member(guild, UserId::new(BOB))
        .await
        .unwrap()
        .roles
        .contains(&RoleId::new(ROLE_PRO)));
    sb.shutdown().await;
}
