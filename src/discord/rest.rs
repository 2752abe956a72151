//! The Discord port's serenity adapter for message delivery.
//!
//! Requests are routed, authorised and proxied by serenity's own `Request` and `Route` (so
//! a sandbox base URL works exactly as for the rest of serenity), but the response is read
//! here: with serenity's ratelimiter disabled (required against a non-Discord base URL), a
//! 429 comes back as an error whose `retry_after` serenity does not keep, and the mirror
//! must reschedule by it rather than guess.

use std::{sync::Arc, time::Duration};

use serde_json::{json, Value};
use serenity::{
    http::{Http, LightMethod, Request, Route},
    model::id::{ChannelId, MessageId, WebhookId},
};

use super::invalid_guard::InvalidRequestGuard;
use super::limiter::{headers_of, Priority, RestLimiter};
use super::port::{
    ChannelMessage, DiscordError, DiscordPort, DiscordResult, OutgoingFile, OutgoingMessage,
    Persona, WebhookCredentials,
};
use crate::domain::rate_limits::{Limited, RouteKey};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

// The routes the service calls, as the rate limits name them (method and template).
const MESSAGE_CREATE: &str = "POST /channels/{channel_id}/messages";
const MESSAGE_EDIT: &str = "PATCH /channels/{channel_id}/messages/{message_id}";
const MESSAGE_DELETE: &str = "DELETE /channels/{channel_id}/messages/{message_id}";
const MESSAGES_READ: &str = "GET /channels/{channel_id}/messages";
const CHANNEL_READ: &str = "GET /channels/{channel_id}";
const WEBHOOK_CREATE: &str = "POST /channels/{channel_id}/webhooks";
const WEBHOOK_EXECUTE: &str = "POST /webhooks/{webhook_id}/{webhook_token}";
const WEBHOOK_MESSAGE_EDIT: &str =
    "PATCH /webhooks/{webhook_id}/{webhook_token}/messages/{message_id}";
const WEBHOOK_MESSAGE_DELETE: &str =
    "DELETE /webhooks/{webhook_id}/{webhook_token}/messages/{message_id}";
const GUILD_READ: &str = "GET /guilds/{guild_id}";
const GUILD_CHANNELS_READ: &str = "GET /guilds/{guild_id}/channels";
const MEMBERS_READ: &str = "GET /guilds/{guild_id}/members";
const MEMBERS_SEARCH: &str = "GET /guilds/{guild_id}/members/search";

pub struct SerenityRest {
    http: Arc<Http>,
    client: reqwest::Client,
    guard: Arc<InvalidRequestGuard>,
    limiter: RestLimiter,
}

/// Member paging, guild structure and catch-up: they yield to deliveries.
const BACKGROUND: Priority = Priority::Background;
const DELIVERY: Priority = Priority::Delivery;

impl SerenityRest {
    /// `global_per_sec`: the bot token's global limit (Discord's is 50 per second).
    pub fn new(http: Arc<Http>, guard: Arc<InvalidRequestGuard>, global_per_sec: u32) -> Self {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .unwrap_or_default();
        Self {
            http,
            client,
            guard,
            limiter: RestLimiter::new(global_per_sec),
        }
    }

    pub fn invalid_requests(&self) -> &Arc<InvalidRequestGuard> {
        &self.guard
    }

    /// Requests per second this process may send in all (its share of the token's limit).
    pub fn global_per_sec(&self) -> u32 {
        self.limiter.global_per_sec()
    }

    pub fn set_global_per_sec(&self, per_sec: u32) {
        self.limiter.set_global_per_sec(per_sec);
    }

    /// The one limiter every call of this process goes through.
    pub fn limiter(&self) -> &RestLimiter {
        &self.limiter
    }

    async fn channel(
        &self,
        channel_id: u64,
        priority: Priority,
    ) -> DiscordResult<serenity::model::channel::Channel> {
        self.call_as(
            (RouteKey::new(CHANNEL_READ, channel_id), priority),
            Route::Channel {
                channel_id: ChannelId::new(channel_id),
            },
            None,
        )
        .await
    }

    /// A source channel's messages after `after`, oldest first as Discord pages them (at most
    /// `limit`), as serenity's model: for catch-up, through the limiter.
    pub async fn history_after(
        &self,
        channel_id: u64,
        after: u64,
        limit: u8,
    ) -> DiscordResult<Vec<serenity::model::channel::Message>> {
        self.call_as(
            (RouteKey::new(MESSAGES_READ, channel_id), BACKGROUND),
            Route::ChannelMessages {
                channel_id: ChannelId::new(channel_id),
            },
            Some(vec![
                ("after", after.to_string()),
                ("limit", limit.clamp(1, 100).to_string()),
            ]),
        )
        .await
    }

    async fn call(
        &self,
        limit: (RouteKey, Priority),
        route: Route<'_>,
        method: LightMethod,
        body: Option<Value>,
        params: Option<Vec<(&'static str, String)>>,
    ) -> DiscordResult<Option<Value>> {
        let bytes = self.call_bytes(limit, route, method, body, params).await?;
        Ok(Self::json(&bytes))
    }

    /// [`Self::call`] read into a type of serenity's model.
    async fn call_as<T: serde::de::DeserializeOwned>(
        &self,
        limit: (RouteKey, Priority),
        route: Route<'_>,
        params: Option<Vec<(&'static str, String)>>,
    ) -> DiscordResult<T> {
        let bytes = self
            .call_bytes(limit, route, LightMethod::Get, None, params)
            .await?;
        serde_json::from_slice(&bytes)
            .map_err(|err| DiscordError::Transient(format!("answer not understood: {err}")))
    }

    /// [`Self::call`] without reading the answer as JSON: for bodies read into types of
    /// their own (a page of 1000 members as `serde_json::Value` costs ten times its size).
    async fn call_bytes(
        &self,
        (key, priority): (RouteKey, Priority),
        route: Route<'_>,
        method: LightMethod,
        body: Option<Value>,
        params: Option<Vec<(&'static str, String)>>,
    ) -> DiscordResult<bytes::Bytes> {
        let body = body.map(|b| b.to_string().into_bytes());
        let request = Request::new(route, method)
            .body(body)
            .params(params)
            .build(&self.client, self.http.token(), self.http.proxy.as_deref())
            .map_err(|err| DiscordError::Transient(format!("request not built: {err}")))?;
        self.guard.before_request().await;
        let permit = self.limiter.acquire(key, priority).await;
        self.read(request.send().await, permit).await
    }

    /// One List Guild Members page, as bytes: read for seats or for names.
    async fn member_page(
        &self,
        guild_id: u64,
        after: u64,
        limit: u16,
    ) -> DiscordResult<bytes::Bytes> {
        let route = Route::GuildMembers {
            guild_id: serenity::model::id::GuildId::new(guild_id),
        };
        let params = vec![
            ("limit", limit.clamp(1, 1000).to_string()),
            ("after", after.to_string()),
        ];
        self.call_bytes(
            (RouteKey::new(MEMBERS_READ, guild_id), BACKGROUND),
            route,
            LightMethod::Get,
            None,
            Some(params),
        )
        .await
    }

    fn json(bytes: &[u8]) -> Option<Value> {
        if bytes.is_empty() {
            None
        } else {
            serde_json::from_slice(bytes).ok()
        }
    }

    /// A message with files: Discord's `payload_json` + `files[N]` form. serenity numbers
    /// every file 0 when its `Request` is used directly, so the form is built here; the URL
    /// is serenity's route with the same base-URL rewrite its `Request::build` does.
    async fn call_with_files(
        &self,
        key: RouteKey,
        route: Route<'_>,
        method: reqwest::Method,
        mut payload: Value,
        files: &[OutgoingFile],
        params: &[(&'static str, &str)],
    ) -> DiscordResult<Option<Value>> {
        let mut url = route.path().into_owned();
        if let Some(base) = self.http.proxy.as_deref() {
            url = url.replace("https://discord.com", base.trim_end_matches('/'));
        }
        payload["attachments"] = files
            .iter()
            .enumerate()
            .map(|(i, f)| json!({"id": i, "filename": f.filename}))
            .collect();
        let mut form = reqwest::multipart::Form::new().text("payload_json", payload.to_string());
        for (i, f) in files.iter().enumerate() {
            let mime = mime_guess::from_path(&f.filename).first_or_octet_stream();
            let part = reqwest::multipart::Part::bytes(f.data.clone())
                .file_name(f.filename.clone())
                .mime_str(mime.essence_str())
                .map_err(|err| DiscordError::Transient(format!("file part not built: {err}")))?;
            form = form.part(format!("files[{i}]"), part);
        }
        let request = self
            .client
            .request(method, &url)
            .query(params)
            .header(reqwest::header::AUTHORIZATION, self.http.token())
            .header(reqwest::header::USER_AGENT, serenity::constants::USER_AGENT)
            .multipart(form);
        self.guard.before_request().await;
        let permit = self.limiter.acquire(key, DELIVERY).await;
        Ok(Self::json(&self.read(request.send().await, permit).await?))
    }

    /// The body of a 2xx answer; anything else in the port's terms.
    async fn read(
        &self,
        sent: Result<reqwest::Response, reqwest::Error>,
        permit: super::limiter::Permit<'_>,
    ) -> DiscordResult<bytes::Bytes> {
        let response = sent
            // Webhook URLs carry their token: never let one into a log line.
            .map_err(|err| DiscordError::Transient(err.without_url().to_string()))?;
        let status = response.status().as_u16();
        self.guard.after_answer(status);
        let header_retry = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<f64>().ok());
        let header_global = response.headers().contains_key("x-ratelimit-global");
        let scope = response
            .headers()
            .get("x-ratelimit-scope")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let headers = response.headers().clone();
        let bytes = response
            .bytes()
            .await
            .map_err(|err| DiscordError::Transient(err.without_url().to_string()))?;
        if (200..300).contains(&status) {
            permit.answered(&headers_of(&headers, None));
            return Ok(bytes);
        }
        let json = Self::json(&bytes);
        let field = |name: &str| json.as_ref().and_then(|j| j.get(name).cloned());
        let code = field("code").and_then(|v| v.as_i64()).unwrap_or(0);
        let message = field("message")
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let retry_after = field("retry_after")
            .and_then(|v| v.as_f64())
            .or(header_retry);
        let global = field("global")
            .and_then(|v| v.as_bool())
            .unwrap_or(header_global)
            || scope.as_deref() == Some("global");
        let limited = (status == 429).then(|| Limited {
            retry_after: crate::domain::backoff::rate_limit_wait(retry_after),
            global,
            shared: scope.as_deref() == Some("shared"),
        });
        permit.answered(&headers_of(&headers, limited));
        Err(DiscordError::from_status(
            status,
            code,
            &message,
            retry_after,
            global,
        ))
    }
}

fn message_body(message: &OutgoingMessage) -> Value {
    let mut body = json!({
        "content": message.content,
        "embeds": message.embeds,
        // Mirrored text must not ping a customer server's @everyone or roles.
        "allowed_mentions": {"parse": []},
    });
    if let Some(reply) = message.reply_to {
        body["message_reference"] =
            json!({"message_id": reply.to_string(), "fail_if_not_exists": false});
    }
    body
}

/// An edit's body: the text and embeds, pinging no one (files stay as they were).
fn edit_body(message: &OutgoingMessage) -> Value {
    json!({"content": message.content, "embeds": message.embeds, "allowed_mentions": {"parse": []}})
}

fn message_id(json: Option<Value>) -> DiscordResult<u64> {
    json.as_ref()
        .and_then(|j| j.get("id"))
        .and_then(|v| v.as_str())
        .and_then(crate::domain::snowflake::parse)
        .ok_or_else(|| DiscordError::Transient("response without a message id".into()))
}

#[async_trait::async_trait]
impl DiscordPort for SerenityRest {
    fn sends_per_sec(&self) -> Option<u32> {
        Some(self.limiter.global_per_sec())
    }

    async fn create_message(
        &self,
        channel_id: u64,
        message: &OutgoingMessage,
        nonce: &str,
    ) -> DiscordResult<u64> {
        let mut body = message_body(message);
        body["nonce"] = json!(nonce);
        body["enforce_nonce"] = json!(true);
        let route = Route::ChannelMessages {
            channel_id: ChannelId::new(channel_id),
        };
        if !message.files.is_empty() {
            return message_id(
                self.call_with_files(
                    RouteKey::new(MESSAGE_CREATE, channel_id),
                    route,
                    reqwest::Method::POST,
                    body,
                    &message.files,
                    &[],
                )
                .await?,
            );
        }
        message_id(
            self.call(
                (RouteKey::new(MESSAGE_CREATE, channel_id), DELIVERY),
                route,
                LightMethod::Post,
                Some(body),
                None,
            )
            .await?,
        )
    }

    async fn edit_message(
        &self,
        channel_id: u64,
        message_id: u64,
        message: &OutgoingMessage,
    ) -> DiscordResult<()> {
        let route = Route::ChannelMessage {
            channel_id: ChannelId::new(channel_id),
            message_id: MessageId::new(message_id),
        };
        let body = edit_body(message);
        self.call(
            (RouteKey::new(MESSAGE_EDIT, channel_id), DELIVERY),
            route,
            LightMethod::Patch,
            Some(body),
            None,
        )
        .await
        .map(|_| ())
    }

    async fn delete_message(&self, channel_id: u64, message_id: u64) -> DiscordResult<()> {
        let route = Route::ChannelMessage {
            channel_id: ChannelId::new(channel_id),
            message_id: MessageId::new(message_id),
        };
        self.call(
            (RouteKey::new(MESSAGE_DELETE, channel_id), DELIVERY),
            route,
            LightMethod::Delete,
            None,
            None,
        )
        .await
        .map(|_| ())
    }

    async fn create_webhook(
        &self,
        channel_id: u64,
        name: &str,
    ) -> DiscordResult<WebhookCredentials> {
        let route = Route::ChannelWebhooks {
            channel_id: ChannelId::new(channel_id),
        };
        let json = self
            .call(
                (RouteKey::new(WEBHOOK_CREATE, channel_id), DELIVERY),
                route,
                LightMethod::Post,
                Some(json!({"name": name})),
                None,
            )
            .await?;
        let id = json
            .as_ref()
            .and_then(|j| j.get("id"))
            .and_then(|v| v.as_str())
            .and_then(crate::domain::snowflake::parse);
        let token = json
            .as_ref()
            .and_then(|j| j.get("token"))
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        match (id, token) {
            (Some(id), Some(token)) => {
                crate::redact::hide(&token);
                Ok(WebhookCredentials { id, token })
            }
            _ => Err(DiscordError::Transient(
                "webhook response without id or token".into(),
            )),
        }
    }

    async fn execute_webhook(
        &self,
        webhook: &WebhookCredentials,
        message: &OutgoingMessage,
        persona: &Persona,
    ) -> DiscordResult<u64> {
        let mut body = message_body(message);
        body["username"] = json!(persona.username);
        if let Some(avatar) = &persona.avatar_url {
            body["avatar_url"] = json!(avatar);
        }
        let route = Route::WebhookWithToken {
            webhook_id: WebhookId::new(webhook.id),
            token: &webhook.token,
        };
        if !message.files.is_empty() {
            return message_id(
                self.call_with_files(
                    RouteKey::new(WEBHOOK_EXECUTE, webhook.id),
                    route,
                    reqwest::Method::POST,
                    body,
                    &message.files,
                    &[("wait", "true")],
                )
                .await?,
            );
        }
        let json = self
            .call(
                (RouteKey::new(WEBHOOK_EXECUTE, webhook.id), DELIVERY),
                route,
                LightMethod::Post,
                Some(body),
                Some(vec![("wait", "true".to_owned())]),
            )
            .await?;
        message_id(json)
    }

    async fn messages_after(
        &self,
        channel_id: u64,
        after: u64,
    ) -> DiscordResult<Vec<ChannelMessage>> {
        let route = Route::ChannelMessages {
            channel_id: ChannelId::new(channel_id),
        };
        let json = self
            .call(
                (RouteKey::new(MESSAGES_READ, channel_id), BACKGROUND),
                route,
                LightMethod::Get,
                None,
                Some(vec![
                    ("after", after.to_string()),
                    ("limit", "100".to_owned()),
                ]),
            )
            .await?;
        let list = json
            .as_ref()
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        Ok(list
            .iter()
            .filter_map(|m| {
                Some(ChannelMessage {
                    id: m["id"].as_str().and_then(crate::domain::snowflake::parse)?,
                    webhook_id: m["webhook_id"]
                        .as_str()
                        .and_then(crate::domain::snowflake::parse),
                    content: m["content"].as_str().unwrap_or_default().to_owned(),
                })
            })
            .collect())
    }

    async fn channel_guild(&self, channel_id: u64) -> DiscordResult<Option<u64>> {
        use serenity::model::channel::Channel;
        match self.channel(channel_id, DELIVERY).await {
            Ok(Channel::Guild(c)) => Ok(Some(c.guild_id.get())),
            Ok(_) => Ok(None),
            Err(
                DiscordError::UnknownChannel
                | DiscordError::MissingAccess
                | DiscordError::MissingPermissions,
            ) => Ok(None),
            Err(other) => Err(other),
        }
    }

    async fn edit_webhook_message(
        &self,
        webhook: &WebhookCredentials,
        message_id: u64,
        message: &OutgoingMessage,
    ) -> DiscordResult<()> {
        let route = Route::WebhookMessage {
            webhook_id: WebhookId::new(webhook.id),
            token: &webhook.token,
            message_id: MessageId::new(message_id),
        };
        let body = edit_body(message);
        self.call(
            (RouteKey::new(WEBHOOK_MESSAGE_EDIT, webhook.id), DELIVERY),
            route,
            LightMethod::Patch,
            Some(body),
            None,
        )
        .await
        .map(|_| ())
    }

    async fn delete_webhook_message(
        &self,
        webhook: &WebhookCredentials,
        message_id: u64,
    ) -> DiscordResult<()> {
        let route = Route::WebhookMessage {
            webhook_id: WebhookId::new(webhook.id),
            token: &webhook.token,
            message_id: MessageId::new(message_id),
        };
        self.call(
            (RouteKey::new(WEBHOOK_MESSAGE_DELETE, webhook.id), DELIVERY),
            route,
            LightMethod::Delete,
            None,
            None,
        )
        .await
        .map(|_| ())
    }
}

/// serenity's errors in the port's terms.
pub fn from_serenity(err: serenity::Error) -> DiscordError {
    use serenity::http::HttpError;
    match err {
        serenity::Error::Http(HttpError::UnsuccessfulRequest(resp)) => DiscordError::from_status(
            resp.status_code.as_u16(),
            resp.error.code as i64,
            &resp.error.message,
            None,
            false,
        ),
        // A transport error quotes the URL, and a webhook's URL holds its token.
        other => DiscordError::Transient(crate::redact::text(&other.to_string())),
    }
}

/// A member of a List Guild Members page, read straight into what a seat needs.
#[derive(serde::Deserialize)]
struct PageMember {
    user: PageUser,
    #[serde(default)]
    roles: Vec<String>,
}

#[derive(serde::Deserialize)]
struct PageUser {
    id: String,
    #[serde(default)]
    bot: bool,
}

/// A member of a page, read for its names.
#[derive(serde::Deserialize)]
struct NamedMember {
    user: NamedUser,
    #[serde(default)]
    nick: Option<String>,
}

#[derive(serde::Deserialize)]
struct NamedUser {
    id: String,
    username: String,
    #[serde(default)]
    global_name: Option<String>,
}

fn member_names(bytes: &[u8]) -> DiscordResult<Vec<super::port::MemberName>> {
    let page: Vec<NamedMember> = serde_json::from_slice(bytes)
        .map_err(|err| DiscordError::Transient(format!("member page not understood: {err}")))?;
    Ok(page
        .into_iter()
        .filter_map(|m| {
            let user_id = crate::domain::snowflake::parse(&m.user.id)?;
            let display_name = m
                .nick
                .or(m.user.global_name)
                .unwrap_or_else(|| m.user.username.clone());
            Some(super::port::MemberName {
                user_id,
                username: m.user.username,
                display_name,
            })
        })
        .collect())
}

#[async_trait::async_trait]
impl super::port::GuildReader for SerenityRest {
    async fn guild_structure(
        &self,
        guild_id: u64,
        targets: &[u64],
    ) -> DiscordResult<(crate::domain::seats::GuildSnapshot, Option<u64>)> {
        use crate::domain::seats::{ChannelSnapshot, GuildSnapshot, RoleSnapshot, ThreadSnapshot};
        use serenity::model::{channel::Channel, id::GuildId};

        let id = GuildId::new(guild_id);
        let guild: serenity::model::guild::PartialGuild = self
            .call_as(
                (RouteKey::new(GUILD_READ, guild_id), BACKGROUND),
                Route::Guild { guild_id: id },
                Some(vec![("with_counts", "true".to_owned())]),
            )
            .await?;
        let channels: Vec<serenity::model::channel::GuildChannel> = self
            .call_as(
                (RouteKey::new(GUILD_CHANNELS_READ, guild_id), BACKGROUND),
                Route::GuildChannels { guild_id: id },
                None,
            )
            .await?;
        let mut threads = Vec::new();
        // A target that is not a channel of the guild is a thread (judged by its parent), or
        // gone. Active threads come with GUILD_CREATE; an archived one only from here.
        for target in targets {
            if channels.iter().any(|c| c.id.get() == *target) {
                continue;
            }
            match self.channel(*target, BACKGROUND).await {
                Ok(Channel::Guild(c)) if c.guild_id == id => {
                    if let Some(parent) = c.parent_id {
                        threads.push(ThreadSnapshot {
                            id: c.id.get(),
                            parent_id: parent.get(),
                        });
                    }
                }
                Ok(_) => {}
                Err(
                    DiscordError::UnknownChannel
                    | DiscordError::MissingAccess
                    | DiscordError::MissingPermissions,
                ) => {}
                Err(other) => return Err(other),
            }
        }
        let snapshot = GuildSnapshot {
            guild_id,
            owner_id: guild.owner_id.get(),
            roles: guild
                .roles
                .values()
                .map(|r| RoleSnapshot {
                    id: r.id.get(),
                    permissions: r.permissions.bits(),
                })
                .collect(),
            channels: channels
                .iter()
                .map(|c| ChannelSnapshot {
                    id: c.id.get(),
                    overwrites: crate::domain::seats::overwrites_from_serenity(
                        &c.permission_overwrites,
                    ),
                })
                .collect(),
            threads,
            members: Vec::new(),
        };
        Ok((snapshot, guild.approximate_member_count))
    }

    async fn members_after(
        &self,
        guild_id: u64,
        after: u64,
        limit: u16,
    ) -> DiscordResult<Vec<crate::domain::seats::MemberSnapshot>> {
        use crate::domain::{seats::MemberSnapshot, snowflake};

        let bytes = self.member_page(guild_id, after, limit).await?;
        let page: Vec<PageMember> = serde_json::from_slice(&bytes)
            .map_err(|err| DiscordError::Transient(format!("member page not understood: {err}")))?;
        Ok(page
            .into_iter()
            .filter_map(|m| {
                Some(MemberSnapshot {
                    user_id: snowflake::parse(&m.user.id)?,
                    roles: m.roles.iter().filter_map(|r| snowflake::parse(r)).collect(),
                    is_bot: m.user.bot,
                })
            })
            .collect())
    }

    async fn member_names_after(
        &self,
        guild_id: u64,
        after: u64,
        limit: u16,
    ) -> DiscordResult<Vec<super::port::MemberName>> {
        member_names(&self.member_page(guild_id, after, limit).await?)
    }

    async fn search_members(
        &self,
        guild_id: u64,
        query: &str,
        limit: u16,
    ) -> DiscordResult<Vec<super::port::MemberName>> {
        let route = Route::GuildMembersSearch {
            guild_id: serenity::model::id::GuildId::new(guild_id),
        };
        let params = vec![
            ("query", query.to_owned()),
            ("limit", limit.clamp(1, 1000).to_string()),
        ];
        let bytes = self
            .call_bytes(
                (RouteKey::new(MEMBERS_SEARCH, guild_id), BACKGROUND),
                route,
                LightMethod::Get,
                None,
                Some(params),
            )
            .await?;
        member_names(&bytes)
    }
}
