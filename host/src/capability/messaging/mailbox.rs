//! An instance's mailbox: what its subscriptions brought and the guest has
//! not yet been handed, bounded. Past the bound the oldest message goes,
//! and the guest is told how many went before it is handed the next.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// One thing to tell the guest's `subscriber` export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// A message published to the topic (as the guest named it).
    Message(Arc<str>, Arc<[u8]>),
    /// This many messages to the topic were dropped.
    Dropped(Arc<str>, u64),
    /// The topic's backend is unreachable.
    Interrupted(Arc<str>),
    /// The topic's backend is back.
    Resumed(Arc<str>),
}

/// What waits for one instance, shared by its subscriptions (which fill
/// it) and its delivery task (which empties it).
pub struct Mailbox {
    queue: Mutex<Queue>,
    wake: Notify,
    /// Messages that may wait at once.
    cap: usize,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Delivery>,
    /// Messages in `waiting`.
    messages: usize,
    /// Messages dropped by topic, not yet told.
    dropped: HashMap<Arc<str>, u64>,
    /// The instance is retired or gone: nothing more is taken.
    closed: bool,
}

/// What [`Mailbox::put`] did with a message.
#[derive(Debug, PartialEq, Eq)]
pub enum Put {
    /// It waits for the guest.
    Queued,
    /// It waits, and the oldest message waiting was dropped for it.
    DroppedOldest,
    /// The mailbox is closed.
    Closed,
}

impl Mailbox {
    /// A mailbox holding at most `cap` messages.
    pub fn new(cap: usize) -> Self {
        Self {
            queue: Mutex::default(),
            wake: Notify::new(),
            cap: cap.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Leave a message for the guest, dropping the oldest past the cap.
    pub fn put(&self, topic: &Arc<str>, message: &Arc<[u8]>) -> Put {
        let mut queue = self.lock();
        if queue.closed {
            return Put::Closed;
        }
        let mut put = Put::Queued;
        if queue.messages >= self.cap {
            let oldest = queue
                .waiting
                .iter()
                .position(|delivery| matches!(delivery, Delivery::Message(..)));
            if let Some(Delivery::Message(dropped, _)) =
                oldest.and_then(|at| queue.waiting.remove(at))
            {
                queue.messages -= 1;
                *queue.dropped.entry(dropped).or_default() += 1;
                put = Put::DroppedOldest;
            }
        }
        queue.messages += 1;
        queue
            .waiting
            .push_back(Delivery::Message(topic.clone(), message.clone()));
        drop(queue);
        self.wake.notify_one();
        put
    }

    /// Tell the guest of a change in a topic's delivery.
    pub fn tell(&self, delivery: Delivery) {
        let mut queue = self.lock();
        if queue.closed {
            return;
        }
        queue.waiting.push_back(delivery);
        drop(queue);
        self.wake.notify_one();
    }

    /// The next thing to hand the guest, drops first; `None` once closed.
    pub async fn next(&self) -> Option<Delivery> {
        loop {
            let notified = self.wake.notified();
            {
                let mut queue = self.lock();
                if queue.closed {
                    return None;
                }
                if let Some(topic) = queue.dropped.keys().next().cloned() {
                    let count = queue.dropped.remove(&topic).unwrap_or_default();
                    return Some(Delivery::Dropped(topic, count));
                }
                if let Some(delivery) = queue.waiting.pop_front() {
                    if matches!(delivery, Delivery::Message(..)) {
                        queue.messages -= 1;
                    }
                    return Some(delivery);
                }
            }
            notified.await;
        }
    }

    /// Take nothing more and let go of what waits: the instance is
    /// retired or gone.
    pub fn close(&self) {
        let mut queue = self.lock();
        queue.closed = true;
        queue.waiting.clear();
        queue.dropped.clear();
        queue.messages = 0;
        drop(queue);
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(text: &str) -> Arc<[u8]> {
        Arc::from(text.as_bytes())
    }

    #[tokio::test]
    async fn past_its_cap_the_oldest_goes_and_the_guest_hears_how_many_first() {
        let mailbox = Mailbox::new(2);
        let room: Arc<str> = Arc::from("room");
        assert_eq!(mailbox.put(&room, &message("1")), Put::Queued);
        mailbox.tell(Delivery::Interrupted(room.clone()));
        assert_eq!(mailbox.put(&room, &message("2")), Put::Queued);
        assert_eq!(mailbox.put(&room, &message("3")), Put::DroppedOldest);
        assert_eq!(mailbox.put(&room, &message("4")), Put::DroppedOldest);
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(mailbox.next().await.unwrap());
        }
        assert_eq!(
            got,
            [
                Delivery::Dropped(room.clone(), 2),
                Delivery::Interrupted(room.clone()),
                Delivery::Message(room.clone(), message("3")),
                Delivery::Message(room.clone(), message("4")),
            ]
        );
        mailbox.close();
        assert_eq!(mailbox.put(&room, &message("5")), Put::Closed);
        assert_eq!(mailbox.next().await, None);
    }
}
