//! The host's bindings to the `weft:protocol/service` world in `wit/`; the
//! only place the host generates WIT bindings.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "weft:protocol/service",
    imports: { default: trappable },
    exports: { default: async },
    with: {
        "weft:protocol/transport.transport": crate::guest::transport::TransportHandle,
    },
});

pub use self::weft::protocol::types::{Address, AddressFamily, CloseReason};
