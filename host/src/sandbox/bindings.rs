//! The host's bindings to the `weft:protocol/service` world: the current
//! one in `wit/` and the frozen 0.1.0 one in `wit/v0.1.0/`, which the host
//! keeps serving; and to the `datagram-service` world. The only place the
//! host generates WIT bindings.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "weft:protocol/service",
    imports: { default: trappable },
    exports: { default: async },
    with: {
        "weft:protocol/transport.transport": crate::guest::transport::TransportHandle,
        "weft:protocol/reactor.delayed-call": crate::guest::timers::DelayedCall,
    },
});

pub use self::weft::protocol::types::{
    Address, AddressFamily, CloseReason, ConnectError, SocketAddress,
};

/// Bindings to `weft:protocol@0.1.0`, for components built before 0.2.0.
/// Its types are the current ones, which have the same shape.
pub mod v1 {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "weft:protocol/service",
        imports: { default: trappable },
        exports: { default: async },
        with: {
            "weft:protocol/types": crate::sandbox::bindings::weft::protocol::types,
            "weft:protocol/transport.transport": crate::guest::transport::TransportHandle,
        },
    });
}

/// Bindings to the `weft:protocol/datagram-service` world, whose shared
/// interfaces are the `service` world's.
pub mod datagram {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "weft:protocol/datagram-service",
        imports: { default: trappable },
        exports: { default: async },
        with: {
            "weft:protocol/types": crate::sandbox::bindings::weft::protocol::types,
            "weft:protocol/log": crate::sandbox::bindings::weft::protocol::log,
        },
    });
}
