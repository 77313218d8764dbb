//! Twisted's Protocol and Factory, and the glue that serves them through the
//! WIT exports: one [`ProtocolHandle`] per connection, accepted or made by
//! [`connect`](crate::endpoints::connect), the instance's `events`, its
//! `producers` (to [`crate::producer`]), and its `subscriber` export,
//! which hands messages to [`crate::messaging`].

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use crate::bindings::exports::weft::protocol::protocol::{Guest, GuestProtocol};
use crate::bindings::exports::weft::protocol::{events, producers, subscriber};
use crate::bindings::weft::protocol::transport as wit;
use crate::endpoints::ConnectError;
use crate::{CloseReason, Transport};

/// The handler for one connection (Twisted's `Protocol`). The host calls
/// these methods one at a time, in the order events happen.
pub trait Protocol: 'static {
    /// The connection's transport (Twisted's `self.transport`).
    fn transport(&self) -> &Transport;

    /// The connection is established and the protocol built
    /// (Twisted's connectionMade).
    fn connection_made(&mut self) {}

    /// Bytes from the peer; boundaries between calls carry no meaning
    /// (Twisted's dataReceived).
    fn data_received(&mut self, data: &[u8]);

    /// The peer shut down its write side. By default the connection is
    /// closed once pending writes are flushed, as Twisted does for protocols
    /// that are not half-closeable; override to keep writing.
    fn read_connection_lost(&mut self) {
        self.transport().lose_connection();
    }

    /// The connection has ended; the last call this protocol receives
    /// (Twisted's connectionLost).
    fn connection_lost(&mut self, reason: CloseReason) {
        let _ = reason;
    }

    /// Whether the protocol stopped part-way through its input to stay
    /// within [`CALL_BUDGET`] and has more to do. The SDK then calls
    /// [`continue_work`](Protocol::continue_work) from a zero-delay timer,
    /// in a later call, until this is false.
    fn has_more_work(&self) -> bool {
        false
    }

    /// Carry on with the input left over, within [`CALL_BUDGET`].
    fn continue_work(&mut self) {}
}

/// How long a protocol should work in one call before it carries on in a
/// later one ([`Protocol::has_more_work`]): well within the host's default
/// 100 ms deadline, so that a burst of input (a 1 MB paste into a room of
/// a thousand) is spread over many calls instead of trapping one.
pub const CALL_BUDGET: std::time::Duration = std::time::Duration::from_millis(10);

/// Builds one protocol per connection and holds what connections share
/// (Twisted's `Factory`). The factory lives for the whole guest instance, so
/// protocols may keep a `&'static` reference to it.
pub trait Factory: 'static {
    /// The protocol built for each connection.
    type Protocol: Protocol;

    /// Build the protocol for a new connection (Twisted's buildProtocol).
    /// `connection_made` is called on the result right after.
    fn build_protocol(&'static self, transport: Transport) -> Self::Protocol;

    /// The instance has started, before its first connection (Twisted's
    /// startFactory): where to schedule timers or connect to a backend.
    fn start_factory(&'static self) {}

    /// The host is shutting down (Twisted's stopFactory).
    fn stop_factory(&'static self) {}
}

/// Where [`export!`](crate::export) keeps the guest's one factory.
pub trait FactoryCell: 'static {
    /// The exported factory.
    type Factory: Factory;

    /// The factory, built on first use.
    fn get() -> &'static Self::Factory;
}

/// The WIT `protocol` resource: one connection's protocol, behind a
/// `RefCell` because the host calls resource methods through `&self`. The
/// host never calls into the guest re-entrantly, so the borrow never fails.
/// Shared with the timer that continues its leftover work, if any.
pub struct ProtocolHandle<C: FactoryCell>(Rc<RefCell<Handler<<C::Factory as Factory>::Protocol>>>);

/// An accepted connection's protocol, built by the exported factory, or an
/// outbound one's, built by the `ClientFactory` given to `connect`.
enum Handler<P> {
    Served(P),
    Client(Box<dyn Protocol>),
}

impl<P: Protocol> Handler<P> {
    fn protocol(&mut self) -> &mut dyn Protocol {
        match self {
            Handler::Served(protocol) => protocol,
            Handler::Client(protocol) => protocol.as_mut(),
        }
    }
}

impl<C: FactoryCell> Guest for C {
    type Protocol = ProtocolHandle<C>;
}

impl<C: FactoryCell> ProtocolHandle<C> {
    /// Run `event` on the protocol, then send what the call wrote and, if
    /// the protocol has work left over, carry on in a later call.
    fn handle(&self, event: impl FnOnce(&mut dyn Protocol)) {
        let more = {
            let mut handler = self.0.borrow_mut();
            event(handler.protocol());
            handler.protocol().has_more_work()
        };
        end_call();
        if more {
            keep_working(Rc::downgrade(&self.0));
        }
    }
}

/// What every call into the guest ends with: handing the host what the
/// call wrote to transports, then what it printed.
fn end_call() {
    crate::transport::flush_all();
    crate::stdout::flush();
}

/// Continue a protocol's leftover work from a zero-delay timer, one call's
/// budget at a time, until it is done or the connection is gone.
fn keep_working<P: Protocol>(handler: Weak<RefCell<Handler<P>>>) {
    let scheduled = crate::reactor::call_later(std::time::Duration::ZERO, move || {
        let Some(handler) = handler.upgrade() else {
            return;
        };
        let more = {
            let mut handler = handler.borrow_mut();
            handler.protocol().continue_work();
            handler.protocol().has_more_work()
        };
        if more {
            keep_working(Rc::downgrade(&handler));
        }
    });
    if scheduled.is_err() {
        crate::log::error("no timer left to continue a protocol's input; it stays paused");
    }
}

impl<C: FactoryCell> GuestProtocol for ProtocolHandle<C> {
    fn new(transport: wit::Transport, client: Option<u64>) -> Self {
        let transport = Transport::from_host(transport);
        let handler = match client {
            None => Handler::Served(C::get().build_protocol(transport.clone())),
            Some(token) => match crate::endpoints::made(token, transport.clone()) {
                Some(protocol) => Handler::Client(protocol),
                // Nothing waits for it any more: close it.
                None => Handler::Client(Box::new(Unwanted(transport.clone()))),
            },
        };
        let this = Self(Rc::new(RefCell::new(handler)));
        let weak = Rc::downgrade(&this.0);
        transport.set_waker(Rc::new(move || keep_working(weak.clone())));
        this.handle(|protocol| protocol.connection_made());
        this
    }

    fn data_received(&self, data: Vec<u8>) {
        self.handle(|protocol| protocol.data_received(&data));
    }

    fn read_connection_lost(&self) {
        self.handle(|protocol| protocol.read_connection_lost());
    }

    fn connection_lost(&self, reason: CloseReason) {
        self.handle(|protocol| {
            protocol.connection_lost(reason);
            protocol.transport().stop_producer();
        });
    }
}

impl<C: FactoryCell> events::Guest for C {
    fn start() {
        C::get().start_factory();
        end_call();
    }

    fn stop() {
        C::get().stop_factory();
        end_call();
    }

    fn timer_fired(token: u64) {
        crate::reactor::fire(token);
        end_call();
    }

    fn connect_failed(token: u64, reason: ConnectError) {
        crate::endpoints::failed(token, reason);
        end_call();
    }
}

impl<C: FactoryCell> producers::Guest for C {
    fn pause_producing(token: u64) {
        crate::producer::tell(token, true);
        end_call();
    }

    fn resume_producing(token: u64) {
        crate::producer::tell(token, false);
        end_call();
    }
}

impl<C: FactoryCell> subscriber::Guest for C {
    fn message_received(topic: String, message: Vec<u8>) {
        C::get();
        crate::messaging::tell(&topic, |subscriber| subscriber.message_received(&message));
        end_call();
    }

    fn messages_dropped(topic: String, count: u64) {
        crate::messaging::tell(&topic, |subscriber| subscriber.messages_dropped(count));
        end_call();
    }

    fn subscription_interrupted(topic: String) {
        crate::messaging::tell(&topic, |subscriber| subscriber.subscription_interrupted());
        end_call();
    }

    fn subscription_resumed(topic: String) {
        crate::messaging::tell(&topic, |subscriber| subscriber.subscription_resumed());
        end_call();
    }
}

/// An outbound connection nobody waits for: closed once made.
struct Unwanted(Transport);

impl Protocol for Unwanted {
    fn transport(&self) -> &Transport {
        &self.0
    }

    fn connection_made(&mut self) {
        self.0.lose_connection();
    }

    fn data_received(&mut self, _data: &[u8]) {}
}
