//! Publish/subscribe kept by the host (`weft:protocol/messaging`, WIT
//! 0.2.4): an instance subscribes to topics inside its service's namespace;
//! what is published to them waits in its [`Mailbox`] until its delivery
//! task hands it to the guest's `subscriber` export, one call at a time.

mod mailbox;
mod redis;
pub mod spec;
mod topics;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use wasmtime::component::{HasSelf, Linker};

use crate::capability::keyvalue::spec::Backend;
use crate::capability::rate::Rate;
use crate::metrics::{Messaging as Outcome, ServiceMetrics};
use crate::sandbox::limits::Limits;
use crate::wit::MessagingError;
use crate::wit::stateful::weft::protocol::messaging;

pub use mailbox::{Delivery, Mailbox};
use redis::RedisTopics;
use spec::{MessagingSpec, check_topic};
pub use topics::Topics;

/// What a service's instances may reach: its namespace, where its topics
/// live, its quotas; one per worker and version, so that each worker has
/// its own Redis connections and its own publish rate.
pub struct MessagingGrant {
    namespace: Arc<str>,
    spec: MessagingSpec,
    /// The process's embedded topics.
    embedded: Arc<Topics>,
    redis: Option<Arc<RedisTopics>>,
    subscriptions: usize,
    message_size: usize,
    pending: usize,
    rate: Mutex<Rate>,
    metrics: Arc<ServiceMetrics>,
}

impl MessagingGrant {
    /// The grant of the service `namespace`, whose embedded topics are in
    /// `embedded` (the process's), under `limits`.
    pub fn new(
        namespace: Arc<str>,
        spec: MessagingSpec,
        embedded: Arc<Topics>,
        limits: &Limits,
        metrics: Arc<ServiceMetrics>,
    ) -> Self {
        let redis = match &spec.backend {
            Backend::Redis(address) => Some(Arc::new(RedisTopics::new(address.clone()))),
            _ => None,
        };
        Self {
            namespace,
            spec,
            embedded,
            redis,
            subscriptions: limits.subscriptions,
            message_size: limits.message_size,
            pending: limits.pending_messages,
            rate: Mutex::new(Rate::new(limits.publish_rate)),
            metrics,
        }
    }

    fn publish_rate(&self) -> f64 {
        self.rate
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .per_second()
    }

    /// The name of `topic` across services: a shared name is the same
    /// topic for every service sharing it; any other is the service's own.
    fn full(&self, topic: &str) -> String {
        match self.spec.is_shared(topic) {
            true => format!("shared/{topic}"),
            false => format!("service:{}/{topic}", self.namespace),
        }
    }
}

/// One instance's publish/subscribe state: its service's grant, its
/// mailbox, and its subscriptions by the topic its guest named.
pub struct MessagingState {
    grant: Arc<MessagingGrant>,
    mailbox: Arc<Mailbox>,
    subscribed: HashMap<Arc<str>, Subscription>,
}

/// One topic subscribed to; dropping it ends the subscription.
struct Subscription {
    full: Arc<str>,
    id: u64,
    grant: Arc<MessagingGrant>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        match &self.grant.redis {
            Some(redis) => {
                if redis.topics.remove(&self.full, self.id) {
                    redis.unsubscribe(&self.full);
                }
            }
            None => {
                self.grant.embedded.remove(&self.full, self.id);
            }
        }
    }
}

impl MessagingState {
    pub fn new(grant: Arc<MessagingGrant>) -> Self {
        let mailbox = Arc::new(Mailbox::new(grant.pending));
        Self {
            grant,
            mailbox,
            subscribed: HashMap::new(),
        }
    }

    /// What the instance's subscriptions bring, for its delivery task.
    pub fn mailbox(&self) -> Arc<Mailbox> {
        self.mailbox.clone()
    }

    /// Count `outcome`; the error it is, if any.
    fn refused(&self, outcome: Outcome, error: MessagingError, why: &str) -> MessagingError {
        self.grant.metrics.messaging(outcome, 1);
        tracing::debug!(service = &*self.grant.namespace, "messaging: {why}");
        error
    }

    /// Why `topic` cannot be used, if it cannot.
    fn check(&self, topic: &str) -> Result<(), MessagingError> {
        if let Err(why) = check_topic(topic) {
            return Err(self.refused(Outcome::Invalid, MessagingError::InvalidTopic, &why));
        }
        if self.grant.spec.backend == Backend::Off {
            let why = "the service has no messaging (pubsub=off)";
            return Err(self.refused(Outcome::Invalid, MessagingError::Off, why));
        }
        Ok(())
    }
}

impl messaging::Host for MessagingState {
    async fn subscribe(&mut self, topic: String) -> wasmtime::Result<Result<(), MessagingError>> {
        if let Err(error) = self.check(&topic) {
            return Ok(Err(error));
        }
        if self.subscribed.contains_key(topic.as_str()) {
            return Ok(Ok(()));
        }
        if self.subscribed.len() >= self.grant.subscriptions {
            let why = format!("subscriptions={} reached", self.grant.subscriptions);
            return Ok(Err(self.refused(
                Outcome::Subscriptions,
                MessagingError::Limit,
                &why,
            )));
        }
        let grant = self.grant.clone();
        let full = grant.full(&topic);
        let topic: Arc<str> = Arc::from(topic);
        let metrics = grant.metrics.clone();
        let id = match &grant.redis {
            Some(redis) => {
                let id = redis
                    .topics
                    .add(&full, topic.clone(), &self.mailbox, metrics);
                // Every time, not only for the topic's first subscriber
                // here: the confirmation, which comes in order, is what
                // says this subscriber will get what is published next.
                redis.subscribe(&full).await;
                if redis.is_down() {
                    self.mailbox.tell(Delivery::Interrupted(topic.clone()));
                }
                id
            }
            None => grant
                .embedded
                .add(&full, topic.clone(), &self.mailbox, metrics),
        };
        let full = Arc::from(full);
        self.subscribed
            .insert(topic, Subscription { full, id, grant });
        self.grant.metrics.messaging(Outcome::Subscribed, 1);
        Ok(Ok(()))
    }

    async fn unsubscribe(&mut self, topic: String) -> wasmtime::Result<()> {
        self.subscribed.remove(topic.as_str());
        Ok(())
    }

    async fn publish(
        &mut self,
        topic: String,
        message: Vec<u8>,
    ) -> wasmtime::Result<Result<(), MessagingError>> {
        if let Err(error) = self.check(&topic) {
            return Ok(Err(error));
        }
        let grant = &self.grant;
        if message.len() > grant.message_size {
            let why = format!(
                "a message of {} bytes is over message-size={}",
                message.len(),
                grant.message_size
            );
            return Ok(Err(self.refused(
                Outcome::MessageSize,
                MessagingError::TooLarge,
                &why,
            )));
        }
        let allowed = grant.rate.lock().unwrap_or_else(|p| p.into_inner()).take();
        if !allowed {
            let why = format!("over publish-rate={}/s", grant.publish_rate());
            return Ok(Err(self.refused(Outcome::Rate, MessagingError::Rate, &why)));
        }
        let full = grant.full(&topic);
        match &grant.redis {
            Some(redis) => {
                if let Err(why) = redis.publish(&full, &message).await {
                    let why = format!("the backend is unavailable: {why}");
                    return Ok(Err(self.refused(
                        Outcome::Unavailable,
                        MessagingError::Unavailable,
                        &why,
                    )));
                }
            }
            None => grant.embedded.publish(&full, &Arc::from(message)),
        }
        self.grant.metrics.messaging(Outcome::Published, 1);
        Ok(Ok(()))
    }
}

/// Add `weft:protocol/messaging` to `linker`, each instance working on the
/// state `state` projects from its store.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    state: fn(&mut T) -> &mut MessagingState,
) -> wasmtime::Result<()> {
    messaging::add_to_linker::<T, HasSelf<MessagingState>>(linker, state)
}
