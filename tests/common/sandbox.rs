//! Shared helpers for the sandbox tests: a standard scenario, a raw gateway client speaking
//! the wire protocol, and a real serenity client built with `seatgate::discord::connect`.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use seatgate::sandbox::{RateLimitConfig, Sandbox, SandboxHandle, SandboxOptions, Scenario};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const BOT: u64 = 990_000_000_000_000_001;
pub const GUILD: u64 = 840_000_000_000_000_001;
pub const OWNER: u64 = 700_000_000_000_000_002;
pub const ALICE: u64 = 700_000_000_000_000_003;
pub const BOB: u64 = 700_000_000_000_000_004;
pub const ROLE_BASIC: u64 = 850_000_000_000_000_001;
pub const ROLE_PRO: u64 = 850_000_000_000_000_003;
pub const ROLE_BOT: u64 = 850_000_000_000_000_009;
pub const GENERAL: u64 = 860_000_000_000_000_001;
pub const SIGNALS: u64 = 860_000_000_000_000_002;
/// The bot can see but not write here.
pub const READONLY: u64 = 860_000_000_000_000_003;
/// Hidden from the bot.
pub const HIDDEN: u64 = 860_000_000_000_000_004;
pub const CATEGORY: u64 = 860_000_000_000_000_005;
pub const VOICE: u64 = 860_000_000_000_000_006;

pub const VIEW: u64 = 1 << 10;
pub const SEND: u64 = 1 << 11;
pub const MANAGE_WEBHOOKS: u64 = 1 << 29;
pub const MANAGE_ROLES: u64 = 1 << 28;

/// Must be called before any reqwest client exists (reqwest honours proxy variables).
pub fn no_proxy() {
    std::env::set_var("NO_PROXY", "127.0.0.1,localhost");
    std::env::set_var("no_proxy", "127.0.0.1,localhost");
}

/// One customer guild: @everyone can view/send/read history; `signals` is private (pro role
/// and the bot by member overwrite); `readonly` denies the bot SEND; `hidden` denies @everyone
/// VIEW; the bot holds a role with MANAGE_ROLES above `basic`/`pro`.
pub fn scenario() -> Value {
    json!({
        "bot": {"id": BOT.to_string(), "username": "seatgate"},
        "guilds": [{
            "id": GUILD.to_string(),
            "name": "Customer Server",
            "owner_id": OWNER.to_string(),
            "roles": [
                {"id": GUILD.to_string(), "name": "@everyone", "permissions": "68608", "position": 0},
                {"id": ROLE_BASIC.to_string(), "name": "basic", "permissions": "0", "position": 1},
                {"id": ROLE_PRO.to_string(), "name": "pro", "permissions": "0", "position": 2},
                {"id": ROLE_BOT.to_string(), "name": "seatgate", "permissions": MANAGE_ROLES.to_string(), "position": 5}
            ],
            "channels": [
                {"id": CATEGORY.to_string(), "name": "Mirrors", "type": 4},
                {"id": GENERAL.to_string(), "name": "general", "type": 0, "parent_id": CATEGORY.to_string()},
                {"id": SIGNALS.to_string(), "name": "signals", "type": 0, "permission_overwrites": [
                    {"id": GUILD.to_string(), "type": 0, "allow": "0", "deny": VIEW.to_string()},
                    {"id": ROLE_PRO.to_string(), "type": 0, "allow": VIEW.to_string(), "deny": "0"},
                    {"id": BOT.to_string(), "type": 1, "allow": (VIEW | MANAGE_WEBHOOKS).to_string(), "deny": "0"}
                ]},
                {"id": READONLY.to_string(), "name": "readonly", "type": 0, "permission_overwrites": [
                    {"id": GUILD.to_string(), "type": 0, "allow": "0", "deny": SEND.to_string()}
                ]},
                {"id": HIDDEN.to_string(), "name": "hidden", "type": 0, "permission_overwrites": [
                    {"id": GUILD.to_string(), "type": 0, "allow": "0", "deny": VIEW.to_string()}
                ]},
                {"id": VOICE.to_string(), "name": "Lounge", "type": 2}
            ],
            "members": [
                {"user": {"id": OWNER.to_string(), "username": "owner"}, "roles": []},
                {"user": {"id": ALICE.to_string(), "username": "alice"}, "roles": [ROLE_PRO.to_string()]},
                {"user": {"id": BOB.to_string(), "username": "bob"}, "roles": [ROLE_BASIC.to_string()]},
                {"user": {"id": BOT.to_string(), "username": "seatgate", "bot": true}, "roles": [ROLE_BOT.to_string()]}
            ]
        }]
    })
}

pub async fn start_with(scenario: Value, rate_limits: RateLimitConfig) -> SandboxHandle {
    no_proxy();
    Sandbox::start(SandboxOptions {
        scenario: Some(Scenario::from_json(&scenario).unwrap()),
        rate_limits,
        ..SandboxOptions::default()
    })
    .await
    .unwrap()
}

/// The standard scenario with rate limits off (tests that are not about rate limits).
pub async fn start() -> SandboxHandle {
    start_with(scenario(), RateLimitConfig::disabled()).await
}

pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A raw gateway connection speaking JSON text frames.
pub struct RawGateway {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub session_id: Option<String>,
    pub seq: u64,
}

/// What the raw client read.
#[derive(Debug)]
pub enum Frame {
    Payload(Value),
    Closed(Option<u16>),
}

impl RawGateway {
    pub async fn connect(url: &str) -> RawGateway {
        let (ws, _) = tokio::time::timeout(
            TIMEOUT,
            tokio_tungstenite::connect_async(format!("{url}?v=10")),
        )
        .await
        .expect("connect timed out")
        .expect("connect failed");
        let mut gw = RawGateway {
            ws,
            session_id: None,
            seq: 0,
        };
        let hello = gw.payload().await;
        assert_eq!(hello["op"], 10, "first frame must be HELLO: {hello}");
        assert!(hello["d"]["heartbeat_interval"].as_u64().unwrap() > 0);
        gw
    }

    pub async fn send(&mut self, v: Value) {
        self.ws.send(WsMessage::Text(v.to_string())).await.unwrap();
    }

    pub async fn frame(&mut self) -> Frame {
        loop {
            let msg = tokio::time::timeout(TIMEOUT, self.ws.next())
                .await
                .expect("no gateway frame within the timeout");
            match msg {
                None => return Frame::Closed(None),
                Some(Err(_)) => return Frame::Closed(None),
                Some(Ok(WsMessage::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if let Some(s) = v["s"].as_u64() {
                        assert_eq!(
                            s,
                            self.seq + 1,
                            "sequence numbers must increase by one: {t}"
                        );
                        self.seq = s;
                    }
                    return Frame::Payload(v);
                }
                Some(Ok(WsMessage::Close(c))) => {
                    return Frame::Closed(c.map(|c| u16::from(c.code)))
                }
                Some(Ok(_)) => {}
            }
        }
    }

    pub async fn payload(&mut self) -> Value {
        match self.frame().await {
            Frame::Payload(v) => v,
            Frame::Closed(c) => panic!("gateway closed ({c:?}) while a payload was expected"),
        }
    }

    /// The next dispatch (op 0), skipping heartbeat ACKs.
    pub async fn dispatch(&mut self) -> Value {
        loop {
            let v = self.payload().await;
            if v["op"] == 0 {
                return v;
            }
            assert_eq!(v["op"], 11, "unexpected non-dispatch frame: {v}");
        }
    }

    /// The next dispatch named `t`, skipping others.
    pub async fn dispatch_named(&mut self, t: &str) -> Value {
        loop {
            let v = self.dispatch().await;
            if v["t"] == t {
                return v;
            }
        }
    }

    /// IDENTIFY as serenity does and read READY; returns READY's `d`.
    pub async fn identify(&mut self, token: &str, intents: u64) -> Value {
        self.identify_shard(token, intents, [0, 1]).await
    }

    /// [`RawGateway::identify`] as shard `[id, count]`.
    pub async fn identify_shard(&mut self, token: &str, intents: u64, shard: [u64; 2]) -> Value {
        self.send(json!({"op": 2, "d": {
            "token": format!("Bot {token}"), "intents": intents, "shard": shard,
            "large_threshold": 250, "compress": true,
            "properties": {"os": "linux", "browser": "test", "device": "test"},
            "presence": {"afk": false, "status": "online", "since": {"secs_since_epoch": 1, "nanos_since_epoch": 0}, "activities": []}
        }}))
        .await;
        let ready = self.dispatch().await;
        assert_eq!(ready["t"], "READY", "{ready}");
        self.session_id = Some(ready["d"]["session_id"].as_str().unwrap().to_owned());
        ready
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }

    /// Closes with a status code and waits for the server's close frame.
    pub async fn close_with(mut self, code: u16) {
        use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};
        let _ = self
            .ws
            .close(Some(CloseFrame {
                code: CloseCode::from(code),
                reason: "".into(),
            }))
            .await;
        while let Ok(Some(Ok(_))) = tokio::time::timeout(TIMEOUT, self.ws.next()).await {}
    }
}

pub const ALL_INTENTS: u64 = (1 << 0) | (1 << 1) | (1 << 9) | (1 << 15);

/// Events seen by a serenity EventHandler, as (event name, detail).
pub type Seen = tokio::sync::mpsc::UnboundedReceiver<(String, Value)>;

/// Waits for an event named `name` whose detail satisfies `pred`, failing after the timeout.
pub async fn wait_for(rx: &mut Seen, name: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let next = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no {name} event within 20 s"))
            .expect("event channel closed");
        if next.0 == name && pred(&next.1) {
            return next.1;
        }
    }
}

pub fn arc<T>(t: T) -> Arc<T> {
    Arc::new(t)
}

pub mod bot {
    //! A real serenity client, built exactly as the service builds it
    //! (`seatgate::discord::connect`), recording every handler call.

    use std::sync::{Arc, Mutex};

    use serde::Serialize;
    use serde_json::{json, Value};
    use serenity::all::*;
    use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

    use super::Seen;

    pub struct Recorder {
        tx: UnboundedSender<(String, Value)>,
        ctx: Arc<Mutex<Option<Context>>>,
    }

    fn v<T: Serialize>(t: &T) -> Value {
        serde_json::to_value(t).unwrap_or(Value::Null)
    }

    impl Recorder {
        fn send(&self, name: &str, detail: Value) {
            let _ = self.tx.send((name.to_owned(), detail));
        }
    }

    #[async_trait]
    impl EventHandler for Recorder {
        async fn ready(&self, ctx: Context, ready: Ready) {
            *self.ctx.lock().unwrap() = Some(ctx);
            self.send(
                "ready",
                json!({"session_id": ready.session_id, "guilds": ready.guilds.len()}),
            );
        }
        async fn resume(&self, ctx: Context, _: ResumedEvent) {
            *self.ctx.lock().unwrap() = Some(ctx);
            self.send("resume", Value::Null);
        }
        async fn guild_create(&self, _: Context, guild: Guild, _: Option<bool>) {
            self.send("guild_create", json!({"id": guild.id, "channels": guild.channels.len(), "members": guild.members.len(), "roles": guild.roles.len()}));
        }
        async fn guild_delete(&self, _: Context, g: UnavailableGuild, _: Option<Guild>) {
            self.send("guild_delete", v(&g));
        }
        async fn guild_member_addition(&self, _: Context, m: Member) {
            self.send("guild_member_addition", v(&m));
        }
        async fn guild_member_update(
            &self,
            _: Context,
            _: Option<Member>,
            _: Option<Member>,
            e: GuildMemberUpdateEvent,
        ) {
            self.send("guild_member_update", v(&e));
        }
        async fn guild_member_removal(&self, _: Context, g: GuildId, u: User, _: Option<Member>) {
            self.send(
                "guild_member_removal",
                json!({"guild_id": g, "user": v(&u)}),
            );
        }
        async fn guild_members_chunk(&self, _: Context, c: GuildMembersChunkEvent) {
            let ids: Vec<u64> = c.members.keys().map(|k| k.get()).collect();
            self.send("guild_members_chunk", json!({"nonce": c.nonce, "chunk_index": c.chunk_index, "chunk_count": c.chunk_count, "ids": ids}));
        }
        async fn guild_role_create(&self, _: Context, r: Role) {
            self.send("guild_role_create", v(&r));
        }
        async fn guild_role_update(&self, _: Context, _: Option<Role>, r: Role) {
            self.send("guild_role_update", v(&r));
        }
        async fn guild_role_delete(&self, _: Context, g: GuildId, r: RoleId, _: Option<Role>) {
            self.send("guild_role_delete", json!({"guild_id": g, "role_id": r}));
        }
        async fn channel_create(&self, _: Context, c: GuildChannel) {
            self.send("channel_create", v(&c));
        }
        async fn channel_update(&self, _: Context, _: Option<GuildChannel>, c: GuildChannel) {
            self.send("channel_update", v(&c));
        }
        async fn channel_delete(&self, _: Context, c: GuildChannel, _: Option<Vec<Message>>) {
            self.send("channel_delete", v(&c));
        }
        async fn message(&self, _: Context, m: Message) {
            self.send("message", v(&m));
        }
        async fn message_update(
            &self,
            _: Context,
            _: Option<Message>,
            _: Option<Message>,
            e: MessageUpdateEvent,
        ) {
            self.send("message_update", v(&e));
        }
        async fn message_delete(&self, _: Context, c: ChannelId, m: MessageId, g: Option<GuildId>) {
            self.send(
                "message_delete",
                json!({"channel_id": c, "id": m, "guild_id": g}),
            );
        }
    }

    pub struct Bot {
        pub events: Seen,
        pub http: Arc<Http>,
        pub cache: Arc<Cache>,
        pub shard_manager: Arc<ShardManager>,
        ctx: Arc<Mutex<Option<Context>>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Bot {
        /// Builds the client with `discord::connect` (the service's builder) and starts it.
        pub async fn start(api_url: &str, token: &str) -> Bot {
            let (tx, events) = unbounded_channel();
            let ctx = Arc::new(Mutex::new(None));
            // serenity as any bot builds it (its default cache), pointed at the sandbox.
            let builder = serenity::all::ClientBuilder::new_with_http(
                seatgate::discord::connect::http(api_url, token),
                seatgate::discord::connect::intents(),
            )
            .event_handler(Recorder {
                tx,
                ctx: ctx.clone(),
            });
            let mut client = seatgate::discord::connect::build_client(builder, api_url)
                .await
                .expect("client builds against the sandbox");
            let http = client.http.clone();
            let cache = client.cache.clone();
            let shard_manager = client.shard_manager.clone();
            let task = tokio::spawn(async move {
                let _ = client.start().await;
            });
            Bot {
                events,
                http,
                cache,
                shard_manager,
                ctx,
                task,
            }
        }

        /// The latest handler context (for the shard messenger).
        pub fn context(&self) -> Context {
            self.ctx.lock().unwrap().clone().expect("no READY yet")
        }

        pub async fn stop(self) {
            self.shard_manager.shutdown_all().await;
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.task).await;
        }
    }
}

/// Whether a JSON snowflake (a string, as Discord sends ids) is `id`.
pub fn id_eq(v: &Value, id: u64) -> bool {
    v.as_str().and_then(|s| s.parse::<u64>().ok()) == Some(id)
}
