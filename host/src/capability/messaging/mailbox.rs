//! An instance's mailbox: what its subscriptions brought and the guest has
//! not yet been handed, bounded. Past the bound the oldest message goes,
//! and the guest is told how many went before it is handed the next; past
//! half of it, the instance is [behind](Mailbox::is_behind).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// `Queue::messages`, readable without the lock.
    waiting: AtomicUsize,
    /// Woken when the messages waiting fall back to half of `behind`.
    caught_up: Notify,
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
            waiting: AtomicUsize::new(0),
            caught_up: Notify::new(),
        }
    }

    /// Messages waiting at which the instance is behind: half the cap.
    fn behind(&self) -> usize {
        (self.cap / 2).max(1)
    }

    /// Whether the guest is behind on its deliveries: half the cap or more
    /// waits. Its connections are then not read from, as what they send
    /// is what it publishes (a chat line to its own room): read on, a
    /// flooding client outruns the delivery task, and the room loses lines
    /// to a subscriber that is not slow, only not scheduled.
    pub fn is_behind(&self) -> bool {
        self.waiting.load(Ordering::Acquire) >= self.behind()
    }

    /// Wait until the guest is no longer behind: half of [`Self::is_behind`]'s
    /// mark or less waits, so that reading resumes for more than a message.
    pub async fn caught_up(&self) {
        loop {
            let notified = self.caught_up.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the count is read: a catch-up in between
            // still wakes it.
            notified.as_mut().enable();
            if self.waiting.load(Ordering::Acquire) <= self.behind() / 2 {
                return;
            }
            notified.await;
        }
    }

    /// Note the messages waiting now, under the lock, waking those waiting
    /// for the guest to catch up when it just has.
    fn count(&self, queue: &Queue) {
        let before = self.waiting.swap(queue.messages, Ordering::AcqRel);
        let mark = self.behind() / 2;
        if before > mark && queue.messages <= mark {
            self.caught_up.notify_waiters();
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
        self.count(&queue);
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
                        self.count(&queue);
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
        self.count(&queue);
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

    #[tokio::test]
    async fn behind_from_half_the_cap_until_it_falls_to_a_quarter() {
        let mailbox = Arc::new(Mailbox::new(8));
        let room: Arc<str> = Arc::from("room");
        for _ in 0..3 {
            mailbox.put(&room, &message("line"));
        }
        assert!(!mailbox.is_behind());
        mailbox.put(&room, &message("line"));
        assert!(mailbox.is_behind());
        let caught_up = tokio::spawn({
            let mailbox = mailbox.clone();
            async move { mailbox.caught_up().await }
        });
        mailbox.next().await.unwrap();
        tokio::task::yield_now().await;
        assert!(
            !caught_up.is_finished(),
            "3 waiting is still behind a mark of 4"
        );
        mailbox.next().await.unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), caught_up)
            .await
            .expect("2 waiting is caught up")
            .unwrap();
        assert!(!mailbox.is_behind());
        for _ in 0..2 {
            mailbox.put(&room, &message("line"));
        }
        assert!(mailbox.is_behind());
        mailbox.close();
        assert!(!mailbox.is_behind(), "a closed mailbox holds nobody");
        mailbox.caught_up().await;
    }
}
