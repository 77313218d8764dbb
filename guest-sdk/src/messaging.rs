//! Publish/subscribe kept by the host (`weft:protocol/messaging`): an
//! instance [`subscribe`]s to a topic with a [`Subscriber`] (a closure
//! will do) and gets what anyone [`publish`]es to it, in this process or,
//! when the operator puts the service's topics on Redis, in every weft
//! process sharing that server.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::bindings::weft::protocol::messaging as wit;
pub use crate::bindings::weft::protocol::messaging::MessagingError;

/// What is told of one subscription, one call at a time like every other
/// event. Only `message_received` is required: a closure taking the
/// message's bytes is a `Subscriber`.
pub trait Subscriber {
    /// A message published to the topic.
    fn message_received(&mut self, message: &[u8]);

    /// `count` messages were dropped, the oldest first, because this
    /// instance fell further behind than the operator allows.
    fn messages_dropped(&mut self, count: u64) {
        let _ = count;
    }

    /// The backend holding the topic is unreachable: what is published
    /// until [`Subscriber::subscription_resumed`] is lost to this instance.
    fn subscription_interrupted(&mut self) {}

    /// The backend is back, and delivers again.
    fn subscription_resumed(&mut self) {}
}

impl<F: FnMut(&[u8])> Subscriber for F {
    fn message_received(&mut self, message: &[u8]) {
        self(message)
    }
}

type Shared = Rc<RefCell<dyn Subscriber>>;

thread_local! {
    static SUBSCRIBERS: RefCell<HashMap<String, Shared>> = RefCell::default();
}

/// Receive what is published to `topic` (1 to 64 letters, digits, `.`,
/// `_` or `-`, inside the service's namespace) through `subscriber`, which
/// replaces any earlier one for the topic. Once this returns, every
/// message published to the topic reaches it, this instance's own
/// included.
pub fn subscribe(topic: &str, subscriber: impl Subscriber + 'static) -> Result<(), MessagingError> {
    wit::subscribe(topic)?;
    let subscriber: Shared = Rc::new(RefCell::new(subscriber));
    SUBSCRIBERS.with(|subscribers| {
        subscribers
            .borrow_mut()
            .insert(topic.to_owned(), subscriber)
    });
    Ok(())
}

/// Stop receiving what is published to `topic`.
pub fn unsubscribe(topic: &str) {
    wit::unsubscribe(topic);
    SUBSCRIBERS.with(|subscribers| subscribers.borrow_mut().remove(topic));
}

/// Send `message` to every instance subscribed to `topic`. `Ok` once the
/// host's backend has it; an error says why it was not sent (too large,
/// over the publish rate, the backend unreachable).
pub fn publish(topic: &str, message: &[u8]) -> Result<(), MessagingError> {
    wit::publish(topic, message)
}

/// Tell the subscriber of `topic`, if there is one, of `event`. Its
/// handler may subscribe or unsubscribe meanwhile.
pub(crate) fn tell(topic: &str, event: impl FnOnce(&mut dyn Subscriber)) {
    let subscriber = SUBSCRIBERS.with(|subscribers| subscribers.borrow().get(topic).cloned());
    if let Some(subscriber) = subscriber {
        event(&mut *subscriber.borrow_mut());
    }
}
