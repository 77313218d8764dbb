//! Topics on Redis: each worker of a service publishes with PUBLISH on
//! `weft:topic:FULL-TOPIC` and keeps one subscribing connection, which
//! SUBSCRIBEs to the topics its instances want and hands what arrives to
//! them. When that connection fails its subscribers are told, it retries
//! every second, and once back it subscribes again and tells them so.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::sync::{mpsc, oneshot};

use crate::capability::keyvalue::Redis;
use crate::capability::keyvalue::spec::RedisAddress;
use crate::capability::messaging::mailbox::Delivery;
use crate::capability::messaging::topics::Topics;

/// The longest a connect or a SUBSCRIBE may take.
const TIMEOUT: Duration = Duration::from_millis(300);

/// How long a failed subscribing connection waits before the next try.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The channel prefix; the full topic name follows it.
const CHANNEL: &str = "weft:topic:";

/// One worker's topics on one Redis server.
pub struct RedisTopics {
    address: RedisAddress,
    /// Its instances' subscriptions, filled from the subscribing
    /// connection.
    pub topics: Topics,
    publisher: Redis,
    /// What the subscribing connection should do; its task ends when this
    /// is dropped.
    control: mpsc::UnboundedSender<Control>,
    /// The task's receiver, until the first subscription starts it.
    idle: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Control>>>,
    link: AtomicU8,
}

/// What is asked of the subscribing connection.
enum Control {
    /// SUBSCRIBE, and say when Redis confirmed it.
    Subscribe(Arc<str>, oneshot::Sender<()>),
    Unsubscribe(Arc<str>),
}

/// The state of the subscribing connection.
const CONNECTING: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

impl RedisTopics {
    pub fn new(address: RedisAddress) -> Self {
        let (control, idle) = mpsc::unbounded_channel();
        Self {
            publisher: Redis::new(address.clone(), "publish/subscribe"),
            address,
            topics: Topics::default(),
            control,
            idle: std::sync::Mutex::new(Some(idle)),
            link: AtomicU8::new(CONNECTING),
        }
    }

    /// Whether the subscribing connection is known to be down.
    pub fn is_down(&self) -> bool {
        self.link.load(Ordering::Relaxed) == DOWN
    }

    /// PUBLISH `message` to the topic `full`.
    pub async fn publish(&self, full: &str, message: &[u8]) -> Result<(), String> {
        let channel = format!("{CHANNEL}{full}");
        self.publisher
            .publish(&channel, message)
            .await
            .map_err(|unavailable| unavailable.0)
    }

    /// Have the subscribing connection SUBSCRIBE to `full` (again, if it
    /// has: Redis takes it as a no-op); returns once Redis confirmed it,
    /// or after a timeout (the subscription stays, and is made when Redis
    /// is back).
    pub async fn subscribe(self: &Arc<Self>, full: &str) {
        self.start();
        let (done, confirmed) = oneshot::channel();
        if self
            .control
            .send(Control::Subscribe(Arc::from(full), done))
            .is_ok()
        {
            let _ = tokio::time::timeout(TIMEOUT, confirmed).await;
        }
    }

    /// Have the subscribing connection UNSUBSCRIBE from `full`, which has
    /// no subscriber here any more.
    pub fn unsubscribe(&self, full: &str) {
        let _ = self.control.send(Control::Unsubscribe(Arc::from(full)));
    }

    /// Start the subscribing connection's task, if it has not started.
    fn start(self: &Arc<Self>) {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(control) = idle {
            tokio::spawn(subscribing(Arc::downgrade(self), control));
        }
    }

    /// Note that the subscribing connection is up or down, telling the
    /// subscribers when that changes.
    fn set_link(&self, up: bool) {
        let now = if up { UP } else { DOWN };
        let was = self.link.swap(now, Ordering::Relaxed);
        match (was, now) {
            (DOWN, UP) => {
                tracing::info!("publish/subscribe backend {} is back", self.address);
                self.topics.tell_all(Delivery::Resumed);
            }
            (CONNECTING | UP, DOWN) => {
                tracing::warn!(
                    "publish/subscribe backend {} is unreachable; subscribers miss what is published until it is back",
                    self.address
                );
                self.topics.tell_all(Delivery::Interrupted);
            }
            _ => {}
        }
    }
}

/// The subscribing connection: connect, subscribe to every topic wanted,
/// then follow the requests and the messages until either fails; then
/// again after a pause. Ends when its [`RedisTopics`] is dropped.
async fn subscribing(link: Weak<RedisTopics>, mut control: mpsc::UnboundedReceiver<Control>) {
    loop {
        let Some(address) = link.upgrade().map(|link| link.address.clone()) else {
            return;
        };
        match tokio::time::timeout(TIMEOUT, connect(&address)).await {
            Ok(Ok(pubsub)) => {
                if !follow(&link, pubsub, &mut control).await {
                    return;
                }
            }
            Ok(Err(error)) => tracing::debug!("redis {address}: {error}"),
            Err(_) => tracing::debug!("redis {address}: connect timed out"),
        }
        let Some(topics) = link.upgrade() else {
            return;
        };
        topics.set_link(false);
        drop(topics);
        // Wait, answering requests meanwhile: a subscription made now is
        // kept, and made when the connection is back.
        let pause = tokio::time::sleep(RETRY_AFTER);
        tokio::pin!(pause);
        loop {
            tokio::select! {
                () = &mut pause => break,
                request = control.recv() => match request {
                    None => return,
                    Some(Control::Subscribe(_, done)) => drop(done),
                    Some(Control::Unsubscribe(_)) => {}
                },
            }
        }
    }
}

async fn connect(address: &RedisAddress) -> redis::RedisResult<redis::aio::PubSub> {
    let info = redis::ConnectionInfo {
        addr: redis::ConnectionAddr::Tcp(address.host.clone(), address.port),
        redis: redis::RedisConnectionInfo {
            db: address.db,
            ..Default::default()
        },
    };
    redis::Client::open(info)?.get_async_pubsub().await
}

/// Follow one connection: subscribe to every topic wanted, then serve
/// requests and hand on messages. `false` once the [`RedisTopics`] is
/// gone, `true` when the connection failed.
async fn follow(
    link: &Weak<RedisTopics>,
    pubsub: redis::aio::PubSub,
    control: &mut mpsc::UnboundedReceiver<Control>,
) -> bool {
    let (mut sink, mut stream) = pubsub.split();
    let Some(topics) = link.upgrade() else {
        return false;
    };
    let channels: Vec<String> = topics
        .topics
        .names()
        .iter()
        .map(|full| format!("{CHANNEL}{full}"))
        .collect();
    if !channels.is_empty() && sink.subscribe(channels).await.is_err() {
        return true;
    }
    topics.set_link(true);
    drop(topics);
    loop {
        tokio::select! {
            request = control.recv() => {
                let made = match request {
                    None => return false,
                    Some(Control::Subscribe(full, done)) => {
                        let made = sink.subscribe(format!("{CHANNEL}{full}")).await;
                        let _ = done.send(());
                        made
                    }
                    Some(Control::Unsubscribe(full)) => {
                        sink.unsubscribe(format!("{CHANNEL}{full}")).await
                    }
                };
                if made.is_err() {
                    return true;
                }
            }
            message = stream.next() => {
                let Some(message) = message else {
                    return true;
                };
                let Some(topics) = link.upgrade() else {
                    return false;
                };
                let channel = message.get_channel_name();
                if let Some(full) = channel.strip_prefix(CHANNEL) {
                    topics.topics.publish(full, &Arc::from(message.get_payload_bytes()));
                }
            }
        }
    }
}
