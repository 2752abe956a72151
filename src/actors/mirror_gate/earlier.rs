//! Finding a retried webhook send's earlier attempt in its target channel. Webhook executes
//! carry no nonce, so a send that reached Discord without its answer reaching us (a crash
//! between the two) is recognised by what it left: the earliest message of our webhook with
//! the job's content, sent after the job was written and linked to no other source message.
//!
//! A lane keeps what it has read of its channel while it runs ([`ChannelScan`]): after a
//! crash every retried job of a lane asks, and re-reading the channel from each job's start
//! cost one page per hundred messages per job (a channel filling while the retries wait made
//! that quadratic: at hundreds of messages a second, a lane spent 100-150 ms per delivery
//! reading pages it had read for the job before).

use super::*;

/// The most pages one look reads: a job that waited while more than this many hundred
/// messages arrived is sent again rather than searched for.
const MAX_PAGES: usize = 20;

/// What a lane has read of its target channel: the webhook messages after `start`, up to
/// `seen_until`.
#[derive(Debug, Default)]
pub(super) struct ChannelScan {
    start: u64,
    seen_until: u64,
    /// (message id, webhook id, content) of webhook messages, in id order.
    messages: Vec<(u64, u64, String)>,
}

impl ChannelScan {
    fn new(start: u64) -> Self {
        Self {
            start,
            seen_until: start,
            ..Self::default()
        }
    }

    /// Whether a look that starts at `start` can use what this scan has read.
    pub(super) fn covers(&self, start: u64) -> bool {
        self.start <= start
    }

    /// Adds one page (Discord's messages right after `seen_until`).
    pub(super) fn add_page(&mut self, page: Vec<ChannelMessage>) {
        self.seen_until = page.iter().map(|m| m.id).max().unwrap_or(self.seen_until);
        let mut webhook: Vec<(u64, u64, String)> = page
            .into_iter()
            .filter_map(|m| m.webhook_id.map(|w| (m.id, w, m.content)))
            .collect();
        webhook.sort_unstable_by_key(|m| m.0);
        self.messages.extend(webhook);
    }

    /// Messages of `webhook` with `content` after `start`, earliest first.
    pub(super) fn candidates(&self, start: u64, webhook: u64, content: &str) -> Vec<u64> {
        self.messages
            .iter()
            .filter(|(id, w, c)| *id > start && *w == webhook && c == content)
            .map(|(id, _, _)| *id)
            .collect()
    }
}

impl Worker {
    /// The earlier attempt's message of a retried webhook send, if one landed. Listing
    /// failures are ignored: the send goes out again.
    pub(super) async fn landed_earlier(
        &self,
        job: &MirrorJob,
        mapping_id: i64,
        channel: u64,
        creds: &WebhookCredentials,
        message: &OutgoingMessage,
    ) -> AppResult<Option<u64>> {
        // The job may have waited in the queue while the channel filled up: read forward
        // from just before it was written (Discord gives the 100 messages after `after`).
        let start = snowflake::at_ms(job.created_at - 1_000);
        let mut scan = self
            .scans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&channel)
            .filter(|s| s.covers(start))
            .unwrap_or_else(|| ChannelScan::new(start));
        // Only this lane reads its channel's scan; it is put back when this look is done.
        for _ in 0..MAX_PAGES {
            let page = match self.port.messages_after(channel, scan.seen_until).await {
                Ok(list) => list,
                Err(err) => {
                    tracing::debug!(job = job.id, error = %err, "[mirror] could not list the target channel before a retried webhook send");
                    return Ok(None);
                }
            };
            let full = page.len() >= 100;
            scan.add_page(page);
            if !full {
                break;
            }
        }
        let candidates = scan.candidates(start, creds.id, &message.content);
        self.scans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(channel, scan);
        for id in candidates {
            if !self.store.is_linked_target(mapping_id, id).await? {
                tracing::info!(
                    job = job.id,
                    target_message = id,
                    "[mirror] an earlier attempt's webhook message found; not sending again"
                );
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// The lane of `channel` ran dry: what it read of the channel is forgotten.
    pub(super) fn forget_scan(&self, channel: u64) {
        self.scans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&channel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: u64, webhook: Option<u64>, content: &str) -> ChannelMessage {
        ChannelMessage {
            id,
            webhook_id: webhook,
            content: content.to_owned(),
        }
    }

    #[test]
    fn a_scan_finds_later_looks_messages_without_reading_them_again() {
        let mut scan = ChannelScan::new(100);
        scan.add_page(vec![
            msg(103, Some(7), "b"),
            msg(101, Some(7), "a"),
            msg(102, None, "a"),
            msg(104, Some(8), "a"),
        ]);
        assert_eq!(
            scan.seen_until, 104,
            "the next page starts after the newest"
        );
        assert_eq!(scan.candidates(100, 7, "a"), vec![101]);
        assert_eq!(
            scan.candidates(101, 7, "a"),
            Vec::<u64>::new(),
            "a job written later does not take an older message"
        );
        assert!(scan.covers(150), "a later job reuses the scan");
        assert!(!scan.covers(99), "an earlier job reads from its own start");
        scan.add_page(vec![msg(106, Some(7), "a"), msg(105, Some(7), "a")]);
        assert_eq!(scan.candidates(100, 7, "a"), vec![101, 105, 106]);
    }
}
