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
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentRef {
    pub url: String,
    pub filename: String,
    #[serde(default)]
    pub size: u64,
}

impl MirrorPayload {
    /// The text delivered: the content, then one line per attachment (linked, not
    /// re-uploaded).
    pub fn rendered_content(&self) -> String {
        let mut out = self.content.clone();
        for a in &self.attachments {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&a.url);
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

    #[test]
    fn attachments_are_linked_after_the_content() {
        let p = MirrorPayload {
            content: "signal".into(),
            attachments: vec![AttachmentRef {
                url: "https://cdn/x.png".into(),
                filename: "x.png".into(),
                size: 1,
            }],
            ..Default::default()
        };
        assert_eq!(p.rendered_content(), "signal\nhttps://cdn/x.png");
    }
}
