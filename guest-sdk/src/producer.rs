//! The guest's own producers of a connection's output (Twisted's
//! IPushProducer): paused while the peer reads slower than the guest
//! writes, resumed once the host has sent most of what is waiting.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Something that writes to a transport on its own schedule, from timers
/// or other connections' input (Twisted's IPushProducer), registered with
/// [`Transport::register_push_producer`](crate::Transport::register_push_producer).
pub trait PushProducer: 'static {
    /// The connection's unsent output reached the operator's write buffer:
    /// stop writing until [`resume_producing`](Self::resume_producing).
    fn pause_producing(&self);

    /// The connection's unsent output drained: write again.
    fn resume_producing(&self);

    /// The connection is gone: stop for good (Twisted's stopProducing).
    fn stop_producing(&self) {}
}

thread_local! {
    /// The registered producers, by the token their connection is watched
    /// with.
    static PRODUCERS: RefCell<HashMap<u64, Rc<dyn PushProducer>>> = RefCell::default();
}

/// Remember `producer` as the one told about the connection watched with
/// `token`.
pub(crate) fn register(token: u64, producer: Rc<dyn PushProducer>) {
    PRODUCERS.with_borrow_mut(|producers| producers.insert(token, producer));
}

/// Forget the producer watched with `token`.
pub(crate) fn forget(token: u64) -> Option<Rc<dyn PushProducer>> {
    PRODUCERS.with_borrow_mut(|producers| producers.remove(&token))
}

/// The host says the connection watched with `token` is `full`, or has
/// drained.
pub(crate) fn tell(token: u64, full: bool) {
    // Cloned out, so that the producer may unregister itself.
    let producer = PRODUCERS.with_borrow(|producers| producers.get(&token).cloned());
    match producer {
        Some(producer) if full => producer.pause_producing(),
        Some(producer) => producer.resume_producing(),
        None => {}
    }
}
