//! The Discord sandbox: REST v10 + gateway on 127.0.0.1 that the unmodified serenity client
//! talks to, plus a control surface (Rust: [`SandboxHandle`]; HTTP: under `control_url`) to
//! script guilds, members, roles, channels, overwrites and messages. Every change emits the
//! gateway dispatch Discord would emit.
//!
//! Layout: `state` holds Discord's data and its changes, `model` the records and their JSON,
//! `scenario` reads Discord-shaped JSON, `perms` checks the bot's permissions (twilight-util),
//! `rest` serves REST v10, `files` multipart uploads and the attachment CDN, `gateway` the
//! WebSocket gateway, `control` the control routes, `ratelimit` and `faults` shape responses.

pub mod control;
pub mod core;
pub mod error;
pub mod faults;
pub mod files;
pub mod gateway;
pub mod model;
pub mod perms;
pub mod ratelimit;
pub mod rest;
pub mod router;
pub mod scenario;
pub mod state;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;

use actix_web::{web, App, HttpServer};
use serde_json::Value;

pub use self::core::Core;
pub use error::DiscordError;
pub use faults::Fault;
pub use ratelimit::{Limit, RateLimitConfig};
pub use scenario::{BotSpec, Scenario};

use crate::error::{AppError, ErrorCode};
use model::User;
use state::State;

/// How to start a sandbox.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// Loopback address (`127.0.0.1:0` picks a free port). Anything else is refused.
    pub bind: String,
    pub scenario: Option<Scenario>,
    pub rate_limits: RateLimitConfig,
    /// HELLO's `heartbeat_interval` (Discord: about 41 s).
    pub heartbeat_interval_ms: u64,
    /// Largest file a message upload may carry; larger ones answer 413 (40005). Discord's
    /// default: 10 MiB.
    pub max_upload_bytes: u64,
    /// The shards `GET /gateway/bot` recommends; `None`: the scenario's `shards`, else 1.
    pub shards: Option<u64>,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:0".into(),
            scenario: None,
            rate_limits: RateLimitConfig::default(),
            heartbeat_interval_ms: 41_250,
            max_upload_bytes: files::DEFAULT_MAX_UPLOAD_BYTES,
            shards: None,
        }
    }
}

impl Scenario {
    /// Reads a scenario file (see DESIGN.md "Sandbox scenario files").
    pub fn load(path: &Path) -> Result<Scenario, AppError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            AppError::new(
                ErrorCode::ConfigInvalid,
                format!("cannot read scenario {}: {e}", path.display()),
            )
        })?;
        let v: Value = serde_json::from_str(&text).map_err(|e| {
            AppError::new(
                ErrorCode::ConfigInvalid,
                format!("scenario {} is not JSON: {e}", path.display()),
            )
        })?;
        Scenario::from_json(&v).map_err(|e| {
            AppError::new(
                ErrorCode::ConfigInvalid,
                format!("scenario {}: {}", path.display(), e.message),
            )
        })
    }
}

pub struct Sandbox;

impl Sandbox {
    /// Binds, loads the scenario and starts serving. Must be called inside a tokio runtime.
    pub async fn start(options: SandboxOptions) -> Result<SandboxHandle, AppError> {
        let addr: SocketAddr = options.bind.parse().map_err(|_| {
            AppError::new(
                ErrorCode::ConfigInvalid,
                format!("sandbox bind address {:?} is not ip:port", options.bind),
            )
        })?;
        if !addr.ip().is_loopback() {
            return Err(AppError::new(
                ErrorCode::ConfigInvalid,
                format!("sandbox refuses to bind {addr}: only loopback addresses are allowed"),
            ));
        }
        let listener = TcpListener::bind(addr)?;
        let local = listener.local_addr()?;

        let scenario = options.scenario.unwrap_or_default();
        let shards = options.shards.or(scenario.shards).unwrap_or(1).max(1);
        let mut state_seed = State::new(User {
            id: 0,
            username: String::new(),
            global_name: None,
            avatar: None,
            bot: true,
        });
        let bot = match &scenario.bot {
            Some(b) => b.clone(),
            None => BotSpec {
                id: state_seed.next_id(),
                username: "seatgate".into(),
            },
        };
        let mut state = State::new(User {
            id: bot.id,
            username: bot.username.clone(),
            global_name: None,
            avatar: None,
            bot: true,
        });
        for g in &scenario.guilds {
            state.add_guild(g).map_err(|e| {
                AppError::new(
                    ErrorCode::ConfigInvalid,
                    format!("scenario guild: {}", e.message),
                )
            })?;
        }
        let token = format!("{}.sandbox.{}", bot.id, uuid::Uuid::new_v4().simple());
        let base = format!("http://{local}");
        let core = Arc::new(Core::new(
            state,
            token,
            ratelimit::RateLimiter::new(options.rate_limits),
            options.heartbeat_interval_ms,
            base.clone(),
            format!("ws://{local}/gateway"),
            format!("{base}/control"),
        ));
        core.set_max_upload_bytes(options.max_upload_bytes);
        core.set_shards(shards);

        let data = web::Data::from(core.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/gateway", web::get().to(gateway::ws_entry))
                .route("/attachments/{tail:.*}", web::to(files::cdn_entry))
                .route("/api/v10/{tail:.*}", web::to(rest::entry))
                .route("/control/{tail:.*}", web::to(control::entry))
                .default_service(web::to(rest::not_found))
        })
        .workers(2)
        // Gateway frames are small and frequent: without this, Nagle holds a frame until the
        // client's delayed ACK (up to 40 ms on Linux).
        .tcp_nodelay(true)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)?
        .run();
        let server_handle = server.handle();
        let join = tokio::spawn(server);
        tracing::info!(api_url = %core.api_url, bot_id = core.bot_id, "sandbox listening");
        Ok(SandboxHandle {
            core,
            server: server_handle,
            join: Some(join),
        })
    }
}

/// A running sandbox. Control methods take Discord-shaped JSON, like the HTTP control routes,
/// and return what those routes return.
pub struct SandboxHandle {
    core: Arc<Core>,
    server: actix_web::dev::ServerHandle,
    join: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl SandboxHandle {
    /// Base URL for serenity's `HttpBuilder::proxy` (`http://127.0.0.1:PORT`; REST is under
    /// `/api/v10`).
    pub fn api_url(&self) -> &str {
        &self.core.api_url
    }
    pub fn gateway_url(&self) -> &str {
        &self.core.gateway_url
    }
    pub fn control_url(&self) -> &str {
        &self.core.control_url
    }
    pub fn bot_token(&self) -> &str {
        &self.core.token
    }
    pub fn bot_user_id(&self) -> u64 {
        self.core.bot_id
    }
    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    pub fn add_guild(&self, guild: &Value) -> Result<Value, DiscordError> {
        self.core.mutate(|st| st.add_guild(guild))
    }
    pub fn remove_guild(&self, guild_id: u64) -> Result<Value, DiscordError> {
        self.core.mutate(|st| st.remove_guild(guild_id))
    }
    /// The GUILD_CREATE payload a session with every intent gets for `guild_id` (what a
    /// client's directory of guilds is built from).
    pub fn guild_create_payload(&self, guild_id: u64) -> Option<Value> {
        let params = gateway::hub::SessionParams {
            intents: u64::MAX,
            large_threshold: 250,
            shard_id: 0,
            shard_count: 1,
        };
        self.core.read(|st| {
            st.guilds.get(&guild_id)?;
            serde_json::from_str(&gateway::hub::render_guild_create(st, guild_id, &params)).ok()
        })
    }

    /// `update`: `{"name"?, "owner_id"?}`; emits GUILD_UPDATE.
    pub fn update_guild(&self, guild_id: u64, update: &Value) -> Result<Value, DiscordError> {
        self.core.mutate(|st| st.update_guild(guild_id, update))
    }
    /// The guild goes unavailable (GUILD_DELETE `unavailable: true`) until
    /// [`Self::end_outage`] (GUILD_CREATE).
    pub fn start_outage(&self, guild_id: u64) -> Result<Value, DiscordError> {
        self.core.mutate(|st| st.start_outage(guild_id))
    }
    pub fn end_outage(&self, guild_id: u64) -> Result<Value, DiscordError> {
        self.core.mutate(|st| st.end_outage(guild_id))
    }
    /// `member`: `{"user": {"id", "username", "bot"?}, "roles": [...]}`.
    pub fn add_member(&self, guild_id: u64, member: &Value) -> Result<Value, DiscordError> {
        self.core.mutate(|st| st.add_member(guild_id, member))
    }
    /// `update`: `{"roles": [...]}` and/or `{"nick": ...}`.
    pub fn update_member(
        &self,
        guild_id: u64,
        user_id: u64,
        update: &Value,
    ) -> Result<Value, DiscordError> {
        self.core
            .mutate(|st| st.update_member(guild_id, user_id, update))
    }
    pub fn remove_member(&self, guild_id: u64, user_id: u64) -> Result<Value, DiscordError> {
        self.core.mutate(|st| st.remove_member(guild_id, user_id))
    }
    /// Adds `count` plain members (ids `first_id..`) without emitting events: large-guild
    /// fixtures.
    pub fn bulk_add_members(
        &self,
        guild_id: u64,
        first_id: u64,
        count: u64,
    ) -> Result<usize, DiscordError> {
        self.bulk_add_members_with_roles(guild_id, first_id, count, &[])
    }
    /// Adds `count` members with ids from `first_id`, each holding `roles`, without a
    /// dispatch each (as if they had joined before the bot connected).
    pub fn bulk_add_members_with_roles(
        &self,
        guild_id: u64,
        first_id: u64,
        count: u64,
        roles: &[u64],
    ) -> Result<usize, DiscordError> {
        let users = (0..count)
            .map(|i| User {
                id: first_id + i,
                username: format!("member{}", first_id + i),
                global_name: None,
                avatar: None,
                bot: false,
            })
            .collect();
        let mut st = self.core.lock();
        st.bulk_add_members(guild_id, users, roles)
    }
    /// The non-bot members who can view `channel_id` now, by the sandbox's own permission
    /// calculator: the truth a seat count is checked against.
    pub fn members_who_can_view(&self, channel_id: u64) -> Result<Vec<u64>, DiscordError> {
        self.core.read(|st| {
            let gid = *st
                .channel_guild
                .get(&channel_id)
                .ok_or_else(DiscordError::unknown_channel)?;
            let g = st
                .guilds
                .get(&gid)
                .ok_or_else(DiscordError::unknown_guild)?;
            let ch = g
                .channels
                .get(&channel_id)
                .ok_or_else(DiscordError::unknown_channel)?;
            let mut ids: Vec<u64> = g
                .members
                .keys()
                .copied()
                .filter(|u| !st.users.get(u).is_some_and(|user| user.bot))
                .filter(|u| perms::channel_permissions(g, ch, *u) & (1 << 10) != 0)
                .collect();
            ids.sort_unstable();
            Ok(ids)
        })
    }
    /// `role`: `{"id"?, "name", "permissions", "position"?, ...}`.
    pub fn create_role(&self, guild_id: u64, role: &Value) -> Result<Value, DiscordError> {
        self.core.mutate(|st| st.create_role(guild_id, role))
    }
    pub fn update_role(
        &self,
        guild_id: u64,
        role_id: u64,
        update: &Value,
    ) -> Result<Value, DiscordError> {
        self.core
            .mutate(|st| st.update_role(guild_id, role_id, update))
    }
    pub fn delete_role(&self, guild_id: u64, role_id: u64) -> Result<Value, DiscordError> {
        self.core.mutate(|st| st.delete_role(guild_id, role_id))
    }
    /// `overwrite`: `{"type": 0|1, "allow": "...", "deny": "..."}`.
    pub fn put_overwrite(
        &self,
        channel_id: u64,
        overwrite_id: u64,
        overwrite: &Value,
    ) -> Result<Value, DiscordError> {
        self.core
            .mutate(|st| st.put_overwrite(channel_id, overwrite_id, overwrite))
    }
    pub fn delete_overwrite(
        &self,
        channel_id: u64,
        overwrite_id: u64,
    ) -> Result<Value, DiscordError> {
        self.core
            .mutate(|st| st.delete_overwrite(channel_id, overwrite_id))
    }
    /// `channel`: `{"id"?, "name", "type"?, "permission_overwrites"?, ...}`.
    pub fn create_channel(&self, guild_id: u64, channel: &Value) -> Result<Value, DiscordError> {
        self.core.mutate(|st| st.create_channel(guild_id, channel))
    }
    pub fn update_channel(&self, channel_id: u64, update: &Value) -> Result<Value, DiscordError> {
        self.core.mutate(|st| st.update_channel(channel_id, update))
    }
    pub fn delete_channel(&self, channel_id: u64) -> Result<Value, DiscordError> {
        self.core.mutate(|st| st.delete_channel(channel_id))
    }
    /// Posts as a user: `{"author": {"id", "username"}, "content", "embeds"?, "attachments"?}`.
    /// An attachment `{"filename", "content_base64", "content_type"?}` is hosted and becomes a
    /// full attachment object with a CDN url; other entries are stored as given.
    pub fn post_message(&self, channel_id: u64, message: &Value) -> Result<Value, DiscordError> {
        control::post_message(&self.core, channel_id, message)
    }
    /// The bytes of a hosted attachment (uploaded or posted with `content_base64`).
    pub fn attachment_bytes(&self, attachment_id: u64) -> Option<Vec<u8>> {
        self.core
            .read(|st| st.files.get(&attachment_id).map(|f| f.data.to_vec()))
    }
    /// Changes the largest file a message upload may carry (413 / 40005 above it).
    pub fn set_max_upload_bytes(&self, bytes: u64) {
        self.core.set_max_upload_bytes(bytes);
    }
    pub fn edit_message(
        &self,
        channel_id: u64,
        message_id: u64,
        edit: &Value,
    ) -> Result<Value, DiscordError> {
        self.core
            .mutate(|st| st.edit_message(channel_id, message_id, edit))
    }
    pub fn delete_message(&self, channel_id: u64, message_id: u64) -> Result<(), DiscordError> {
        self.core
            .mutate(|st| st.delete_message(channel_id, message_id))
            .map(|_| ())
    }
    /// Every message of the channel, oldest first: the bot's, webhooks' and users', with
    /// `nonce`, `webhook_id`, `edited_timestamp` and a `deleted` flag.
    pub fn messages(&self, channel_id: u64) -> Result<Vec<Value>, DiscordError> {
        self.core.read(|st| st.channel_log(channel_id))
    }
    /// How many messages a channel has had, deleted ones included (cheap: no JSON).
    pub fn message_count(&self, channel_id: u64) -> usize {
        self.core
            .read(|st| st.channel_messages.get(&channel_id).map_or(0, Vec::len))
    }
    pub fn add_fault(&self, fault: Fault) {
        self.core.faults.add(fault);
    }
    pub fn clear_faults(&self) {
        self.core.faults.clear();
    }
    /// `{"requests", "rate_limited", "invalid"}` the REST API answered since start or reset.
    pub fn stats(&self) -> Value {
        self.core.stats.json()
    }
    pub fn reset_stats(&self) {
        self.core.stats.reset();
    }
    pub fn set_rate_limits(&self, config: RateLimitConfig) {
        self.core.limits.set_config(config);
    }
    /// Closes every gateway socket (close 4000); sessions stay resumable and buffer events.
    pub fn drop_gateway_connections(&self) -> usize {
        self.core.hub.drop_connections()
    }
    /// Forgets every gateway session; connected clients get op 9 `false`.
    pub fn invalidate_sessions(&self) -> usize {
        self.core.hub.invalidate_sessions()
    }
    /// Gateway sockets currently attached to a session.
    pub fn connected_sessions(&self) -> usize {
        self.core.hub.connected_count()
    }

    /// Stops serving and closes gateway connections.
    pub async fn shutdown(mut self) {
        let _ = self.core.shutdown.send(true);
        self.core.hub.close_all();
        self.server.stop(true).await;
        if let Some(join) = self.join.take() {
            let _ = join.await;
        }
    }
}

impl Drop for SandboxHandle {
    fn drop(&mut self) {
        if self.join.is_some() {
            let _ = self.core.shutdown.send(true);
            self.core.hub.close_all();
            let server = self.server.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move { server.stop(false).await });
            }
        }
    }
}
