//! Outbound connections (Twisted's `endpoints.clientFromString(...)
//! .connect(factory)` and `ClientFactory`): the host resolves, checks the
//! operator's policy and connects; the protocol the factory builds is
//! served exactly like one for an accepted connection.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::bindings::weft::protocol::reactor as wit;
pub use crate::bindings::weft::protocol::types::ConnectError;
use crate::reactor::token;
use crate::{Protocol, Transport};

thread_local! {
    /// The connections being made, by the token given the host.
    static CONNECTING: RefCell<HashMap<u64, Box<dyn Connecting>>> = RefCell::default();
}

/// Builds the protocol for an outbound connection, or hears why there is
/// none (Twisted's `ClientFactory`).
pub trait ClientFactory: 'static {
    /// The protocol of the connection.
    type Protocol: Protocol;

    /// Build the protocol once connected (Twisted's buildProtocol);
    /// `connection_made` is called on it right after.
    fn build_protocol(self, transport: Transport) -> Self::Protocol;

    /// The connection could not be made (Twisted's clientConnectionFailed).
    fn client_connection_failed(self, reason: ConnectError);
}

/// Connect to `endpoint`, a Twisted client endpoint string
/// (`tcp:host=HOST:port=PORT`, `tcp:HOST:PORT`, `tcp6:...`, optionally
/// `:timeout=SECONDS`). `factory` then builds the protocol or hears the
/// failure. Fails at once, calling neither, when the string does not parse
/// or the instance has as many connections out as the operator allows.
pub fn connect(endpoint: &str, factory: impl ClientFactory) -> Result<(), ConnectError> {
    let token = token();
    wit::connect(endpoint, token)?;
    CONNECTING.with_borrow_mut(|connecting| connecting.insert(token, Box::new(Some(factory))));
    Ok(())
}

/// A connection being made, its factory type erased.
trait Connecting {
    fn made(&mut self, transport: Transport) -> Box<dyn Protocol>;
    fn failed(&mut self, reason: ConnectError);
}

impl<F: ClientFactory> Connecting for Option<F> {
    fn made(&mut self, transport: Transport) -> Box<dyn Protocol> {
        let factory = self.take().expect("a connection is made once");
        Box::new(factory.build_protocol(transport))
    }

    fn failed(&mut self, reason: ConnectError) {
        if let Some(factory) = self.take() {
            factory.client_connection_failed(reason);
        }
    }
}

/// The connection asked for with `token` is made: its protocol, if the
/// guest still has a factory waiting for it.
pub(crate) fn made(token: u64, transport: Transport) -> Option<Box<dyn Protocol>> {
    let mut connecting = CONNECTING.with_borrow_mut(|connecting| connecting.remove(&token))?;
    Some(connecting.made(transport))
}

/// The connection asked for with `token` failed.
pub(crate) fn failed(token: u64, reason: ConnectError) {
    if let Some(mut connecting) = CONNECTING.with_borrow_mut(|connecting| connecting.remove(&token))
    {
        connecting.failed(reason);
    }
}
