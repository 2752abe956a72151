//! Delivery: the send, edit or delete of one job through the Discord port, its webhook, its
//! attachments, and what Discord's answer means for the job.

use super::*;

/// How one delivery attempt ended.
pub(super) enum Delivery {
    Done,
    RateLimited {
        wait: Duration,
        global: bool,
    },
    /// Permanent for the target: mark the mapping broken.
    Broken(ErrorCode),
    /// Retry with backoff.
    Failed(String),
    /// Discord refused the request itself (400): the same payload would be refused again.
    Rejected(String),
    /// The webhook vanished; it is forgotten and the job runs again at once.
    WebhookGone,
}

/// What a delivery changes in the stored links.
pub(super) enum LinkChange {
    None,
    Add(NewLink),
    Remove,
    /// An edit changed how many messages the copy takes: the link is written again.
    Replace(NewLink),
}

/// Where a delivered copy is and what posted it (its webhook, when the mapping's still knows
/// it; else the bot edits and deletes it).
pub(super) struct PlacedCopy {
    channel: u64,
    webhook: Option<WebhookCredentials>,
}

impl Worker {
    /// The mapping's webhook in `channel`: this worker's latest word on it, else the stored
    /// one if the mapping still targets that channel.
    pub(super) fn webhook_of(
        &self,
        mapping: &connector_mappings::Model,
        channel: u64,
    ) -> Option<WebhookCredentials> {
        if let Some(known) = self
            .webhooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(mapping.id, channel))
        {
            return known.clone();
        }
        if snowflake::from_db(mapping.target_channel_id) != channel {
            return None;
        }
        match (mapping.webhook_id, mapping.webhook_token.clone()) {
            (Some(id), Some(token)) => Some(WebhookCredentials {
                id: snowflake::from_db(id),
                token,
            }),
            _ => None,
        }
    }

    pub(super) async fn remember_webhook(
        &self,
        mapping: &connector_mappings::Model,
        channel: u64,
        creds: Option<WebhookCredentials>,
    ) -> AppResult<()> {
        // The mapping row holds the webhook of the channel it targets now; one of an older
        // channel is known from service_webhooks.
        if snowflake::from_db(mapping.target_channel_id) == channel {
            self.store
                .set_webhook(
                    mapping,
                    creds.as_ref().map(|c| (c.id, c.token.clone())),
                    now_ms(),
                )
                .await?;
        }
        self.webhooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((mapping.id, channel), creds);
        Ok(())
    }

    /// The credentials of the webhook that posted a copy: the mapping's own, or (the mapping
    /// moved to another channel since) the one the service recorded when it created it.
    pub(super) async fn webhook_of_link(
        &self,
        mapping: &connector_mappings::Model,
        linked: u64,
    ) -> AppResult<Option<WebhookCredentials>> {
        let current = snowflake::from_db(mapping.target_channel_id);
        if let Some(current) = self.webhook_of(mapping, current).filter(|c| c.id == linked) {
            return Ok(Some(current));
        }
        Ok(self
            .store
            .service_webhook(linked)
            .await?
            .map(|(id, token)| WebhookCredentials { id, token }))
    }

    pub(super) async fn deliver(
        &self,
        prepared: &Prepared,
        kind: JobKind,
        mapping: &connector_mappings::Model,
    ) -> AppResult<(Delivery, LinkChange)> {
        let job = &prepared.job;
        if let Some(code) = mapping.broken_code.as_deref() {
            // Broken after this job was written: stop, do not retry.
            let code = ErrorCode::parse(code).unwrap_or(ErrorCode::DiscordMissingAccess);
            return Ok((Delivery::Broken(code), LinkChange::None));
        }
        let channel = snowflake::from_db(job.target_channel_id);
        let source_message = snowflake::from_db(job.source_message_id);
        let payload = prepared
            .payload
            .as_ref()
            .map_err(|e| AppError::new(ErrorCode::ValidationFailed, e.clone()))?;
        let webhook = self.webhook_of(mapping, channel);
        let via_webhook = mapping.delivery_mode == "webhook";
        let carry = plan_attachments(&payload.attachments, self.cfg.attachment_limit_bytes);
        let mut message = OutgoingMessage {
            content: payload.rendered_content(&carry),
            embeds: payload.embeds.clone(),
            reply_to: None,
            files: Vec::new(),
        };
        let result = match kind {
            JobKind::Send => {
                // A worker that sent and stored the link but died before completing the job
                // leaves the link behind: the message is out, do not send it again (webhooks
                // have no nonce to catch the repeat).
                // A retried job may have been delivered by its earlier claim after this batch
                // read the links: ask the database again.
                let fetched = match &prepared.link {
                    None if job.attempts > 1 => self.store.link(mapping.id, source_message).await?,
                    _ => None,
                };
                let link = prepared.link.as_ref().or(fetched.as_ref());
                let landed = link.is_some()
                    || self
                        .recent_links
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .contains_key(&(mapping.id, source_message));
                if landed {
                    return Ok((Delivery::Done, LinkChange::None));
                }
                message.reply_to = prepared.reply_target;
                let mut carry = match self.download(job.id, payload, carry).await {
                    Ok((carry, files)) => {
                        message.content = payload.rendered_content(&carry);
                        message.files = files;
                        carry
                    }
                    Err(e) => return Ok((classify(e, kind), LinkChange::None)),
                };
                let webhook = if via_webhook {
                    let creds = match webhook {
                        Some(c) => c,
                        None => match self.port.create_webhook(channel, "seatgate").await {
                            Ok(c) => {
                                self.remember_webhook(mapping, channel, Some(c.clone()))
                                    .await?;
                                c
                            }
                            Err(e) => return Ok((classify(e, kind), LinkChange::None)),
                        },
                    };
                    let persona = Persona {
                        username: webhook_username(&payload.author_name, "seatgate"),
                        avatar_url: payload.author_avatar_url.clone(),
                    };
                    Some((creds, persona))
                } else {
                    None
                };
                let mut sent = self
                    .send_parts(job, mapping.id, channel, webhook.as_ref(), &message)
                    .await?;
                if !message.files.is_empty() && too_large(&sent) {
                    tracing::warn!(
                        job = job.id,
                        files = message.files.len(),
                        "[mirror] the target refused the files as too large; linking them instead"
                    );
                    message.files.clear();
                    carry = vec![Carry::Link; payload.attachments.len()];
                    message.content = payload.rendered_content(&carry);
                    sent = self
                        .send_parts(job, mapping.id, channel, webhook.as_ref(), &message)
                        .await?;
                }
                sent.map(|(ids, webhook_id)| {
                    LinkChange::Add(NewLink {
                        mapping_id: mapping.id,
                        source_message_id: source_message,
                        target_channel_id: channel,
                        target_message_id: ids[0],
                        webhook_id,
                        linked_attachments: linked_at_send(&payload.attachments, &carry),
                        part_message_ids: ids[1..].to_vec(),
                    })
                })
            }
            JobKind::Edit | JobKind::Delete => {
                let Some(link) = &prepared.link else {
                    // Never delivered (cancelled or expired): nothing to change.
                    return Ok((Delivery::Done, LinkChange::None));
                };
                if kind == JobKind::Edit {
                    let carry = carry_as_sent(
                        &payload.attachments,
                        carry,
                        link.linked_attachments.as_deref(),
                    );
                    message.content = payload.rendered_content(&carry);
                }
                // Where the copy is, through what posted it: the mapping may have moved to
                // another channel since.
                let channel = snowflake::from_db(link.target_channel_id);
                let linked_webhook = link.webhook_id.map(snowflake::from_db);
                let creds = match linked_webhook {
                    Some(w) => self.webhook_of_link(mapping, w).await?,
                    None => None,
                };
                let copy = PlacedCopy {
                    channel,
                    webhook: linked_webhook.and(creds),
                };
                let ids = link_message_ids(link);
                if kind == JobKind::Delete {
                    self.delete_parts(&copy, &ids)
                        .await
                        .map(|()| LinkChange::Remove)
                } else {
                    let persona = Persona {
                        username: webhook_username(&payload.author_name, "seatgate"),
                        avatar_url: payload.author_avatar_url.clone(),
                    };
                    match self.edit_parts(job, &copy, &persona, &ids, &message).await {
                        Ok(new_ids) if new_ids != ids => Ok(LinkChange::Replace(NewLink {
                            mapping_id: link.mapping_id,
                            source_message_id: source_message,
                            target_channel_id: channel,
                            target_message_id: new_ids[0],
                            webhook_id: link.webhook_id.map(snowflake::from_db),
                            linked_attachments: link.linked_attachments.clone(),
                            part_message_ids: new_ids[1..].to_vec(),
                        })),
                        Ok(_) => Ok(LinkChange::None),
                        Err(e) => Err(e),
                    }
                }
            }
        };
        Ok(match result {
            Ok(change) => (Delivery::Done, change),
            Err(DiscordError::UnknownWebhook) => {
                self.remember_webhook(mapping, channel, None).await?;
                (Delivery::WebhookGone, LinkChange::None)
            }
            Err(e) => (classify(e, kind), LinkChange::None),
        })
    }

    /// A job's message as one message, or as several when its text is longer than Discord
    /// takes (cut at lines, then words): the reply on the first, embeds and files on the last.
    /// Returns every message's id, in order. A part that fails after others went out through a
    /// webhook takes them back, so that the retry sends the whole again (a webhook has no
    /// nonce); the bot's parts stay, and the retry's nonces find them.
    pub(super) async fn send_parts(
        &self,
        job: &MirrorJob,
        mapping_id: i64,
        channel: u64,
        webhook: Option<&(WebhookCredentials, Persona)>,
        message: &OutgoingMessage,
    ) -> AppResult<Result<(Vec<u64>, Option<u64>), DiscordError>> {
        let texts = split_content(&message.content, MESSAGE_CONTENT_LIMIT);
        if texts.len() == 1 {
            let sent = self
                .send(job, mapping_id, channel, webhook, message, 0)
                .await?;
            return Ok(sent.map(|(id, hook)| (vec![id], hook)));
        }
        let last = texts.len() - 1;
        let mut ids = Vec::with_capacity(texts.len());
        let mut hook = None;
        for (i, content) in texts.into_iter().enumerate() {
            let part = part_of(message, content, i, last);
            match self
                .send(job, mapping_id, channel, webhook, &part, i)
                .await?
            {
                Ok((id, h)) => {
                    ids.push(id);
                    hook = h;
                }
                Err(e) => {
                    if let Some((creds, _)) = webhook {
                        let copy = PlacedCopy {
                            channel,
                            webhook: Some(creds.clone()),
                        };
                        if let Err(undo) = self.delete_parts(&copy, &ids).await {
                            tracing::warn!(job = job.id, error = %undo, "[mirror] parts sent before a failed one not taken back; the retry may repeat them");
                        }
                    }
                    return Ok(Err(e));
                }
            }
        }
        Ok(Ok((ids, hook)))
    }

    /// Deletes every message of a copy; one already gone counts as deleted.
    async fn delete_parts(&self, copy: &PlacedCopy, ids: &[u64]) -> Result<(), DiscordError> {
        for id in ids {
            let r = match &copy.webhook {
                Some(c) => self.port.delete_webhook_message(c, *id).await,
                None => self.port.delete_message(copy.channel, *id).await,
            };
            match r {
                Ok(()) | Err(DiscordError::UnknownMessage) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Edits a copy to `message`'s text, cut into parts as a send would: the parts there are
    /// edited, missing ones are sent after them, surplus ones deleted. Returns the copy's
    /// message ids now. A part gone from the channel is left gone.
    async fn edit_parts(
        &self,
        job: &MirrorJob,
        copy: &PlacedCopy,
        persona: &Persona,
        ids: &[u64],
        message: &OutgoingMessage,
    ) -> Result<Vec<u64>, DiscordError> {
        let texts = split_content(&message.content, MESSAGE_CONTENT_LIMIT);
        let last = texts.len() - 1;
        let mut now_ids = Vec::with_capacity(texts.len());
        for (i, content) in texts.into_iter().enumerate() {
            let part = part_of(message, content, i, last);
            match ids.get(i) {
                Some(id) => {
                    let r = match &copy.webhook {
                        Some(c) => self.port.edit_webhook_message(c, *id, &part).await,
                        None => self.port.edit_message(copy.channel, *id, &part).await,
                    };
                    match r {
                        Ok(()) | Err(DiscordError::UnknownMessage) => now_ids.push(*id),
                        Err(e) => return Err(e),
                    }
                }
                None => {
                    let id = match &copy.webhook {
                        Some(c) => self.port.execute_webhook(c, &part, persona).await?,
                        None => {
                            let nonce = edit_part_nonce(job.id, i);
                            self.port
                                .create_message(copy.channel, &part, &nonce)
                                .await?
                        }
                    };
                    now_ids.push(id);
                }
            }
        }
        if ids.len() > now_ids.len() {
            self.delete_parts(copy, &ids[now_ids.len()..]).await?;
        }
        Ok(now_ids)
    }

    /// One send of a job's message: through the webhook (unless an earlier attempt's message
    /// is found there) or as the bot with the job's nonce. Returns the target message id and
    /// the webhook it went through.
    pub(super) async fn send(
        &self,
        job: &MirrorJob,
        mapping_id: i64,
        channel: u64,
        webhook: Option<&(WebhookCredentials, Persona)>,
        message: &OutgoingMessage,
        part: usize,
    ) -> AppResult<Result<(u64, Option<u64>), DiscordError>> {
        let Some((creds, persona)) = webhook else {
            let nonce = part_nonce(mapping_id, snowflake::from_db(job.source_message_id), part);
            return Ok(self
                .port
                .create_message(channel, message, &nonce)
                .await
                .map(|id| (id, None)));
        };
        let earlier = if job.attempts > 1 {
            self.landed_earlier(job, mapping_id, channel, creds, message)
                .await?
        } else {
            None
        };
        Ok(match earlier {
            Some(id) => Ok((id, Some(creds.id))),
            None => self
                .port
                .execute_webhook(creds, message, persona)
                .await
                .map(|id| (id, Some(creds.id))),
        })
    }

    /// Downloads the attachments `carry` uploads. One that cannot be had (gone, refused,
    /// larger than it said) is linked instead; a CDN that fails for now fails the attempt,
    /// to be retried with backoff.
    pub(super) async fn download(
        &self,
        job_id: i64,
        payload: &MirrorPayload,
        mut carry: Vec<Carry>,
    ) -> Result<(Vec<Carry>, Vec<OutgoingFile>), DiscordError> {
        let mut files = Vec::new();
        for (a, c) in payload.attachments.iter().zip(carry.iter_mut()) {
            if *c != Carry::Upload {
                continue;
            }
            match self
                .fetcher
                .fetch(&a.url, self.cfg.attachment_limit_bytes)
                .await?
            {
                Fetched::Bytes(data) => files.push(OutgoingFile {
                    filename: a.filename.clone(),
                    data,
                }),
                Fetched::Unavailable(why) => {
                    tracing::info!(job = job_id, filename = %a.filename, why = %why, "[mirror] attachment linked, not uploaded");
                    *c = Carry::Link;
                }
            }
        }
        Ok((carry, files))
    }
}

/// Discord's answer to files over the target's upload limit.
pub(super) fn too_large<T>(sent: &Result<T, DiscordError>) -> bool {
    matches!(sent, Err(DiscordError::Rejected { status, code, .. }) if *status == 413 || *code == 40005)
}

pub(super) fn classify(err: DiscordError, _kind: JobKind) -> Delivery {
    match err {
        DiscordError::RateLimited {
            retry_after,
            global,
        } => Delivery::RateLimited {
            wait: retry_after,
            global,
        },
        e if e.breaks_target() => Delivery::Broken(e.code()),
        DiscordError::UnknownWebhook => Delivery::WebhookGone,
        e @ DiscordError::Rejected {
            status: 400 | 413, ..
        } => Delivery::Rejected(format!("{}: {e}", ErrorCode::MirrorPayloadRejected)),
        e => Delivery::Failed(format!("{}: {e}", e.code())),
    }
}

/// Part `i` (of `0..=last`) of a message cut into several: the reply goes with the first, the
/// embeds and files with the last.
fn part_of(message: &OutgoingMessage, content: String, i: usize, last: usize) -> OutgoingMessage {
    OutgoingMessage {
        content,
        embeds: if i == last {
            message.embeds.clone()
        } else {
            Vec::new()
        },
        reply_to: if i == 0 { message.reply_to } else { None },
        files: if i == last {
            message.files.clone()
        } else {
            Vec::new()
        },
    }
}

/// Nonce of a part an edit adds (the edit job's own: a retry of that edit finds it).
fn edit_part_nonce(job_id: i64, part: usize) -> String {
    format!("e{job_id}.{part}")
}
