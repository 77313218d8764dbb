// The echo guest of the frozen WIT versions, shared by the crates that
// build it against each (after their `generate!` and `VERSION`).

use std::cell::RefCell;

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
            &format!("{VERSION} echo: connection lost ({reason:?})"),
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
