//! Topics and the mailboxes subscribed to them. The embedded backend is
//! one [`Topics`] for the whole process; each worker's Redis link has its
//! own, which it fills with what the server sends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};

use crate::capability::messaging::mailbox::{Delivery, Mailbox, Put};
use crate::metrics::{Messaging, ServiceMetrics};

/// Subscribers by full topic name (`service:NAME/TOPIC`, `shared/TOPIC`).
#[derive(Default)]
pub struct Topics {
    topics: RwLock<HashMap<Arc<str>, Vec<Subscriber>>>,
    next_id: AtomicU64,
}

/// One instance's subscription to one topic.
struct Subscriber {
    id: u64,
    /// The topic as the instance's guest named it.
    topic: Arc<str>,
    mailbox: Weak<Mailbox>,
    /// Where its dropped messages are counted.
    metrics: Arc<ServiceMetrics>,
}

impl std::fmt::Debug for Topics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Topics")
    }
}

impl Topics {
    /// Subscribe `mailbox` to `full`, which its guest calls `topic`; the
    /// subscription's id.
    pub fn add(
        &self,
        full: &str,
        topic: Arc<str>,
        mailbox: &Arc<Mailbox>,
        metrics: Arc<ServiceMetrics>,
    ) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut topics = self.topics.write().unwrap_or_else(|p| p.into_inner());
        topics.entry(Arc::from(full)).or_default().push(Subscriber {
            id,
            topic,
            mailbox: Arc::downgrade(mailbox),
            metrics,
        });
        id
    }

    /// End the subscription `id` to `full`; whether it was the topic's
    /// last here.
    pub fn remove(&self, full: &str, id: u64) -> bool {
        let mut topics = self.topics.write().unwrap_or_else(|p| p.into_inner());
        let Some(subscribers) = topics.get_mut(full) else {
            return false;
        };
        subscribers.retain(|subscriber| subscriber.id != id);
        let last = subscribers.is_empty();
        if last {
            topics.remove(full);
        }
        last
    }

    /// Leave `message` in the mailbox of every subscriber to `full`, in
    /// the order publishes arrive; each subscriber's service counts what
    /// its falling behind dropped.
    pub fn publish(&self, full: &str, message: &Arc<[u8]>) {
        let topics = self.topics.read().unwrap_or_else(|p| p.into_inner());
        for subscriber in topics.get(full).into_iter().flatten() {
            let Some(mailbox) = subscriber.mailbox.upgrade() else {
                continue;
            };
            if mailbox.put(&subscriber.topic, message) == Put::DroppedOldest {
                subscriber.metrics.messaging(Messaging::Dropped, 1);
            }
        }
    }

    /// Tell every subscriber here of a change in delivery.
    pub fn tell_all(&self, delivery: fn(Arc<str>) -> Delivery) {
        let topics = self.topics.read().unwrap_or_else(|p| p.into_inner());
        for subscriber in topics.values().flatten() {
            if let Some(mailbox) = subscriber.mailbox.upgrade() {
                mailbox.tell(delivery(subscriber.topic.clone()));
            }
        }
    }

    /// Every full topic name with a subscriber here.
    pub fn names(&self) -> Vec<Arc<str>> {
        let topics = self.topics.read().unwrap_or_else(|p| p.into_inner());
        topics.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Kind;

    #[tokio::test]
    async fn a_publish_reaches_each_subscriber_of_its_topic_once() {
        let topics = Topics::default();
        let metrics = Arc::new(ServiceMetrics::new(Kind::Stream));
        let (a, b) = (Arc::new(Mailbox::new(8)), Arc::new(Mailbox::new(8)));
        let id_a = topics.add("service:s/room", "room".into(), &a, metrics.clone());
        topics.add("service:s/room", "room".into(), &b, metrics.clone());
        topics.add("service:t/room", "room".into(), &b, metrics);
        topics.publish("service:s/room", &Arc::from(&b"hi"[..]));
        let hi = Delivery::Message("room".into(), Arc::from(&b"hi"[..]));
        assert_eq!(a.next().await, Some(hi.clone()));
        assert_eq!(b.next().await, Some(hi));
        assert!(!topics.remove("service:s/room", id_a));
        assert_eq!(topics.names().len(), 2);
    }
}
