//! New source messages recorded in the order Discord sent them. serenity runs each
//! MESSAGE_CREATE handler in a task of its own, so two messages posted back to back can be
//! written in the opposite order, and their copies (delivered per target in write order)
//! arrive swapped: `01 03 02`. The shard's collector sees the events in gateway order
//! ([`super::ordered`]) and notes each new message per channel here; a handler waits for the
//! messages noted before its own to be recorded (and handed to the gate) before it records
//! its own.
//!
//! A message the collector did not see (before it was attached) does not wait. A handler
//! that waits longer than [`TURN_WAIT`] (the one ahead is stuck on the database) goes on
//! without its turn, and takes the ones ahead of it off the list: order is then lost for
//! those few, nothing else.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::Notify;

pub const TURN_WAIT: Duration = Duration::from_secs(5);

pub struct CreateOrder {
    /// Per channel, the new messages noted by the collector and not yet recorded, in
    /// gateway order.
    channels: Mutex<HashMap<u64, VecDeque<u64>>>,
    moved: Notify,
    wait: Duration,
}

impl Default for CreateOrder {
    fn default() -> Self {
        Self::with_wait(TURN_WAIT)
    }
}

/// A message's turn: held while it is recorded; dropping it lets the next one go.
pub struct CreateTurn {
    order: Arc<CreateOrder>,
    channel: u64,
    message: u64,
}

impl CreateOrder {
    pub fn with_wait(wait: Duration) -> Self {
        Self {
            channels: Mutex::default(),
            moved: Notify::new(),
            wait,
        }
    }

    fn channels(&self) -> std::sync::MutexGuard<'_, HashMap<u64, VecDeque<u64>>> {
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// From the collector, in gateway order.
    pub fn arrived(&self, channel: u64, message: u64) {
        self.channels()
            .entry(channel)
            .or_default()
            .push_back(message);
    }

    /// Waits until `ready` holds for `channel`'s list, or [`TURN_WAIT`] passes; `true` when
    /// it held.
    async fn wait_until(&self, channel: u64, ready: impl Fn(&VecDeque<u64>) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + self.wait;
        loop {
            let moved = self.moved.notified();
            tokio::pin!(moved);
            moved.as_mut().enable();
            if self.channels().get(&channel).is_none_or(&ready) {
                return true;
            }
            tokio::select! {
                _ = &mut moved => {}
                _ = tokio::time::sleep_until(deadline) => return false,
            }
        }
    }

    /// Waits until `message`'s own create is recorded, if the collector noted it: an edit or
    /// a delete of a message just posted (serenity may run its handler first) then finds
    /// the send it changes or cancels. At most [`TURN_WAIT`].
    pub async fn recorded(&self, channel: u64, message: u64) {
        self.wait_until(channel, |q| !q.contains(&message)).await;
    }

    /// Waits until the messages noted before `message` in `channel` are recorded: it is first
    /// of its channel, or not noted at all.
    pub async fn turn(self: &Arc<Self>, channel: u64, message: u64) -> CreateTurn {
        let in_turn = self
            .wait_until(channel, |q| {
                q.front() == Some(&message) || !q.contains(&message)
            })
            .await;
        if !in_turn {
            if let Some(q) = self.channels().get_mut(&channel) {
                if let Some(at) = q.iter().position(|m| *m == message) {
                    let skipped: Vec<u64> = q.drain(..at).collect();
                    tracing::warn!(channel, message, ?skipped, "[mirror] gateway: a message waited too long for the ones before it; recorded out of turn");
                }
            }
        }
        CreateTurn {
            order: self.clone(),
            channel,
            message,
        }
    }

    fn done(&self, channel: u64, message: u64) {
        let mut channels = self.channels();
        if let Some(q) = channels.get_mut(&channel) {
            if let Some(at) = q.iter().position(|m| *m == message) {
                q.remove(at);
            }
            if q.is_empty() {
                channels.remove(&channel);
            }
        }
        drop(channels);
        self.moved.notify_waiters();
    }
}

impl Drop for CreateTurn {
    fn drop(&mut self) {
        self.order.done(self.channel, self.message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_message_waits_for_the_ones_the_gateway_sent_before_it() {
        let order = Arc::new(CreateOrder::default());
        for m in [1, 2, 3] {
            order.arrived(10, m);
        }
        let written = Arc::new(Mutex::new(Vec::new()));
        // The handlers start in the wrong order, as serenity's tasks may.
        let mut tasks = Vec::new();
        for m in [3, 1, 2] {
            let (order, written) = (order.clone(), written.clone());
            tasks.push(tokio::spawn(async move {
                let _turn = order.turn(10, m).await;
                tokio::task::yield_now().await;
                written.lock().unwrap_or_else(|p| p.into_inner()).push(m);
            }));
            tokio::task::yield_now().await;
        }
        for t in tasks {
            t.await.unwrap_or_default();
        }
        assert_eq!(
            *written.lock().unwrap_or_else(|p| p.into_inner()),
            vec![1, 2, 3]
        );
        assert!(order.channels().is_empty(), "nothing left behind");
    }

    #[tokio::test]
    async fn an_edit_waits_for_its_messages_create_and_no_longer() {
        let order = Arc::new(CreateOrder::default());
        order.arrived(10, 1);
        let created = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let edit = {
            let (order, created) = (order.clone(), created.clone());
            tokio::spawn(async move {
                order.recorded(10, 1).await;
                created.load(std::sync::atomic::Ordering::SeqCst)
            })
        };
        tokio::task::yield_now().await;
        let turn = order.turn(10, 1).await;
        created.store(true, std::sync::atomic::Ordering::SeqCst);
        drop(turn);
        assert!(
            edit.await.unwrap_or(false),
            "the edit went before the create"
        );
    }

    #[tokio::test]
    async fn a_message_not_seen_goes_at_once_and_a_stuck_one_is_passed_after_the_wait() {
        let wait = Duration::from_millis(100);
        let order = Arc::new(CreateOrder::with_wait(wait));
        drop(order.turn(10, 99).await);
        order.arrived(10, 1);
        order.arrived(10, 2);
        let start = tokio::time::Instant::now();
        // 1's handler never comes: 2 goes after the wait, and takes 1 off the list.
        drop(order.turn(10, 2).await);
        assert!(start.elapsed() >= wait);
        assert!(order.channels().is_empty());
    }
}
