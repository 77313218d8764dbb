//! An in-memory transport for unit-testing protocols natively, without a
//! host (Twisted's `twisted.internet.testing.StringTransport`).

use std::cell::RefCell;
use std::rc::Rc;

use crate::transport::{Control, Recording, Transport};

/// Records what a protocol does to its transport. Build the protocol with
/// [`StringTransport::transport`], feed it data, then read [`value`].
///
/// [`value`]: StringTransport::value
#[derive(Clone, Default)]
pub struct StringTransport(Rc<RefCell<Recording>>);

impl StringTransport {
    /// A fresh transport for a peer 127.0.0.1:54321 connected to 127.0.0.1:1025.
    pub fn new() -> Self {
        Self::default()
    }

    /// A transport handle that records into this `StringTransport`.
    pub fn transport(&self) -> Transport {
        Transport::recording_into(self.0.clone())
    }

    /// Everything written so far.
    pub fn value(&self) -> Vec<u8> {
        self.0.borrow().written.clone()
    }

    /// Everything written so far, forgetting it.
    pub fn take(&self) -> Vec<u8> {
        std::mem::take(&mut self.0.borrow_mut().written)
    }

    /// Whether `lose_connection` was called.
    pub fn lost(&self) -> bool {
        self.called(Control::Lose)
    }

    /// Whether `abort_connection` was called.
    pub fn aborted(&self) -> bool {
        self.called(Control::Abort)
    }

    /// Whether `lose_write_connection` was called.
    pub fn write_lost(&self) -> bool {
        self.called(Control::LoseWrite)
    }

    /// Whether reading is paused: `pause_producing` was called last.
    pub fn paused(&self) -> bool {
        let record = self.0.borrow();
        let last = record
            .controls
            .iter()
            .rev()
            .find(|c| matches!(c, Control::Pause | Control::Resume));
        last == Some(&Control::Pause)
    }

    fn called(&self, control: Control) -> bool {
        self.0.borrow().controls.contains(&control)
    }
}
