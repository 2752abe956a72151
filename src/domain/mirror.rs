//! Pure parts of mirroring: job kinds, the stored payload, and the nonce that makes a
//! retried send idempotent on Discord's side.

use serde::{Deserialize, Serialize};

use super::gate::JobKind;

/// What a mirror job carries about its source message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MirrorPayload {
    #[serde(default)]
    pub content: String,
    #[serde(default)]
    pub embeds: Vec<serde_json::Value>,
    #[serde(default)]
    pub attachments: Vec<AttachmentRef>,
    /// The source message this one replies to, if any.
    #[serde(default)]
    pub reply_to_source_id: Option<u64>,
    #[serde(default)]
    pub author_name: String,
    #[serde(default)]
    pub author_avatar_url: Option<String>,
    /// Stickers cannot be sent by a bot or a webhook outside their own guild: they are
    /// mirrored as their names and image links.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stickers: Vec<StickerRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StickerRef {
    pub id: u64,
    pub name: String,
    /// Discord's sticker format type: 1 PNG, 2 APNG, 3 LOTTIE, 4 GIF.
    pub format_type: u8,
}

impl StickerRef {
    /// Where Discord serves the sticker
    /// (https://discord.com/developers/docs/reference#image-formatting-cdn-endpoints:
    /// `stickers/{sticker_id}.png|.gif|.json`; GIF stickers from media.discordapp.net).
    pub fn url(&self) -> String {
        match self.format_type {
            4 => format!("https://media.discordapp.net/stickers/{}.gif", self.id),
            3 => format!("https://cdn.discordapp.com/stickers/{}.json", self.id),
            _ => format!("https://cdn.discordapp.com/stickers/{}.png", self.id),
        }
    }
}

/// Discord's limits on a webhook's name and on an execute's `username`
/// (https://discord.com/developers/docs/resources/webhook#create-webhook): 1 to 80
/// characters, and no `clyde` or `discord` in any case.
pub const WEBHOOK_NAME_MAX_CHARS: usize = 80;

/// A persona name Discord accepts for `name`: whitespace trimmed and runs of it collapsed,
/// `clyde` and `discord` written with a Cyrillic letter that looks the same (`е`, `о`), cut
/// to 80 characters; `fallback` when nothing is left.
pub fn webhook_username(name: &str, fallback: &str) -> String {
    let collapsed = name.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = collapsed;
    for (word, at, look_alike) in [("clyde", 4, 'е'), ("discord", 4, 'о')] {
        out = replace_ascii_ci(&out, word, at, look_alike);
    }
    let out: String = out.chars().take(WEBHOOK_NAME_MAX_CHARS).collect();
    let out = out.trim_end().to_owned();
    if out.is_empty() {
        fallback.to_owned()
    } else {
        out
    }
}

/// Every case-insensitive `word` in `s` with its `at`-th byte (ASCII) replaced by `with`.
fn replace_ascii_ci(s: &str, word: &str, at: usize, with: char) -> String {
    let lower = s.to_ascii_lowercase();
    let mut out = String::with_capacity(s.len() + 2);
    let mut rest = 0;
    while let Some(found) = lower[rest..].find(word) {
        let start = rest + found;
        out.push_str(&s[rest..start + at]);
        out.push(with);
        rest = start + at + 1;
        out.push_str(&s[rest..start + word.len()]);
        rest = start + word.len();
    }
    out.push_str(&s[rest..]);
    out
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentRef {
    pub url: String,
    pub filename: String,
    #[serde(default)]
    pub size: u64,
}

/// Discord takes at most this many files on one message.
pub const MAX_FILES_PER_MESSAGE: usize = 10;

/// Discord's upload limit for a bot in a server without boosts: 10 MiB for all the files of
/// one message.
pub const DEFAULT_UPLOAD_LIMIT_BYTES: u64 = 10 * 1024 * 1024;

/// How one source attachment reaches the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carry {
    /// Downloaded and uploaded again with the mirrored message.
    Upload,
    /// Its URL goes into the text.
    Link,
}

/// Decides, in order, which attachments are re-uploaded: each one whose size is known and
/// fits what is left of `limit_bytes` (one budget for the whole message, as Discord counts
/// it), up to `MAX_FILES_PER_MESSAGE`; the rest are linked. The same payload always gets the
/// same plan, so an edit renders the same links as the send did.
pub fn plan_attachments(attachments: &[AttachmentRef], limit_bytes: u64) -> Vec<Carry> {
    let mut left = limit_bytes;
    let mut uploads = 0;
    attachments
        .iter()
        .map(|a| {
            if a.size > 0 && a.size <= left && uploads < MAX_FILES_PER_MESSAGE {
                left -= a.size;
                uploads += 1;
                Carry::Upload
            } else {
                Carry::Link
            }
        })
        .collect()
}

/// An attachment's identity across a message's events: its URL without the query (Discord
/// signs CDN URLs with parameters that change from one event to the next).
fn attachment_key(url: &str) -> &str {
    url.split_once('?').map_or(url, |(path, _)| path)
}

/// What a delivered send records of its attachments: the keys of those it linked, one per
/// line (`None` when it linked none). The plan alone cannot tell: a file the CDN refused,
/// or a target that refused the files as too large, is linked although planned for upload.
pub fn linked_at_send(attachments: &[AttachmentRef], carry: &[Carry]) -> Option<String> {
    let keys: Vec<&str> = attachments
        .iter()
        .zip(carry)
        .filter(|(_, c)| **c == Carry::Link)
        .map(|(a, _)| attachment_key(&a.url))
        .collect();
    (!keys.is_empty()).then(|| keys.join("\n"))
}

/// How an edit carries the attachments: as the send did. An edit uploads nothing, so an
/// attachment the send linked is linked again, and one it uploaded stays on the message
/// without a link. An attachment the send never saw follows the plan.
pub fn carry_as_sent(
    attachments: &[AttachmentRef],
    planned: Vec<Carry>,
    linked_at_send: Option<&str>,
) -> Vec<Carry> {
    let linked: Vec<&str> = linked_at_send.map_or(Vec::new(), |l| l.lines().collect());
    attachments
        .iter()
        .zip(planned)
        .map(|(a, c)| {
            if linked.contains(&attachment_key(&a.url)) {
                Carry::Link
            } else {
                c
            }
        })
        .collect()
}

impl MirrorPayload {
    /// Whether a mirrored copy of `self` would show what a copy of `other` shows: the same
    /// text, embeds and attachments (by URL without Discord's signing query). Catch-up
    /// compares a message re-read after a gap with what was last mirrored of it.
    pub fn shows_same(&self, other: &MirrorPayload) -> bool {
        self.content == other.content
            && self.authored_embeds().eq(other.authored_embeds())
            && self.attachments.len() == other.attachments.len()
            && self
                .attachments
                .iter()
                .zip(&other.attachments)
                .all(|(a, b)| attachment_key(&a.url) == attachment_key(&b.url))
    }

    /// The embeds the author sent. Discord adds link previews (type `link`, `article`,
    /// `image`, `video`, `gifv`) after the message is created, without an edit: a re-read
    /// message that gained one did not change.
    fn authored_embeds(&self) -> impl Iterator<Item = &serde_json::Value> {
        self.embeds.iter().filter(|e| {
            e.get("type")
                .and_then(serde_json::Value::as_str)
                .is_none_or(|t| t == "rich")
        })
    }

    /// The text delivered: the content, then one line per attachment that `carry` links.
    pub fn rendered_content(&self, carry: &[Carry]) -> String {
        let mut out = self.content.clone();
        for (a, c) in self.attachments.iter().zip(carry) {
            if *c == Carry::Upload {
                continue;
            }
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&a.url);
        }
        for sticker in &self.stickers {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&format!("[sticker: {}] {}", sticker.name, sticker.url()));
        }
        out
    }
}

pub fn kind_as_str(kind: JobKind) -> &'static str {
    match kind {
        JobKind::Send => "send",
        JobKind::Edit => "edit",
        JobKind::Delete => "delete",
    }
}

pub fn parse_kind(s: &str) -> Option<JobKind> {
    match s {
        "send" => Some(JobKind::Send),
        "edit" => Some(JobKind::Edit),
        "delete" => Some(JobKind::Delete),
        _ => None,
    }
}

/// Discord's limit on a bot's or webhook's message content, in characters
/// (<https://discord.com/developers/docs/resources/message#create-message>: "up to 2000
/// characters"). A source message may hold 4,000 (Nitro), and linked attachments add to it.
pub const MESSAGE_CONTENT_LIMIT: usize = 2000;

/// `text` cut into parts of at most `limit` characters, each cut at the last line break
/// inside the limit, else the last space, else mid-word (a run of `limit` characters without
/// either). Line breaks and spaces at a cut are dropped; nothing else is. Text within the
/// limit is one part, as is empty text.
pub fn split_content(text: &str, limit: usize) -> Vec<String> {
    let limit = limit.max(1);
    let mut parts = Vec::new();
    let mut rest = text;
    while rest.chars().count() > limit {
        // Byte offset just past the `limit`-th character.
        let end = rest
            .char_indices()
            .nth(limit)
            .map_or(rest.len(), |(i, _)| i);
        let window = &rest[..end];
        let (cut, skip) = match window.rfind('\n').or_else(|| window.rfind(' ')) {
            Some(i) if i > 0 => (i, 1),
            _ => (end, 0),
        };
        parts.push(rest[..cut].to_owned());
        rest = &rest[cut + skip..];
    }
    parts.push(rest.to_owned());
    parts
}

/// Nonce for part `part` of a split send (part 0 is [`send_nonce`]): the same on every retry.
pub fn part_nonce(mapping_id: i64, source_message_id: u64, part: usize) -> String {
    let first = send_nonce(mapping_id, source_message_id);
    if part == 0 {
        return first;
    }
    let nonce = format!("{first}.{part}");
    if nonce.chars().count() <= 25 {
        return nonce;
    }
    let folded = source_message_id.wrapping_add((part as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    format!("p{}", &send_nonce(mapping_id, folded)[1..])
}

/// Nonce for the bot-mode send of `source_message_id` through `mapping_id`: the same on
/// every retry and after a restart, unique per target, at most 25 characters.
pub fn send_nonce(mapping_id: i64, source_message_id: u64) -> String {
    let nonce = format!(
        "m{}.{}",
        base36(mapping_id as u64),
        base36(source_message_id)
    );
    if nonce.len() <= 25 {
        return nonce;
    }
    // Only for absurdly large mapping ids: fold both into 24 hex digits.
    let a = (mapping_id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!(
        "h{:016x}{:08x}",
        a ^ source_message_id,
        (source_message_id >> 32) as u32
    )
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    if n == 0 {
        return "0".into();
    }
    let mut out = Vec::with_capacity(13);
    while n > 0 {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// Whether a job created at `created_at_ms` is too old to deliver now. Deletes never
/// expire: removing content late is still what the source asked for.
pub fn is_expired(kind: JobKind, created_at_ms: i64, now_ms: i64, max_age_ms: i64) -> bool {
    kind != JobKind::Delete && now_ms.saturating_sub(created_at_ms) > max_age_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_shows_the_same_when_text_embeds_and_files_match_whatever_the_signature() {
        let mirrored = MirrorPayload {
            content: "BUY".into(),
            embeds: vec![serde_json::json!({"title": "t"})],
            attachments: vec![attachment("a/1/chart.png?ex=1&hm=aa", 5)],
            author_name: "Provider".into(),
            ..Default::default()
        };
        let mut reread = mirrored.clone();
        reread.attachments[0].url = "https://cdn/a/1/chart.png?ex=2&hm=bb".into();
        reread.author_name = "Provider (renamed)".into();
        // Discord unfurled a link after the message was mirrored: not an edit.
        reread
            .embeds
            .push(serde_json::json!({"type": "article", "url": "https://news"}));
        assert!(reread.shows_same(&mirrored));
        let edited = MirrorPayload {
            content: "SELL".into(),
            ..reread.clone()
        };
        assert!(!edited.shows_same(&mirrored));
        let new_embed = MirrorPayload {
            embeds: vec![serde_json::json!({"title": "u"})],
            ..reread.clone()
        };
        assert!(!new_embed.shows_same(&mirrored));
        let file_removed = MirrorPayload {
            attachments: vec![],
            ..reread
        };
        assert!(!file_removed.shows_same(&mirrored));
    }

    #[test]
    fn an_edit_links_what_the_send_linked_although_the_plan_uploads_it() {
        let sent = vec![
            attachment("a/1/small.png?ex=1&hm=aa", 10),
            attachment("a/2/lost.png?ex=1&hm=bb", 10),
            attachment("a/3/big.bin", 1_000),
        ];
        // The plan uploads the first two; the CDN refused lost.png, so the send linked it.
        let planned = plan_attachments(&sent, 100);
        assert_eq!(planned, vec![Carry::Upload, Carry::Upload, Carry::Link]);
        let carried = vec![Carry::Upload, Carry::Link, Carry::Link];
        let stored = linked_at_send(&sent, &carried);
        assert_eq!(
            stored.as_deref(),
            Some("https://cdn/a/2/lost.png\nhttps://cdn/a/3/big.bin")
        );
        // The edit's event carries freshly signed URLs, and lost.png removed from the source
        // leaves the others in place.
        let edited = vec![
            attachment("a/1/small.png?ex=2&hm=cc", 10),
            attachment("a/2/lost.png?ex=2&hm=dd", 10),
            attachment("a/3/big.bin", 1_000),
            attachment("a/4/new.png", 10),
        ];
        let carry = carry_as_sent(&edited, plan_attachments(&edited, 100), stored.as_deref());
        assert_eq!(
            carry,
            vec![Carry::Upload, Carry::Link, Carry::Link, Carry::Upload]
        );
        // A send that linked nothing records nothing, and its edits follow the plan.
        assert_eq!(linked_at_send(&sent, &[Carry::Upload; 3]), None);
        assert_eq!(carry_as_sent(&sent, planned.clone(), None), planned);
    }

    #[test]
    fn webhook_usernames_are_made_valid_for_discord() {
        let valid = |n: &str| {
            let l = n.to_lowercase();
            (1..=80).contains(&n.chars().count()) && !l.contains("discord") && !l.contains("clyde")
        };
        for name in [
            "Discord Signals",
            "my DISCORD and discord",
            "Clyde",
            "xclydex",
            "  spaced   out  ",
            "",
            "   ",
            &"a".repeat(200),
            "Дiscord ünïcode",
        ] {
            let made = webhook_username(name, "seatgate");
            assert!(valid(&made), "{name:?} -> {made:?}");
        }
        assert_eq!(webhook_username("Discord Signals", "x"), "Discоrd Signals");
        assert_eq!(webhook_username("  Alpha   Desk ", "x"), "Alpha Desk");
        assert_eq!(webhook_username("", "seatgate"), "seatgate");
        assert_eq!(webhook_username("Provider", "x"), "Provider");
        assert_eq!(webhook_username(&"é".repeat(100), "x").chars().count(), 80);
    }

    #[test]
    fn stickers_are_rendered_as_names_and_links_after_the_text() {
        let p = MirrorPayload {
            stickers: vec![
                StickerRef {
                    id: 42,
                    name: "wave".into(),
                    format_type: 1,
                },
                StickerRef {
                    id: 43,
                    name: "dance".into(),
                    format_type: 4,
                },
            ],
            ..Default::default()
        };
        assert_eq!(
            p.rendered_content(&[]),
            "[sticker: wave] https://cdn.discordapp.com/stickers/42.png\n\
             [sticker: dance] https://media.discordapp.net/stickers/43.gif"
        );
        let with_text = MirrorPayload {
            content: "gm".into(),
            ..p
        };
        assert!(with_text
            .rendered_content(&[])
            .starts_with("gm\n[sticker: wave]"));
    }

    #[test]
    fn nonce_is_stable_unique_per_target_and_fits_discords_limit() {
        let a = send_nonce(1, 1_234_567_890_123_456_789);
        assert_eq!(a, send_nonce(1, 1_234_567_890_123_456_789));
        assert_ne!(a, send_nonce(2, 1_234_567_890_123_456_789));
        assert_ne!(a, send_nonce(1, 1_234_567_890_123_456_788));
        for (m, s) in [
            (1, u64::MAX),
            (i64::MAX, u64::MAX),
            (0, 0),
            (99_999, 175928847299117063),
        ] {
            assert!(send_nonce(m, s).len() <= 25, "{m} {s}");
        }
    }

    #[test]
    fn old_sends_and_edits_expire_but_deletes_do_not() {
        let hour = 3_600_000;
        assert!(is_expired(JobKind::Send, 0, hour + 1, hour));
        assert!(!is_expired(JobKind::Send, 0, hour, hour));
        assert!(is_expired(JobKind::Edit, 0, hour + 1, hour));
        assert!(!is_expired(JobKind::Delete, 0, 10 * hour, hour));
    }

    fn attachment(name: &str, size: u64) -> AttachmentRef {
        AttachmentRef {
            url: format!("https://cdn/{name}"),
            filename: name.into(),
            size,
        }
    }

    #[test]
    fn attachments_that_fit_the_limit_are_uploaded_and_the_rest_linked_after_the_content() {
        let p = MirrorPayload {
            content: "signal".into(),
            attachments: vec![
                attachment("a.png", 6),
                attachment("big.mp4", 11),
                attachment("b.png", 4),
                attachment("c.png", 1),
            ],
            ..Default::default()
        };
        let plan = plan_attachments(&p.attachments, 10);
        assert_eq!(
            plan,
            [Carry::Upload, Carry::Link, Carry::Upload, Carry::Link],
            "one budget for the message: c.png no longer fits after a.png and b.png"
        );
        assert_eq!(
            p.rendered_content(&plan),
            "signal\nhttps://cdn/big.mp4\nhttps://cdn/c.png"
        );
    }

    #[test]
    fn an_attachment_of_unknown_size_or_past_ten_files_is_linked() {
        let mut list = vec![attachment("unknown", 0)];
        list.extend((0..11).map(|i| attachment(&format!("{i}.png"), 1)));
        let plan = plan_attachments(&list, 1_000);
        assert_eq!(plan[0], Carry::Link);
        assert_eq!(
            plan.iter().filter(|c| **c == Carry::Upload).count(),
            MAX_FILES_PER_MESSAGE
        );
        assert_eq!(plan[11], Carry::Link);
    }

    #[test]
    fn a_zero_limit_links_everything_and_an_empty_content_starts_with_the_first_link() {
        let p = MirrorPayload {
            attachments: vec![attachment("a.png", 1), attachment("b.png", 1)],
            ..Default::default()
        };
        let plan = plan_attachments(&p.attachments, 0);
        assert_eq!(
            p.rendered_content(&plan),
            "https://cdn/a.png\nhttps://cdn/b.png"
        );
    }

    #[test]
    fn text_within_the_limit_is_one_part_and_longer_text_is_cut_at_lines_then_words() {
        assert_eq!(split_content("short", 2000), vec!["short"]);
        assert_eq!(split_content("", 2000), vec![""]);
        assert_eq!(split_content("aaa\nbbb ccc", 8), vec!["aaa", "bbb ccc"]);
        assert_eq!(split_content("aaa bbb ccc", 8), vec!["aaa bbb", "ccc"]);
        assert_eq!(split_content("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
    }

    #[test]
    fn every_part_of_a_4000_character_message_fits_and_together_they_keep_every_word() {
        let line = "BUY BTC 97,500 target 99,000 stop 96,000 — ünïcödé ✓\n";
        let text: String = line.repeat(4000 / line.chars().count() + 1);
        let text: String = text.chars().take(4000).collect();
        let parts = split_content(&text, MESSAGE_CONTENT_LIMIT);
        assert_eq!(
            parts.len(),
            3,
            "{:?}",
            parts.iter().map(|p| p.chars().count()).collect::<Vec<_>>()
        );
        assert!(parts
            .iter()
            .all(|p| p.chars().count() <= MESSAGE_CONTENT_LIMIT));
        assert_eq!(parts.join("\n"), text);
    }

    #[test]
    fn parts_have_nonces_of_their_own_within_discords_25_characters() {
        let source = 1_300_000_000_000_000_000;
        assert_eq!(part_nonce(7, source, 0), send_nonce(7, source));
        let nonces: Vec<String> = (0..3).map(|p| part_nonce(7, source, p)).collect();
        assert_ne!(nonces[1], nonces[0]);
        assert_ne!(nonces[2], nonces[1]);
        let huge = part_nonce(i64::MAX, u64::MAX, 2);
        assert!(huge.chars().count() <= 25, "{huge}");
        assert_ne!(huge, part_nonce(i64::MAX, u64::MAX, 1));
    }
}
