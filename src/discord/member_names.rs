//! Members' names for the rows the admin page shows. The seat index keeps no names (a
//! million-member guild would hold a million of them); the names of a page are read over
//! REST when asked for (one List Guild Members page covers up to 1,000 neighbours by id, the
//! order the seats page uses) and kept for a few minutes in a bounded cache.

use std::{
    collections::HashMap,
    num::NonZeroUsize,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use lru::LruCache;

use super::port::{GuildReader, MemberName};

/// Names kept at most (about 100 bytes each): a few pages of the largest guilds.
const CAPACITY: usize = 10_000;
/// How long a name is trusted: a rename shows after this at the latest.
const TTL: Duration = Duration::from_secs(300);
/// List Guild Members pages read for one page of rows at most; rows still unresolved after
/// them answer without names.
const MAX_PAGES: usize = 4;
const PAGE: u16 = 1000;
/// Names are decoration: a page answers without them rather than wait on a slow Discord.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

type Entry = (Instant, Option<Arc<MemberName>>);

#[derive(Clone)]
pub struct MemberNames {
    reader: Arc<dyn GuildReader>,
    cache: Arc<Mutex<LruCache<(u64, u64), Entry>>>,
}

impl MemberNames {
    pub fn new(reader: Arc<dyn GuildReader>) -> Self {
        let capacity = NonZeroUsize::new(CAPACITY).unwrap_or(NonZeroUsize::MIN);
        Self {
            reader,
            cache: Arc::new(Mutex::new(LruCache::new(capacity))),
        }
    }

    fn cached(&self, guild_id: u64, user_id: u64) -> Option<Option<Arc<MemberName>>> {
        let mut cache = self.cache.lock().ok()?;
        match cache.get(&(guild_id, user_id)) {
            Some((at, name)) if at.elapsed() < TTL => Some(name.clone()),
            _ => None,
        }
    }

    fn remember(&self, guild_id: u64, user_id: u64, name: Option<Arc<MemberName>>) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.put((guild_id, user_id), (Instant::now(), name));
        }
    }

    /// The names of `ids` that Discord still knows, from the cache or over REST.
    pub async fn resolve(&self, guild_id: u64, ids: &[u64]) -> HashMap<u64, Arc<MemberName>> {
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        for id in ids {
            match self.cached(guild_id, *id) {
                Some(Some(name)) => {
                    found.insert(*id, name);
                }
                Some(None) => {}
                None => missing.push(*id),
            }
        }
        if missing.is_empty() {
            return found;
        }
        missing.sort_unstable();
        let fetched = tokio::time::timeout(RESOLVE_TIMEOUT, self.fetch(guild_id, &missing)).await;
        match fetched {
            Ok(Ok(names)) => found.extend(
                names
                    .into_iter()
                    .filter(|(id, _)| missing.binary_search(id).is_ok()),
            ),
            Ok(Err(err)) => {
                tracing::warn!(guild_id, error = %err, "[admin/discord-bot] member names not read; the page shows ids")
            }
            Err(_) => {
                tracing::warn!(
                    guild_id,
                    "[admin/discord-bot] member names took too long; the page shows ids"
                )
            }
        }
        found
    }

    /// Reads pages from just below the first missing id on, skipping to the next missing id
    /// after each page.
    async fn fetch(
        &self,
        guild_id: u64,
        missing: &[u64],
    ) -> super::port::DiscordResult<HashMap<u64, Arc<MemberName>>> {
        let mut out = HashMap::new();
        let mut rest = missing;
        for _ in 0..MAX_PAGES {
            let Some(first) = rest.first() else { break };
            let page = self
                .reader
                .member_names_after(guild_id, first.saturating_sub(1), PAGE)
                .await?;
            let last_page = page.len() < usize::from(PAGE);
            let covered = page.last().map_or(u64::MAX, |m| m.user_id);
            for m in page {
                let id = m.user_id;
                let name = Arc::new(m);
                self.remember(guild_id, id, Some(name.clone()));
                out.insert(id, name);
            }
            let upto = if last_page { u64::MAX } else { covered };
            let done = rest.partition_point(|id| *id <= upto);
            for id in &rest[..done] {
                if !out.contains_key(id) {
                    // Left the guild since it was counted.
                    self.remember(guild_id, *id, None);
                }
            }
            rest = &rest[done..];
        }
        Ok(out)
    }

    /// Members whose username or nickname starts with `query` (Discord's member search), up
    /// to 1,000; their names are kept for the rows that show them.
    pub async fn search(
        &self,
        guild_id: u64,
        query: &str,
    ) -> super::port::DiscordResult<Vec<Arc<MemberName>>> {
        let found = self.reader.search_members(guild_id, query, PAGE).await?;
        Ok(found
            .into_iter()
            .map(|m| {
                let name = Arc::new(m);
                self.remember(guild_id, name.user_id, Some(name.clone()));
                name
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::discord::port::DiscordResult;
    use crate::domain::seats::{GuildSnapshot, MemberSnapshot};

    /// Members 1..=n; counts the pages read.
    struct Members {
        ids: Vec<u64>,
        pages: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl GuildReader for Members {
        async fn guild_structure(
            &self,
            _: u64,
            _: &[u64],
        ) -> DiscordResult<(GuildSnapshot, Option<u64>)> {
            unreachable!("names only")
        }
        async fn members_after(
            &self,
            _: u64,
            _: u64,
            _: u16,
        ) -> DiscordResult<Vec<MemberSnapshot>> {
            unreachable!("names only")
        }
        async fn member_names_after(
            &self,
            _: u64,
            after: u64,
            limit: u16,
        ) -> DiscordResult<Vec<MemberName>> {
            self.pages.fetch_add(1, Ordering::SeqCst);
            Ok(self
                .ids
                .iter()
                .filter(|id| **id > after)
                .take(usize::from(limit))
                .map(|id| MemberName {
                    user_id: *id,
                    username: format!("user{id}"),
                    display_name: format!("User {id}"),
                })
                .collect())
        }
    }

    fn names(ids: Vec<u64>) -> (Arc<Members>, MemberNames) {
        let reader = Arc::new(Members {
            ids,
            pages: AtomicUsize::new(0),
        });
        (reader.clone(), MemberNames::new(reader))
    }

    #[tokio::test]
    async fn a_page_of_neighbours_costs_one_read_then_none() {
        let (reader, names) = names((1..=5000).collect());
        let page: Vec<u64> = (2001..=2100).collect();
        let found = names.resolve(7, &page).await;
        assert_eq!(found.len(), 100);
        assert_eq!(found[&2050].username, "user2050");
        assert_eq!(reader.pages.load(Ordering::SeqCst), 1);
        // The next page lies in the 1,000 read: from the cache.
        let next: Vec<u64> = (2101..=2200).collect();
        assert_eq!(names.resolve(7, &next).await.len(), 100);
        assert_eq!(reader.pages.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn sparse_rows_skip_ahead_and_members_gone_are_not_asked_again() {
        let (reader, names) = names((1..=10_000).filter(|id| *id != 5000).collect());
        // Three far-apart rows, one of them a member who left.
        let found = names.resolve(7, &[10, 5000, 9000]).await;
        assert!(found.contains_key(&10) && found.contains_key(&9000));
        assert!(!found.contains_key(&5000));
        assert_eq!(reader.pages.load(Ordering::SeqCst), 3);
        assert_eq!(names.resolve(7, &[5000]).await.len(), 0);
        assert_eq!(
            reader.pages.load(Ordering::SeqCst),
            3,
            "the departure is remembered"
        );
    }

    #[tokio::test]
    async fn rows_past_the_read_budget_answer_without_names() {
        let (reader, names) = names((1..=100_000).collect());
        let rows: Vec<u64> = (0..10).map(|i| 1 + i * 5000).collect();
        let found = names.resolve(7, &rows).await;
        assert_eq!(found.len(), MAX_PAGES);
        assert_eq!(reader.pages.load(Ordering::SeqCst), MAX_PAGES);
    }
}
