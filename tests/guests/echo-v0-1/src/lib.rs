//! An echo guest built, as a deployed 0.1.0 module was, against the frozen
//! `wit/v0.1.0/` and nothing else: the host must keep serving it unchanged.
//! It writes back what it receives, and logs each connection's end.

use std::cell::RefCell;

wit_bindgen::generate!({
    path: "../../../wit/v0.1.0",
    world: "weft:protocol/service",
});

use exports::weft::protocol::protocol::{Guest, GuestProtocol};
use weft::protocol::log::{Level, log};
use weft::protocol::transport::Transport;
use weft::protocol::types::CloseReason;

struct Echo {
    transport: RefCell<Transport>,
}

impl GuestProtocol for Echo {
    fn new(transport: Transport) -> Self {
        Self {
            transport: RefCell::new(transport),
        }
    }

    fn data_received(&self, data: Vec<u8>) {
        self.transport.borrow().write(&data);
    }

    fn read_connection_lost(&self) {
        self.transport.borrow().lose_connection();
    }

    fn connection_lost(&self, reason: CloseReason) {
        log(
            Level::Info,
            &format!("v0.1.0 echo: connection lost ({reason:?})"),
        );
    }
}

struct Component;

impl Guest for Component {
    type Protocol = Echo;
}

// Component exports exist only on wasm; the workspace's native build of
// this crate must not define them.
#[cfg(target_arch = "wasm32")]
export!(Component);
