//! Secrets inside URLs and error texts: a password in a database URL, a webhook token in a
//! Discord path. Everything printed or logged that may hold a URL goes through here.

use std::sync::RwLock;

use aho_corasick::AhoCorasick;

const REDACTED: &str = "[redacted]";

/// Secrets the process holds (the bot token, the operator token, its webhooks' tokens),
/// hidden wherever they appear in a log line, whatever wrote it: a dependency's debug line
/// may print a route or a header in its own way.
#[derive(Default)]
struct Known {
    secrets: Vec<String>,
    matcher: Option<AhoCorasick>,
}

static KNOWN: RwLock<Known> = RwLock::new(Known {
    secrets: Vec::new(),
    matcher: None,
});

/// Shorter values are not hidden: they would match ordinary words.
const MIN_SECRET_LEN: usize = 8;

/// Hides `secrets` in every log line from now on.
pub fn hide_all<'a>(secrets: impl IntoIterator<Item = &'a str>) {
    let mut known = KNOWN.write().unwrap_or_else(|p| p.into_inner());
    let before = known.secrets.len();
    for s in secrets {
        let s = s.trim();
        if s.len() >= MIN_SECRET_LEN && !known.secrets.iter().any(|k| k == s) {
            known.secrets.push(s.to_owned());
        }
    }
    if known.secrets.len() != before {
        known.matcher = AhoCorasick::new(&known.secrets).ok();
    }
}

/// Hides one secret in every log line from now on.
pub fn hide(secret: &str) {
    hide_all([secret]);
}

/// `text` with every secret given to [`hide`] replaced, then [`text`]'s patterns.
pub fn line(line: &str) -> String {
    let known = KNOWN.read().unwrap_or_else(|p| p.into_inner());
    let hidden = match &known.matcher {
        Some(m) if m.is_match(line) => m.replace_all(line, &vec![REDACTED; known.secrets.len()]),
        _ => line.to_owned(),
    };
    drop(known);
    text(&hidden)
}

/// `scheme://user:password@host/...` keeps the user and hides the password; query parameters
/// that name a secret (`password`, `token`, `secret`, `key`) are hidden too.
pub fn url(url: &str) -> String {
    let mut out = text(url);
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let query: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if is_secret_name(k) => format!("{k}={REDACTED}"),
                _ => pair.to_owned(),
            })
            .collect();
        out = format!("{head}{}", query.join("&"));
    }
    out
}

fn is_secret_name(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "passwd", "pwd", "token", "secret", "key"]
        .iter()
        .any(|s| key.contains(s))
}

/// Hides the password of every `://user:password@` and the token of every
/// `/webhooks/{id}/{token}` in `text` (an error message that quotes a URL).
pub fn text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let (before, after) = rest.split_at(pos + 3);
        out.push_str(before);
        let authority_end = after
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace())
            .unwrap_or(after.len());
        let authority = &after[..authority_end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.split_once(':') {
                    Some((user, _)) => out.push_str(&format!("{user}:{REDACTED}")),
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[authority_end..];
    }
    out.push_str(rest);
    webhook_tokens(&out)
}

fn webhook_tokens(text: &str) -> String {
    const MARK: &str = "/webhooks/";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find(MARK) {
        let (before, after) = rest.split_at(pos + MARK.len());
        out.push_str(before);
        let id_end = after
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(after.len());
        out.push_str(&after[..id_end]);
        let tail = &after[id_end..];
        if id_end > 0 && tail.starts_with('/') {
            let token_end = tail[1..]
                .find(|c: char| c == '/' || c == '?' || c == ')' || c.is_whitespace())
                .map_or(tail.len(), |i| i + 1);
            if token_end > 1 {
                out.push('/');
                out.push_str(REDACTED);
                rest = &tail[token_end..];
                continue;
            }
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hidden_secret_is_replaced_wherever_it_appears_and_short_values_are_left_alone() {
        hide("tok-abcdefgh-1234");
        hide("short");
        let shown = line(r#"Route { token: "tok-abcdefgh-1234" } postgres://u:pw@h/db short"#);
        assert_eq!(
            shown,
            r#"Route { token: "[redacted]" } postgres://u:[redacted]@h/db short"#
        );
    }

    #[test]
    fn a_database_password_is_hidden_and_the_rest_kept() {
        assert_eq!(
            url("postgres://u:secret@h/db"),
            "postgres://u:[redacted]@h/db"
        );
        assert_eq!(
            url("postgres://u:p%40ss@h:5432/db?sslmode=require&password=x"),
            "postgres://u:[redacted]@h:5432/db?sslmode=require&password=[redacted]"
        );
        assert_eq!(url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            url("sqlite://seatgate.db?mode=rwc"),
            "sqlite://seatgate.db?mode=rwc"
        );
    }

    #[test]
    fn a_webhook_token_in_an_error_text_is_hidden() {
        let err = "error sending request for url (https://discord.com/api/v10/webhooks/123456/AbC-def_9?wait=true)";
        let shown = text(err);
        assert!(!shown.contains("AbC-def_9"), "{shown}");
        assert!(
            shown.contains("/webhooks/123456/[redacted]?wait=true"),
            "{shown}"
        );
        assert_eq!(
            text("GET /webhooks/1/tok/messages/2"),
            "GET /webhooks/1/[redacted]/messages/2"
        );
        assert_eq!(
            text("/webhooks/abc"),
            "/webhooks/abc",
            "no id, nothing hidden"
        );
    }
}
