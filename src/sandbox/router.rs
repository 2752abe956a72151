//! A tiny path router: templates like `/channels/{channel_id}/messages/{message_id}`, matched
//! segment by segment. Used for REST and control routing, rate-limit buckets and fault patterns.

/// Matches `path` against `template`; returns the placeholder values in order.
pub fn match_template<'a>(template: &str, path: &'a str) -> Option<Vec<&'a str>> {
    let t: Vec<&str> = template.trim_matches('/').split('/').collect();
    let p: Vec<&str> = path.trim_matches('/').split('/').collect();
    if t.len() != p.len() {
        return None;
    }
    let mut params = Vec::new();
    for (ts, ps) in t.iter().zip(p.iter()) {
        if ts.starts_with('{') && ts.ends_with('}') {
            if ps.is_empty() {
                return None;
            }
            params.push(*ps);
        } else if ts != ps {
            return None;
        }
    }
    Some(params)
}

/// Whether a fault pattern matches a concrete path (placeholders match any segment).
pub fn pattern_matches(pattern: &str, path: &str) -> bool {
    let pattern = pattern.strip_prefix("/api/v10").unwrap_or(pattern);
    match_template(pattern, path).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_capture_segments_in_order() {
        assert_eq!(
            match_template("/channels/{c}/messages/{m}", "/channels/1/messages/2"),
            Some(vec!["1", "2"])
        );
        assert_eq!(
            match_template("/channels/{c}/messages", "/channels/1/messages/2"),
            None
        );
        assert_eq!(match_template("/guilds/{g}", "/channels/1"), None);
    }

    #[test]
    fn fault_patterns_match_templates_and_concrete_paths() {
        assert!(pattern_matches(
            "/channels/{id}/messages",
            "/channels/5/messages"
        ));
        assert!(pattern_matches(
            "/api/v10/channels/5/messages",
            "/channels/5/messages"
        ));
        assert!(!pattern_matches(
            "/channels/6/messages",
            "/channels/5/messages"
        ));
    }
}
