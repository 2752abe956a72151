//! Source edits in the order Discord made them. serenity runs each MESSAGE_UPDATE in a task
//! of its own, so two quick edits of one message can reach the store in the opposite order,
//! and the older text would be mirrored last. Per source message, edits are written one at a
//! time, and one older (by `edited_timestamp`) than the last written is dropped: the newer
//! text already went to the store, and the claim order delivers it after anything before it.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use dashmap::DashMap;
use tokio::sync::{Mutex, OwnedMutexGuard};

/// Entries are forgotten this long after their last edit once the map is large: the race
/// is between handler tasks of the same moment.
const FORGET_AFTER: Duration = Duration::from_secs(600);
const PRUNE_ABOVE: usize = 10_000;

#[derive(Default)]
struct Latest<T> {
    written: Option<T>,
    at: Option<Instant>,
}

pub struct EditOrder<T> {
    messages: DashMap<u64, Arc<Mutex<Latest<T>>>>,
}

impl<T> Default for EditOrder<T> {
    fn default() -> Self {
        Self {
            messages: DashMap::new(),
        }
    }
}

/// The right to write one edit; dropping it without [`EditTurn::written`] writes nothing down.
pub struct EditTurn<T> {
    guard: OwnedMutexGuard<Latest<T>>,
    stamp: T,
}

impl<T: Ord + Copy> EditTurn<T> {
    /// Records that the edit went to the store.
    pub fn written(mut self) {
        self.guard.written = Some(self.stamp);
        self.guard.at = Some(Instant::now());
    }
}

impl<T: Ord + Copy + Default + Send + 'static> EditOrder<T> {
    /// Waits for the message's turn; `None` when an edit newer than `stamp` was written
    /// already (this one is stale and must not be mirrored).
    pub async fn turn(&self, message_id: u64, stamp: T) -> Option<EditTurn<T>> {
        self.prune();
        let lock = self.messages.entry(message_id).or_default().clone();
        let guard = lock.lock_owned().await;
        if guard.written.is_some_and(|w| stamp < w) {
            return None;
        }
        Some(EditTurn { guard, stamp })
    }

    fn prune(&self) {
        if self.messages.len() <= PRUNE_ABOVE {
            return;
        }
        self.messages.retain(|_, l| match l.try_lock() {
            Ok(latest) => latest.at.is_some_and(|at| at.elapsed() < FORGET_AFTER),
            Err(_) => true, // in use
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn edits_in_order_are_all_written() {
        let order = EditOrder::<u64>::default();
        for stamp in [1, 2, 3] {
            order.turn(7, stamp).await.expect("in order").written();
        }
    }

    #[tokio::test]
    async fn an_older_edit_arriving_after_a_newer_one_is_dropped() {
        let order = EditOrder::<u64>::default();
        order.turn(7, 20).await.expect("first").written();
        assert!(order.turn(7, 10).await.is_none());
        // Another message is not affected, and the same stamp again (a repeat) is written.
        order.turn(8, 10).await.expect("other message").written();
        order.turn(7, 20).await.expect("same stamp").written();
    }

    #[tokio::test]
    async fn the_older_edit_waiting_behind_the_newer_ones_write_is_dropped() {
        // Both handler tasks passed the gateway; the newer one takes the turn first and holds
        // it while it writes; the older one waits, then finds it stale.
        let order = Arc::new(EditOrder::<u64>::default());
        let newer = order.turn(7, 20).await.expect("newer");
        let o = order.clone();
        let older = tokio::spawn(async move { o.turn(7, 10).await.is_none() });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!older.is_finished(), "waits for the write in progress");
        newer.written();
        assert!(
            older.await.unwrap(),
            "stale after the newer one was written"
        );
    }

    #[tokio::test]
    async fn a_turn_given_up_without_writing_records_nothing() {
        let order = EditOrder::<u64>::default();
        drop(order.turn(7, 20).await);
        order
            .turn(7, 10)
            .await
            .expect("nothing newer was written")
            .written();
    }
}
