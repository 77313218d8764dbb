//! An echo guest built, as a deployed 0.2.1 module was, against the frozen
//! `wit/v0.2.1/` and nothing else: the host must keep serving it unchanged
//! (0.2.2 only added types and functions, so the current bindings serve
//! it). It writes back what it receives with `write-checked`, new in
//! 0.2.1, and logs each connection's end.

use std::cell::RefCell;

wit_bindgen::generate!({
    path: "../../../wit/v0.2.1",
    world: "weft:protocol/service",
    generate_all,
});

use exports::weft::protocol::events;
use exports::weft::protocol::protocol::{Guest, GuestProtocol};
use weft::protocol::log::{Level, log};
use weft::protocol::transport::Transport;
use weft::protocol::types::{CloseReason, ConnectError};

struct Echo {
    transport: RefCell<Transport>,
}

impl GuestProtocol for Echo {
    fn new(transport: Transport, _client: Option<u64>) -> Self {
        Self {
            transport: RefCell::new(transport),
        }
    }

    fn data_received(&self, data: Vec<u8>) {
        self.transport.borrow().write_checked(&data);
    }

    fn read_connection_lost(&self) {
        self.transport.borrow().lose_connection();
    }

    fn connection_lost(&self, reason: CloseReason) {
        log(
            Level::Info,
            &format!("v0.2.1 echo: connection lost ({reason:?})"),
        );
    }
}

struct Component;

impl Guest for Component {
    type Protocol = Echo;
}

impl events::Guest for Component {
    fn start() {}

    fn stop() {}

    fn timer_fired(_token: u64) {}

    fn connect_failed(_token: u64, _reason: ConnectError) {}
}

// Component exports exist only on wasm; the workspace's native build of
// this crate must not define them.
#[cfg(target_arch = "wasm32")]
export!(Component);
