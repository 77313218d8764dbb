//! Twisted's UDP echo, built with plain wit-bindgen against the frozen
//! `wit/v0.2.3/` as a deployed 0.2.3 datagram guest was: the host must
//! keep serving it unchanged (0.2.4 only added publish/subscribe).

wit_bindgen::generate!({
    path: "../../../wit/v0.2.3",
    world: "weft:protocol/datagram-service",
    generate_all,
});

use exports::weft::protocol::datagram_handler::Guest;
use weft::protocol::datagram_transport;
use weft::protocol::types::Address;

struct Echo;

impl Guest for Echo {
    fn start_protocol() {}

    fn datagram_received(data: Vec<u8>, sender: Address) {
        // A reply refused (too large, over the rate) is dropped, as
        // Twisted's write of an unsendable datagram is.
        let _ = datagram_transport::write(&data, &sender);
    }

    fn stop_protocol() {}
}

// Component exports exist only on wasm: the workspace's native build of
// this crate must not define them.
#[cfg(target_arch = "wasm32")]
export!(Echo);
